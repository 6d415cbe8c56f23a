"""Label Studio JSON: a source reading its JSON export and a sink writing tasks it can import.

Source (``labelyard ingest labelstudio:export.json``, or ``sources:
[{plugin: labelstudio, path: exports/*.json}]``): each exported task becomes
a task with Label Studio's ``data``; its id is the Label Studio task id
(``id_prefix`` goes before it). The best-scored entry of ``predictions``
gives the prediction: ``result[].value`` read as the workflow's label type
(``choices``, ``labels`` spans, ``rectanglelabels`` boxes, ``number``,
``textarea``; an empty ``result`` is the empty label ``[]`` of boxes, spans and
multi_choice), ``score`` as the confidence and ``model_version`` as the model.
Label Studio's boxes are percent of the image, Labelyard's pixels: a box is converted with
the result's ``original_width``/``original_height`` (else ``data.width``/``data.height``);
a rotated box, or one whose image size is unknown, is refused like a malformed field.
With ``from_name`` (a control of the labeling config: ``sentiment``), only that control's
results are read, in predictions and annotations alike: an export of a config with several
controls (a sentiment and a topic) holds results of each, which together are no one label
(a task is then a reject that names the controls). A task without ``id`` takes
``meta.labelyard.id``: the labelstudio sink's own output reads back. Its votes are those
of ``meta.labelyard.votes``, each by its worker (the name as the sink wrote it; a name
``workers add`` refuses, or a label the workflow refuses, leaves that vote out, said like an
annotation left out); the sink's final annotation stands for them and is not read, but one a
Label Studio user added is. A task with no recorded vote (a model's accept) comes back with
its final annotation as a vote of ``labelstudio:<final_by>``.
Completed ``annotations`` (not cancelled), read the same way, become prior
votes of the workers ``labelstudio:<email or id>``: they count toward the
overlap that ``on_create`` asks for (and may complete it, so ``on_quorum``
runs), and reviewers see them like any vote. A worker's vote is their latest
annotation (``updated_at``, else ``created_at``, else the later in the list).
An annotation the workflow's labels refuse (a choice outside ``choices``, a
result with no label of the workflow's type) is left out and said so: the
task goes in, and one reject at the task's position names each annotation
left out, its worker and why (so the run's summary counts it as rejected).
A result field Label Studio writes as a list (``choices``, ``labels``,
``rectanglelabels``, ``text``) that is something else is refused, naming it:
in a prediction the task is a reject, in an annotation that vote is left out.
A task holding a lone UTF-16 surrogate escape (``"p\\ud800"``, not text) anywhere is a
reject naming the escape and its field; its raw text keeps the escape written out.
An export that is not JSON, nested deeper than Python reads, or with an
integer longer than Python converts (4300 digits) is one reject; the other
files go in. The cursor skips export files that did not change (each part
records its own file's entry alone, ``CursorEntries``; a file the glob no
longer matches has its entry dropped).

Sink (``sinks: [{plugin: labelstudio, path: out/labelstudio.json}]``): a
JSON list of tasks for Label Studio's import, written by
``plugins._labelstudio_sink`` (its docstring says how).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from router import hookimpl
from router.plugin_api import (CursorEntries, PluginError, PluginRun, RepeatedKey, RowError, RowProblem, SourcePart,
                               TaskInput, check_row, decode_document, decode_strict, long_integer_problem,
                               repeated_key_problem, worker_name_problem)

from ._files import PART_ROWS, forget_gone, matching_files, signature
from ._labelstudio_sink import finish, write


@hookimpl
def register_sources(register):
    register("labelstudio", read, settings={"path": str, "id_prefix": str, "from_name": str}, required=["path"])


@hookimpl
def register_sinks(register):
    register("labelstudio", write, settings={"path": str, "from_name": str, "to_name": str},
             required=["path"], finish=finish)


# -- source ------------------------------------------------------------------------------
def read(run: PluginRun) -> Iterator[SourcePart]:
    state: dict[str, Any] = dict(run.state or {})
    prefix = run.setting("id_prefix", "")
    files = matching_files(run, "json")
    yield from forget_gone(run, state, files)
    for path in files:
        sig = signature(path)
        if state.get(path) == sig:
            continue
        try:
            tasks = _load_export(path)
        except _BadFile as exc:  # the whole file is one bad row: kept in rejects until the file changes
            yield SourcePart(path, [RowProblem(exc.line, exc.reason, None)], CursorEntries({path: sig}),
                             from_start=True)
            continue
        votes: dict[str, list[dict[str, Any]]] = {}
        rows = [row for number, item in enumerate(tasks, 1) for row in task_rows(item, number, run, prefix, votes)]
        # a file is read whole: its first part replaces the rejects of the file's earlier reads
        for start in range(0, len(rows), PART_ROWS):
            last = start + PART_ROWS >= len(rows)
            chunk = rows[start:start + PART_ROWS]
            prior = {t.external_id: votes[t.external_id] for t in chunk
                     if isinstance(t, TaskInput) and t.external_id in votes}
            yield SourcePart(path, chunk, CursorEntries({path: sig} if last else {}), votes=prior,
                             from_start=start == 0)
        if not rows:
            yield SourcePart(path, [], CursorEntries({path: sig}), from_start=True)


class _BadFile(Exception):
    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line, self.reason = line, reason


def _load_export(path: str) -> list[Any]:
    """The export's tasks; a file that is not a Label Studio export raises :class:`_BadFile` (a reject)."""
    try:
        with open(path, "rb") as handle:
            text = decode_document(handle.read())
        tasks = decode_strict(text)  # json.loads, refusing an object that gives a key twice
    except OSError as exc:
        raise PluginError(f"{path}: cannot read: {exc.strerror}") from None
    except RowError as exc:
        raise _BadFile(1, f"not a Label Studio export: {exc}") from None
    except json.JSONDecodeError as exc:
        raise _BadFile(exc.lineno, f"not JSON (column {exc.colno}): {exc.msg}") from None
    except ValueError:  # JSON, with an integer longer than Python converts (`json` says not where)
        line, reason = long_integer_problem(text)
        raise _BadFile(line, f"not a Label Studio export: {reason}") from None
    except RecursionError:
        raise _BadFile(1, "not a Label Studio export: JSON nested too deeply") from None
    except RepeatedKey:  # one of the two values would be lost without a word
        raise _BadFile(*repeated_key_problem(text)) from None
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list):
        raise _BadFile(1, "a Label Studio export is a JSON list of tasks")
    return tasks


def task_rows(item: Any, number: int, labels: PluginRun, prefix: str,
              votes: dict[str, list[dict[str, Any]]]) -> list[TaskInput | RowProblem]:
    """One exported task as a row to ingest, or the problem with it; its prior votes go into
    ``votes``, and the annotations left out make a second row, a reject naming them."""
    raw = _storable(json.dumps(item, ensure_ascii=False)[:2000])
    if not isinstance(item, dict):
        return [RowProblem(number, "a task must be a JSON object", raw)]
    found = lone_surrogate(item)
    if found is not None:  # not text: no row, vote or reject can hold it as it is
        place, char = found
        return [RowProblem(number, f"the lone UTF-16 surrogate escape `\\u{ord(char):04x}` in `{place}` is not text "
                                   "(a surrogate escape needs its pair)", raw)]
    for key in ("predictions", "annotations"):
        if item.get(key) is not None and not isinstance(item[key], list):
            return [RowProblem(number, f"`{key}` must be a list, not {json.dumps(item[key])[:40]}", raw)]
    try:
        return _task_rows(item, number, labels, prefix, votes, raw)
    except RowError as exc:  # a field of the wrong shape, named
        return [RowProblem(number, str(exc), raw)]
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        # a result of an unexpected shape deep inside (a `choices` that is a number…): this task only
        return [RowProblem(number, f"malformed Label Studio task: {type(exc).__name__}: {exc}", raw)]


def _task_rows(item: dict, number: int, labels: PluginRun, prefix: str,
               votes: dict[str, list[dict[str, Any]]], raw: str) -> list[TaskInput | RowProblem]:
    ident = item.get("id")
    if ident is not None and ident != "" and _no_id(ident):  # there, but no id: said as it is, not as missing
        return [RowProblem(number, f"`id` must be text or an integer, not {_shown(json.dumps(ident)[:40])}", raw)]
    if _no_id(ident):  # the labelstudio sink's output: its id is Labelyard's, in meta.labelyard.id
        meta = item.get("meta")
        ours = meta.get("labelyard") if isinstance(meta, dict) else None
        ident = ours.get("id") if isinstance(ours, dict) else None
    if _no_id(ident):
        return [RowProblem(number, "task has no `id` (nor `meta.labelyard.id`, as the labelstudio sink writes it)",
                           raw)]
    data = item.get("data")
    if not isinstance(data, dict):
        return [RowProblem(number, "task has no `data` object", raw)]
    task = TaskInput(number, f"{prefix}{ident}", dict(data))
    predictions = [(n, p) for n, p in enumerate(item.get("predictions") or [], 1) if isinstance(p, dict)]
    if predictions:
        place, best = max(predictions,
                          key=lambda np: np[1].get("score") if isinstance(np[1].get("score"), (int, float)) else -1)
        try:
            task.label = read_result(best.get("result"), labels.label_type, data, labels.setting("from_name"))
        except RowError as exc:
            raise RowError(f"`predictions[{place}].{str(exc)[1:]}") from None
        score = best.get("score")
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            if not 0 <= score <= 1:
                return [RowProblem(number, f"prediction score {score} is outside 0..1", raw)]
            task.confidence = float(score)
        if isinstance(best.get("model_version"), str):
            task.model = best["model_version"]
    checked = check_task(task, number, raw, labels.choices if labels.label_type in ("choice", "multi_choice") else ())
    if not isinstance(checked, TaskInput):
        return [checked]
    annotations = item.get("annotations") or []
    recorded, left_out = recorded_votes(item.get("meta"), labels)
    if recorded or left_out:  # the sink's output: its final annotation stands for these votes
        annotations = [a for a in annotations if not _sinks_own(a, item["meta"]["labelyard"])]
    prior, refused = prior_votes(annotations, labels, data)
    prior, left_out = recorded + prior, left_out + refused
    if prior:
        votes[checked.external_id] = prior
    if not left_out:
        return [checked]
    reason = f"task {_shown(str(ident))}: votes left out (the task went in): " + "; ".join(left_out)
    return [checked, RowProblem(number, reason, raw, checked.external_id)]


def _no_id(ident: Any) -> bool:
    return ident is None or isinstance(ident, (bool, dict, list)) or ident == ""


def lone_surrogate(value: Any) -> tuple[str, str] | None:
    """Where a parsed JSON value holds a lone UTF-16 surrogate (only a ``\\ud800`` escape gives one:
    the file was read as UTF-8): the field (``predictions[1].result[1].value.choices[1]``, lists
    counted from 1) and the surrogate; ``None`` when it holds none. Depth first, without recursion."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        place, found = stack.pop()
        if isinstance(found, str):
            bad = next((c for c in found if 0xD800 <= ord(c) <= 0xDFFF), None)
            if bad is not None:
                return place or "the task", bad
        elif isinstance(found, list):
            stack.extend(reversed([(f"{place}[{n}]", v) for n, v in enumerate(found, 1)]))
        elif isinstance(found, dict):
            inner = []
            for key, v in found.items():
                name = key if key.isidentifier() else json.dumps(key)  # a key with a surrogate: escaped
                inner.extend([(f"{place} key {name}".strip(), key), (f"{place}.{name}" if place else name, v)])
            stack.extend(reversed(inner))
    return None


def _storable(text: str) -> str:
    """``text`` with any lone surrogate written as its escape (``\\ud800``): a reject can keep it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def prior_votes(annotations: list[Any], labels: PluginRun,
                data: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The votes of a task's completed annotations, a worker's latest one each (by ``updated_at``,
    else ``created_at``, else the later in the list); and, for each latest one the workflow's labels
    refuse, why it was left out."""
    latest: dict[str, tuple[int, dict[str, Any]]] = {}
    for n, annotation in enumerate(annotations, 1):
        if isinstance(annotation, dict) and not annotation.get("was_cancelled"):
            worker = _who(annotation.get("completed_by"))
            if worker not in latest or _not_older(annotation, latest[worker][1]):
                latest[worker] = (n, annotation)
    votes, left_out = [], []
    for worker, (n, annotation) in latest.items():
        refused = worker_name_problem(worker)  # printed in `show` and `workers list`: one line, not too long
        if refused is not None:
            name = annotation.get("id") if isinstance(annotation.get("id"), (int, str)) else f"#{n}"
            shown = worker if len(worker) <= 60 else worker[:57] + "..."
            left_out.append(f"annotation {_shown(str(name))} by {_shown(shown)}: "
                            f"`{_who_field(annotation.get('completed_by'))}` refused as a worker's name: {refused}")
            continue
        try:
            label = read_result(annotation.get("result"), labels.label_type, data, labels.setting("from_name"))
        except RowError as exc:  # a field of the wrong shape: this vote is left out, saying which
            label, problem = None, str(exc)
        else:
            problem = _no_label(labels) if label is None else labels.label_problem(label)
        if problem is None:
            votes.append({"worker": worker, "label": label})
        else:
            name = annotation.get("id") if isinstance(annotation.get("id"), (int, str)) else f"#{n}"
            left_out.append(f"annotation {_shown(str(name))} by {_shown(worker)}: {_shown(problem)}")
    return votes, left_out


def recorded_votes(meta: Any, labels: PluginRun) -> tuple[list[dict[str, Any]], list[str]]:
    """The votes the labelstudio sink wrote in ``meta.labelyard.votes`` (``{worker, label}``, Labelyard's
    own workers and labels), a worker's last one each; and, for each one left out, why: a name that
    ``workers add`` refuses, a label the workflow's labels refuse, a vote of another shape. None
    (and nothing said) when the task has no such list, or an empty one (a label no vote made:
    the final annotation then comes back as the vote of ``labelstudio:<final_by>``)."""
    ours = meta.get("labelyard") if isinstance(meta, dict) else None
    found = ours.get("votes") if isinstance(ours, dict) else None
    if not isinstance(found, list) or not found:
        return [], []
    latest: dict[str, tuple[int, Any]] = {}
    left_out = []
    for n, vote in enumerate(found, 1):
        worker = vote.get("worker") if isinstance(vote, dict) else None
        if not isinstance(worker, str) or "label" not in vote:
            left_out.append(f"`meta.labelyard.votes[{n}]` must be a {{worker, label}} object with the worker's name "
                            f"as text, not {_shown(json.dumps(vote, ensure_ascii=False)[:60])}")
            continue
        latest[worker] = (n, vote["label"])
    votes = []
    for worker, (n, label) in latest.items():
        refused = worker_name_problem(worker)  # printed in `show` and `workers list`: one line, not too long
        if refused is not None:
            shown = worker if len(worker) <= 60 else worker[:57] + "..."
            left_out.append(f"vote {n} of `meta.labelyard.votes` by {_shown(shown)}: "
                            f"`meta.labelyard.votes[{n}].worker` refused as a worker's name: {refused}")
            continue
        problem = "it has no label" if label is None else labels.label_problem(label)
        if problem is None:
            votes.append({"worker": worker, "label": label})
        else:
            left_out.append(f"vote {n} of `meta.labelyard.votes` by {_shown(worker)}: {_shown(problem)}")
    return votes, left_out


def _sinks_own(annotation: Any, ours: dict[str, Any]) -> bool:
    """Whether ``annotation`` is the one the labelstudio sink wrote for the final label (made by
    ``completed_by.email`` = ``final_by``), not one a Label Studio user added since."""
    return (isinstance(annotation, dict)
            and _who(annotation.get("completed_by")) == f"labelstudio:{ours.get('final_by')}")


def _not_older(annotation: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether ``annotation`` was made after ``other`` (or when either has no time, comes after it)."""
    mine, theirs = _made_at(annotation), _made_at(other)
    return mine is None or theirs is None or mine >= theirs


def _made_at(annotation: dict[str, Any]) -> datetime | None:
    """When an annotation was last saved: ``updated_at``, else ``created_at`` (ISO 8601, UTC if no zone)."""
    for key in ("updated_at", "created_at"):
        value = annotation.get(key)
        if isinstance(value, str):
            try:
                made = datetime.fromisoformat(value)
            except ValueError:
                continue
            return made if made.tzinfo else made.replace(tzinfo=timezone.utc)
    return None


def _shown(text: str) -> str:
    """Text from the export as a reject reason prints it: control characters written out."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def check_task(task: TaskInput, number: int, raw: str, choices: tuple[str, ...]) -> TaskInput | RowProblem:
    """The same checks as any ingested row (the prediction's label among the choices, and so on)."""
    row: dict[str, Any] = {"id": task.external_id, "data": task.data}
    if task.label is not None or task.confidence is not None:
        row["prediction"] = {k: v for k, v in (("label", task.label), ("confidence", task.confidence),
                                                ("model", task.model)) if v is not None}
    checked = check_row(row, number, choices)
    return checked if isinstance(checked, TaskInput) else RowProblem(number, checked.reason, raw, task.external_id)


# the label types whose label is a list: an empty result is their empty label
LIST_LABELS = ("multi_choice", "spans", "boxes")
# the fields of a result's `value` that Label Studio writes as lists (of choices, labels, texts)
LIST_FIELDS = {"choice": "choices", "multi_choice": "choices", "spans": "labels", "boxes": "rectanglelabels",
               "text": "text"}


def _no_label(labels: PluginRun) -> str:
    control = labels.setting("from_name")
    return f"its result holds no {labels.label_type} label" + (f" of `{control}` (from_name)" if control else "")


def read_result(result: Any, label_type: str, data: dict[str, Any] | None = None, from_name: str | None = None) -> Any:
    """A Label Studio ``result`` list as a Labelyard label of ``label_type`` (``None`` if it holds none).

    With ``from_name`` (the source's setting), only the results of that control are read: an
    export whose labeling config has several (a sentiment and a topic, say) gives each task
    results of each, and the label is one control's.

    An empty ``result`` is the empty label (``[]``) of a type whose label is a list (boxes,
    spans, multi_choice: nothing drawn, nothing chosen), as is ``"choices": []`` for
    multi_choice; for other types it holds no label. A field Label Studio writes as a list that
    is something else (``"choices": "pos"``) raises :class:`RowError` naming it: read as a list,
    a text would give its first letter as the label."""
    if not isinstance(result, list):
        return None
    if from_name is not None:  # one control's results: Label Studio writes none for a control left untouched
        result = [r for r in result if isinstance(r, dict) and r.get("from_name") == from_name]
    if not result and label_type in LIST_LABELS:
        return []
    values = [r.get("value") for r in result if isinstance(r, dict) and isinstance(r.get("value"), dict)]
    if not values:
        return None
    field = LIST_FIELDS.get(label_type)
    if field is not None:
        for n, r in enumerate(result, 1):
            value = r.get("value") if isinstance(r, dict) else None
            found = value.get(field) if isinstance(value, dict) else None
            if found is not None and not isinstance(found, list):
                raise RowError(f"`result[{n}].value.{field}` must be a list, not {json.dumps(found)[:40]}")
    if label_type in ("choice", "multi_choice"):
        picked = [c for v in values for c in v.get("choices") or []]
        if label_type == "choice":
            return _one(picked, "choices", "a choice label is one" + _controls_hint(result, "choices"))
        return picked if picked or any(isinstance(v.get("choices"), list) for v in values) else None
    if label_type == "spans":
        spans = []
        for n, r in enumerate(result, 1):
            v = r.get("value") if isinstance(r, dict) else None
            if isinstance(v, dict) and "start" in v and "end" in v:
                span = {"start": v["start"], "end": v["end"]}
                if v.get("labels"):  # a list (checked above) of one class
                    span["label"] = _one(v["labels"], "labels", "a span has one class", f"[{n}].value.labels")
                spans.append(span)
        return spans or None
    if label_type == "boxes":
        boxes = [_pixel_box(n, r, data or {}) for n, r in enumerate(result, 1) if isinstance(r, dict)
                 and isinstance(r.get("value"), dict) and all(k in r["value"] for k in BOX_KEYS)]
        return boxes or None
    if label_type == "number":
        return next((v["number"] for v in values if "number" in v), None)
    if label_type == "text":
        texts = [t for v in values for t in (v.get("text") or [])]
        return _one(texts, "texts", "a text label is one" + _controls_hint(result, "text"))
    return None


def _controls_hint(result: list[Any], field: str) -> str:
    """When the results giving ``field`` come from several controls (``from_name``), how to pick one."""
    names = list(dict.fromkeys(str(r.get("from_name")) for r in result if isinstance(r, dict)
                               and isinstance(r.get("value"), dict) and r["value"].get(field)
                               and r.get("from_name") is not None))
    if len(names) < 2:
        return ""
    controls = ", ".join(f"`{name}`" for name in names)
    return f" (they come from the controls {controls}: set the source's `from_name:` to one of them)"


def _one(found: list[Any], kind: str, rule: str, where: str = "") -> Any:
    """The one value of ``found`` (the same value given twice is one; ``None`` for none). Several
    raise :class:`RowError` naming them: keeping the first would turn an ambiguous answer (both
    ``pos`` and ``neg`` picked) into a sure one without a word."""
    distinct = list(dict.fromkeys(json.dumps(v, sort_keys=True, ensure_ascii=False) for v in found))
    if len(distinct) > 1:
        shown = ", ".join(distinct[:4]) + (", …" if len(distinct) > 4 else "")
        raise RowError(f"`result{where}` holds {len(distinct)} {kind} ({shown}); {rule}")
    return found[0] if found else None


def _who_field(completed_by: Any) -> str:
    """The field :func:`_who` took the worker's name from."""
    if isinstance(completed_by, dict):
        return "completed_by.email" if completed_by.get("email") else "completed_by.id"
    return "completed_by"


BOX_KEYS = ("x", "y", "width", "height")


def _pixel_box(n: int, result: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A Label Studio box (percent of the image) in pixels, as Labelyard's boxes are: the image's
    size from the result's ``original_width``/``original_height``, else the task's ``data.width``/
    ``data.height``. A rotated box, or one whose image size is unknown, raises :class:`RowError`."""
    value = result["value"]
    where = f"`result[{n}]"
    if any(not _positive(value[k], zero=True) for k in BOX_KEYS):
        raise RowError(f"{where}.value`: a box's x, y, width and height are numbers of 0 or more")
    rotation = value.get("rotation") or 0
    if not isinstance(rotation, (int, float)) or isinstance(rotation, bool) or rotation % 360:
        raise RowError(f"{where}.value.rotation` is {json.dumps(rotation)[:20]}: a rotated box has no Labelyard form "
                       "(boxes are upright)")
    sizes = [result.get(f"original_{k}") for k in ("width", "height")]
    if not all(_positive(s) for s in sizes):
        sizes = [data.get(k) for k in ("width", "height")]
    if not all(_positive(s) for s in sizes):
        raise RowError(f"{where}`: the image size is unknown (no `original_width`/`original_height`, nor "
                       "`width`/`height` in the task's data): a Label Studio box is percent of it, a Labelyard box "
                       "is pixels")
    width, height = sizes
    box = {"x": value["x"] * width / 100, "y": value["y"] * height / 100,
           "width": value["width"] * width / 100, "height": value["height"] * height / 100}
    box = {k: int(v) if v.is_integer() else v for k, v in ((k, round(float(v), 6)) for k, v in box.items())}
    classes = value.get("rectanglelabels")
    if classes:  # a list (checked in read_result) of one class
        box["label"] = _one(classes, "labels", "a box has one class", f"[{n}].value.rectanglelabels")
    return box


def _positive(value: Any, zero: bool = False) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if zero else value > 0)


def _who(completed_by: Any) -> str:
    if isinstance(completed_by, dict):
        return f"labelstudio:{completed_by.get('email') or completed_by.get('id') or 'unknown'}"
    return f"labelstudio:{completed_by}" if completed_by is not None else "labelstudio:unknown"
