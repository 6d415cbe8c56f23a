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
import re
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


JSON_KINDS = "text, number, true/false, null, or a list or object of them"
NESTED_TOO_DEEP = "a value nested too deep"
_JSON_SCALARS = (str, int, float, bool, type(None))
_MAX_WALK = 50  # levels searched for the value at fault, once JSON refused the whole


def json_value_problem(value: Any, what: str) -> str | None:
    """Why ``value`` (a cursor, a sink's state) cannot be stored as JSON, naming where in it the
    first value that is not JSON is (``cursor['since'] must be a JSON value …, not datetime``);
    ``None`` when it can be."""
    from .store import dumps

    try:
        dumps(value)
        return None
    except (TypeError, ValueError, RecursionError):
        pass
    where, kind = not_json(value, what) or (what, type(value).__name__)
    return f"{where} must be a JSON value ({JSON_KINDS}), not {kind}"


def not_json(value: Any, where: str, *, dotted: bool = False, depth: int = 0) -> tuple[str, str] | None:
    """``(where, type)`` of the first value in ``value`` that JSON cannot carry, ``None`` for none found.

    ``where`` grows as Python indexes (``cursor['since']``), or, ``dotted``, as a row's fields are
    named in rejects (``data.price``, ``data.items[2]``)."""
    if isinstance(value, _JSON_SCALARS):
        return None
    if depth > _MAX_WALK:
        return where, NESTED_TOO_DEEP
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = not_json(item, f"{where}[{index}]", dotted=dotted, depth=depth + 1)
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _JSON_SCALARS):
                return f"{where} key {short(key)}", type(key).__name__
            inner = f"{where}.{key}" if dotted and isinstance(key, str) and key.isidentifier() else f"{where}[{key!r}]"
            found = not_json(item, inner, dotted=dotted, depth=depth + 1)
            if found:
                return found
        return None
    return where, type(value).__name__


def short(value: Any) -> str:
    """``value``'s repr for a message: cut to 60 characters, its control characters and bytes that
    are not UTF-8 written out."""
    from rules.visible_text import visible

    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a plugin's object whose repr raises
        return f"<{type(value).__name__}>"
    return plugin_text(visible(text if len(text) <= 60 else text[:57] + "..."))


_PASSWORD = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/?#@\s:]*):[^/?#@\s]*@")


def without_password(text: str) -> str:
    """``text`` with the password of each URL in it hidden: ``http://bob:***@host/``. A URL's
    ``user:password@`` is printed in failure lines, status and entry identities otherwise."""
    return _PASSWORD.sub(r"\1:***@", text) if "@" in text else text
