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

import json
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


def json_value_problem(value: Any, what: str, *, strict: bool = True) -> str | None:
    """Why ``value`` (a cursor, a sink's state, a label) cannot be stored as JSON and come back as it
    was, naming where in it the first value at fault is (``cursor['since'] must be a JSON value …, not
    datetime``); ``None`` when it can. At fault: a value JSON cannot carry, a number it cannot
    (NaN, an infinity: stored, they were no JSON), text that is not UTF-8 (a lone surrogate), an
    object key that is not text (``{6: true}`` came back ``{"6": true}``). Not ``strict``: only a
    value JSON cannot carry at all (a label the workflow's own check reads next)."""
    from .store import dumps, dumps_finite, text_problem

    if not strict:
        try:
            dumps(value)
            return None
        except (TypeError, ValueError, RecursionError):
            pass
    try:
        text = dumps_finite(value) if strict else None
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is not None and text_problem(text) is None and ('":' not in text or _text_keys(value)):
        return None
    where, kind, said = not_json(value, what, strict=strict) or (what, type(value).__name__, None)
    return f"{where} {said}" if said else f"{where} must be a JSON value ({JSON_KINDS}), not {kind}"


def _text_keys(value: Any, depth: int = 0) -> bool:
    """Whether every object key in ``value`` is text (JSON turns ``6`` into ``"6"``)."""
    if depth > _MAX_WALK:
        return True  # deeper is not searched
    if isinstance(value, dict):
        return all(isinstance(k, str) for k in value) and all(_text_keys(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_text_keys(v, depth + 1) for v in value)
    return True


def _kept_problem(value: Any) -> str | None:
    """What JSON would not keep of a value of a JSON type: NaN or an infinity, text that is not UTF-8."""
    from .store import text_problem

    if isinstance(value, float) and not math.isfinite(value):
        return f"is {value!r}, which JSON cannot carry (a finite number, or null)"
    if isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            return f"is text that is not UTF-8 ({problem})"
    return None


def not_json(value: Any, where: str, *, dotted: bool = False, strict: bool = False,
             depth: int = 0) -> tuple[str, str, str | None] | None:
    """``(where, type, said)`` of the first value in ``value`` that JSON cannot carry, ``None`` for
    none found; ``said`` is ``None`` but for what ``strict`` finds besides.

    ``where`` grows as Python indexes (``cursor['since']``), or, ``dotted``, as a row's fields are
    named in rejects (``data.price``, ``data.items[2]``). ``strict`` also finds what JSON would not
    give back as it was (:func:`json_value_problem`), ``said`` in words (``is nan, which …``)."""
    if isinstance(value, _JSON_SCALARS):
        said = _kept_problem(value) if strict else None
        return None if said is None else (where, type(value).__name__, said)
    if depth > _MAX_WALK:
        return where, NESTED_TOO_DEEP, None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = not_json(item, f"{where}[{index}]", dotted=dotted, strict=strict, depth=depth + 1)
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _JSON_SCALARS):
                return f"{where} key {short(key)}", type(key).__name__, None
            if strict and not isinstance(key, str):
                return (f"{where} key {short(key)}", type(key).__name__,
                        f"is not text: JSON keys are text, so it would come back as {json.dumps(str(key))}")
            said = _kept_problem(key) if strict else None
            if said is not None:
                return f"{where} key {short(key)}", "str", said
            inner = f"{where}.{key}" if dotted and isinstance(key, str) and key.isidentifier() else f"{where}[{key!r}]"
            found = not_json(item, inner, dotted=dotted, strict=strict, depth=depth + 1)
            if found:
                return found
        return None
    return where, type(value).__name__, None


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
