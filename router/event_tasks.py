"""The task as an event left it, for notifications (``labelyard run``'s ``notify:`` step).

A notification is queued by the run after its event, maybe long after (the
next run, a run that waited for its lock): by then the task may have moved on
(escalated, then decided by an expert). Its payload's ``task`` is the task as
the event left it, folded from what the task's own events recorded, in order:

- ``created`` and ``routed``: the stage and queue the decision opened
  (``target``; a ``return``'s newest correction's queue), ``done`` for an
  accept, ``invalid`` for a reject, ``held`` for a hold;
- ``final``: done; ``invalid``: invalid;
- ``held``: held, in the stage and queue it recorded (a rule's hold keeps them);
- ``unheld``: open again, in the stage and queue it recorded;
- ``gold_added`` and ``gold_updated``: a gold question's queue.

Other events (``claimed``, ``submitted``, ``released``…) leave the task's
status, stage and queue as they were. The final label and ``final_by`` are the
task's when the event left it done (a done task is never decided again); else
``null``. The task's ids and category never change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .store import loads

STAGE_OF_ACTION = {"annotate": "annotate", "review": "review", "escalate": "escalated"}
STATE_KINDS = ("created", "routed", "final", "invalid", "held", "unheld", "gold_added", "gold_updated")
State = tuple[str | None, str | None, str | None]  # status, stage, queue


def after(state: State, kind: str, action: str | None, detail: Any) -> State:
    """The task's ``(status, stage, queue)`` after an event of ``kind`` (its ``action`` and ``detail``)
    found it at ``state``."""
    detail = detail if isinstance(detail, dict) else {}
    status, stage, queue = state
    if kind in ("created", "routed"):
        if action in STAGE_OF_ACTION:
            return "open", STAGE_OF_ACTION[action], detail.get("target")
        if action == "return":
            corrections = detail.get("corrections") or [{}]
            last = corrections[-1] if isinstance(corrections[-1], dict) else {}
            return "open", "correct", last.get("queue")
        if action == "accept":
            return "done", None, None
        if action == "reject":
            return "invalid", None, None
        return ("held", None, None) if kind == "created" else ("held", stage, queue)
    if kind == "final":
        return "done", None, None
    if kind == "invalid":
        return "invalid", None, None
    if kind in ("held", "unheld"):
        return ("held" if kind == "held" else "open", detail["stage"] if "stage" in detail else stage,
                detail["queue"] if "queue" in detail else queue)
    if kind == "gold_added":
        return "open", "annotate", detail.get("queue")
    if kind == "gold_updated" and "queue" in detail:
        return "open", stage, detail.get("queue")
    return state


def states_at(store, events: Iterable[Any]) -> dict[int, State]:
    """``{event id: (status, stage, queue)}`` of each task event in ``events`` (rows with ``id`` and
    ``task_id``), as the task's events up to it leave it; an event of a task with no such event
    recorded is left out (its task as it is now will do)."""
    wanted = sorted((row["id"], row["task_id"]) for row in events if row["task_id"] is not None)
    if not wanted:
        return {}
    recorded = store.task_events_through([task for _, task in wanted], wanted[-1][0], STATE_KINDS)
    by_task: dict[int, list[Any]] = {}
    for row in recorded:
        by_task.setdefault(row["task_id"], []).append(row)
    states: dict[int, State] = {}
    folded: dict[int, tuple[int, State]] = {}  # task -> (how many of its events are folded, the state)
    for event_id, task in wanted:  # in event order: each task's fold goes on from where it stopped
        rows = by_task.get(task)
        if not rows:
            continue
        done, state = folded.get(task, (0, (None, None, None)))
        while done < len(rows) and rows[done]["id"] <= event_id:
            row = rows[done]
            state = after(state, row["kind"], row["action"], loads(row["detail"]))
            done += 1
        folded[task] = (done, state)
        if done:
            states[event_id] = state
    return states
