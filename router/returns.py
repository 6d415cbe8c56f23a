"""Who a ``return`` gives a task back to, and in which queue: one correction per voter, in the
queue where that voter's counted vote was cast.

A task's votes may come from several stages (two votes in ``triage``, a third in ``legal``),
so each correction waits in its own queue (the assignment's ``queue``), for an annotator who
may still work it. The task's own ``queue`` names the newest returned vote's queue. Voters
who cannot take one back are left out, and the event of the return (or of an ``unhold``)
names them with the reason: :func:`returnable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rules.visible_text import one_line  # a name an older version stored may hold a line break

from .store import loads


def returnable(engine, workers: Sequence[str], queues: Sequence[str | None]) -> tuple[list[dict], list[dict]]:
    """Split voters (``workers``, each with the ``queues`` entry where their vote was cast) into
    those a correction can be offered to, ``{worker, queue}`` in vote order, and those left out,
    ``{worker, queue, reason}``: imported voters, and people whose roles or skills no longer
    let them work their vote's queue."""
    offered: list[dict[str, Any]] = []
    left_out: list[dict[str, Any]] = []
    for name, queue in zip(workers, queues):
        row = engine.store.worker(name)
        if row is not None and queue in engine._queues_for(row["roles"], row["skills"]):
            offered.append({"worker": name, "queue": queue})
            continue
        if row is None:
            reason = f"{name} is not a worker of this project"
        elif loads(row["roles"]) == ["imported"]:
            reason = f"{name}'s vote was imported; they claim no work"
        else:
            reason = f"{name} no longer works `{queue}`"
        left_out.append({"worker": name, "queue": queue, "reason": reason})
    return offered, left_out


def dropped_queue_reason(workers: Sequence[str], queues: Sequence[str | None], gone: Sequence[str],
                         version: Any) -> str:
    """Why a ``return`` holds a task whose votes were cast in queues (``gone``) that workflow
    ``version`` (its row) lacks: a lead decides, as for any task of a dropped queue."""
    whose = [w for w, q in zip(workers, queues) if q in gone]
    if len(whose) == len(workers):
        where = "where its votes were cast"
    elif len(whose) == 1:
        where = f"where the vote of {whose[0]} was cast"
    else:
        where = f"where the votes of {listed(whose)} were cast"
    queue, are = ("queues", "are") if len(gone) > 1 else ("queue", "is")
    return (f"return: {queue} {listed(gone, quote=True)}, {where}, {are} not in version {version['version']} "
            f"of workflow `{version['name']}`; a lead can `escalate` it")


def listed(items: Iterable[Any], *, quote: bool = False, last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c`` (each in backquotes when ``quote``); empty for none."""
    words = [f"`{i}`" if quote else str(i) for i in items]
    return ", ".join(words[:-1]) + f" {last} " + words[-1] if len(words) > 1 else "".join(words)


def described(corrections: Iterable[dict], left_out: Iterable[dict] = ()) -> str:
    """``a1 in triage, l1 in legal; left out: a2 (a2 no longer works `triage`)``, for ``show`` and
    ``explain``."""
    text = ", ".join(f"{one_line(c['worker'])} in {c['queue']}" for c in corrections)
    out = [f"{one_line(d['worker'])} ({d['reason']})" for d in left_out]
    if out:
        text += ("; " if text else "") + "left out: " + ", ".join(out)
    return text


def correction_queues(store, task) -> set[str]:
    """The queues where the corrections of ``task``'s current round wait, are held or came in."""
    return {a["queue"] for a in store.task_slots(task["id"], ("offered", "active", "submitted"))
            if a["stage"] == "correct" and a["round"] == task["round"]}
