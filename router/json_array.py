"""A JSON array read one element at a time: ``labelyard ingest tasks.json`` where the file is
``[{...}, {...}]`` (pretty-printed or not), without reading the whole file into memory.

With a ``limit`` (bytes, as a JSON Lines line has one), an element longer than that is read
through in pieces, never held whole, and given as a :class:`LongElement`: its size and its start."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, NamedTuple

from rules.visible_text import quoted

CHUNK_CHARS = 1 << 16
SKIP_CHARS = 1 << 20  # read at a time while going through an element longer than the limit
LONG_HEAD_CHARS = 4096  # characters of such an element kept for its reject
_WHITESPACE = " \t\r\n"
# a JSON string (skipped whole) or an escape in one: scanned only in text that parsed
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.S)
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'


class ArraySyntaxError(ValueError):
    """Where the file stops being a JSON array; ``line`` and ``col`` are 1-based."""

    def __init__(self, line: int, col: int, message: str):
        self.line, self.col = line, col
        super().__init__(f"invalid JSON at line {line}, column {col}: {message}")


class Unreadable(NamedTuple):
    """Something in JSON text that parsed but that no row can hold: ``offset`` characters into
    the text, ``what`` is there and ``why`` it is refused."""

    offset: int
    what: str
    why: str

    def at(self, where: str) -> str:
        """The reason, saying where (``"column 12"``)."""
        return f"{self.what} at {where} {self.why}"


@dataclass
class BadElement:
    """An element that is JSON but no row's value (a number too long for Python, a lone
    surrogate escape): where its problem is, ``line`` and ``col`` 1-based, and what it is."""

    line: int
    col: int
    problem: Unreadable

    def __str__(self) -> str:
        return self.problem.at(f"line {self.line}, column {self.col}")


def int_digits_limit() -> int:
    """How many digits Python converts to an integer (0: no limit)."""
    return sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0


def long_integer(text: str) -> Unreadable:
    """Where JSON ``text``, which Python refused for an integer longer than it converts, has it."""
    limit = int_digits_limit()
    why = "is too long to read (give it as text)"
    # an integer part of its own: not the digits of a fraction or an exponent
    number = re.compile(f"{_STRING}|(?<![\\d.eE+-])(-?\\d{{{limit + 1},}})(?![\\d.eE])")
    for found in number.finditer(text):
        if found.group(1):
            return Unreadable(found.start(1), f"a number with more than {limit} digits", why)
    return Unreadable(0, "a number", why)


# a string (skipped whole), a constant Python's json reads as a float, or a number with a fraction
# or an exponent (a float, which may overflow; integers never do)
_NON_FINITE = re.compile(f"{_STRING}|(-?Infinity|NaN)|(-?\\d+(?:\\.\\d+)?[eE][+-]?\\d+|-?\\d+\\.\\d+)")


def non_finite(text: str) -> Unreadable | None:
    """Where JSON ``text`` (that parsed) has a number JSON cannot carry, which Python's ``json``
    reads all the same: ``NaN``, ``Infinity``, ``-Infinity``, or a float too large (``1e400``)."""
    for found in _NON_FINITE.finditer(text):
        token = found.group(1) or found.group(2)
        if token is None or (found.group(2) and not math.isinf(float(token))):
            continue
        shown = token if len(token) <= 24 else token[:21] + "..."
        return Unreadable(found.start(), f"the number `{shown}`", "is not finite, which JSON cannot carry")
    return None


class RepeatedKey(Exception):
    """Raised while :data:`STRICT` decodes an object that gives one key twice (``{"a": 1, "a": 2}``),
    of which a dict would keep the last value without a word. Not a ``ValueError``, which is the
    signal of a number too long to read."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    row = dict(pairs)
    if len(row) != len(pairs):
        raise RepeatedKey
    return row


# A decoder that refuses a key given twice in one object. The hook costs well under a microsecond
# a row (the pairs of each object are built as a list first); a scan of the text for keys, in
# Python, would cost more than decoding it.
STRICT = json.JSONDecoder(object_pairs_hook=_unique_keys)


def decode_strict(text: str) -> Any:
    """``json.loads(text)``, but :class:`RepeatedKey` when an object gives a key twice and the
    text is JSON otherwise (text that is not JSON raises as ``json.loads`` does)."""
    try:
        return STRICT.decode(text)
    except RepeatedKey:
        json.loads(text)  # not JSON after all: its own error (syntax, a number too long) is the one to say
        raise


_KEY_OR_BRACKET = re.compile(f"({_STRING})\\s*(:)?|[\\[\\]{{}}]")


def repeated_key(text: str) -> Unreadable:
    """Where JSON ``text`` (that parsed, but for :class:`RepeatedKey`) gives a key a second time in
    one object: the second one, named."""
    objects: list[set[str] | None] = []  # the keys of each object open at this point (None: a list)
    for found in _KEY_OR_BRACKET.finditer(text):
        if found.group(1) is None:
            bracket = found.group()
            if bracket in "[{":
                objects.append(set() if bracket == "{" else None)
            elif objects:
                objects.pop()
            continue
        keys = objects[-1] if objects else None
        if found.group(2) is None or keys is None:
            continue  # a value
        key = json.loads(found.group(1))  # `"a"` and `"\u0061"` are one key
        if key in keys:
            shown = key if len(key) <= 40 else key[:37] + "..."
            return Unreadable(found.start(1), f"the key {quoted(shown)}",
                              "is given twice in one object: one of the two values would be lost")
        keys.add(key)
    return Unreadable(0, "a key", "is given twice in one object: one of the two values would be lost")


def lone_surrogate(text: str) -> Unreadable | None:
    """Where JSON ``text`` (that parsed) has a ``\\uD800``-``\\uDFFF`` escape that is not half of a
    pair, and why it is refused: such a string is not text and cannot be stored."""
    if "\\u" not in text:
        return None
    pending = None  # a high surrogate escape waiting for its low half
    for found in _ESCAPE.finditer(text):
        code = int(found.group(1), 16) if found.group(1) else -1
        if pending is not None:
            if found.start() == pending.end() and 0xDC00 <= code <= 0xDFFF:
                pending = None
                continue
            break
        if 0xD800 <= code <= 0xDBFF:
            pending = found
        elif 0xDC00 <= code <= 0xDFFF:
            pending = found
            break
    if pending is None:
        return None
    return Unreadable(pending.start(), f"the lone UTF-16 surrogate escape `{pending.group()}`",
                      "is not text (a surrogate escape needs its pair)")


@dataclass
class LongElement:
    """An element longer than the limit (:func:`iter_json_elements`), read through without being
    held: its ``size`` in bytes as UTF-8 (as in the file) and its first :data:`LONG_HEAD_CHARS` characters."""

    size: int
    head: str


class _TooLong(Exception):
    """Raised by :meth:`_Window.grow` when the element being read is already longer than the limit."""


def utf8_size(text: str, start: int = 0, end: int | None = None) -> int:
    """How many bytes ``text[start:end]`` (read with ``surrogateescape``: a byte that was not UTF-8
    is one character) was in a UTF-8 file; a long range is measured a piece at a time, never copied
    whole (a copy of an element near the limit was one more element's worth of memory)."""
    end = len(text) if end is None else end
    if start == 0 and end == len(text) and text.isascii():
        return end
    size = 0
    for at in range(start, end, SKIP_CHARS):
        piece = text[at:min(at + SKIP_CHARS, end)]
        size += len(piece) if piece.isascii() else len(piece.encode("utf-8", "surrogateescape"))
    return size


class _Window:
    """The unread part of a text file, refilled in chunks, with the line and column of any offset.
    With a ``limit`` (bytes), an element never grows the window past it (:class:`_TooLong`)."""

    def __init__(self, handle: IO[str], limit: int | None = None):
        self.handle = handle
        self.limit = limit
        self.text = ""
        self.pos = 0
        self.line = 1  # line of ``line_start``
        self.line_start = 0  # offset in ``text`` where that line starts (may be negative)
        self.eof = False

    def more(self, size: int = 0) -> bool:
        """Read another chunk, dropping what was consumed; ``False`` at the end of the file.
        ``size`` characters when given (an element that did not fit), else :data:`CHUNK_CHARS`."""
        if self.eof:
            return False
        wanted = max(size, CHUNK_CHARS)
        chunk = self.handle.read(min(wanted, SKIP_CHARS))
        if not chunk:
            self.eof = True
            return False
        # What was consumed is dropped, by a copy of the rest: not while the rest is most of a long
        # window (the element being read, near the limit), which would then be held twice
        drop = self.pos if self.pos * 2 >= len(self.text) or len(self.text) <= SKIP_CHARS else 0
        text = self.text[drop:] if drop else self.text
        self.text = ""  # its one reference is `text`: `+=` may then grow it in place, not copy it
        text += chunk
        wanted -= len(chunk)
        # the rest a piece at a time: one read of it all is held twice over by the reader while it
        # joins its pieces, beside the window (an element near the limit peaked at 3x the limit)
        while wanted > 0 and (chunk := self.handle.read(min(wanted, SKIP_CHARS))):
            text += chunk
            wanted -= len(chunk)
        del chunk
        self.text = text
        self.line_start -= drop
        self.pos -= drop
        return True

    def grow(self) -> bool:
        """Read at least as much again as is unread, for an element that does not fit yet: an
        element of n characters is then decoded and copied O(log n) times, O(n) work in all,
        where a chunk at a time decoded it again from its start after each (quadratic).
        Raises :class:`_TooLong` instead when what is unread is longer than the limit already."""
        unread = len(self.text) - self.pos
        if self.limit is None:
            return self.more(unread)
        if self.longer_than_limit(self.pos, len(self.text)):
            raise _TooLong
        return self.more(min(unread, self.limit + 1 - unread))  # never far past the limit

    def longer_than_limit(self, start: int, end: int) -> bool:
        """Whether ``text[start:end]`` is longer than the limit in bytes (a character is 1 to 4)."""
        chars = end - start
        if self.limit is None or chars <= self.limit // 4:
            return False
        return chars > self.limit or utf8_size(self.text, start, end) > self.limit

    def advance(self, end: int) -> None:
        """Move to offset ``end``, counting the lines passed."""
        newlines = self.text.count("\n", self.pos, end)
        if newlines:
            self.line += newlines
            self.line_start = self.text.rfind("\n", self.pos, end) + 1
        self.pos = end

    def where(self, offset: int) -> tuple[int, int]:
        """Line and column of ``offset`` (at or after the current position)."""
        line = self.line + self.text.count("\n", self.pos, offset)
        start = self.text.rfind("\n", self.pos, offset) + 1 if line > self.line else self.line_start
        return line, offset - start + 1

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end), consumed up to it."""
        while True:
            end = self.pos
            while end < len(self.text) and self.text[end] in _WHITESPACE:
                end += 1
            self.advance(end)
            if self.pos < len(self.text) or not self.more():
                return self.text[self.pos] if self.pos < len(self.text) else ""

    def fail(self, message: str, offset: int | None = None) -> ArraySyntaxError:
        return ArraySyntaxError(*self.where(self.pos if offset is None else offset), message)


def _element(window: _Window, decode: Callable[[str, int], tuple[Any, int]]) -> tuple[Any, int]:
    """The element at the window's position and where it ends, reading more as needed.
    Raises :class:`ArraySyntaxError` where it is not JSON; ``ValueError`` (an integer too long)
    or ``RecursionError`` (nested too deeply) from ``decode`` else."""
    open_string = None  # (start, scanned): a string that ran past what was read, from the element's start
    while True:
        if open_string is not None:
            # not decoded again while it is still open: each try built the string read so far, one
            # more copy of the element beside the window (the quote may be past the limit: _TooLong)
            start, scanned = open_string
            if _closing_quote(window.text, window.pos + start + 1, window.pos + scanned) is None:
                open_string = start, len(window.text) - window.pos
                if window.grow():
                    continue
            open_string = None
        if _number_may_go_on(window.text, window.pos) and window.grow():
            continue  # read on first: decoded now, `1.` would be the number 1 and a stray `.`
        try:
            value, end = decode(window.text, window.pos)
        except json.JSONDecodeError as exc:
            if not _cut_short(exc, len(window.text)):  # no text after it can make it JSON: said at once,
                raise window.fail(exc.msg, exc.pos) from None  # at its line, however long the rest
            if exc.msg.startswith("Unterminated string"):
                open_string = exc.pos - window.pos, len(window.text) - window.pos
            if window.grow():  # _TooLong when it is cut short at the limit: too long, whatever follows
                continue  # the element may go on past what was read
            raise window.fail(exc.msg, exc.pos) from None
        if end == len(window.text) and window.grow():
            continue  # a literal may go on past what was read
        return value, end


def _closing_quote(text: str, content: int, at: int) -> int | None:
    """Where the string whose text starts at ``content`` ends (after its closing quote), looking
    from ``at`` on (no closing quote before it); ``None`` when it goes on past the end of ``text``.
    ``str.find`` runs through a long string at memory speed, where a regular expression crawls."""
    while (quote := text.find('"', at)) >= 0:
        before = quote
        while before > content and text[before - 1] == "\\":
            before -= 1
        if (quote - before) % 2 == 0:  # not escaped: an even run of backslashes before it
            return quote + 1
        at = quote + 1
    return None


def _cut_short(exc: json.JSONDecodeError, read: int) -> bool:
    """Whether JSON text that ``read`` characters of a file held, refused with ``exc``, may be only
    cut short (a string, or a token at its end: a number, a literal, an escape) rather than not JSON."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= read - 8


_NUMBER_CHARS = re.compile(r"[0-9.eE+-]*")
_NUMBER_START = frozenset("-0123456789")


def _number_may_go_on(text: str, start: int) -> bool:
    """Whether the element at ``start`` is a number that runs to the end of the text read so far,
    so that it may go on in the next chunk: a chunk ending in ``1.``, ``1e`` or ``1e+`` would
    decode as ``1`` followed by text that is not JSON (or ``1111….`` as an integer too long)."""
    return text[start:start + 1] in _NUMBER_START and _NUMBER_CHARS.match(text, start).end() == len(text)


_BRACKET_OR_QUOTE = re.compile(r'["\[\]{}]')
_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.S)  # a string's text after its opening quote
_CLOSES = {ord("]"): ord("["), ord("}"): ord("{")}
_CLOSER = {ord("["): "]", ord("{"): "}"}


def _nested_end(window: _Window) -> int:
    """Where the element at the window's position ends, found by its brackets (outside its
    strings) when it is nested too deeply for ``json`` to decode; reads more as needed.
    Raises :class:`ArraySyntaxError` where its brackets do not match or the file ends first."""
    open_brackets = bytearray()
    at = 0  # offsets from the element's start: reading more moves the text, not the element
    while True:
        found = _BRACKET_OR_QUOTE.search(window.text, window.pos + at)
        if found is None:
            at = len(window.text) - window.pos
            if not window.grow():
                raise window.fail("the array is not closed with `]`", len(window.text))
            continue
        char = found.group()
        if char == '"':
            rest = _STRING_REST.match(window.text, found.end())
            if rest is None:  # the string goes on past what was read
                at = found.start() - window.pos
                if not window.grow():
                    raise window.fail("Unterminated string starting at", found.start())
                continue
            at = rest.end() - window.pos
            continue
        if char in "[{":
            open_brackets.append(ord(char))
        elif open_brackets and open_brackets[-1] != _CLOSES[ord(char)]:
            raise window.fail(f"expected `{_CLOSER[open_brackets[-1]]}`, not `{char}`", found.start())
        else:  # the element opened with a bracket: this one closes it, or one inside it
            open_brackets.pop()
            if not open_brackets:
                return found.end()
        at = found.end() - window.pos


_SCALAR_END = re.compile(r"[^0-9A-Za-z.+-]")  # where a number or a literal (`true`) ends
_IN_STRING = re.compile(r'["\\]')


def _skip_element(window: _Window) -> LongElement:
    """Read through the element at the window's position, longer than the limit, a piece at a
    time without holding it (only a count of open brackets is kept: it is not decoded), the window
    left after it with its lines counted. Raises :class:`ArraySyntaxError` when the file ends first."""
    text, start = window.text, window.pos
    head = text[start:start + LONG_HEAD_CHARS]
    first = text[start]
    depth, in_string, escaped = 0, first == '"', False
    at = start + 1 if in_string else start
    size = 0
    while True:
        text = window.text
        end = None
        while end is None:
            if escaped:  # a backslash ended the last piece: the character it escapes starts this one
                if at >= len(text):
                    break
                at, escaped = at + 1, False
            if in_string:
                found = _IN_STRING.search(text, at)
                if found is None:
                    break
                if found.group() == "\\":
                    at, escaped = found.end(), True
                    continue
                at, in_string = found.end(), False
                if depth == 0:  # the element was a string
                    end = at
            elif first in "[{":
                found = _BRACKET_OR_QUOTE.search(text, at)
                if found is None:
                    break
                char, at = found.group(), found.end()
                if char == '"':
                    in_string = True
                elif char in "[{":
                    depth += 1
                else:
                    depth -= 1
                    if depth == 0:
                        end = at
            else:  # a number or a literal
                found = _SCALAR_END.search(text, at)
                if found is None:
                    break
                end = found.start()
        if end is not None:
            size += utf8_size(text, window.pos, end)
            window.advance(end)
            return LongElement(size, head)
        size += utf8_size(text, window.pos)
        window.advance(len(text))  # counts its lines
        if not window.more(SKIP_CHARS):
            raise window.fail("the array is not closed with `]`", len(window.text))
        at = 0


def _bad(window: _Window, found: Unreadable) -> BadElement:
    """A :class:`BadElement` for a problem ``found.offset`` characters into the element at the window's position."""
    return BadElement(*window.where(window.pos + found.offset), found)


class Element(NamedTuple):
    """An element of a JSON array: where it starts (``line``, ``col``, 1-based), its text, and
    its value (a :class:`BadElement` for one that is JSON but no row's value)."""

    line: int
    col: int
    text: str
    value: Any


def _read_element(window: _Window, decode: Callable[[str, int], tuple[Any, int]],
                  lenient: Callable[[str, int], tuple[Any, int]], strict: bool = True) -> tuple[int, str, Any]:
    """Where the element at the window's position ends, its text and its value (a :class:`BadElement`
    for one that is JSON but no row's value). Raises :class:`ArraySyntaxError` where it is not
    JSON, :class:`_TooLong` when it grows past the window's limit."""
    try:
        try:
            value, end = _element(window, decode)
            text = window.text[window.pos:end]
            found = lone_surrogate(text) if strict else None
        except ArraySyntaxError:
            raise
        except RepeatedKey:  # this element alone is bad, if it is JSON to its end
            value, end = _element(window, lenient)
            text = window.text[window.pos:end]
            found = repeated_key(text)
        except ValueError:  # an integer longer than Python converts: this element alone is bad
            value, end = _element(window, lenient)
            text = window.text[window.pos:end]
            found = long_integer(text)
    except RecursionError:  # valid, maybe, but past Python's recursion limit: this element alone is bad
        end = _nested_end(window)
        text = window.text[window.pos:end]
        found = Unreadable(0, "an element", "is nested too deeply to read")
    return end, text, value if found is None else _bad(window, found)


def iter_json_array(handle: IO[str]) -> Iterator[tuple[int, str, Any]]:
    """``(line, text, value)`` for each element of the JSON array in ``handle``, as
    :func:`iter_json_elements` reads them."""
    for element in iter_json_elements(handle):
        yield element.line, element.text, element.value


def iter_json_elements(handle: IO[str], limit: int | None = None) -> Iterator[Element]:
    """Each :class:`Element` of the JSON array in ``handle``, in order. Raises
    :class:`ArraySyntaxError` where the array stops being JSON; the elements before it have
    been yielded. With ``limit``, an element of more bytes (as UTF-8) is a :class:`LongElement`,
    its text the start of it: read through, never held whole."""
    window = _Window(handle, limit)
    if window.peek() != "[":
        raise window.fail("expected `[` to open the array")
    yield from _elements(window, strict=True)


class NotAnArray(ValueError):
    """A JSON document that is one value other than an array: ``value``."""

    def __init__(self, value: Any):
        self.value = value
        super().__init__("not a JSON array")


def iter_json_list(handle: IO[str]) -> Iterator[Element]:
    """Each :class:`Element` of the JSON array in ``handle`` as ``json.loads`` reads the whole
    document (a key given twice keeps its last value, a lone surrogate escape is read as
    one), holding one element at a time. An element with an integer longer than Python
    converts, or nested too deeply, is a :class:`BadElement`. Raises :class:`NotAnArray` for
    a document that is another JSON value, :class:`ArraySyntaxError` where it is not JSON."""
    window = _Window(handle)
    if window.peek() not in ("[", ""):
        try:
            value, end = _element(window, LENIENT.raw_decode)
        except (ValueError, RecursionError):  # not JSON, or a value too long or deep to read
            raise window.fail("expected `[` to open the array") from None
        window.advance(end)
        if window.peek():
            raise window.fail("Extra data")
        raise NotAnArray(value)
    if window.peek() != "[":
        raise window.fail("Expecting value")
    yield from _elements(window, strict=False)


LENIENT = json.JSONDecoder()


def _elements(window: _Window, *, strict: bool) -> Iterator[Element]:
    """The elements of the array whose ``[`` is at the window's position, then its end. Strict:
    a key given twice or a lone surrogate escape makes its element a :class:`BadElement`."""
    decode = STRICT.raw_decode if strict else LENIENT.raw_decode
    # only to find where an element ends: one with a too-long number, or a key given twice
    lenient = json.JSONDecoder(parse_int=str).raw_decode
    window.advance(window.pos + 1)
    if window.peek() == "]":
        window.advance(window.pos + 1)
    else:
        while True:
            window.peek()
            line, col = window.line, window.pos - window.line_start + 1
            try:
                end, text, value = _read_element(window, decode, lenient, strict)
            except _TooLong:  # read through, never held
                value = _skip_element(window)
                text = value.head
            else:
                if window.longer_than_limit(window.pos, end):  # it was read whole, a little past the limit
                    value = LongElement(utf8_size(text), text[:LONG_HEAD_CHARS])
                    text = value.head
                window.advance(end)
            yield Element(line, col, text, value)
            following = window.peek()
            if following == ",":
                window.advance(window.pos + 1)
            elif following == "]":
                window.advance(window.pos + 1)
                break
            else:
                raise window.fail("expected `,` or `]` after an element" if following
                                  else "the array is not closed with `]`")
    if window.peek():
        raise window.fail("text after the end of the array")
