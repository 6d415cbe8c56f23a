"""Who may take which work, said in words: a worker at capacity, and more to come.

Pure functions over rows the caller read (workers, assignments) and the compiled workflow's
queue specs; the store's own SQL stays in :mod:`router.store`.
"""

from __future__ import annotations


def at_capacity(worker: str, held: int, capacity: int) -> str:
    """Why ``worker`` gets no more slots: the slots they hold and their capacity, which a lead may
    have lowered below what they hold."""
    return f"{worker} already holds {held} active assignment(s); their capacity is {capacity}"
