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
final label as ``router.consensus.same_label`` judges it. The workflow's
``quality.agreement`` names the headline metric and its bands: ``excellent``
at or above ``excellent``, ``alert`` below ``alert``, ``ok`` between
(defaults 0.8 and 0.6).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from .consensus import canonical, same_label
from .quality import QualityError, fleiss_kappa, krippendorff_alpha
from .store import loads

DEFAULT_EXCELLENT = 0.8
DEFAULT_ALERT = 0.6
MIN_ITEMS = 2
"""Fewer tasks with two votes than this give no statistic: one task is no evidence of agreement."""


def _shown(label: Any) -> str:
    """A label as the confusion table names it: its canonical form, text as it is, other values as JSON."""
    value = canonical(label)
    return value if isinstance(value, str) else json.dumps(value)


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
        try:
            out["fleiss_kappa"] = fleiss_kappa([[canonical(v) for v in t["votes"].values()] for t in items])
        except (QualityError, ArithmeticError) as exc:
            out["reasons"]["fleiss_kappa"] = _reason(exc)
        raters = sorted({w for t in items for w in t["votes"]})
        value = (lambda v: v) if level == "interval" else canonical
        data = [[None if w not in t["votes"] else value(t["votes"][w]) for t in items] for w in raters]
        try:
            out["krippendorff_alpha"] = krippendorff_alpha(data, level=level)
        except (QualityError, ArithmeticError) as exc:
            out["reasons"]["krippendorff_alpha"] = _reason(exc)
    out["band"] = band(out[metric], excellent, alert)
    return out


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


def agreement_report(engine, queue: str | None = None) -> dict[str, Any]:
    """The agreement report as plain data (what ``labelyard agreement --json`` prints)."""
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
    for row in engine.store.vote_rows(queue):
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
                a["matched"] += same_label(label, task["final"], workflow.labels)
                confusion[_shown(label)][_shown(task["final"])] += 1
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
        "queue": queue,
        "overall": _statistics(everything, level, metric, excellent, alert),
        "queues": {name: _statistics(group, level, metric, excellent, alert) for name, group in sorted(by_queue.items())},
        "annotators": rows,
        "confusion": {label: dict(finals) for label, finals in sorted(confusion.items())},
    }
