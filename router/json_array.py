"""A JSON array read one element at a time: ``labelyard ingest tasks.json`` where the file is
``[{...}, {...}]`` (pretty-printed or not), without reading the whole file into memory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

CHUNK_CHARS = 1 << 16
_WHITESPACE = " \t\r\n"


class ArraySyntaxError(ValueError):
    """Where the file stops being a JSON array; ``line`` and ``col`` are 1-based."""

    def __init__(self, line: int, col: int, message: str):
        self.line, self.col = line, col
        super().__init__(f"invalid JSON at line {line}, column {col}: {message}")


class _Window:
    """The unread part of a text file, refilled in chunks, with the line and column of any offset."""

    def __init__(self, handle: IO[str]):
        self.handle = handle
        self.text = ""
        self.pos = 0
        self.line = 1  # line of ``line_start``
        self.line_start = 0  # offset in ``text`` where that line starts (may be negative)
        self.eof = False

    def more(self) -> bool:
        """Read another chunk, dropping what was consumed; ``False`` at the end of the file."""
        if self.eof:
            return False
        chunk = self.handle.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return False
        self.text = self.text[self.pos:] + chunk
        self.line_start -= self.pos
        self.pos = 0
        return True

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


def iter_json_array(handle: IO[str]) -> Iterator[tuple[int, str, Any]]:
    """``(line, text, value)`` for each element of the JSON array in ``handle``, where ``line``
    is where the element starts. Raises :class:`ArraySyntaxError` where the array stops
    being JSON; the elements before it have been yielded."""
    decode = json.JSONDecoder().raw_decode
    window = _Window(handle)
    if window.peek() != "[":
        raise window.fail("expected `[` to open the array")
    window.advance(window.pos + 1)
    if window.peek() == "]":
        window.advance(window.pos + 1)
    else:
        while True:
            window.peek()
            while True:
                try:
                    value, end = decode(window.text, window.pos)
                except json.JSONDecodeError as exc:
                    if window.more():
                        continue  # the element may go on in the next chunk
                    raise window.fail(exc.msg, exc.pos) from None
                except RecursionError:
                    raise window.fail("an element is nested too deeply to read") from None
                if end == len(window.text) and window.more():
                    continue  # a number may go on in the next chunk
                break
            line = window.line
            text = window.text[window.pos:end]
            window.advance(end)
            yield line, text, value
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
