"""The TUI's only door to the data: every call opens its own connection (one per thread, as SQLite
wants) and goes through ``router``: :class:`router.queries.Queries` to read, :class:`router.lead.Lead`,
:class:`router.engine.Engine` and :mod:`router.work` (skip, resume) to act. No SQL here. Called from thread
workers only, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from router.engine import Engine
from router.queries import Queries
from router.store import Store


class Backend:
    """A project database and who acts in it."""

    def __init__(self, db: str, actor: str):
        self.db = db
        self.actor = actor

    @contextmanager
    def queries(self) -> Iterator[Queries]:
        store = Store.open(self.db)
        try:
            yield Queries(store)
        finally:
            store.close()

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        engine = Engine.open(self.db)
        try:
            yield engine
        finally:
            engine.close()

    def lead(self, action: str, refs: list[str], **options: Any) -> dict[str, Any]:
        """Run a lead action on tasks (all or nothing) as ``actor``; returns the report as data."""
        from router.lead import Lead

        with self.engine() as engine:
            return Lead(engine, self.actor).run(action, refs, **options).as_dict()

    def set_paused(self, worker: str, paused: bool, reason: str | None = None) -> None:
        from router.lead import require_lead

        with self.engine() as engine:
            require_lead(engine, self.actor)
            engine.set_worker_paused(worker, paused, reason, actor=self.actor)

    def set_flagged(self, worker: str, flagged: bool) -> bool:
        """Flag ``worker`` or clear the flag, as ``labelyard workers set --flag/--unflag`` does (the same
        ``worker_flagged``/``worker_unflagged`` event, by ``actor``); False, writing nothing, when they
        already were so."""
        from router.lead import require_lead

        with self.engine() as engine:
            require_lead(engine, self.actor)
            return engine.set_worker_flagged(worker, flagged, actor=self.actor)

    def claim(self, worker: str, queue: str | None = None) -> dict[str, Any]:
        with self.engine() as engine:
            return engine.claim(worker, queue)

    def submit(self, assignment: int, worker: str, **kwargs: Any) -> dict[str, Any]:
        with self.engine() as engine:
            return engine.submit(assignment, worker, **kwargs)

    def resume(self, worker: str, queue: str | None = None) -> dict[str, Any] | None:
        """The slot ``worker`` still holds (oldest first), as a claim shows it; ``None`` if none."""
        from router.work import resume

        with self.engine() as engine:
            return resume(engine, worker, queue)

    def slot_view(self, assignment: int, worker: str) -> dict[str, Any] | None:
        """``worker``'s active slot ``assignment`` as the workflow applied now shows it (``None``: gone)."""
        from router.work import slot_view

        with self.engine() as engine:
            return slot_view(engine, assignment, worker)

    def slot_gone(self, assignment: int, worker: str) -> str | None:
        """Why ``assignment`` is no longer ``worker``'s active slot (``None``: it still is)."""
        with self.queries() as q:
            a = q.store.assignment(assignment)
        if a is None:
            return f"assignment #{assignment} no longer exists"
        if a["worker"] != worker:
            return f"assignment #{assignment} now belongs to {a['worker']}"
        if a["status"] == "offered":  # a correction taken back stays this worker's: their next claim returns it
            return f"assignment #{assignment} was taken back and is offered to you again"
        if a["status"] != "active":
            return f"assignment #{assignment} is {a['status']}"
        return None

    def skip(self, assignment: int, worker: str) -> dict[str, Any]:
        from router.work import skip

        with self.engine() as engine:
            return skip(engine, assignment, worker)
