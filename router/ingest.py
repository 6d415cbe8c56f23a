"""Reading task rows from JSON Lines, JSON array and CSV files (or standard input), one at
a time, and checking each.

A row is ``{"id": ..., "data": {...}, "category": ..., "tags": [...],
"prediction": {"label": ..., "confidence": ..., "model": ..., "scores": {...}}}``.
CSV files carry ``id``, optional ``category``, ``tags`` (separated by ``;``),
``prediction_label`` (read as the workflow's label type, :func:`csv_label`),
``prediction_confidence`` and ``prediction_model``; every other column goes
into ``data``, as written. Bad rows become :class:`RowProblem` values with
their line number and reason; reading never stops at one (only a JSON array
that stops being JSON ends there). Text is UTF-8 with an optional byte-order
mark; see ``docs/design.md``, "Input text".
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from rules.label_text import TOO_LARGE, not_one_of
from rules.source import BOM, NotUtf8, decode_text
from rules.workflow import finite_number

from .csv_lines import LongRecord, RecordLines
from .errors import LabelyardError
from .json_array import RepeatedKey, decode_strict, repeated_key
from .store import control_character, text_problem


@dataclass
class TaskInput:
    """A checked row, ready to be routed.

    ``raw`` is the row as read, when a reader has it (a JSON Lines line as bytes, a ``.json``
    array element as text), for a reject found only when the row is routed (a number JSON
    cannot carry); ``col`` is where an element's text starts on ``line`` (0: ``raw`` is a
    whole line). ``ignored`` are the row's top-level keys that went nowhere (a row with
    ``data`` keeps only the reserved ones), for ingest to tell (:class:`IgnoredKeys`)."""

    line: int
    external_id: str
    data: dict[str, Any]
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    label: Any = None
    confidence: float | None = None
    model: str | None = None
    scores: dict[str, float] | None = None
    # set by readers after the row is checked; not __init__ arguments, so building a row costs
    # nothing more (a field with a default and init=False is read from the class until set)
    raw: str | bytes | None = field(default=None, init=False, repr=False, compare=False)
    col: int = field(default=0, init=False, repr=False, compare=False)
    ignored: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    # where the prediction's label was read, as a reject names it: a CSV file's column `prediction_label`
    label_field: str = field(default="prediction.label", init=False, repr=False, compare=False)


@dataclass
class RowProblem:
    """A row that cannot be ingested: where it is and why (``raw``: the row as read, if known).

    ``external_id`` is the row's id when it is known: the rejects of a source plugin's rows
    on one line are told apart by it (see ``docs/plugins.md``)."""

    line: int
    reason: str
    raw: str | None
    external_id: str | None = None


class RowError(ValueError):
    """Raised while checking one row; the message names the field."""


IGNORED_KEYS_KEPT = 20  # distinct ignored keys counted; a file with thousands of them is told about the first
IGNORED_KEY_CHARS = 60
_KEY_HINTS = {"label": "a model's label goes in `prediction.label`",
              "confidence": "a model's confidence goes in `prediction.confidence`",
              "model": "a model's name goes in `prediction.model`"}


@dataclass
class IgnoredKeys:
    """Top-level keys that rows with ``data`` had beside the reserved ones, which ingest leaves
    out: how many rows had each (``rows``) and where the first was (``first``: source and line).
    Told, never dropped without a word: a re-ingested ``labelyard export`` has ``label`` and
    ``final_by``, a typo ``predictions``."""

    rows: dict[str, int] = field(default_factory=dict)
    first: dict[str, tuple[str, int]] = field(default_factory=dict)
    more: bool = False  # keys past IGNORED_KEYS_KEPT were ignored too, not counted

    def __bool__(self) -> bool:
        return bool(self.rows)

    def add(self, key: str, rows: int, source: str, line: int) -> None:
        """``rows`` more rows with ``key``, the first of them at ``source:line`` (kept if it is the first seen)."""
        if len(key) > IGNORED_KEY_CHARS:
            key = key[:IGNORED_KEY_CHARS - 3] + "..."
        if key in self.rows:
            self.rows[key] += rows
        elif len(self.rows) < IGNORED_KEYS_KEPT:
            self.rows[key], self.first[key] = rows, (source, line)
        else:
            self.more = True

    def merge(self, other: "IgnoredKeys") -> None:
        for key, rows in other.rows.items():
            self.add(key, rows, *other.first[key])
        self.more = self.more or other.more

    def warnings(self, reserved: Iterable[str] = ("id", "data", "category", "tags", "prediction")) -> list[str]:
        """What to print on standard error: a line saying what was ignored, then one per key."""
        if not self.rows:
            return []
        import difflib

        from .render import visible

        names = list(reserved)
        lines = [f"warning: rows with `data` keep only their {', '.join(names[:-1])} and {names[-1]}; other "
                 "top-level keys were ignored:"]
        for key, rows in self.rows.items():
            source, line = self.first[key]
            close = difflib.get_close_matches(key.lower(), names, n=1, cutoff=0.75)
            hint = _KEY_HINTS.get(key) or (f"did you mean `{close[0]}`?" if close and close[0] != key else None)
            lines.append(f"  `{visible(key)}`: {rows} row{'' if rows == 1 else 's'}, first at {visible(source)}:{line}"
                         + (f" ({hint})" if hint else ""))
        if self.more:
            lines.append(f"  and other keys (only the first {IGNORED_KEYS_KEPT} are counted)")
        return lines


CSV_RESERVED = {"id", "category", "tags", "prediction_label", "prediction_confidence", "prediction_model"}
JSON_RESERVED = {"id", "data", "category", "tags", "prediction"}
CSV_DELIMITERS = (",", ";", "\t")
# Bytes in one row: a JSON Lines line, a CSV record, an element of a .json array (a final line break
# not counted). A longer one is one reject with its size, read through in pieces, never held
# (docs/design.md, "Input text").
MAX_ROW_BYTES = 64 << 20
CSV_CELL_LIMIT = MAX_ROW_BYTES  # characters in one CSV cell: never reached by a record within the limit
LONG_LINE_HEAD = 4096  # bytes of a longer line kept for its reject
LONG_LINE_PIECE = 1 << 20  # read at a time while going through one
BOM_TEXT = "\ufeff"
BOM = BOM_TEXT.encode("utf-8")
SNIFF_BYTES = 1 << 16  # read at a time while looking for the `[` of a JSON array


FORMATS = ("jsonl", "json", "csv")


def read_file(path: str, choices: tuple[str, ...] = (), fmt: str | None = None, *, label_type: str | None = None,
              wait_for_newline: bool = False) -> Iterator[TaskInput | RowProblem]:
    """Yield checked rows (or problems) from a ``.jsonl``, ``.json`` or ``.csv`` file, streaming;
    ``fmt`` overrides the file's extension. For CSV, ``label_type`` is the workflow's (it says
    how ``prediction_label`` cells read) and ``wait_for_newline`` leaves a last line without its
    line break for later. A pipe (``<(cmd)``, a fifo) is read as a stream."""
    if os.path.isdir(path):
        raise LabelyardError(f"{path}: is a directory, not a file of rows")
    if not os.path.exists(path):
        raise LabelyardError(f"{path}: no such file")
    fmt = fmt or format_of(path)
    try:
        with open(path, "rb") as handle:
            yield from read_stream(handle, fmt, choices, label_type=label_type, wait_for_newline=wait_for_newline)
    except OSError as exc:  # unreadable (permissions, a disk error): said as the system says it
        raise LabelyardError(f"{path}: {exc.strerror or exc}") from None


def is_stream(path: str) -> bool:
    """Whether ``path`` is readable once only, like standard input: it exists but is neither a
    regular file nor a directory (a pipe such as ``/dev/fd/63`` from ``<(cmd)``, a fifo)."""
    return os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path)


def with_pauses(rows: Iterable[TaskInput | RowProblem], seconds: float) -> Iterator[TaskInput | RowProblem | None]:
    """``rows``, and ``None`` each time ``seconds`` pass without a new one: a stream that pauses
    (``tail -f``, a producer between bursts) then lets the ingest commit what it read so far,
    instead of keeping it until the next row comes. The rows are read in a thread started at
    the first ``next`` (in the forked reader, where the rows are read); what reading raises is
    raised here."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=10_000)
    end = object()

    def pump() -> None:
        try:
            for row in rows:
                items.put(row)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            items.put(_Raised(exc))
            return
        items.put(end)

    threading.Thread(target=pump, name="ingest-reader", daemon=True).start()
    while True:
        try:
            item = items.get(timeout=seconds)
        except queue.Empty:
            yield None
            continue
        if item is end:
            return
        if isinstance(item, _Raised):
            raise item.exc
        yield item


@dataclass
class _Raised:
    exc: BaseException


def format_of(path: str) -> str:
    """``jsonl``, ``json`` or ``csv`` by a file's extension."""
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    for fmt in ("json", "csv"):
        if lower.endswith("." + fmt):
            return fmt
    raise LabelyardError(f"{path}: unknown file type; expected .jsonl, .json or .csv (or give --format)")


def read_stream(handle: BinaryIO, fmt: str, choices: tuple[str, ...] = (), *, label_type: str | None = None,
                wait_for_newline: bool = False) -> Iterator[TaskInput | RowProblem]:
    """Rows from an open binary stream (a file, standard input) in ``fmt``: ``jsonl``; ``json``,
    one array of rows, or JSON Lines when it does not open with ``[``; or ``csv`` (the last two
    arguments are for CSV, see :func:`read_file`)."""
    if fmt == "json":
        handle, array = _opens_array(handle)
        yield from (_read_json_array if array else _read_jsonl)(handle, choices)
    elif fmt == "jsonl":
        yield from _read_jsonl(handle, choices)
    elif fmt == "csv":
        yield from _read_csv(handle, choices, label_type, wait_for_newline)
    else:
        raise LabelyardError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _read_jsonl(handle: BinaryIO, choices: tuple[str, ...]) -> Iterator[TaskInput | RowProblem]:
    for number, raw in enumerate(lines_within(handle), start=1):
        if isinstance(raw, LongLine):
            yield raw.problem(number)
        elif raw.strip() and raw.strip() != BOM:  # a line of a byte-order mark alone is blank too
            yield parse_jsonl_line(raw, number, choices)


@dataclass
class LongLine:
    """A line longer than a row may be (:data:`MAX_ROW_BYTES`), read through without being held:
    its size in bytes (its line break left out), its first :data:`LONG_LINE_HEAD` bytes, and
    ``length``, the bytes read for it (its line break included: where the next line starts)."""

    size: int
    head: bytes
    length: int = field(default=0, compare=False)

    @property
    def ended(self) -> bool:
        """Whether the line ended with its line break (else the stream ended first)."""
        return self.length > self.size

    def problem(self, number: int) -> RowProblem:
        return RowProblem(number, too_long("line", self.size), raw_line(self.head) + "…")


def too_long(what: str, size: int) -> str:
    """The reason of a row longer than :data:`MAX_ROW_BYTES`: ``what`` it is (a JSON Lines ``line``,
    a CSV ``record``, a ``.json`` array's ``element``) and its ``size`` in bytes."""
    return f"{what} of {size} bytes: a row may be at most {MAX_ROW_BYTES} bytes ({MAX_ROW_BYTES >> 20} MiB); not read"


def lines_within(handle: BinaryIO, limit: int | None = None) -> Iterator[bytes | LongLine]:
    """The lines of a binary stream as iterating it gives them, but none longer than ``limit``
    bytes (:data:`MAX_ROW_BYTES`; a line break is not counted) is ever held whole: such a line is
    read through in pieces and given as a :class:`LongLine`, so a 200 MB line costs no more
    memory than a row may take."""
    limit = MAX_ROW_BYTES if limit is None else limit
    while raw := handle.readline(limit + 2):  # room for the longest line break, CR LF
        size = _without_break(raw)
        if size <= limit:
            yield raw
            continue
        head, ended, length = raw[:LONG_LINE_HEAD], raw.endswith(b"\n"), len(raw)
        del raw
        while not ended and (piece := handle.readline(LONG_LINE_PIECE)):
            size += _without_break(piece)
            length += len(piece)
            ended = piece.endswith(b"\n")
        yield LongLine(size, head, length)


def _without_break(raw: bytes) -> int:
    """The length of ``raw`` without the line break it may end with."""
    return len(raw) - (2 if raw.endswith(b"\r\n") else 1 if raw.endswith(b"\n") else 0)


def _opens_array(handle: BinaryIO) -> tuple[BinaryIO, bool]:
    """Whether a stream opens with ``[`` after a byte-order mark and whitespace, however much of
    them and however slowly they arrive (a pipe); and the stream, what was read put back in front."""
    read = getattr(handle, "read1", handle.read)
    head, scanned = bytearray(), -1  # -1: whether it opens with a byte-order mark is not known yet
    while chunk := read(SNIFF_BYTES):
        head += chunk
        if scanned < 0:
            if len(head) < len(BOM) and BOM.startswith(head):
                continue  # a byte-order mark, maybe, cut short
            scanned = len(BOM) if head.startswith(BOM) else 0
        first = head[scanned:].lstrip(b" \t\r\n")[:1]
        if first:
            return io.BufferedReader(_Prefixed(bytes(head), handle), SNIFF_BYTES), first == b"["
        scanned = len(head)
    return io.BytesIO(bytes(head)), False


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were read already, put back in front of the rest."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self._head = memoryview(head)
        self._read = getattr(rest, "read1", rest.read)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n], self._head = self._head[:n], self._head[n:]
            return n
        data = self._read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def _text(handle: BinaryIO) -> io.TextIOWrapper:
    # Bytes that are not UTF-8 become lone surrogates (``surrogateescape``), found per row,
    # so that one bad row is quarantined and not the file.
    return io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _read_json_array(handle: BinaryIO, choices: tuple[str, ...]) -> Iterator[TaskInput | RowProblem]:
    """A JSON array of rows, one element at a time; each row's line is where its element
    starts. Where the array stops being JSON, the rest is one reject."""
    for found in _array_values(handle):
        if isinstance(found, RowProblem):
            yield found
            continue
        number, col, row, text = found
        try:
            task = check_row(row, number, choices, JSON_RESERVED)
        except RowError as exc:
            yield RowProblem(number, str(exc), text)
            continue
        task.raw, task.col = text, col
        yield task


def json_values(handle: BinaryIO, *, array: bool = True) -> Iterator[tuple[int, int, Any, str | bytes] | RowProblem]:
    """The JSON values of a stream's rows, unchecked, read as ``ingest`` reads a ``.json`` file
    (``array``; else as a ``.jsonl`` one): one JSON array, element by element, when it opens
    with ``[``, else JSON Lines. Each row is ``(line, column, value, text)`` (column 0 and the
    line's bytes for a JSON Lines row), or the :class:`RowProblem` of one that is not JSON (for
    a rows' reader of its own, such as ``gold add``)."""
    if array:
        handle, array = _opens_array(handle)
    if array:
        yield from _array_values(handle)
        return
    for number, raw in enumerate(lines_within(handle), start=1):
        if isinstance(raw, LongLine):
            yield raw.problem(number)
        elif raw.strip() and raw.strip() != BOM:  # a line of a byte-order mark alone is blank too
            try:
                yield number, 0, load_json_line(raw), raw
            except RowError as exc:
                yield RowProblem(number, str(exc), raw_line(raw))


def _array_values(handle: BinaryIO) -> Iterator[tuple[int, int, Any, str] | RowProblem]:
    """A JSON array's elements as ``(line, column, value, text)``, or the problem with one; where
    the array stops being JSON, the rest is one problem."""
    from .json_array import ArraySyntaxError, BadElement, LongElement, iter_json_elements

    text_handle = _text(handle)
    try:
        for number, col, text, row in iter_json_elements(text_handle, MAX_ROW_BYTES):
            byte = _escaped_byte(text)
            if isinstance(row, LongElement):  # read through, never held
                yield RowProblem(number, too_long("element", row.size), _printable(text) + "…")
            elif byte is not None:
                yield RowProblem(number, f"not valid UTF-8 (byte 0x{byte:02x})", _printable(text))
            elif isinstance(row, BadElement):  # JSON, but a number too long, a lone surrogate or nested too deeply
                yield RowProblem(number, str(row), text)
            else:
                yield number, col, row, text
    except ArraySyntaxError as exc:
        yield RowProblem(exc.line, f"{exc}; the rest of the file was not read", None)
    finally:
        text_handle.detach()  # the caller closes the stream


def decode_line(raw: bytes) -> str:
    """One input line as text (UTF-8, a leading byte-order mark dropped); a :class:`RowError`
    naming the column of the first byte that is not UTF-8, never a silent U+FFFD."""
    return _decode(raw, whole=False)


def decode_document(data: bytes) -> str:
    """A whole text file as :func:`decode_line` does a line; the error names line and column."""
    return _decode(data, whole=True)


def _decode(data: bytes, *, whole: bool) -> str:
    try:
        return decode_text(data)
    except NotUtf8 as exc:
        where = f"line {exc.line}, column {exc.col}" if whole else f"column {exc.col}"
        raise RowError(f"not valid UTF-8 at {where} (byte 0x{exc.byte:02x})") from None


def load_json_line(raw: bytes) -> Any:
    """The JSON value on one input line; a :class:`RowError` saying where it is not UTF-8,
    not JSON, or JSON that no row can hold (an integer too long for Python, a lone surrogate,
    an object giving a key twice)."""
    try:
        text = raw.decode("utf-8")  # the common case, without decode_line's bookkeeping
    except UnicodeDecodeError:
        text = decode_line(raw)  # raises, saying where
    if text.startswith(BOM_TEXT):  # a byte-order mark (first line, or files joined with cat)
        text = text[1:]
    try:
        value = decode_strict(text)
    except json.JSONDecodeError as exc:
        raise RowError(_syntax_error(text, exc)) from None
    except ValueError:  # JSON, with an integer longer than Python converts
        from .json_array import long_integer

        found = long_integer(text)
        raise RowError(found.at(f"column {found.offset + 1}")) from None
    except RecursionError:
        raise RowError("JSON nested too deeply") from None
    except RepeatedKey:
        found = repeated_key(text)
        raise RowError(found.at(f"column {found.offset + 1}")) from None
    if "\\u" in text:  # the text is UTF-8: a surrogate can come only from an escape
        from .json_array import lone_surrogate

        found = lone_surrogate(text)
        if found is not None:
            raise RowError(found.at(f"column {found.offset + 1}"))
    return value


def long_integer_problem(text: str) -> tuple[int, str]:
    """Where JSON ``text`` (a whole document) that ``json.loads`` refused with a plain
    ``ValueError`` has the integer longer than Python converts: its line, and the reason
    naming line and column (``json`` itself says neither)."""
    from .json_array import long_integer

    return _in_document(text, long_integer(text))


def repeated_key_problem(text: str) -> tuple[int, str]:
    """Where JSON ``text`` (a whole document) that :func:`decode_strict` refused with
    :class:`RepeatedKey` gives a key a second time in one object: its line, and the reason
    naming the key, line and column."""
    return _in_document(text, repeated_key(text))


def _in_document(text: str, found: Any) -> tuple[int, str]:
    """The line of ``found`` (an ``Unreadable`` of a whole document), and its reason there."""
    line = text.count("\n", 0, found.offset) + 1
    col = found.offset - text.rfind("\n", 0, found.offset)
    return line, found.at(f"line {line}, column {col}")


def _syntax_error(text: str, exc: json.JSONDecodeError) -> str:
    """Where a line is not JSON: its column (never past the line's end, where its newline
    would put it), with a word on lone carriage returns taken for line ends."""
    end = len(text.rstrip("\r\n"))
    message = f"invalid JSON at column {min(exc.pos, end) + 1}: {exc.msg}"
    if exc.msg == "Extra data" and text[:exc.pos].rstrip(" \t").endswith("\r"):
        message += (" after a lone carriage return (CR): are the lines ended by CR alone? JSON Lines "
                    "end each line with \\n or \\r\\n")
    return message


def raw_line(raw: bytes) -> str:
    """An input line as the rejects table keeps it: bytes that are not UTF-8 as U+FFFD."""
    return raw.decode("utf-8", errors="replace").lstrip(BOM_TEXT).rstrip("\r\n")


def parse_jsonl_line(raw: bytes, number: int, choices: tuple[str, ...]) -> TaskInput | RowProblem:
    """One JSON Lines row (``raw`` bytes, line ``number``) checked, or the problem with it."""
    try:
        task = check_row(load_json_line(raw), number, choices, JSON_RESERVED)
    except RowError as exc:
        return RowProblem(number, str(exc), raw_line(raw))
    task.raw = raw
    return task


NOT_FINITE = "a number is NaN or infinite, which JSON cannot carry"


def not_finite_problem(item: TaskInput) -> RowProblem:
    """The reject of a row holding a number JSON cannot carry (``NaN``, ``Infinity``, ``1e400``,
    which Python's ``json`` reads as floats), found when the row is stored: the number named
    where it is in the row as read (column of a JSON Lines line, line and column in a ``.json``
    array), the row's text kept (as JSON when the reader kept none: a plugin's row)."""
    from .json_array import non_finite

    raw = item.raw
    text = raw_line(raw) if isinstance(raw, bytes) else raw
    found = None if text is None else non_finite(text)
    if found is None:
        reason = NOT_FINITE
    elif item.col:  # an element of a .json array, starting at column `col` of `line`
        before = text.rfind("\n", 0, found.offset)
        line = item.line + text.count("\n", 0, found.offset)
        col = found.offset - before if before >= 0 else item.col + found.offset
        reason = found.at(f"line {line}, column {col}")
    else:
        reason = found.at(f"column {found.offset + 1}")
    if text is None:
        text = json.dumps({"id": item.external_id, "data": item.data}, ensure_ascii=False, default=repr)[:2000]
    return RowProblem(item.line, reason, text, item.external_id)


def not_json_problem(item: TaskInput) -> RowProblem | None:
    """The reject of a row a source plugin built holding a value JSON cannot carry (a ``Decimal``
    from a database driver, a ``datetime``, a set, bytes; or nested too deep), naming its field
    (``data.price``); ``None`` when every field is JSON (NaN aside: :func:`not_finite_problem`)."""
    from .plugin_values import JSON_KINDS, NESTED_TOO_DEEP, not_json, plugin_text
    from .store import dumps

    try:
        dumps((item.data, item.label, item.scores))  # the C encoder: the walk below only when it refuses
        return None
    except (TypeError, ValueError, RecursionError):
        pass
    path, kind = "data", NESTED_TOO_DEEP  # what is left when no value at fault is found: a circular one
    for value, where in ((item.data, "data"), (item.label, item.label_field), (item.scores, "prediction.scores")):
        found = not_json(value, where, dotted=True)
        if found is not None:
            path, kind, _ = found
            break
    if kind == NESTED_TOO_DEEP:
        why, raw = "is nested too deep for JSON (or holds itself)", None
    else:
        why = f"is of type {kind}, which JSON cannot carry ({JSON_KINDS})"
        raw = plugin_text(json.dumps({"id": item.external_id, "data": item.data}, ensure_ascii=False,
                                     default=repr)[:2000])
    return RowProblem(item.line, plugin_text(f"`{path}` {why}"), raw, plugin_text(item.external_id))


def _read_csv(stream: BinaryIO, choices: tuple[str, ...], label_type: str | None = None,
              wait_for_newline: bool = False) -> Iterator[TaskInput | RowProblem]:
    """CSV rows: ``label_type`` says how ``prediction_label`` cells read (:func:`csv_label`); with
    ``wait_for_newline``, a last line without its line break is left for later (still being written)."""
    handle = _text(stream)
    if csv.field_size_limit() < CSV_CELL_LIMIT:
        csv.field_size_limit(CSV_CELL_LIMIT)  # the default 128 KiB is less than a long document
    try:
        lines = RecordLines(handle, MAX_ROW_BYTES, wait_for_newline)
        try:
            header = lines.header()
            lines.delimiter = csv_delimiter(header)
            # strict: a quote left open or text after a closing quote is a bad row, not a guess
            reader = csv.DictReader(lines, delimiter=lines.delimiter, strict=True)
            problem = _csv_header(reader, lines, _printable(header.rstrip("\r\n")))
        except LongRecord as long:  # no names to read the rows by
            problem = RowProblem(long.line, f"CSV header of {long.size} bytes: a header may be at most {MAX_ROW_BYTES} "
                                            f"bytes ({MAX_ROW_BYTES >> 20} MiB); the file was not read",
                                 _printable(long.head.rstrip("\r\n")) + "…")
        if problem is not None:
            yield problem
        elif reader.fieldnames:
            # a label of another type is checked by its type when the row is routed
            yield from _csv_records(reader, lines, choices if label_type in (None, "choice") else (), label_type)
    finally:
        handle.detach()  # the caller closes the stream


def _csv_header(reader: csv.DictReader, lines: RecordLines, raw: str) -> RowProblem | None:
    """What is wrong with a CSV file's header line (``raw``), if anything; its names are trimmed
    in place ("id, text" as typed by hand)."""
    try:
        names = reader.fieldnames
    except csv.Error as exc:  # a quote left open, text after a closing quote
        line = lines.take()
        return None if lines.held else RowProblem(line, f"bad CSV header: {exc}", raw)
    if names is None:  # no header, or one still being written
        return None
    line = lines.take()
    names = reader.fieldnames = [name.strip() for name in names]
    problem = _undecodable(zip(names, names))
    if problem:
        problem = f"CSV header: {problem}"
    elif "id" not in names:
        problem = "CSV header has no `id` column"
    else:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:  # a dict keeps one of them: the other column would be lost without a word
            problem = "CSV header repeats " + ", ".join(f"`{name}`" for name in repeated)
    return None if problem is None else RowProblem(line, problem, raw)


def _csv_records(reader: csv.DictReader, lines: RecordLines, choices: tuple[str, ...],
                 label_type: str | None) -> Iterator[TaskInput | RowProblem]:
    """The records after the header, checked; a bad one is kept in rejects as written."""
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # the reader goes on at the next line
            start = lines.take()
            if lines.held:  # the last record, cut where its file ends for now: still being written
                return
            through = f" (the record runs to line {lines.number})" if lines.number > start else ""
            yield RowProblem(start, f"bad CSV: {exc}{through}", None)
            continue
        except LongRecord as long:  # read through, never held; the reader goes on at the next record
            lines.take()
            through = f" (the record runs to line {long.last})" if long.last > long.line else ""
            yield RowProblem(long.line, too_long("record", long.size) + through,
                             _printable(long.head.rstrip("\r\n")) + "…")
            continue
        number = lines.take()
        problem = _undecodable(record.items())
        if problem:
            yield RowProblem(number, problem, _printable(lines.text()))
            continue
        try:
            yield check_row(_csv_row(record, label_type), number, choices, JSON_RESERVED,
                            label_field="prediction_label")
        except RowError as exc:
            yield RowProblem(number, str(exc), lines.text())


def csv_delimiter(header: str) -> str:
    """The cell separator of a CSV file: whichever of ``,``, ``;`` (Excel's "CSV" where the
    decimal mark is a comma) and tab comes first in its header line outside quotes (a quoted
    name may hold any of them); ``,`` if none does."""
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in CSV_DELIMITERS:
            return char
    return ","


_DECIMAL_COMMA = re.compile(r"^\s*([0-9]*),([0-9]+)\s*$")  # 0,85 as a spreadsheet with a decimal comma writes it
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _escaped_byte(text: str) -> int | None:
    """The first byte that was not UTF-8 in text read with ``surrogateescape``, if any."""
    if text.isascii():
        return None
    found = _ESCAPED_BYTE.search(text)
    return None if found is None else ord(found.group()) - 0xDC00


def _undecodable(cells: Iterable[tuple[Any, Any]]) -> str | None:
    """Which cell of a CSV record read with ``surrogateescape`` held bytes that are not UTF-8."""
    for name, value in cells:
        for text in value if isinstance(value, list) else (value,):  # extra cells come as a list
            byte = _escaped_byte(text) if isinstance(text, str) else None
            if byte is not None:
                where = "a cell past the header" if name is None else f"`{_printable(name)}`"
                return f"{where}: not valid UTF-8 (byte 0x{byte:02x})"
    return None


def _printable(text: str) -> str:
    """Text read with ``surrogateescape`` as storable text: bad bytes become U+FFFD."""
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def _csv_row(record: dict[str, Any], label_type: str | None = None) -> dict[str, Any]:
    if None in record:
        raise RowError("row has more cells than the header")
    get = lambda name: record.get(name) or None  # noqa: E731  (an empty or missing cell is no value)
    prediction: dict[str, Any] = {}
    label = get("prediction_label")
    if label is not None:
        prediction["label"] = csv_label(label, label_type)
    confidence = get("prediction_confidence")
    if confidence is not None:
        text = _number_text(confidence)
        if text is None:  # float() alone takes `0.9_5`, `٠.٥`, `nan`
            raise RowError(f"`prediction_confidence` {_shown(confidence)} is not a number")
        prediction["confidence"] = float(text)
        if math.isinf(prediction["confidence"]):  # `1e400`: the cell, not the infinity float() made of it
            raise RowError(f"`prediction_confidence` {_shown(confidence)} is not a finite number")
    model = get("prediction_model")
    if model is not None:
        prediction["model"] = model
    tags = get("tags")
    row: dict[str, Any] = {
        "id": record.get("id"),
        "data": {k: v for k, v in record.items() if k not in CSV_RESERVED},
        "category": get("category"),
        "tags": [t.strip() for t in tags.split(";") if t.strip()] if tags else [],
    }
    if prediction:
        row["prediction"] = prediction
    return row


CSV_LABEL_EXAMPLES = {  # the label types a CSV cell holds as JSON, as `labelyard export` writes them
    "multi_choice": '["x", "y"]',
    "spans": '[{"start": 0, "end": 3, "label": "x"}]',
    "boxes": '[{"x": 0, "y": 0, "width": 10, "height": 20, "label": "x"}]',
}
# ASCII digits only: `\d` alone is any script's digit, and Python's int() and float() take them
# (`٥`) and underscores (`0_5`); a cell is a number only as a spreadsheet or JSON writes one
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def csv_label(cell: str, label_type: str | None) -> Any:
    """A ``prediction_label`` cell as a label of ``label_type``: a number for ``number``, JSON
    for ``multi_choice``, ``spans`` and ``boxes``, the text as written otherwise (``choice``,
    ``text``, or a type not given); a :class:`RowError` when the cell does not read so."""
    if label_type == "number":
        return _csv_number(cell)
    example = CSV_LABEL_EXAMPLES.get(label_type or "")
    if example is None:
        return cell
    try:
        return decode_strict(cell)
    except RepeatedKey:
        found = repeated_key(cell)
        raise RowError(f"`prediction_label`: {found.at(f'column {found.offset + 1} of the cell')}") from None
    except json.JSONDecodeError as exc:
        raise RowError(f"`prediction_label` is not JSON (column {exc.colno}: {exc.msg}); "
                       f"a {label_type} label is written like {example}") from None
    except ValueError:  # JSON, with an integer longer than Python converts
        from .json_array import long_integer

        found = long_integer(cell)
        raise RowError(f"`prediction_label`: {found.at(f'column {found.offset + 1} of the cell')}") from None
    except RecursionError:
        raise RowError("`prediction_label`: JSON nested too deeply") from None


def _number_text(cell: str) -> str | None:
    """A number cell (``5``, ``-4.5``, ``1e3``, ``4,5`` with a decimal comma, ASCII digits) as
    text ``int()`` or ``float()`` reads the same; ``None`` when it is not one."""
    text = _DECIMAL_COMMA.sub(r"\1.\2", cell).strip()
    return text if _NUMBER.fullmatch(text) else None


def number_cell(value: Any) -> int | float | None:
    """A number given as one, or as text written as a CSV cell or a spreadsheet writes one (``100``,
    ``4.5``, ``4,5`` with a decimal comma, ``1e3``, spaces around): the number when finite, else
    ``None`` (text that is no number, ``true``, NaN, an empty cell)."""
    if isinstance(value, str):
        text = _number_text(value)
        if text is None:
            return None
        try:
            value = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:  # more digits than Python converts
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if finite_number(value) else None


def _shown(cell: str) -> str:
    """A cell quoted for a reason, cut to 40 characters."""
    return json.dumps(cell if len(cell) <= 40 else cell[:37] + "...", ensure_ascii=False)


def _csv_number(cell: str) -> int | float:
    """A number cell: ``5``, ``4.5``, ``1e3``, or ``4,5`` with a decimal comma; finite. A number past
    the float range (``1e400``, an integer of 310 digits) is said to be too large, as ``submit`` says."""
    text = _number_text(cell)
    if text is None:
        raise RowError(f"`prediction_label` {_shown(cell)} is not a finite number")
    try:
        value: Any = int(text) if text.lstrip("+-").isdigit() else float(text)
    except ValueError:  # more digits than Python converts: past the float range too
        value = None
    if not finite_number(value):  # the text is digits: no `nan` or `inf`, only a number too large
        raise RowError(f"`prediction_label` {_shown(cell)} {TOO_LARGE}")
    return value


def check_row(row: Any, line: int, choices: tuple[str, ...], reserved: set[str],
              label_field: str = "prediction.label") -> TaskInput:
    """Check one row; raise :class:`RowError` naming the field that is wrong (the prediction's
    label as ``label_field``: a CSV file's column is ``prediction_label``)."""
    if not isinstance(row, dict):
        raise RowError("a row must be a JSON object")
    ext = row.get("id")
    if ext is None or ext == "" or isinstance(ext, (bool, dict, list, float)):
        raise RowError("missing `id`" if ext in (None, "") else "`id` must be text or an integer")
    ext = str(ext)
    if len(ext) > 512:
        raise RowError("`id` is longer than 512 characters")
    _no_controls("id", ext)
    ignored: tuple[str, ...] = ()
    if "data" in row:
        data = row["data"]
        if not isinstance(data, dict):
            raise RowError("`data` must be an object")
        if not reserved.issuperset(row):  # keys that go nowhere: told by ingest (IgnoredKeys)
            ignored = tuple(k for k in row if k not in reserved)
    else:
        data = {k: v for k, v in row.items() if k not in reserved}
    category = row.get("category")
    if category is not None and not isinstance(category, str):
        raise RowError("`category` must be text")
    if category:
        _no_controls("category", category)
    tags = row.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise RowError("`tags` must be a list of text")
    for tag in tags:
        _no_controls("tags", tag)
    task = TaskInput(line, ext, data, category, tags)
    if ignored:
        task.ignored = ignored
    prediction = row.get("prediction")
    if prediction is not None:
        if not isinstance(prediction, dict):
            raise RowError("`prediction` must be an object")
        _check_prediction(task, prediction, choices, label_field)
        if label_field != TaskInput.label_field:
            task.label_field = label_field
    return task


def _no_controls(field_name: str, text: str) -> None:
    """Names people read in listings (ids, categories, tags) are text without control characters."""
    found = control_character(text)
    if found:
        raise RowError(f"`{field_name}` contains a control character (U+{ord(found):04X})")
    problem = text_problem(text)
    if problem is not None:
        raise RowError(f"`{field_name}`: {problem}")


def _check_prediction(task: TaskInput, prediction: dict[str, Any], choices: tuple[str, ...],
                      label_field: str = "prediction.label") -> None:
    label = prediction.get("label")
    # A label of text is checked here; any label is checked against the workflow's label type
    # (lists of choices, spans, boxes, numbers) when the task is routed.
    if isinstance(label, str) and choices and label not in choices:
        raise RowError(f"`{label_field}` {not_one_of(label, choices)}")
    confidence = prediction.get("confidence")
    if confidence is not None:
        # NaN is the one value unequal to itself (math.isnan overflows on a 400-digit integer)
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or confidence != confidence:
            raise RowError("`prediction.confidence` must be a number")
        if not 0 <= confidence <= 1:
            raise RowError(f"`prediction.confidence` {confidence} is outside 0..1")
    model = prediction.get("model")
    if model is not None and not isinstance(model, str):
        raise RowError("`prediction.model` must be text")
    scores = prediction.get("scores")
    if scores is not None and (not isinstance(scores, dict) or not all(map(finite_number, scores.values()))):
        raise RowError("`prediction.scores` must map labels to finite numbers")
    task.label = label
    task.confidence = None if confidence is None else float(confidence)
    task.model = model
    task.scores = scores
