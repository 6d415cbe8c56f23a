"""Which workflow version was active when an event was written.

A task keeps the version that created it (``tasks.workflow_version``), but a
version applied while it was open takes its later decisions. The
``workflow_applied`` events say when each version became active, so the
version behind any event is the last one applied before it.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from .store import Store, loads


class VersionsAt:
    """``at(event_id)``: the ``workflows`` row id active when that event was written (``None`` before
    any recorded apply, e.g. a database older than the events)."""

    def __init__(self, store: Store) -> None:
        ids = {(r["name"], r["version"]): r["id"] for r in store.workflow_versions()}
        self._events: list[int] = []
        self._versions: list[int] = []
        for row in store.applied_events():
            detail: Any = loads(row["detail"]) or {}
            version_id = ids.get((detail.get("workflow"), detail.get("version"))) if isinstance(detail, dict) else None
            if version_id is not None:
                self._events.append(int(row["id"]))
                self._versions.append(version_id)

    def at(self, event_id: int) -> int | None:
        """The version id active at event ``event_id``."""
        i = bisect_left(self._events, event_id)  # applies strictly before this event
        return self._versions[i - 1] if i else None
