"""Labelyard's core: the task store, the routing engine, claiming, quality and the CLI.

Nothing heavy is imported here: the CLI's start-up time matters because
annotators and scripts call ``labelyard claim`` in loops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["hookimpl", "Engine", "Store", "LabelyardError", "open_engine"]

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine, open_engine
    from .errors import LabelyardError
    from .store import Store


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        import pluggy

        return pluggy.HookimplMarker("labelyard")
    if name in ("Engine", "open_engine"):
        from . import engine

        return getattr(engine, name)
    if name == "Store":
        from .store import Store

        return Store
    if name == "LabelyardError":
        from .errors import LabelyardError

        return LabelyardError
    raise AttributeError(name)
