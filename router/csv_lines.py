"""The lines a CSV reader pulls from a file, each record bounded in size.

:class:`RecordLines` hands ``csv.reader`` one whole line at a time, read in
pieces of :data:`PIECE_CHARS` characters, and counts the bytes of the record
being read. A record (a line, or the lines of a quoted cell that holds line
breaks) that grows past the limit is not handed on: it is read through in
pieces, never held, its end found by its quotes (:func:`scan`), and
:class:`LongRecord` is raised through the reader with its first line, its size
and its start, for the reject. The reader then goes on at the next record
(``csv.reader`` starts each record afresh). See ``docs/design.md``, "Input text".
"""

from __future__ import annotations

import re
from typing import IO

from .json_array import utf8_size

PIECE_CHARS = 1 << 20  # read at a time: a longer line is put together from pieces
HEAD_CHARS = 4096  # characters of a record longer than the limit kept for its reject

# Where the scan of a record is (``csv`` with ``strict=True``, ``"`` the quote, ``""`` one inside quotes)
START, FIELD, QUOTED, AFTER_QUOTE, SKIP = range(5)
_LINE_END = re.compile("[\r\n]")


class LongRecord(Exception):
    """A record longer than the limit, read through: its first ``line``, the line it runs to
    (``last``), its ``size`` in bytes (its final line break left out) and its first characters."""

    def __init__(self, line: int, last: int, size: int, head: str):
        super().__init__(line, last, size)
        self.line, self.last, self.size, self.head = line, last, size, head


def _break_size(line: str) -> int:
    return 2 if line.endswith("\r\n") else 1 if line.endswith(("\n", "\r")) else 0


def scan(text: str, state: int, delimiter: str) -> tuple[int, bool]:
    """Go through ``text``, a piece of a CSV record, from ``state``: the state after it, and whether
    the record ended in it (at a line break outside quotes). A quote opens a quoted cell only where
    a cell starts; after a closing quote anything but the delimiter, a quote or a line break is
    what ``csv`` refuses, and it goes on at the next line (``SKIP``)."""
    at, end = 0, len(text)
    field_end = None
    while at < end:
        if state == QUOTED:
            at = text.find('"', at)
            if at < 0:
                return QUOTED, False
            at, state = at + 1, AFTER_QUOTE
        elif state == FIELD or state == SKIP:
            if field_end is None:
                field_end = re.compile(f"[{re.escape(delimiter)}\r\n]")
            found = (field_end if state == FIELD else _LINE_END).search(text, at)
            if found is None:
                return state, False
            if found.group() != delimiter:
                return START, True
            at, state = found.end(), START
        else:  # where a cell starts, or after a quote in a quoted cell: one character decides
            char = text[at]
            if char in "\r\n":
                return START, True
            if char == delimiter:
                state = START
            elif char == '"':
                state = QUOTED  # a quoted cell opens, or `""` inside one
            else:
                state = FIELD if state == START else SKIP
            at += 1
    return state, False


class RecordLines:
    """The lines a CSV reader pulls, numbered as an editor numbers them, keeping the first line
    and the text of the record being read (the reader skips empty lines between records); a
    record longer than ``limit`` bytes is read through and raised as :class:`LongRecord`.

    Blank lines before the header are skipped. A carriage return alone ends a line only in a
    file whose header line ends so: in a ``\\n`` file it is text in a quoted cell. With ``wait``,
    a last line without its line break is held back, as still being written.
    """

    def __init__(self, handle: IO[str], limit: int, wait: bool = False):
        self._readline = handle.readline
        self._limit = limit
        self._wait = wait
        self._pushed = ""  # a piece read ahead, to be read next
        self._first: str | None = None
        self._breaks: tuple[str, ...] = ("\n",)
        self._next = 1  # the line where the next line read starts
        self.number = 0  # the line where the last line read starts
        self.held = False
        self.delimiter = ","
        self._start = 0
        self._chunks: list[str] = []  # the lines of the record being read
        self._chars = 0  # characters in them
        self._quarter = limit // 4  # fewer characters than this are fewer bytes than the limit
        self._bytes = 0  # bytes in the first `_counted` of them, once counted
        self._counted = 0
        self._record: list[str] = []

    def header(self) -> str:
        """The header line, after the blank lines before it (``""`` if there is none); it is
        also the first line the reader pulls. :class:`LongRecord` when it is longer than the limit
        (``""``, :attr:`held`, when with ``wait`` the file ends before its line break)."""
        while True:
            try:
                line = self._line()
            except StopIteration:  # held back: not an error inside the caller's generator
                return ""
            if not line:
                break
            if line.strip():
                self._first = line
                if line.endswith("\r"):
                    self._breaks = ("\r", "\n")
                return line
            self._next += 1
        return ""

    def __iter__(self) -> "RecordLines":
        return self

    def __next__(self) -> str:
        if self._first is None:
            line = self._pushed or self._readline(PIECE_CHARS)  # _line(), its common case inline
            self._pushed = ""
            if len(line) == PIECE_CHARS or self._chars + len(line) > self._quarter:
                line = self._bounded(line)
            if not line:
                raise StopIteration
        else:
            line, self._first = self._first, None
        if self._wait and not line.endswith(("\n", "\r")):
            self.held = True
            raise StopIteration
        self.number = self._next
        if line.endswith(self._breaks):
            self._next += 1
        if self._start or line.strip("\r\n"):
            self._start = self._start or self.number
            self._chunks.append(line)
            self._chars += len(line)
        return line

    def take(self) -> int:
        """The first line of the record just read (:meth:`text` is the record); the next starts afresh."""
        start, self._start = self._start or self.number, 0
        self._record, self._chunks = self._chunks, []
        self._chars = self._bytes = self._counted = 0
        return start

    def text(self) -> str:
        """The record last taken, as written, without its final line break."""
        return "".join(self._record).rstrip("\r\n")

    def _piece(self) -> str:
        if self._pushed:
            piece, self._pushed = self._pushed, ""
            return piece
        return self._readline(PIECE_CHARS)

    def _line(self) -> str:
        """The next line, whole (``""`` at the end); when it takes the record past the limit, the
        record read through and raised (:meth:`_read_through`)."""
        return self._bounded(self._piece())

    def _bounded(self, piece: str) -> str:
        """The line that starts with ``piece``, checked against the limit (:meth:`_line`). Bytes are
        counted only once the record holds more characters than a quarter of the limit (a
        character is 1 to 4 bytes); :meth:`__next__` calls this only then, or for a whole piece."""
        if len(piece) == PIECE_CHARS and not piece.endswith("\n"):  # cut by the piece size, maybe
            return self._long_line(piece)
        if self._chars + len(piece) > self._quarter:
            size = self._record_bytes() + utf8_size(piece)
            if size - _break_size(piece) > self._limit:
                self._read_through([piece], size)
        return piece

    def _record_bytes(self) -> int:
        """The bytes of the record's lines read so far (counted once each)."""
        for chunk in self._chunks[self._counted:]:
            self._bytes += utf8_size(chunk)
        self._counted = len(self._chunks)
        return self._bytes

    def _long_line(self, piece: str) -> str:
        """A line of more than one piece, put together, never past the limit (then read through)."""
        parts = [piece]
        size = self._record_bytes() + utf8_size(piece)
        ending = 0  # bytes of its line break
        while size <= self._limit:
            if piece.endswith("\r"):  # a line break, or the first half of a CR LF
                following = self._piece()
                if following == "\n":
                    parts.append(following)
                    size += 1
                    ending = 2
                else:
                    self._pushed = following
                    ending = 1
                break
            piece = self._piece()
            size += utf8_size(piece)
            parts.append(piece)
            if len(piece) < PIECE_CHARS or piece.endswith("\n"):
                ending = _break_size(piece)
                break
        if size - ending > self._limit:
            self._read_through(parts, size)  # its pieces as read: never put together
        return "".join(parts)

    def _read_through(self, pieces: list[str], size: int) -> None:
        """The record being read went past the limit with the line read as ``pieces`` (``size``: its
        bytes so far): read the rest of it a piece at a time, counting its lines, and raise it as
        :class:`LongRecord` (or, with ``wait``, hold it back when the file ends before its line break)."""
        start = self._start or self._next
        head = ""
        for chunk in [*self._chunks, *pieces]:
            head += chunk[:HEAD_CHARS - len(head)]
        # the lines the reader took already end inside a quoted cell (else the record had ended)
        state = QUOTED if self._start else START
        self._chunks, self._start, self._chars, self._bytes, self._counted = [], 0, 0, 0, 0
        pieces.reverse()  # taken from the end, each let go once scanned

        def following() -> str:
            nonlocal size
            if pieces:  # counted already
                return pieces.pop()
            piece = self._piece()
            size += utf8_size(piece)
            return piece

        piece = pieces.pop()
        while True:
            self.number = self._next
            if piece.endswith(self._breaks):
                self._next += 1
            state, ended = scan(piece, state, self.delimiter)
            if ended:
                if piece.endswith("\r"):  # a line break, or the first half of a CR LF cut by the piece size
                    after = following()
                    if after == "\n":
                        self._next += 0 if piece.endswith(self._breaks) else 1
                        piece += after
                    else:  # the next line's: given back
                        size -= utf8_size(after)
                        self._pushed = after
                break
            after = following()
            if not after:  # the file ends inside the record
                if self._wait and not piece.endswith(("\n", "\r")):
                    self.held = True
                    raise StopIteration
                break
            piece = after
        raise LongRecord(start, self.number, size - _break_size(piece), head)
