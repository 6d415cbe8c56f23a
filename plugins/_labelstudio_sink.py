"""The Label Studio sink: a JSON list of tasks that Label Studio imports (``plugins.labelstudio``).

Each task has ``data``, the final label as an annotation (``from_name``/
``to_name`` settings, default ``label`` and ``text``; ``completed_by.email`` is who
made it final, ``created_at`` when), and
``meta.labelyard`` with the task id, who made the label final and by which
rule, the votes and the agreement. A task appears once: one delivered again
(finalised again) replaces its earlier entry.

A label is written by its own shape (:func:`ls_result`), so one made final before the
workflow's label type changed keeps its form; a label of no Label Studio form goes without
an annotation, and :func:`finish` fails once naming those tasks after writing them all.

One JSON list cannot be appended to, and rewriting it for every batch made a
run quadratic (20,000 tasks in batches of 500 rewrote and synced the whole
file 40 times). So each batch is appended to a **journal** beside ``PATH``
(``.ly-<hash of the name>.labelyard-journal``, one JSON task a line, synced),
and :func:`finish`, at the end of the run's sink step, rewrites ``PATH`` once
with every task of the journal (into a temp file beside it, then renamed)
and removes the journal. A ``PATH`` that is a symlink stays one: the file it
points to is rewritten (the temp file beside that file); an existing file
keeps its mode.

The rewrite streams: the earlier ``PATH`` is read one task at a time and each is
copied through as its text (or the run's task of its id written in its place),
then the run's other tasks are appended, each read back from the journal when
written. Memory holds the run's task ids and one task, not ``PATH`` (reading it
whole took five times its size: 413 MB for 100,000 tasks when a run added 100).

What survives a kill: the sink's state holds how many bytes of which journal
(its device and inode) belong to batches whose delivery is recorded. A write
first cuts the journal back to that (what a killed write left after it); a
journal the state does not describe (its record was lost, or it was already
written out and removed) starts empty, since its tasks are offered again or
are in ``PATH`` already. A run killed before :func:`finish` leaves the
recorded tasks in the journal for the next run's :func:`finish`; one killed
after the rename but before its record writes the same tasks out again, by id.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import stat
from collections.abc import Iterator
from typing import IO, Any

from router.plugin_api import (BadElement, FinalTask, NotAnArray, PluginError, PluginRun, RowError, json_list_elements,
                               new_temp_beside)

RESULT_TYPES = {
    "choice": "choices", "multi_choice": "choices", "spans": "labels", "boxes": "rectanglelabels",
    "number": "number", "text": "textarea",
}


def write(run: PluginRun, tasks: list[FinalTask]) -> dict[str, Any]:
    """Append a batch to the journal (synced); the state records the journal's new size."""
    path = run.path(run.require("path", str))
    state = {"tasks": 0, **(run.state or {})}
    if not tasks:  # the call before the first batch: nothing to keep yet
        return state
    items = [ls_task(task, run) for task in tasks]
    lines = b"".join(json.dumps(item, ensure_ascii=False).encode("utf-8") + b"\n" for item in items)
    journal = journal_path(path)
    folder = os.path.dirname(journal)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(os.open(journal, os.O_RDWR | os.O_CREAT, 0o666), "r+b") as handle:
        st = os.fstat(handle.fileno())
        kept = min(_recorded(state, st), st.st_size)
        handle.truncate(kept)  # a killed write's tail, or a journal no record describes
        handle.seek(kept)
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())
        # the labels of the journal's tasks written without an annotation, said when it is written out
        unwritten = (state.get("unwritten") or [])[:UNWRITTEN_KEPT] if kept else []
        unwritten += [[item["meta"]["labelyard"]["id"], item["meta"]["labelyard"]["not_written"]]
                      for item in items if "not_written" in item["meta"]["labelyard"]]
        return {"tasks": state["tasks"], "pending": handle.tell(), "dev": st.st_dev, "ino": st.st_ino,
                **({"unwritten": unwritten[:UNWRITTEN_KEPT]} if unwritten else {})}


def finish(run: PluginRun) -> dict[str, Any]:
    """Write ``PATH`` once with the journal's recorded tasks (and make it, ``[]``, if missing);
    remove the journal. The state then holds how many tasks ``PATH`` has and no journal."""
    path = run.path(run.require("path", str))
    state = dict(run.state or {})
    journal = journal_path(path)
    try:
        st: os.stat_result | None = os.stat(journal)
    except FileNotFoundError:
        st = None
    recorded = _recorded(state, st)
    count = state.get("tasks", 0)
    with _Journal(journal, recorded) as tasks:
        if tasks.lines or not os.path.exists(path):
            count = _rewrite(path, tasks)
    if st is not None:  # written out, or never recorded (its tasks are offered again)
        with contextlib.suppress(FileNotFoundError):
            os.remove(journal)
    unwritten = state.get("unwritten") if tasks.lines else None
    if unwritten:  # said once: the next run's journal is a new one, and its first batch starts the list anew
        raise PluginError(_unwritten_message(path, unwritten))
    return {"tasks": count, "pending": 0}


UNWRITTEN_KEPT = 50  # tasks written without their label that the state keeps to name


def _unwritten_message(path: str, unwritten: list[list[str]], shown: int = 5) -> str:
    """The tasks of ``path`` written without an annotation: the first with why, the others by id."""
    (first, why), rest = unwritten[0], unwritten[1:]
    text = f"{path}: task {first} written without its label: {why} (`meta.labelyard.label` holds it)"
    if rest:
        names = ", ".join(str(task) for task, _ in rest[:shown]) + (", …" if len(rest) > shown else "")
        text += f"; also {len(rest)} more task(s): {names}"
    return text + "; the other tasks are written"


def journal_path(path: str) -> str:
    """The journal beside ``PATH``: a short name of its own (a long ``PATH`` name stays within NAME_MAX)."""
    name = os.path.basename(path).encode("utf-8", "surrogateescape")
    return os.path.join(os.path.dirname(path), f".ly-{hashlib.sha1(name).hexdigest()}.labelyard-journal")


def _recorded(state: dict[str, Any], st: os.stat_result | None) -> int:
    """How many bytes of the journal ``st`` the state records as delivered (0 for another journal)."""
    pending = state.get("pending")
    if not isinstance(pending, int) or pending <= 0:
        return 0
    if st is None:  # written out and removed by a run killed before its record
        return 0
    return pending if (state.get("dev"), state.get("ino")) == (st.st_dev, st.st_ino) else 0


class _Journal:
    """The tasks of a journal's first ``size`` bytes (the recorded ones), read again one at a time
    when written: ``lines`` holds, by task id, where its line is (the last one of that id, in the
    place of the first)."""

    def __init__(self, journal: str, size: int):
        self.path = journal
        self.lines: dict[Any, tuple[int, int]] = {}
        self._handle: IO[bytes] = open(journal, "rb") if size else io.BytesIO()
        try:
            offset = 0
            while offset < size and (line := self._handle.readline(size - offset)):
                if line.strip():
                    self.lines[_task_key(self._load(line))] = (offset, len(line))
                offset += len(line)
        except BaseException:
            self._handle.close()
            raise

    def task(self, key: Any) -> dict[str, Any]:
        offset, length = self.lines[key]
        self._handle.seek(offset)
        return self._load(self._handle.read(length))

    def _load(self, line: bytes) -> dict[str, Any]:
        try:
            task = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise PluginError(f"{self.path}: a damaged journal of the labelstudio sink ({exc}); the tasks it held "
                              "are delivered but not in the output: `labelyard export` has them") from None
        if not isinstance(task, dict):
            raise PluginError(f"{self.path}: a damaged journal of the labelstudio sink (a line holds "
                              f"{_json_kind(task)}); the tasks it held are delivered but not in the output: "
                              "`labelyard export` has them")
        return task

    def __enter__(self) -> _Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


def _rewrite(path: str, tasks: _Journal) -> int:
    """``PATH`` rewritten with the journal's ``tasks`` added (an earlier task of the same id
    replaced); how many it holds.

    The earlier output is read one task at a time and copied through as its text, and each new
    task is read from the journal when it is written: memory holds the new tasks' ids and one
    task, whatever the size of ``PATH`` and of the run."""
    # A symlink keeps pointing where it did: the file it names is the one replaced (as `export -o`
    # does), and an existing file keeps its mode (`chmod 600` was chosen on purpose).
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    folder = os.path.dirname(target)
    if folder:
        os.makedirs(folder, exist_ok=True)
    suffix = _temp_suffix(target)
    _remove_stale_temporaries(target, suffix)
    # A short name of its own beside the file (one named after PATH went past the 255-byte limit
    # for a long name); a run killed while writing leaves it to the next write, which removes it.
    # Private from the start when the file is: the tasks are written only once the mode is set.
    fd, tmp = new_temp_beside(target, 0o666 if mode is None else mode & 0o777, suffix)
    try:
        if mode is not None:
            os.fchmod(fd, mode)  # exactly the old file's mode, whatever the umask
        with open(fd, "w", encoding="utf-8") as handle, contextlib.closing(_earlier_output(path)) as earlier:
            count = _write_list(handle, earlier, tasks)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return count


def _write_list(out: IO[str], earlier: Iterator[tuple[Any, str]], tasks: _Journal) -> int:
    """Write the JSON list, as ``json.dump(..., indent=1)`` writes it: each earlier task (its text as
    read) or, in its place, the new task of its id; then the other new tasks. How many it holds."""
    left = dict.fromkeys(tasks.lines)
    count = 0
    for key, text in earlier:
        if key in tasks.lines:
            if key not in left:
                continue  # a second entry of a task already replaced: a task appears once
            del left[key]
            text = _dumped(tasks.task(key))
        out.write(",\n " if count else "[\n ")
        out.write(text)
        count += 1
    for key in left:
        out.write(",\n " if count else "[\n ")
        out.write(_dumped(tasks.task(key)))
        count += 1
    out.write("\n]" if count else "[]")
    return count


def _dumped(item: dict[str, Any]) -> str:
    """A task as an element of the list that ``json.dump(..., indent=1)`` writes (one level in:
    JSON text has no line break but those of its layout)."""
    return json.dumps(item, ensure_ascii=False, indent=1).replace("\n", "\n ")


def _earlier_output(path: str) -> Iterator[tuple[Any, str]]:
    """The tasks the sink wrote to ``path`` before, one at a time, as ``(id, text)`` (none when it
    does not exist yet); a file that is not a JSON list of objects is not this sink's output, and is
    left alone with a clear error."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise PluginError(f"{path}: cannot read the earlier output: {exc}") from None
    with handle:
        try:
            for element in json_list_elements(handle):
                task = element.value
                if isinstance(task, BadElement):
                    raise PluginError(f"{path}: cannot read the earlier output: {task}; the sink rewrites this "
                                      "file: point `path:` at a file of its own, or move this one away")
                if not isinstance(task, dict):
                    raise _not_tasks(path, f"a list holding {_json_kind(task)}")
                yield _task_key(task), element.text
        except NotAnArray as exc:
            raise _not_tasks(path, _json_kind(exc.value)) from None
        except (OSError, RowError) as exc:
            raise PluginError(f"{path}: cannot read the earlier output: {exc}") from None


def _not_tasks(path: str, found: str) -> PluginError:
    return PluginError(f"{path}: the earlier output is not a JSON list of tasks (found {found}); the sink "
                       "rewrites this file: point `path:` at a file of its own, or move this one away")


JSON_KINDS = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
              bool: "true or false", type(None): "null"}


def _json_kind(value: Any) -> str:
    return JSON_KINDS.get(type(value), type(value).__name__)


def _temp_suffix(path: str) -> str:
    """``.<8 hex digits>.labelyard-tmp``: this target's temp files are ``.ly-<random>`` and this,
    so that a write finds the ones killed writes to the same target left (one sink writes a
    target at a time: runs of a database take turns, two sinks of one file are refused)."""
    name = os.path.basename(path).encode("utf-8", "surrogateescape")
    return f".{hashlib.sha1(name).hexdigest()[:8]}.labelyard-tmp"


def _remove_stale_temporaries(path: str, suffix: str) -> None:
    """Remove the temp files that killed writes of ``path`` left: this version's
    (``.ly-<random><suffix>``), earlier versions' ``PATH.labelyard-tmp``, and ``PATH.tmp-PID``
    of processes that are gone."""
    folder = os.path.dirname(path) or "."
    stale = glob.glob(os.path.join(glob.escape(folder), ".ly-*" + glob.escape(suffix)))
    stale.append(path + ".labelyard-tmp")
    for old in glob.glob(glob.escape(path) + ".tmp-*"):
        pid = old.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            stale.append(old)
    for name in stale:
        with contextlib.suppress(OSError):
            os.remove(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True


def _task_key(item: dict) -> Any:
    """The Labelyard id of a task in the output (``None`` for an item the sink did not write)."""
    meta = item.get("meta")
    ours = meta.get("labelyard") if isinstance(meta, dict) else None
    return ours.get("id") if isinstance(ours, dict) else None


def ls_task(task: FinalTask, run: PluginRun) -> dict[str, Any]:
    """A Label Studio task to import: data, the final label as an annotation, Labelyard's facts in meta.

    A label written in no Label Studio form (see :func:`ls_result`) goes without an annotation:
    ``meta.labelyard`` holds it as ``label`` and why as ``not_written``."""
    from_name = run.setting("from_name", "label")
    to_name = run.setting("to_name", "text")
    meta = {"id": task.id, "final_by": task.final_by, "rule": task.rule, "final_at": task.final_at,
            "votes": task.votes, "agreement": task.agreement}
    try:
        kind, values, extra = ls_result(task.label, run.label_type, task.data)
    except Unwritable as exc:
        meta.update(label=task.label, not_written=str(exc))
        return {"data": task.data, "annotations": [], "meta": {"labelyard": meta}}
    result = [{"from_name": from_name, "to_name": to_name, "type": kind, **extra, "value": value} for value in values]
    return {
        "data": task.data,
        "annotations": [{"result": result, "ground_truth": False, "was_cancelled": False, **_made_by(task)}],
        "meta": {"labelyard": meta},
    }


def _made_by(task: FinalTask) -> dict[str, Any]:
    """Who made the label final, as Label Studio's annotations say it: ``completed_by.email`` (Label
    Studio's import gives it to the project member of that email, else to the importer; the
    labelstudio source reads it as the worker ``labelstudio:<final_by>``), and when."""
    made: dict[str, Any] = {}
    if task.final_by:
        made["completed_by"] = {"email": task.final_by}
    if task.final_at:
        made["created_at"] = task.final_at
    return made


class Unwritable(ValueError):
    """A label the sink cannot write as a Label Studio result: the message says why."""


def ls_result(label: Any, label_type: str,
              data: dict[str, Any] | None = None) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """A final label as a Label Studio result: its type (``choices``…), values and the result's
    other fields (a box's ``original_width``…).

    The label's own shape decides, not the workflow's current ``labels.type`` alone: a label made
    final under an earlier version with another type keeps its form (``"pos"`` of a choice
    version stays ``choices: ["pos"]`` under multi_choice or spans). The current type only tells
    apart the forms one shape may have (text is a ``choice`` or a ``text``). A label of no Label
    Studio form raises :class:`Unwritable`."""
    shape = label_shape(label)
    if shape is None:
        raise Unwritable(f"the label {_brief(label)} has no Label Studio form (not a choice, a list of choices, "
                         "spans, boxes, a number or a text)")
    if shape == "text":
        shape = label_type if label_type in ("choice", "text") else "choice"
    elif shape == "empty":
        return RESULT_TYPES.get(label_type, "choices"), [], {}
    if shape == "choice":
        return "choices", [{"choices": [label]}], {}
    if shape == "multi_choice":
        return "choices", [{"choices": list(label)}], {}
    if shape == "spans":
        return "labels", [{"start": s["start"], "end": s["end"],
                           **({"labels": [s["label"]]} if s.get("label") is not None else {})} for s in label], {}
    if shape == "boxes":
        values = ls_boxes(label, data or {})
        return "rectanglelabels", values, {"original_width": data["width"], "original_height": data["height"],
                                           "image_rotation": 0}
    if shape == "number":
        return "number", [{"number": label}], {}
    return "textarea", [{"text": [label]}], {}


def ls_boxes(boxes: list[dict[str, Any]], data: dict[str, Any]) -> list[dict[str, Any]]:
    """Pixel boxes as Label Studio's: ``x``, ``y``, ``width``, ``height`` in percent of the image
    (``data.width``/``data.height`` pixels, as the ``validity`` reviewer reads them), with
    ``original_width``/``original_height`` and no rotation. Unknown sizes raise :class:`Unwritable`."""
    width, height = data.get("width"), data.get("height")
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0 for n in (width, height)):
        raise Unwritable("boxes are pixels and Label Studio's are percent of the image: the task's data needs "
                         "`width` and `height` (pixels, above 0)")
    return [{"x": b["x"] * 100 / width, "y": b["y"] * 100 / height, "width": b["width"] * 100 / width,
             "height": b["height"] * 100 / height, "rotation": 0,
             **({"rectanglelabels": [b["label"]]} if b.get("label") is not None else {})} for b in boxes]


def label_shape(label: Any) -> str | None:
    """Which kind of label ``label`` is by its shape: ``text`` (a choice or a text), ``number``,
    ``multi_choice``, ``spans``, ``boxes``, ``empty`` (``[]``), or ``None`` for none of these."""
    if isinstance(label, str):
        return "text"
    if isinstance(label, (int, float)) and not isinstance(label, bool):
        return "number"
    if not isinstance(label, list):
        return None
    if not label:
        return "empty"
    if all(isinstance(item, str) for item in label):
        return "multi_choice"
    if all(isinstance(item, dict) and _numbers(item, SPAN_KEYS) for item in label):
        return "spans"
    if all(isinstance(item, dict) and _numbers(item, BOX_KEYS) for item in label):
        return "boxes"
    return None


SPAN_KEYS = ("start", "end")
BOX_KEYS = ("x", "y", "width", "height")


def _numbers(item: dict[str, Any], keys: tuple[str, ...]) -> bool:
    return all(isinstance(item.get(k), (int, float)) and not isinstance(item.get(k), bool) for k in keys)


def _brief(label: Any) -> str:
    text = json.dumps(label, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "…"
