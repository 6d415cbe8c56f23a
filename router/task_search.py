"""What the task list's search text matches: a task's external id, its category or any value in its
data, as text, case-folded (``str.casefold``, Unicode's full case folding: ``CAFÉ`` finds ``Café``,
``STRASSE`` finds ``Straße``). Keys are not searched (``text`` does not find every task whose data
has a ``text`` field). A string value is searched as it reads, with its quotes, backslashes, tabs
and newlines; a number as the stored JSON writes it (as the screens show it: ingest keeps ``4.50``
as ``4.5`` and ``1e3`` as ``1000.0``); ``true`` and ``false`` as those words; ``null`` is no text.
Pure: :meth:`router.store.Store.task_page` decides in SQL what plain ASCII text allows (``LIKE``,
``json_tree``) and calls :func:`matches` and :func:`contains` as SQL functions on the rest.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any


def fold(text: str) -> str:
    """The search form of ``text`` (and of the needle): Unicode case folding."""
    return text.casefold()


def contains(text: str | None, needle: str) -> bool:
    """Whether ``needle`` (already :func:`fold`-ed) is in ``text`` (an external id, a category)."""
    return text is not None and needle in fold(text)


_NUMBER_TEXT = frozenset("0123456789+-.e")  # a JSON number's characters, folded


def strings_only(needle: str) -> bool:
    """Whether ``needle`` (already :func:`fold`-ed) can only be found in a string value of valid
    JSON: it is no part of a number (digits, sign, point, exponent) nor of ``true`` or ``false``."""
    return not (set(needle) <= _NUMBER_TEXT or needle in "true" or needle in "false")


def matches(external_id: str | None, data: str | None, needle: str) -> bool:
    """Whether ``needle`` (already :func:`fold`-ed, not empty) is in the external id or in a value
    of ``data`` (the stored JSON text)."""
    if external_id is not None and needle in fold(external_id):
        return True
    if not data:
        return False
    text = fold(data)
    if "\\u" not in text and "\\/" not in text:
        # Only JSON's short escapes (`\"`, `\\`, `\n`, `\t`…; the store writes every other character
        # as it is). Folding maps each character on its own and no character folds into one that is
        # escaped, so a value holding the needle puts the needle's escaped form in the folded text.
        wanted = json_form(needle)
        if wanted not in text or not _outside_keys(text, wanted):
            return False  # not there, or only in key names
    try:
        value = json.loads(data, parse_int=str, parse_float=str, parse_constant=str)
    except (ValueError, RecursionError):
        return needle in text  # not JSON (a database filled by hand), or nested too deep: its text as it is
    return any(needle in fold(v) for v in _texts(value))


def _outside_keys(text: str, wanted: str) -> bool:
    """Whether ``wanted`` occurs in JSON ``text`` other than inside a key: a string whose closing
    quote (the next `"` no backslash escapes) a `:` follows. The next such quote after a value's
    text closes the value, and one after a number or a bracket opens a string: neither has a `:`
    after it. Occurrences that count are checked in the parsed values."""
    at = text.find(wanted)
    while at >= 0:
        quote = text.find('"', at + len(wanted))
        while quote > 0 and text[quote - 1] == "\\" and _escaped(text, quote):
            quote = text.find('"', quote + 1)
        after = quote + 1
        while 0 < after < len(text) and text[after] in " \t\r\n":
            after += 1
        if quote < 0 or text[after:after + 1] != ":":
            return True
        at = text.find(wanted, at + 1)
    return False


def _escaped(text: str, at: int) -> bool:
    """Whether an odd run of backslashes comes before ``text[at]``."""
    start = at
    while start > 0 and text[start - 1] == "\\":
        start -= 1
    return (at - start) % 2 == 1


@lru_cache(maxsize=8)
def json_form(needle: str) -> str:
    """``needle`` as it reads inside a JSON string the store wrote (JSON's short escapes)."""
    return json.dumps(needle, ensure_ascii=False)[1:-1]


def _texts(value: Any):
    """Every scalar in ``value`` as the text it is searched as (keys left out)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif v is True or v is False:
            yield "true" if v else "false"
