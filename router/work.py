"""What an annotator does besides claim and submit: skip (give a slot back).

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
    with engine.store.transaction():
        a = engine.store.assignment(assignment_id)
        if a is None:
            raise AssignmentError(f"no assignment {assignment_id}")
        if a["worker"] != worker:
            raise AssignmentError(f"assignment {assignment_id} belongs to {a['worker']}, not {worker}")
        return release_assignment(engine, a, now, worker, detail={"skipped": True})
