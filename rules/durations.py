"""Durations, one definition for the whole rule language: a number of seconds, or a number and one
of the units s, m, h, d (``90``, ``30s``, ``1.5h``, ``.5h``, ``1e3s``). Expressions read them as
literals (:mod:`rules.expr`), queue SLAs as settings (``sla: 4h``, ``sla: 90``) and rule tests as
facts (``age: 2h``, :mod:`rules.testing`); the workflow schema's pattern is made from the same
expression (:data:`PATTERN`), and every refusal says in words what a duration is (:data:`WORDS`).
"""

from __future__ import annotations

import math
import re
from typing import Any

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A number as the rule language writes it: no sign (``-`` is an operator), no ``_``, ``nan`` or ``inf``."""
DURATION = re.compile(rf"({NUMBER.pattern})([smhd]?)")
PATTERN = rf"^(?:{NUMBER.pattern})[smhd]?$"
"""A duration written as text, for the JSON schema (editors); :func:`seconds` also refuses what a
pattern cannot tell (a number too large, a trailing line break that Python's ``$`` lets through)."""
WORDS = "a number of seconds or a duration like 30s, 15m, 2h, 7d"
"""What a duration is, in the words of every message that refuses one."""


class DurationError(ValueError):
    """Text that is no duration; the message says why, in words."""


def literal(digits: str, unit: str) -> int | float:
    """The seconds of a number (``NUMBER``'s text) and a unit (``""`` for seconds): an ``int`` when
    both are whole. Raises ``ValueError`` or ``OverflowError`` for a number too long to read."""
    value: int | float = float(digits) if any(ch in digits for ch in ".eE") else int(digits)
    return value * UNITS[unit] if unit else value


def parse(text: str) -> int | float:
    """The seconds a duration written as text means, as an expression reads the same literal;
    raises :class:`DurationError` for anything else (``1w``, ``nanh``, ``infd``, ``1_0h``, ``-5m``)."""
    match = DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise DurationError(WORDS)
    try:
        value = literal(*match.groups())
        finite = math.isfinite(value)  # an int past a float's range overflows here
    except ValueError:
        raise DurationError("a number too long to read") from None
    except OverflowError:
        finite = False
    if not finite:
        raise DurationError("a number too large for a duration")
    return value


def seconds(value: Any) -> float:
    """A setting's duration in seconds (``sla: 4h``, ``sla: 90``): a number of seconds, not negative,
    or text as :func:`parse` reads it; raises :class:`DurationError` for anything else."""
    if isinstance(value, str):
        value = parse(value)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DurationError(WORDS)
    elif not value >= 0:  # negative, or NaN
        raise DurationError("a duration cannot be negative" if value < 0 else WORDS)
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise DurationError("a number too large for a duration")
    return result
