"""What plugins see: the values Labelyard hands to sources, sinks, reviewers and notifiers.

This module and ``router.hookimpl`` are the public surface for plugin authors
(built-in plugins use nothing else). Everything here is plain data; no
database access leaks through it.

    from router import hookimpl
    from router.plugin_api import PluginRun, SourcePart, TaskInput, check_row
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from rules.label_text import not_among, not_one_of
from rules.source import NotUtf8, Utf8Reader

from . import ingest
from .export import new_temp_beside, spreadsheet_safe
from .ingest import (JSON_RESERVED, MAX_ROW_BYTES, LongLine, RowError, RowProblem, TaskInput, decode_document,
                     decode_line, lines_within, long_integer_problem, number_cell, parse_jsonl_line, read_file,
                     repeated_key_problem)
from .json_array import ArraySyntaxError, BadElement, NotAnArray, RepeatedKey, decode_strict, iter_json_list
from .json_array import Element as JsonElement
from .os_text import escaped, is_utf8
from .plugin_values import without_password

__all__ = [
    "PluginRun", "SourcePart", "CursorEntries", "FinalTask", "ReviewItem", "Verdict", "Notification", "PluginError",
    "TaskInput", "RowProblem", "RowError", "check_row", "read_file", "parse_jsonl_line", "lines_within",
    "LongLine", "MAX_ROW_BYTES", "decode_line",
    "decode_document", "long_integer_problem", "decode_strict", "RepeatedKey", "repeated_key_problem",
    "json_list_elements", "JsonElement", "BadElement", "NotAnArray", "JSON_RESERVED", "approve", "reject",
    "Setting", "is_utf8", "escaped", "new_temp_beside", "spreadsheet_safe", "not_one_of", "not_among",
    "worker_name_problem", "without_password", "number_cell",
]


class PluginError(Exception):
    """Raise it for a failure you can describe (bad settings, missing file): the message is shown as is.

    ``item`` is set when a setting that is a list is wrong in one of its values: that value's index
    (so ``validate`` can point at it).
    """

    item: int | None = None


RAW_LIMIT = 2000  # characters of a bad row kept in its reject


def check_row(row: Any, line: int, choices: Iterable[str] = (),
              reserved: Iterable[str] = JSON_RESERVED) -> TaskInput | RowProblem:
    """A row as ``labelyard ingest`` reads one, checked the same way: a :class:`TaskInput`, or a
    :class:`RowProblem` saying what is wrong (never an exception), for a source's ``rows``.

    ``row`` is a dict shaped like a JSON Lines row, ``{"id", "data", "category", "tags",
    "prediction": {"label", "confidence", "model", "scores"}}``; ``line`` is the row's number
    in its origin, as the reject shows it. ``choices`` are the workflow's (``run.choices``):
    a prediction label that is text must be one of them (with ``()`` the label is checked
    when the task is routed, against the workflow's labels, as every label is). Without a
    ``data`` object, the row's keys outside ``reserved`` are its data (``{"id": "a", "text":
    "x"}`` has the data ``{"text": "x"}``). A value JSON cannot carry (a ``Decimal``, a
    ``datetime``, a set, bytes) is the row's problem, naming its field (``data.price``). A
    problem keeps the row as JSON (its first 2,000 characters) and its ``id``, if it has one,
    for ``labelyard rejects``.
    """
    try:
        task = ingest.check_row(row, line, tuple(choices), set(reserved))
    except RowError as exc:
        return RowProblem(line, str(exc), _raw(row), _external_id(row))
    problem = ingest.not_json_problem(task)  # a Decimal, a datetime…: this row's reject, naming its field
    return task if problem is None else RowProblem(line, problem.reason, _raw(row), problem.external_id)


def _raw(row: Any) -> str:
    """A bad row as its reject keeps it: JSON, else its repr, cut to :data:`RAW_LIMIT` characters."""
    try:
        text = json.dumps(row, ensure_ascii=False, default=repr)
    except (ValueError, TypeError, RecursionError):  # a circular or too deeply nested value
        try:
            text = repr(row)
        except Exception:  # noqa: BLE001 - nested too deeply for repr too: its kind will do
            text = f"<{type(row).__name__}>"
    return escaped(text[:RAW_LIMIT])  # a lone surrogate written out: a reject is stored text


def _external_id(row: Any) -> str | None:
    """A bad row's ``id`` as text, when it has one that could be an id (text or a whole number)."""
    ident = row.get("id") if isinstance(row, dict) else None
    if not isinstance(ident, (str, int)) or isinstance(ident, bool) or ident == "":
        return None
    try:
        return escaped(str(ident)[:512])
    except ValueError:  # an integer past Python's digit limit for text
        return None


def json_list_elements(handle: BinaryIO) -> Iterator[JsonElement]:
    """The elements of the JSON list in a binary stream, one at a time: a file of any size costs
    the memory of one element and a 64 KiB chunk. Each is a :class:`JsonElement`: ``line`` and
    ``col`` where it starts (1-based), its ``text`` as in the file, and its ``value`` as
    ``json.loads`` reads it, or a :class:`BadElement` (its text says what and where) for one
    with an integer longer than Python converts or nested too deeply. Raises
    :class:`NotAnArray` (``.value``) for a document that is another JSON value, and
    :class:`RowError` naming line and column where the stream is not UTF-8 or not JSON (the
    elements before have been given). A leading byte-order mark is skipped."""
    try:
        yield from iter_json_list(Utf8Reader(handle))
    except NotUtf8 as exc:
        raise RowError(f"not valid UTF-8 at line {exc.line}, column {exc.col} (byte 0x{exc.byte:02x})") from None
    except ArraySyntaxError as exc:
        raise RowError(str(exc)) from None


MAX_WORKER_NAME = 512  # characters, as a task's id: an imported voter's name is printed in listings


def worker_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name the worker of an imported vote, ``None`` when it can: the rules of
    ``labelyard workers add`` (not empty, no space at either end, no control character — a line
    break or a tab would print a line of its own in ``show`` and ``workers list`` — and UTF-8
    text), and at most :data:`MAX_WORKER_NAME` characters."""
    if len(name) > MAX_WORKER_NAME:
        return f"it is longer than {MAX_WORKER_NAME} characters"
    from .engine import name_problem

    return name_problem(name)


@dataclass
class PluginRun:
    """One use of a plugin: its settings from the workflow entry and its stored progress.

    ``config`` is the workflow entry without ``plugin`` (``{"path": "inbox/*.jsonl"}``);
    ``state`` is what the plugin returned last time (a source's cursor, a sink's
    state), ``None`` the first time; ``base_dir`` is where relative paths start
    (the database's folder under ``labelyard run``, the current folder for
    ``labelyard ingest``). ``label_type`` and ``choices`` describe the
    workflow's labels; :meth:`label_problem` checks a label as the workflow does.
    ``one_shot`` is ``True`` under ``labelyard ingest NAME:ARG``: no later run reads on
    from this one's cursor, so a source reads all there is now (a last line without its
    line break too, which a run leaves for the next one as maybe still being written).
    """

    plugin: str
    key: str
    config: dict[str, Any] = field(default_factory=dict)
    state: Any = None
    base_dir: str = "."
    label_type: str = "choice"
    choices: tuple[str, ...] = ()
    known_ids: Callable[[list[str]], set[str]] | None = None
    label_checker: Callable[[Any], str | None] | None = None  # the workflow's own check, set by the runner
    label_spec: Any = None  # the workflow's `rules.workflow.LabelSpec`, set by the runner
    one_shot: bool = False

    def path(self, name: str) -> str:
        """``name`` resolved against :attr:`base_dir` (``~`` expanded)."""
        return os.path.normpath(os.path.join(self.base_dir, os.path.expanduser(name)))

    def require(self, name: str, kind: type | None = None) -> Any:
        """A setting that must be present (and of ``kind`` if given, see :meth:`setting`); else :class:`PluginError`."""
        if self.config.get(name) in (None, ""):
            raise PluginError(f"`{self.plugin}` needs `{name}:` in its workflow entry")
        return self.config[name] if kind is None else self.setting(name, kind=kind)

    def setting(self, name: str, default: Any = None, *, kind: "type | Setting" = str) -> Any:
        """A setting checked to be of ``kind``: ``str``, ``int``, ``float`` (any number), ``bool``,
        ``dict``, or ``list`` (a list of texts; one text is taken as a list of it), or a
        :class:`Setting` (a kind with bounds).

        Absent (or null) gives ``default``; a value of another kind raises
        :class:`PluginError` naming the setting, so the user sees which one to fix.
        """
        value = self.config.get(name)
        return default if value is None else checked_setting(name, value, kind)

    def label_problem(self, label: Any) -> str | None:
        """Why the workflow refuses ``label`` (its type, choices and bounds), ``None`` when it takes it."""
        if self.label_checker is not None:
            return self.label_checker(label)
        return self._spec().problem(label)

    def same_label(self, label: Any, reference: Any) -> bool:
        """Whether ``label`` gives ``reference`` as the workflow judges labels (``router.consensus.same_label``,
        the comparison of consensus): ``multi_choice`` as a set, numbers by value (``0.0`` is ``0``),
        boxes and spans matched one to one whatever their order. (An annotator's agreement with a final
        label and the scoring of gold answers are this too, but a number within consensus's tolerance
        agrees.)"""
        from .consensus import same_label

        return same_label(label, reference, self._spec())

    def _spec(self) -> Any:
        """The workflow's label spec (built from ``label_type`` and ``choices`` outside a run)."""
        if self.label_spec is not None:
            return self.label_spec
        from rules.workflow import LabelSpec

        return LabelSpec(type=self.label_type, choices=self.choices)

    def now(self) -> float:
        """The command's clock, in epoch seconds: the time, or ``LABELYARD_NOW`` when it is set (tests,
        simulations), as Labelyard's own timers read it."""
        from .clock import now

        return now()

    def known(self, external_ids: Iterable[str]) -> set[str]:
        """Which of these external ids are already tasks (so a source can skip reading them again)."""
        ids = list(external_ids)
        return self.known_ids(ids) if self.known_ids is not None and ids else set()


KIND_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false",
              dict: "a mapping", list: "a text or a list of texts"}


@dataclass(frozen=True)
class Setting:
    """A declared setting with bounds, allowed values or a check: ``Setting(int, min=1, max=1_000_000)``,
    ``Setting(str, choices=("abstain", "reject"))``, ``Setting(str, check=http_url_problem)``.

    ``kind`` is one of the kinds of :meth:`PluginRun.setting`; ``min`` and
    ``max`` (both included, either may be left out) bound a number (``int``
    or ``float``); ``choices`` are the values it may take (for a ``list``,
    the values each of its texts may take); ``check(value)`` returns
    ``None`` for a good value (already of ``kind``), else what is wrong with
    it, which follows the setting's name (``"must be an http:// or https://
    address, not 'ftp://x'"``). Declare it at ``register(name, func,
    settings={"batch": Setting(int, min=1)})`` and ``validate`` reports a
    value that breaks any of them at its ``file:line:col``, as it does a
    value of the wrong kind.
    """

    kind: type
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.choices, list):  # a list given: kept as a tuple, so the setting stays hashable
            object.__setattr__(self, "choices", tuple(self.choices))

    def problem(self) -> str | None:
        """What is wrong with this declaration, or ``None``."""
        if self.kind not in KIND_NAMES:
            return f"kind {self.kind!r} is not one of str, int, float, bool, dict, list"
        bounds = [b for b in (self.min, self.max) if b is not None]
        if bounds and self.kind not in (int, float):
            return "bounds (min, max) are for int and float settings only"
        if any(isinstance(b, bool) or not isinstance(b, (int, float)) or b != b for b in bounds):
            return f"bounds are numbers, not {bounds!r}"
        if len(bounds) == 2 and self.min > self.max:  # type: ignore[operator]
            return f"min {self.min} is above max {self.max}"
        if self.choices is not None:
            item_kind = str if self.kind is list else self.kind
            if self.kind in (bool, dict) or not isinstance(self.choices, tuple) or not self.choices:
                return "choices are a non-empty list of values, for str, int, float and list settings"
            if not all(_of_kind(choice, item_kind) for choice in self.choices):
                return f"choices must be of the setting's kind ({KIND_NAMES[item_kind]}), not {self.choices!r}"
        if self.check is not None and not callable(self.check):
            return f"check must be callable, not {self.check!r}"
        return None


def _of_kind(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


CHOICES_SHOWN = 12  # allowed values a message lists; a close one is suggested whatever its place


def checked_setting(name: str, value: Any, kind: "type | Setting") -> Any:
    """``value`` as a setting of ``kind`` (see :meth:`PluginRun.setting`), within its bounds, among
    its choices and passing its check when ``kind`` is a :class:`Setting`; else a
    :class:`PluginError` naming it."""
    if isinstance(kind, Setting):
        checked = checked_setting(name, value, kind.kind)
        if kind.min is not None and checked < kind.min:
            raise PluginError(f"setting `{name}:` must be at least {_number(kind.min)}, not {_shown(value)}")
        if kind.max is not None and checked > kind.max:
            raise PluginError(f"setting `{name}:` must be at most {_number(kind.max)}, not {_shown(value)}")
        if kind.choices is not None:
            _check_choices(name, checked, kind)
        if kind.check is not None:
            problem = _run_check(kind.check, checked)
            if problem:
                raise PluginError(f"setting `{name}:` {problem}")
        return checked
    if kind is list:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
    elif isinstance(value, bool):
        if kind is bool:
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and value == value:
            return float(value)
    elif isinstance(value, kind):
        return value
    raise PluginError(f"setting `{name}:` must be {KIND_NAMES[kind]}, not {_shown(value)}")


def _check_choices(name: str, checked: Any, kind: Setting) -> None:
    """A :class:`PluginError` for the first value of ``checked`` that is not among ``kind.choices``."""
    import difflib

    choices = kind.choices or ()
    for index, item in enumerate(checked if kind.kind is list else [checked]):
        if item in choices:
            continue
        listed = ", ".join(map(str, choices[:CHOICES_SHOWN])) + (", …" if len(choices) > CHOICES_SHOWN else "")
        close = difflib.get_close_matches(item, [c for c in choices if isinstance(c, str)], n=1) \
            if isinstance(item, str) else []
        hint = f" (did you mean `{close[0]}`?)" if close else ""
        if kind.kind is list:
            error = PluginError(f"setting `{name}:` holds {_shown(item)}, which is not one of {listed}{hint}")
            error.item = index  # `queues: senoir` has no item to point at: validate points at the value
            raise error
        raise PluginError(f"setting `{name}:` must be one of {listed}, not {_shown(item)}{hint}")


def _run_check(check: Callable[[Any], str | None], value: Any) -> str | None:
    """What a declared ``check`` says of ``value``; one that raises says so (it is plugin code)."""
    from .plugin_calls import plugin_code
    from .plugins import describe_error

    try:
        with plugin_code():
            problem = check(value)
    except Exception as exc:  # noqa: BLE001
        return f"could not be checked: {describe_error(exc)}"
    return None if problem is None else str(problem)


def _number(bound: float) -> str:
    """A bound as people write it: ``1000000``, ``0.5``."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def _shown(value: Any) -> str:
    """``value`` for a message: its repr, cut to 60 characters (a 5,000-digit number too)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for text
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class SourcePart:
    """A piece of a source's input, ingested as one unit.

    ``rows`` are ingested (bad ones quarantined with ``origin`` and their line),
    then ``cursor`` is stored; the next run gets it back as ``run.state``. A
    source that raises while its part is being read leaves nothing of that
    part behind. ``origin`` is where the rows come from, e.g. a file's path (its
    bytes that are not UTF-8 written out as it is kept: ``caf\\xe9.csv``).

    A row's ``line`` is its number in ``origin`` as the source counts (rows of
    each page numbered from 1, or 0 when there are no lines, will do): each
    bad row is a reject of its own, added to the origin's earlier ones, never
    replacing another row's; a part read again finds its own. With
    ``from_start`` the part begins a new read of ``origin`` from its start (a
    file changed and read again): the origin's earlier rejects are dropped as
    it goes in, so a row fixed since is no longer listed.

    ``votes`` are prior votes, by external id: ``{"t1": [{"worker": "ls:ann",
    "label": "bug"}]}`` (labels another tool collected). Each is recorded as
    that worker's annotate submission on the open task, counts toward the
    stage's overlap and may complete it (``on_quorum`` then runs); a worker's
    vote on a task is recorded once, however often the part is read.

    ``cursor`` may be a :class:`CursorEntries`: only what the part changes in a cursor that is an
    object of entries, one per file, so that a source of many files spends no time on the others.
    """

    origin: str
    rows: Iterable[TaskInput | RowProblem]
    cursor: Any = None
    votes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    from_start: bool = False


@dataclass
class CursorEntries:
    """A part's ``cursor`` given as what it changes in a cursor that is an object of entries (one
    per file a source reads, say): ``entries`` added or replaced, keys in ``drop`` removed (a
    file gone). Labelyard keeps the whole object and gives it back as ``run.state``.

    A whole cursor yielded with every part is checked and stored whole each time, so a source
    with an entry for each of thousands of files would spend time in proportion to the files
    ever seen on every part. Entries are checked alone; the object is stored once the parts since
    it was last stored hold :data:`CURSOR_STORE_ROWS` rows or have changed as many entries as a
    :data:`CURSOR_STORE_SHARE` th of the object holds, and at the end of the read (a source that
    raises, too, after the parts that went in). A run killed in between reads those last parts
    again next time: ingest skips known ids and finds their rejects, as for any part whose cursor
    was not yet stored.
    """

    entries: dict[str, Any] = field(default_factory=dict)
    drop: Iterable[str] = ()


CURSOR_STORE_ROWS = 5000
"""Rows ingested after which a :class:`CursorEntries` cursor is stored (a part of a large file)."""
CURSOR_STORE_SHARE = 32
"""A :class:`CursorEntries` cursor is stored once the entries changed since reach 1/32 of its entries."""


@dataclass
class FinalTask:
    """A task with its final label, as sinks receive it."""

    task_id: int
    id: str
    label: Any
    final_by: str | None
    rule: str | None
    final_at: str | None
    category: str | None
    tags: list[str]
    data: dict[str, Any]
    prediction: dict[str, Any]
    votes: list[dict[str, Any]]
    agreement: float | None

    def as_dict(self) -> dict[str, Any]:
        """The row ``labelyard export`` writes, plus votes and agreement."""
        return {"id": self.id, "label": self.label, "final_by": self.final_by, "rule": self.rule,
                "final_at": self.final_at, "category": self.category, "data": self.data,
                "votes": self.votes, "agreement": self.agreement}


@dataclass
class ReviewItem:
    """A task waiting in a review stage, as automatic reviewers see it.

    ``consensus`` is the label under review (the votes' top label, ``None`` on a
    tie); ``gold`` the task's gold label, if it has one (gold questions are scored,
    not reviewed, so it is ``None`` for the tasks reviewers see; a known answer in
    the task's data is in ``data``). Compare labels with :meth:`PluginRun.same_label`.
    """

    task_id: int
    id: str
    queue: str | None
    data: dict[str, Any]
    category: str | None
    tags: list[str]
    prediction: dict[str, Any]
    votes: list[dict[str, Any]]
    consensus: Any
    agreement: float | None
    gold: Any = None


@dataclass
class Verdict:
    """An automatic reviewer's answer: ``approve`` (optionally with a corrected label) or ``reject`` with a reason.

    Return ``None`` to abstain (a human reviewer decides).
    """

    verdict: str
    reason: str | None = None
    label: Any = None

    def __post_init__(self) -> None:
        if self.verdict not in ("approve", "reject"):
            raise ValueError(f"a verdict is `approve` or `reject`, not {self.verdict!r}")


def approve(reason: str | None = None, label: Any = None) -> Verdict:
    """Approve the label under review (or ``label``, a correction)."""
    return Verdict("approve", reason, label)


def reject(reason: str) -> Verdict:
    """Reject the label under review; ``on_review`` decides what happens (by default: back to the annotators)."""
    return Verdict("reject", reason)


@dataclass
class Notification:
    """One event for one notify entry.

    ``body`` is the exact bytes to send (JSON of ``payload``); it stays the same
    across retries, so a signature over it does too. ``delivery`` is unique per
    notification and entry: receivers can use it to drop a duplicate.
    """

    delivery: int
    event: str
    payload: dict[str, Any]
    body: bytes
    attempt: int = 1
