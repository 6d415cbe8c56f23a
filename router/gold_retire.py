"""``labelyard gold retire ID…``: a lead takes a wrong or ambiguous gold question out of use.

A retired question is no longer served (its task becomes ``invalid``, with the
reason; a slot someone holds on it is released, their late answer kept in its
history and not scored), and the answers it already had stop counting: every
worker who answered it has their gold counters scored again from scratch
without it (:func:`router.gold.rescore`, a ``gold_rescored`` event each where
they change), so ``worker.gold_accuracy``, ``votes.min_accuracy``, weighted
consensus and the ``on_worker`` rules reading them see it no more. Each question
is retired in one transaction with its ``gold_retired`` event. ``gold add`` of
its id is refused afterwards: the question comes back only under a new id.
"""

from __future__ import annotations

from typing import Any

from . import clock
from .errors import LabelyardError, UnknownTask
from .store import text_problem


def retire_gold(engine, refs: list[str], actor: str, reason: str | None = None) -> list[dict[str, Any]]:
    """Retire the gold questions ``refs`` (ids or external ids), each in its own transaction.

    Every ref is checked first (a task, a gold question): one that is not changes nothing. A
    question already retired is reported (``retired: False``) and left as it is. Returns, per
    question: ``id`` (external), ``task``, ``retired``, ``released`` (slot ids) and ``rescored``
    (worker → ``[answered, correct]`` where the counters changed)."""
    if not refs:
        raise LabelyardError("name the gold questions to retire (gold retire ID…)")
    problem = reason is not None and (text_problem(reason) or ("" if reason.strip() else "it is empty"))
    if problem:
        raise LabelyardError(f"--reason: {problem}")
    store = engine.store
    tasks = []
    for ref in dict.fromkeys(refs):
        task = store.task(ref)
        if task is None:
            raise UnknownTask(f"no task `{ref}` (by id or external id)")
        if not task["is_gold"]:
            raise LabelyardError(f"task {task['external_id']} is not a gold question; nothing was retired")
        tasks.append(task["id"])
    return [_retire_one(engine, task_id, actor, reason) for task_id in tasks]


def _retire_one(engine, task_id: int, actor: str, reason: str | None) -> dict[str, Any]:
    from .gold import rescore

    store = engine.store
    now = clock.now()
    with engine.transaction():
        task = store.task(task_id)  # as it is under the lock
        result: dict[str, Any] = {"id": task["external_id"], "task": task_id, "retired": False, "released": [],
                                  "rescored": {}}
        if task["status"] == "invalid":
            return result
        slots = store.task_slots(task_id, ("active", "offered"))
        for slot in slots:
            store.set_assignment_status(slot["id"], "released", now)
        why = reason or "retired as a gold question"
        store.update_task(task_id, status="invalid", free_slots=0, reason=why, updated_at=now)
        store.add_event("gold_retired", now, task_id=task_id, action="retire", actor=actor,
                        detail={"reason": why, "was_status": task["status"], "queue": task["queue"],
                                "answer": store.gold_label(task_id), "released": [s["id"] for s in slots]})
        changed = rescore(engine, [task_id], now, actor, {"retired": task["external_id"]})
        result.update(retired=True, released=[s["id"] for s in slots],
                      rescored={worker: list(counts) for worker, counts in sorted(changed.items())})
    return result
