"""Reading task rows from JSON Lines, JSON array and CSV files (or standard input), one at
a time, and checking each.

A row is ``{"id": ..., "data": {...}, "category": ..., "tags": [...],
"prediction": {"label": ..., "confidence": ..., "model": ..., "scores": {...}}}``.
CSV files carry ``id``, optional ``category``, ``tags`` (separated by ``;``),
``prediction_label`` (or ``label``), ``prediction_confidence`` (or
``confidence``) and ``prediction_model``; every other column goes into
``data``. Bad rows become :class:`RowProblem` values with their line number
and reason; reading never stops at one (only a JSON array that stops being
JSON ends there). Text is UTF-8 with an optional byte-order mark; see
``docs/design.md``, "Input text".
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from rules.source import BOM, NotUtf8, decode_text
from rules.workflow import finite_number

from .errors import LabelyardError
from .store import control_character, text_problem


@dataclass
class TaskInput:
    """A checked row, ready to be routed."""

    line: int
    external_id: str
    data: dict[str, Any]
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    label: Any = None
    confidence: float | None = None
    model: str | None = None
    scores: dict[str, float] | None = None


@dataclass
class RowProblem:
    """A row that cannot be ingested: where it is and why."""

    line: int
    reason: str
    raw: str | None


class RowError(ValueError):
    """Raised while checking one row; the message names the field."""


CSV_RESERVED = {"id", "category", "tags", "prediction_label", "label", "prediction_confidence", "confidence",
                "prediction_model", "model"}
JSON_RESERVED = {"id", "data", "category", "tags", "prediction"}
CSV_DELIMITERS = (",", ";", "\t")
CSV_CELL_LIMIT = 64 << 20  # characters in one CSV cell
BOM_TEXT = "\ufeff"


FORMATS = ("jsonl", "json", "csv")


def read_file(path: str, choices: tuple[str, ...] = (), fmt: str | None = None) -> Iterator[TaskInput | RowProblem]:
    """Yield checked rows (or problems) from a ``.jsonl``, ``.json`` or ``.csv`` file, streaming;
    ``fmt`` overrides the file's extension."""
    if not os.path.isfile(path):
        raise LabelyardError(f"{path}: no such file")
    fmt = fmt or format_of(path)
    try:
        with open(path, "rb") as handle:
            yield from read_stream(handle, fmt, choices)
    except OSError as exc:  # unreadable (permissions, a disk error): said as the system says it
        raise LabelyardError(f"{path}: {exc.strerror or exc}") from None


def format_of(path: str) -> str:
    """``jsonl``, ``json`` or ``csv`` by a file's extension."""
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    for fmt in ("json", "csv"):
        if lower.endswith("." + fmt):
            return fmt
    raise LabelyardError(f"{path}: unknown file type; expected .jsonl, .json or .csv (or give --format)")


def read_stream(handle: BinaryIO, fmt: str, choices: tuple[str, ...] = ()) -> Iterator[TaskInput | RowProblem]:
    """Rows from an open binary stream (a file, standard input) in ``fmt``: ``jsonl``; ``json``,
    one array of rows, or JSON Lines when it does not open with ``[``; or ``csv``."""
    if fmt == "json" and _starts_array(handle):
        yield from _read_json_array(handle, choices)
    elif fmt in ("jsonl", "json"):
        yield from _read_jsonl(handle, choices)
    elif fmt == "csv":
        yield from _read_csv(handle, choices)
    else:
        raise LabelyardError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _read_jsonl(handle: BinaryIO, choices: tuple[str, ...]) -> Iterator[TaskInput | RowProblem]:
    for number, raw in enumerate(handle, start=1):
        if raw.strip():
            yield parse_jsonl_line(raw, number, choices)


def _starts_array(handle: BinaryIO) -> bool:
    """Whether a stream opens with ``[`` (after a byte-order mark and whitespace), looked at
    without consuming it."""
    head = handle.peek(4096)[:4096] if hasattr(handle, "peek") else b""
    return head.removeprefix(BOM).lstrip(b" \t\r\n").startswith(b"[")


def _text(handle: BinaryIO) -> io.TextIOWrapper:
    # Bytes that are not UTF-8 become lone surrogates (``surrogateescape``), found per row,
    # so that one bad row is quarantined and not the file.
    return io.TextIOWrapper(handle, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _read_json_array(handle: BinaryIO, choices: tuple[str, ...]) -> Iterator[TaskInput | RowProblem]:
    """A JSON array of rows, one element at a time; each row's line is where its element
    starts. Where the array stops being JSON, the rest is one reject."""
    from .json_array import ArraySyntaxError, iter_json_array

    text_handle = _text(handle)
    try:
        for number, text, row in iter_json_array(text_handle):
            byte = _escaped_byte(text)
            if byte is not None:
                yield RowProblem(number, f"not valid UTF-8 (byte 0x{byte:02x})", _printable(text))
                continue
            try:
                yield check_row(row, number, choices, JSON_RESERVED)
            except RowError as exc:
                yield RowProblem(number, str(exc), text)
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
    """The JSON value on one input line; a :class:`RowError` saying where it is not UTF-8
    or not JSON."""
    try:
        text = raw.decode("utf-8")  # the common case, without decode_line's bookkeeping
    except UnicodeDecodeError:
        text = decode_line(raw)  # raises, saying where
    if text.startswith(BOM_TEXT):  # a byte-order mark (first line, or files joined with cat)
        text = text[1:]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RowError(f"invalid JSON at column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise RowError("JSON nested too deeply") from None


def raw_line(raw: bytes) -> str:
    """An input line as the rejects table keeps it: bytes that are not UTF-8 as U+FFFD."""
    return raw.decode("utf-8", errors="replace").lstrip(BOM_TEXT).rstrip("\r\n")


def parse_jsonl_line(raw: bytes, number: int, choices: tuple[str, ...]) -> TaskInput | RowProblem:
    """One JSON Lines row (``raw`` bytes, line ``number``) checked, or the problem with it."""
    try:
        return check_row(load_json_line(raw), number, choices, JSON_RESERVED)
    except RowError as exc:
        return RowProblem(number, str(exc), raw_line(raw))


def _read_csv(stream: BinaryIO, choices: tuple[str, ...]) -> Iterator[TaskInput | RowProblem]:
    handle = _text(stream)
    if csv.field_size_limit() < CSV_CELL_LIMIT:
        csv.field_size_limit(CSV_CELL_LIMIT)  # the default 128 KiB is less than a long document
    try:
        first = handle.readline()
        lines = _RecordLines(itertools.chain([first], handle))
        # strict: a quote left open or text after a closing quote is a bad row, not a guess
        reader = csv.DictReader(lines, delimiter=csv_delimiter(first), strict=True)
        if reader.fieldnames is None:
            return
        lines.take_start()  # the header
        header = first.rstrip("\r\n")
        names = reader.fieldnames = [name.strip() for name in reader.fieldnames]  # "id, text" as typed by hand
        problem = _undecodable(zip(names, names))
        if problem:
            problem = f"CSV header: {problem}"
        elif "id" not in names:
            problem = "CSV header has no `id` column"
        else:
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:  # a dict keeps one of them: the other column would be lost without a word
                problem = "CSV header repeats " + ", ".join(f"`{name}`" for name in repeated)
        if problem:
            yield RowProblem(1, problem, _printable(header))
            return
        while True:
            try:
                record = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # the reader goes on at the next line
                start = lines.take_start()
                through = f" (the record runs to line {lines.number})" if lines.number > start else ""
                yield RowProblem(start, f"bad CSV: {exc}{through}", None)
                continue
            number = lines.take_start()
            raw = ",".join("" if v is None else str(v) for v in record.values())
            problem = _undecodable(record.items())
            if problem:
                yield RowProblem(number, problem, _printable(raw))
                continue
            try:
                yield check_row(_csv_row(record), number, choices, JSON_RESERVED)
            except RowError as exc:
                yield RowProblem(number, str(exc), raw)
    finally:
        handle.detach()  # the caller closes the stream


class _RecordLines:
    """The lines a CSV reader pulls, numbered, remembering where the current record began
    (its first line that is not empty: the reader skips empty lines between records)."""

    def __init__(self, lines: Iterator[str]):
        self._lines = lines
        self.number = 0
        self._start = 0

    def __iter__(self) -> "_RecordLines":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.number += 1
        if not self._start and line.strip("\r\n"):
            self._start = self.number
        return line

    def take_start(self) -> int:
        """The first line of the record just read; the next record starts afresh."""
        start, self._start = self._start or self.number, 0
        return start


def csv_delimiter(header: str) -> str:
    """The cell separator of a CSV file: whichever of ``,``, ``;`` (Excel's "CSV" where the
    decimal mark is a comma) and tab comes first in its header line; ``,`` if none does."""
    found = [(header.find(d), d) for d in CSV_DELIMITERS if d in header]
    return min(found)[1] if found else ","


_DECIMAL_COMMA = re.compile(r"^\s*(\d*),(\d+)\s*$")  # 0,85 as a spreadsheet with a decimal comma writes it
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


def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
    if None in record:
        raise RowError("row has more cells than the header")
    get = lambda *names: next((record[n] for n in names if record.get(n) not in (None, "")), None)  # noqa: E731
    prediction: dict[str, Any] = {}
    label = get("prediction_label", "label")
    if label is not None:
        prediction["label"] = label
    confidence = get("prediction_confidence", "confidence")
    if confidence is not None:
        try:
            prediction["confidence"] = float(_DECIMAL_COMMA.sub(r"\1.\2", confidence))
        except ValueError:
            raise RowError(f"confidence {confidence!r} is not a number") from None
    model = get("prediction_model", "model")
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


def check_row(row: Any, line: int, choices: tuple[str, ...], reserved: set[str]) -> TaskInput:
    """Check one row; raise :class:`RowError` naming the field that is wrong."""
    if not isinstance(row, dict):
        raise RowError("a row must be a JSON object")
    ext = row.get("id")
    if ext is None or ext == "" or isinstance(ext, (bool, dict, list, float)):
        raise RowError("missing `id`" if ext in (None, "") else "`id` must be text or an integer")
    ext = str(ext)
    if len(ext) > 512:
        raise RowError("`id` is longer than 512 characters")
    _no_controls("id", ext)
    if "data" in row:
        data = row["data"]
        if not isinstance(data, dict):
            raise RowError("`data` must be an object")
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
    prediction = row.get("prediction")
    if prediction is not None:
        if not isinstance(prediction, dict):
            raise RowError("`prediction` must be an object")
        _check_prediction(task, prediction, choices)
    return task


def _no_controls(field_name: str, text: str) -> None:
    """Names people read in listings (ids, categories, tags) are text without control characters."""
    found = control_character(text)
    if found:
        raise RowError(f"`{field_name}` contains a control character (U+{ord(found):04X})")
    problem = text_problem(text)
    if problem is not None:
        raise RowError(f"`{field_name}`: {problem}")


def _check_prediction(task: TaskInput, prediction: dict[str, Any], choices: tuple[str, ...]) -> None:
    label = prediction.get("label")
    # A label of text is checked here; any label is checked against the workflow's label type
    # (lists of choices, spans, boxes, numbers) when the task is routed.
    if isinstance(label, str) and choices and label not in choices:
        raise RowError(f"`prediction.label` {json.dumps(label)} is not one of {', '.join(choices)}")
    confidence = prediction.get("confidence")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or math.isnan(confidence):
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
