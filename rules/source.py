"""Text that people wrote: UTF-8, with or without the byte-order mark that Windows
editors and Excel's "CSV UTF-8" put first, and a position for the first byte that is
not UTF-8 instead of a traceback or a silent replacement character."""

from __future__ import annotations

from typing import BinaryIO

from .diagnostics import Diagnostic, WorkflowInvalid

BOM = b"\xef\xbb\xbf"


class NotUtf8(ValueError):
    """Bytes that are not UTF-8; ``line`` and ``col`` (1-based, ``col`` in characters)
    point at the first bad ``byte``."""

    def __init__(self, line: int, col: int, byte: int):
        self.line, self.col, self.byte = line, col, byte
        super().__init__(f"not valid UTF-8 (byte 0x{byte:02x})")


def decode_text(data: bytes) -> str:
    """``data`` as text, a leading byte-order mark dropped; :class:`NotUtf8` otherwise."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[line_start:exc.start].decode("utf-8")) + 1  # all good bytes before the bad one
        raise NotUtf8(data.count(b"\n", 0, exc.start) + 1, col, data[exc.start]) from None


class Utf8Reader:
    """A binary stream read as text a piece at a time, as :func:`decode_text` reads a whole file:
    a leading byte-order mark dropped, :class:`NotUtf8` at the first byte that is not UTF-8 (its
    line and column in the whole text), never a silent U+FFFD. ``read(n)`` reads ``n`` bytes and
    gives the characters they complete; ``""`` only at the end."""

    def __init__(self, handle: BinaryIO):
        self._handle = handle
        self._cut = b""  # the first bytes of a character the last read cut off
        self._started = False  # whether a byte-order mark was looked for
        self._line, self._col = 1, 0  # where the text given so far ends: its line, its characters on that line

    def read(self, size: int = -1) -> str:
        while True:
            chunk = self._handle.read(size if size > 0 else -1)
            data = self._cut + chunk
            if not self._started:
                if len(data) < len(BOM) and chunk and BOM.startswith(data):
                    self._cut = data  # a byte-order mark, maybe, cut short
                    continue
                self._started = True
                data = data[len(BOM):] if data.startswith(BOM) else data
            text = self._decode(data, ended=not chunk)
            if text or not chunk:
                return text

    def _decode(self, data: bytes, *, ended: bool) -> str:
        try:
            text, self._cut = data.decode("utf-8"), b""
        except UnicodeDecodeError as exc:
            if ended or exc.end != len(data) or exc.reason != "unexpected end of data":
                raise self._not_utf8(data, exc.start) from None
            text, self._cut = data[:exc.start].decode("utf-8"), data[exc.start:]  # a character cut in two
        newlines = text.count("\n")
        self._line += newlines
        self._col = len(text) - text.rfind("\n") - 1 if newlines else self._col + len(text)
        return text

    def _not_utf8(self, data: bytes, start: int) -> NotUtf8:
        before = data[:start].decode("utf-8")  # all good bytes
        newlines = before.count("\n")
        col = len(before) - before.rfind("\n") if newlines else self._col + len(before) + 1
        return NotUtf8(self._line + newlines, col, data[start])


def read_source(path: str) -> str:
    """A workflow or rule-test file as text. Raises ``OSError`` when it cannot be read and
    :class:`WorkflowInvalid` (``file:line:col``) when it is not UTF-8."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return decode_text(data)
    except NotUtf8 as exc:
        raise WorkflowInvalid([Diagnostic(path, exc.line, exc.col, f"{exc}; save the file as UTF-8")]) from None
