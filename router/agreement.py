"""``labelyard agreement``: how much annotators agree, per queue and overall, and with the final labels.

Votes are each annotator's latest annotate/correct submission on a task (as
``votes.*`` counts them), gold tasks left out. A task belongs to the queue of
its latest vote. Labels are compared in their canonical form
(``router.consensus.canonical``: ``4.0`` is ``4``, a multi_choice is a set,
boxes and spans in any order). Fleiss' kappa and Krippendorff's alpha
(``router.quality``) are computed over the tasks with at least two votes; a
statistic that cannot be computed (fewer than two such tasks, every vote the
same label…) is ``null`` with the reason; ``queue.kappa`` / ``queue.alpha``
are the same statistics (:func:`agreement_of`). An annotator agrees with a
final label as ``router.consensus.agrees_with_final`` judges it (a number within
the tolerance consensus counts in ``top_count``); the confusion
counts whole labels, or for boxes and spans each object's class against the
class of the final object it matches (:func:`confusion_table` prints it). The workflow's
``quality.agreement`` names the headline metric and its bands: ``excellent``
at or above ``excellent``, ``alert`` below ``alert``, ``ok`` between
(defaults 0.8 and 0.6).
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from .consensus import JsonBool, JsonStructure, agrees_with_final, canonical, object_pairs, value_key
from .quality import QualityError, fleiss_kappa, krippendorff_alpha
from .render import listed_name, visible
from .store import loads

DEFAULT_EXCELLENT = 0.8
DEFAULT_ALERT = 0.6
MIN_ITEMS = 2
"""Fewer tasks with two votes than this give no statistic: one task is no evidence of agreement."""
NAME_WIDTH = 24
"""The confusion table names its rows and columns by labels up to this long, else by keys and a legend."""
NO_OBJECT = "(none)"
"""The confusion of boxes and spans: the class of an object without a match on the other side."""
NO_CLASS = "(no class)"
"""The confusion of boxes and spans: an object drawn without a class."""


def _shown(label: Any, key: Callable[[Any], Any] = canonical) -> str:
    """A label or class as the confusion table names it, one name per JSON value.

    Text is written as it is, other values as canonical JSON text (``1``,
    ``true``, ``["x", "y"]``; numbers by value, lists and objects as ``key``
    writes them: ``canonical`` for a label, ``value_key`` for a class). Text
    that would read as another value — empty, itself JSON text (``"1"``,
    ``"true"``), or a placeholder (:data:`NO_OBJECT`, :data:`NO_CLASS`) — or
    that would look like other text — with a space (or other white space) at
    an end (``"cat "``), or not in Unicode's composed form (NFC), its
    combining marks written as ``\\u`` escapes (``"A\\u030angstro\\u0308m"``)
    — is written as JSON text too, in quotes: so a name that parses as JSON
    is that value, and any other name is that text.
    """
    if isinstance(label, str):
        if not _reads_as_other(label) and not _looks_like_other(label):
            return label
        text = json.dumps(label, ensure_ascii=False)
        if unicodedata.is_normalized("NFC", label):
            return text
        return "".join(f"\\u{ord(c):04x}" if unicodedata.combining(c) else c for c in text)
    value = key(label)
    if isinstance(value, (JsonBool, JsonStructure)):
        return str(value)
    return json.dumps(value)


def _reads_as_other(text: str) -> bool:
    """Whether ``text`` written bare would name something else: a placeholder, another JSON value, nothing."""
    if text in ("", NO_OBJECT, NO_CLASS):
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    except RecursionError:  # "[[[…" nested past Python's limit: quoted, which is never wrong
        return True
    return True


def _looks_like_other(text: str) -> bool:
    """Whether ``text`` written bare would look like other text: white space at an end (``cat `` is
    ``cat``, and a name of spaces alone is blank), or a form other than NFC (``Ångström`` composed
    and decomposed print alike)."""
    return text != text.strip() or not unicodedata.is_normalized("NFC", text)


def _class_shown(obj: dict[str, Any] | None) -> str:
    """A box's or span's class as the per-object confusion names it."""
    if obj is None:
        return NO_OBJECT
    return NO_CLASS if obj.get("label") is None else _shown(obj["label"], value_key)


def _confuse(confusion: dict[Any, Counter], label: Any, final: Any, spec: Any) -> None:
    """Count one vote against its task's final label: per object for boxes and spans, else whole labels."""
    pairs = object_pairs(label, final, spec)
    if pairs is None:
        confusion[_shown(label)][_shown(final)] += 1
        return
    for mine, theirs in pairs:
        confusion[_class_shown(mine)][_class_shown(theirs)] += 1


def band(value: float | None, excellent: float, alert: float) -> str | None:
    """``excellent``, ``ok`` or ``alert`` for a value (``None`` for no value)."""
    if value is None:
        return None
    if value >= excellent:
        return "excellent"
    if value < alert:
        return "alert"
    return "ok"


def _statistics(tasks: list[dict[str, Any]], level: str, metric: str, excellent: float, alert: float) -> dict[str, Any]:
    items = [t for t in tasks if len(t["votes"]) >= 2]
    out: dict[str, Any] = {"tasks": len(tasks), "items": len(items),
                           "votes": sum(len(t["votes"]) for t in tasks),
                           "fleiss_kappa": None, "krippendorff_alpha": None, "reasons": {}}
    if len(items) < MIN_ITEMS:
        reason = "no task has two votes yet" if not items else "only one task has two votes yet"
        out["reasons"] = {"fleiss_kappa": reason, "krippendorff_alpha": reason}
    else:
        for name, compute in (("fleiss_kappa", _kappa), ("krippendorff_alpha", _alpha)):
            try:
                out[name] = _rounded(compute(items, level))
            except (QualityError, ArithmeticError) as exc:
                out["reasons"][name] = _reason(exc)
    out["band"] = band(out[metric], excellent, alert)
    return out


def _kappa(items: list[dict[str, Any]], _level: str) -> float:
    """Fleiss' kappa of the tasks' votes; a label in the reason named as the confusion table names it."""
    labels = {canonical(v): v for t in items for v in t["votes"].values()}
    if len(labels) == 1:
        raise QualityError(f"Fleiss' kappa is undefined when every vote is the same label "
                           f"({_shown(next(iter(labels.values())))}): agreement is perfect but so is "
                           "chance agreement")
    return fleiss_kappa([[canonical(v) for v in t["votes"].values()] for t in items])


def _alpha(items: list[dict[str, Any]], level: str) -> float:
    """Krippendorff's alpha of the tasks' votes; a vote in the reason named as the confusion table names it."""
    value = (lambda v: v) if level == "interval" else canonical
    columns = [[value(v) for v in t["votes"].values()] for t in items]
    if level == "interval":
        other = next((v for column in columns for v in column
                      if isinstance(v, bool) or not isinstance(v, (int, float))), None)
        if other is not None:  # a vote of a label type a workflow changed
            raise QualityError(f"Krippendorff's alpha (interval) needs number votes; got {_shown(other)}")
    # Alpha pairs values within a task, whoever gave them: rows are vote positions, not workers,
    # so the table is (most votes on a task) x tasks instead of every worker x tasks.
    depth = max(len(column) for column in columns)
    return krippendorff_alpha([[column[i] if i < len(column) else None for column in columns]
                               for i in range(depth)], level=level)


def _rounded(value: float) -> float:
    """A statistic to 12 decimal places: a kappa of exactly 3/5 is computed as 0.5999999999999996,
    which a band or a rule's ``queue.kappa >= 0.6`` would put on the wrong side of 0.6."""
    return round(value, 12) + 0.0


def _reason(exc: Exception) -> str:
    # QualityError says why in words; an arithmetic error (kept from reaching a submission) says what
    return str(exc) if isinstance(exc, QualityError) else f"cannot be computed for these votes ({exc})"


def agreement_of(rows: Iterable[tuple[Any, str, Any]], level: str = "nominal") -> tuple[float | None, float | None]:
    """Fleiss' kappa and Krippendorff's alpha over ``(task, worker, label)`` votes.

    ``None`` where a value cannot be computed (fewer than two tasks with two
    votes, a single category everywhere): rules then see ``null``. The same
    statistics as ``labelyard agreement`` (:func:`_statistics`).
    """
    tasks: dict[Any, dict[str, Any]] = {}
    for task_id, worker, label in rows:
        tasks.setdefault(task_id, {})[worker] = label
    stats = _statistics([{"votes": votes} for votes in tasks.values()], level, "fleiss_kappa", 1.0, 0.0)
    return stats["fleiss_kappa"], stats["krippendorff_alpha"]


def agreement_report(engine, queue: str | None = None, latest: int | None = None) -> dict[str, Any]:
    """The agreement report as plain data (what ``labelyard agreement --json`` prints).

    ``latest``: only the tasks of the latest that many votes (in ``queue``, when given), with all
    their votes: with ``queue``, what ``queue.kappa`` and ``queue.alpha`` read.
    """
    workflow = engine.workflow
    if queue is not None and queue not in workflow.queues:
        from .errors import LabelyardError

        raise LabelyardError(f"no queue `{queue}`; queues: {', '.join(workflow.queues)}")
    config = workflow.quality.get("agreement") or {}
    metric = config.get("metric", "fleiss_kappa")
    excellent = config.get("excellent", DEFAULT_EXCELLENT)
    alert = config.get("alert", DEFAULT_ALERT)
    level = "interval" if workflow.labels.type == "number" else "nominal"

    tasks: dict[int, dict[str, Any]] = {}
    for row in engine.store.vote_rows(queue, latest):
        task = tasks.setdefault(row["task_id"], {"votes": {}, "queue": None, "final": None, "done": False})
        task["votes"].pop(row["worker"], None)  # the latest vote counts, in order
        task["votes"][row["worker"]] = loads(row["label"])
        task["queue"] = row["queue"]
        if row["status"] == "done" and row["final_label"] is not None:
            task["done"], task["final"] = True, loads(row["final_label"])

    by_queue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for task in tasks.values():
        by_queue[task["queue"] or "-"].append(task)
    everything = list(tasks.values())

    annotators: dict[str, dict[str, Any]] = {}
    confusion: dict[Any, Counter] = defaultdict(Counter)
    for task in everything:
        for worker, label in task["votes"].items():
            a = annotators.setdefault(worker, {"worker": worker, "votes": 0, "decided": 0, "matched": 0})
            a["votes"] += 1
            if task["done"]:
                a["decided"] += 1
                a["matched"] += agrees_with_final(label, task["final"], workflow.labels)
                _confuse(confusion, label, task["final"], workflow.labels)
    gold = engine.store.gold_answers()
    for worker in gold:
        annotators.setdefault(worker, {"worker": worker, "votes": 0, "decided": 0, "matched": 0})
    rows = []
    for worker in sorted(annotators):
        a = annotators[worker]
        answered, correct = gold.get(worker, (0, 0))
        rows.append({**a, "agreement": (a["matched"] / a["decided"]) if a["decided"] else None,
                     "gold_answered": answered, "gold_correct": correct,
                     "gold_accuracy": (correct / answered) if answered else None})

    return {
        "metric": metric, "level": level, "bands": {"excellent": excellent, "alert": alert},
        "queue": queue, "latest": latest,
        "overall": _statistics(everything, level, metric, excellent, alert),
        "queues": {name: _statistics(group, level, metric, excellent, alert) for name, group in sorted(by_queue.items())},
        "annotators": rows,
        "confusion_of": "objects" if workflow.labels.type in ("boxes", "spans") else "labels",
        "confusion": _confusion_data(confusion),
    }


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _name_width(names: Iterable[str]) -> int:
    """The first column of a table: 16 cells, or one more than its widest name (terminal cells)."""
    from rich.cells import cell_len

    return max([16, *(cell_len(name) + 1 for name in names)])


def queue_table(data: dict[str, Any]) -> list[str]:
    """The report's statistics as lines of text: a row per queue and one for all of them, then a
    note per reason a value is missing, naming the rows it applies to. Aligned by the width a
    terminal gives each character, however long or wide (CJK) a queue's name."""
    groups = [(_cell(name), g) for name, g in [*data["queues"].items(), ("(overall)", data["overall"])]]
    first = _name_width(name for name, _ in groups)
    lines = [_left("queue", first) + f"{'tasks':>7}{'items':>7}{'kappa':>9}{'alpha':>9}  band"]
    for name, g in groups:
        lines.append(_left(name, first) + f"{g['tasks']:>7}{g['items']:>7}{_figure(g['fleiss_kappa']):>9}"
                     f"{_figure(g['krippendorff_alpha']):>9}  {g['band'] or '-'}")
    where: dict[str, list[str]] = {}  # why a value is `-`, and for which queues (reasons differ per queue)
    for name, g in groups:
        for reason in sorted(set(g["reasons"].values())):
            where.setdefault(reason, []).append(name)
    lines.extend(f"  note ({', '.join(names)}): {_cell(reason)}" for reason, names in where.items())
    return lines


def annotator_table(data: dict[str, Any]) -> list[str]:
    """The report's annotators as lines of text, aligned as :func:`queue_table` aligns its rows."""
    rows = [(listed_name(a["worker"]), a) for a in data["annotators"]]
    first = _name_width(name for name, _ in rows)
    lines = [_left("annotator", first) + f"{'votes':>7}{'agree':>9}{'gold':>7}{'gold acc':>10}"]
    lines.extend(_left(name, first) + f"{a['votes']:>7}{_figure(a['agreement']):>9}{a['gold_answered']:>7}"
                 f"{_figure(a['gold_accuracy']):>10}" for name, a in rows)
    return lines


def _confusion_data(confusion: dict[str, Counter]) -> dict[str, dict[str, int]]:
    """The confusion as ``--json`` gives it, rows and columns in the text table's order (:func:`_order`)."""
    order = _order({*confusion, *(f for row in confusion.values() for f in row)})
    return {label: dict(sorted(confusion[label].items(), key=lambda item: order(item[0])))
            for label in sorted(confusion, key=order)}


def _cell(name: str) -> str:
    """A name on one line, no escape sequence reaching the terminal."""
    return visible(name).replace("\n", "\\x0a").replace("\t", "\\x09")


def _order(names: Iterable[str]) -> Callable[[str], tuple]:
    """How a confusion's rows and columns are ordered: by name, "no object" last (the background class
    of a detection confusion) — or, when every name but the placeholders is a number (number labels,
    boxes whose classes are numbers), the numbers by value (``2``, ``9.5``, ``10``, where text sorts
    ``10`` first), after "no class" as by name."""
    values = {name: _number_named(name) for name in set(names) - {NO_OBJECT, NO_CLASS}}
    if values and all(value is not None for value in values.values()):
        return lambda name: (name == NO_OBJECT, name != NO_CLASS, values.get(name) or 0, name)
    return lambda name: (name == NO_OBJECT, False, 0, name)


def _number_named(name: str) -> int | float | None:
    """The number a name writes (``10``, ``2.5``; text that reads as one is quoted: ``"10"``), else ``None``."""
    if not name or name[0] not in "-0123456789":
        return None
    try:
        value = json.loads(name)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def confusion_table(data: dict[str, Any]) -> list[str]:
    """The report's confusion as lines of text: a row per annotator label, a column per final label.

    Rows and columns are named by their labels in full when every name fits
    :data:`NAME_WIDTH`; otherwise by keys (``#1``, ``#2``…) listed with their
    labels under the table, so no name is cut.
    """
    from rich.cells import cell_len  # only here: the report's other paths print no table

    confusion = data["confusion"]
    if not confusion:
        return []
    finals = {f for row in confusion.values() for f in row}
    order = _order(set(confusion) | finals)
    finals, labels = sorted(finals, key=order), sorted(confusion, key=order)
    names = sorted(set(confusion) | set(finals), key=order)
    shown = {name: _cell(name) for name in names}
    keyed = any(cell_len(text) > NAME_WIDTH for text in shown.values())
    if keyed:
        shown = {name: f"#{i}" for i, name in enumerate(names, start=1)}
    title = ("confusion per object (annotator's class → class in the final label; "
             f"{NO_OBJECT}: no matching object)" if data.get("confusion_of") == "objects"
             else "confusion (annotator label → final label)")
    # aligned by the width a terminal gives (a combining mark takes none, a CJK character two)
    first = max(15, *(cell_len(shown[label]) for label in labels)) + 1
    widths = [max(cell_len(shown[f]), *(len(str(row.get(f, 0))) for row in confusion.values())) + 2 for f in finals]
    lines = [title, " " * first + "".join(_right(shown[f], w) for f, w in zip(finals, widths))]
    for label in labels:
        row = confusion[label]
        lines.append(_left(shown[label], first) + "".join(f"{row.get(f, 0):>{w}}" for f, w in zip(finals, widths)))
    if keyed:
        lines.append("labels:")
        lines.extend(f"  {shown[name]:<{len(str(len(names))) + 1}}  {_cell(name)}" for name in names)
    return lines


def _left(text: str, width: int) -> str:
    from rich.cells import cell_len

    return text + " " * max(0, width - cell_len(text))


def _right(text: str, width: int) -> str:
    from rich.cells import cell_len

    return " " * max(0, width - cell_len(text)) + text
