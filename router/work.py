"""What an annotator does besides claim and submit: skip (give a slot back), resume (see again a
slot they still hold), slot_view (a held slot as the workflow applied now shows it).

A worker may release their own active slot; it goes back to the queue
(``free_slots + 1``), or, for a ``correct`` slot, back to being offered to them.
The release is an ordinary ``released`` event with the worker as actor, so
``worker.skips_in_row`` counts it.
"""

from __future__ import annotations

from typing import Any

from . import clock
from .errors import AssignmentError


def skip(engine, assignment_id: int, worker: str) -> dict[str, Any]:
    """Release ``worker``'s own active assignment ``assignment_id`` (one transaction with its event)."""
    from .lead import release_assignment

    now = clock.now()
    engine.load_workflow()  # before the lock: a correction given back may be dropped (its queue's rules)
    with engine.transaction():
        a = engine.store.assignment(assignment_id)
        if a is None:
            raise AssignmentError(f"no assignment {assignment_id}")
        if a["worker"] != worker:
            raise AssignmentError(f"assignment {assignment_id} belongs to {a['worker']}, not {worker}")
        return release_assignment(engine, a, now, worker, detail={"skipped": True})


def resume(engine, worker: str, queue: str | None = None) -> dict[str, Any] | None:
    """``worker``'s oldest active slot (in ``queue`` when given) as :meth:`Engine.claim` shows it, or
    ``None``. Reads only: a work screen quit mid-task shows the slot again instead of leaving it held."""
    for a in engine.store.worker_active_assignments(worker):
        if queue is None or a["queue"] == queue:
            task = engine.store.task(int(a["task_id"]))
            return engine._claim_view(a["id"], task, a["stage"], a["note"], a["queue"], worker)
    return None


def slot_view(engine, assignment_id: int, worker: str) -> dict[str, Any] | None:
    """``worker``'s active slot ``assignment_id`` as :meth:`Engine.claim` shows it under the workflow
    applied now (an `apply` since the claim may have changed its choices), or ``None`` when it is no
    longer their active slot. Reads only."""
    a = engine.store.assignment(assignment_id)
    if a is None or a["worker"] != worker or a["status"] != "active":
        return None
    task = engine.store.task(int(a["task_id"]))
    return engine._claim_view(a["id"], task, a["stage"], a["note"], a["queue"], worker)
