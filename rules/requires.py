"""What an expression needs of a fact to hold, read from its parse: ``task.queue == "triage" and
task.age > 2h`` holds only where ``task.queue`` is ``"triage"``. A walk over stored tasks can
then read only those (``router.lead`` reads one queue's part of the ``(status, queue)`` index
for a ``--where`` filter) and find the very same tasks.

A requirement is a tuple of ``(fact, values)`` pairs, one per fact, sorted: the expression is
true (or truthy) only where each ``fact`` equals one of its ``values``. ``()`` requires nothing.
Only what the language's own equality makes sure is kept: ``fact == literal`` (either side),
``fact in [literals…]``, and ``and`` / ``or`` of those; ``not``, ``!=``, arithmetic and
functions require nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

Requires = tuple[tuple[str, frozenset[object]], ...]
NOTHING: Requires = ()


def _scalar(value: object) -> bool:
    """A literal whose equality is Python's own in a set: text, a number (not NaN) or null. A
    boolean is left out: the language's `true` equals no number, but a set holds `true` and `1` as one."""
    if value is None or type(value) is str or type(value) is int:
        return True
    return type(value) is float and not math.isnan(value)


def one_of(fact: str, values: Iterable[object]) -> Requires:
    """``fact == value`` or ``fact in [values…]``: ``fact`` must be one of ``values`` (nothing is
    required when one of them is not a scalar literal)."""
    values = list(values)
    if not all(_scalar(v) for v in values):
        return NOTHING
    return ((fact, frozenset(values)),)


def all_of(parts: Iterable[Requires]) -> Requires:
    """Of ``a and b and …``: what each part requires, the values of one fact intersected."""
    merged: dict[str, frozenset[object]] = {}
    for part in parts:
        for fact, values in part:
            merged[fact] = merged[fact] & values if fact in merged else values
    return tuple(sorted(merged.items()))


def any_of(parts: Iterable[Requires]) -> Requires:
    """Of ``a or b or …``: the facts every part requires something of, their values united."""
    common: dict[str, frozenset[object]] | None = None
    for part in parts:
        values = dict(part)
        common = values if common is None else {f: v | values[f] for f, v in common.items() if f in values}
    return tuple(sorted((common or {}).items()))
