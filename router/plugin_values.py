"""Values a plugin hands back, made safe where they enter Labelyard.

A plugin's text may hold what no database row, JSON document or UTF-8 output
can: a file name from ``os.listdir()`` whose bytes are not UTF-8 reaches Python
as lone surrogates (``caf\\udce9``), and so does JSON's ``"\\udce9"``. Such text
in an error message, a reason or a name is written out (``caf\\xe9``,
:func:`plugin_text`) as it comes in, so the run's record, its failure lines
and ``--json`` can always hold it. :func:`storable` is the last line of
defence of the run's record: whatever got past the checks is written out
there too, so a run is always recorded as finished.
"""

from __future__ import annotations

import math
from typing import Any

from .os_text import escaped

STORABLE_DEPTH = 50  # a run's summary is a few levels deep; deeper is cut, never a RecursionError


def plugin_text(value: Any) -> str:
    """``value`` as text that can be stored and printed: its bytes that are not UTF-8 written out
    (``caf\\xe9``); a value whose ``str()`` raises is told by its type."""
    if not isinstance(value, str):
        try:
            value = str(value)
        except Exception:  # noqa: BLE001 - a plugin's object whose __str__ raises
            return f"<{type(value).__name__}>"
        if not isinstance(value, str):  # a str subclass's __str__ may return anything
            return f"<{type(value).__name__}>"
    return escaped(value)


def storable(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON can store it: text written out as :func:`plugin_text` does (keys too),
    a number JSON cannot carry (NaN, an infinity) as ``null``, anything else as its text."""
    if isinstance(value, str):
        return escaped(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= STORABLE_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {plugin_text(key): storable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(item, depth + 1) for item in value]
    return plugin_text(value)
