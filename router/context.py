"""The facts a rule sees: ``task.*``, ``prediction.*``, ``votes.*``, ``review.*``, ``queue.*``, ``now``.

Plain dictionaries built from store rows; ``queue.*`` is computed only when
a rule reads it, and so are a stored task's JSON fields in the walks over every
open task (:func:`lazy_task_facts`, :func:`lazy_prediction`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from rules.context import score_facts

from .store import loads


class Lazy(Mapping):
    """A mapping computed on first access (for facts that cost a query)."""

    def __init__(self, compute: Callable[[], Mapping[str, Any]]):
        self._compute = compute
        self._value: Mapping[str, Any] | None = None

    def _data(self) -> Mapping[str, Any]:
        if self._value is None:
            self._value = self._compute()
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    @staticmethod
    def keys(values: Mapping[str, Any], **computed: Callable[[], Any]) -> "LazyKeys":
        """``values`` plus keys whose value is computed when first read."""
        return LazyKeys(values, computed)


class LazyKeys(Mapping):
    """A mapping of known values and of values computed one by one, on first read."""

    def __init__(self, values: Mapping[str, Any], computed: Mapping[str, Callable[[], Any]]):
        self._values = dict(values)
        self._computed = dict(computed)

    def __getitem__(self, key: str) -> Any:
        if key not in self._values and key in self._computed:
            self._values[key] = self._computed[key]()
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter({**self._computed, **self._values})

    def __len__(self) -> int:
        return len({**self._computed, **self._values})

    def known(self) -> dict[str, Any]:
        """The values at hand, computing nothing more."""
        return dict(self._values)


# A new task's columns before on_create routes it (what on_create rules see of it).
NEW_TASK_STATE: dict[str, Any] = {
    "id": None, "status": "open", "stage": None, "queue": None, "needed": 0, "free_slots": 0, "priority": 0.0,
    "attempts": 0, "round": 0, "final_label": None, "final_by": None, "final_rule": None, "final_at": None,
    "reason": None, "is_gold": 0,
}


def creation_context(row: Mapping[str, Any], prediction: dict[str, Any], now: float) -> dict[str, Any]:
    """The facts ``on_create`` rules see: the new task (``row``, routing columns at their
    :data:`NEW_TASK_STATE`), its prediction, an empty ``queue`` and ``now``."""
    return {"task": task_facts(row, now), "prediction": prediction, "queue": Lazy(dict), "now": now}


def task_facts(row: Mapping[str, Any], now: float) -> dict[str, Any]:
    """``task.*`` from a task row (a store row or a row about to be inserted)."""
    data = row["data"]
    tags = row["tags"]
    return _task_facts(row, now, loads(tags) if isinstance(tags, str) else tags,
                       loads(data) if isinstance(data, str) else data)


def lazy_task_facts(row: Mapping[str, Any], now: float) -> LazyKeys:
    """:func:`task_facts` of a stored row with ``tags`` and ``data`` decoded only when a rule reads them:
    for walks over every open task (``tick``, ``run``, a ``--where``) whose rules mostly read neither
    (a tick at 200,000 tasks spent half its time decoding JSON nobody read)."""
    facts = _task_facts(row, now, None, None)
    del facts["tags"], facts["data"]
    tags, data = row["tags"], row["data"]
    return Lazy.keys(facts, tags=lambda: loads(tags) if isinstance(tags, str) else tags,
                     data=lambda: loads(data) if isinstance(data, str) else data)


def lazy_prediction(row: Mapping[str, Any]) -> Lazy:
    """:func:`stored_prediction`, decoded when a rule first reads ``prediction.*``."""
    return Lazy(lambda: stored_prediction(row))


def _task_facts(row: Mapping[str, Any], now: float, tags: Any, data: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "external_id": row["external_id"],
        "source": row["source"],
        "category": row["category"],
        "tags": tags,
        "data": data,
        "age": now - row["created_at"],
        "stage_age": now - row["stage_at"],  # since the task entered its current stage (queue SLAs)
        "stage": row["stage"],
        "queue": row["queue"],
        "attempts": row["attempts"],
        "priority": row["priority"],
        "status": row["status"],
        "gold": bool(row["is_gold"]),
    }


def prediction_facts(label: Any, confidence: float | None, model: str | None, scores: Any) -> dict[str, Any]:
    """``prediction.*``: label, confidence, model, scores, and the margin and entropy of the scores."""
    facts = score_facts(scores) if isinstance(scores, dict) and scores else {"margin": None, "entropy": None}
    return {"label": label, "confidence": confidence, "model": model, "scores": scores, **facts}


def stored_prediction(row: Mapping[str, Any]) -> dict[str, Any]:
    """``prediction.*`` from a stored task row."""
    return prediction_facts(loads(row["pred_label"]), row["pred_confidence"], row["pred_model"], loads(row["pred_scores"]))


def votes_facts(votes: Sequence[Mapping[str, Any]], accuracy: Mapping[str, tuple[int, int]], *,
                spec: Any = None, method: str = "majority",
                history: Callable[[str | None], Any] | None = None, task_id: int | None = None) -> dict[str, Any]:
    """``votes.*`` from each annotator's latest vote: count, labels, top, agreement, tie, entropy…

    ``top``, ``top_count``, ``agreement``, ``unanimous`` and ``tie`` come from the
    type-aware aggregator of :mod:`router.consensus` for the label ``spec``
    (``rules.workflow.LabelSpec``; without one, an exact vote) and ``method``
    (``quality.consensus``); ``history(queue)`` gives Dawid-Skene the recent votes
    of the latest vote's queue, and is called only for that method.

    ``workers`` and ``queues`` (the engine's, no rule reads them) name each voter and
    the queue where their counted vote was cast: a ``return`` offers each a correction
    there.
    """
    from .consensus import aggregate, canonical, final_form, for_spec

    labels = [loads(v["label"]) for v in votes]
    if getattr(spec, "type", None) == "multi_choice":  # a vote stored before votes were sets too
        labels = [final_form(label, spec) for label in labels]
    keys = [canonical(label) for label in labels]  # `entropy` counts labels that mean the same as one
    counts = Counter(keys).most_common()
    count = len(labels)
    workers = [v["worker"] for v in votes]
    queues = [v["queue"] for v in votes]
    queue = queues[-1] if queues else None  # the queue whose history Dawid-Skene reads
    options: dict[str, Any] = {"workers": workers, "method": method, "accuracy": accuracy, "task": task_id}
    if history is not None:
        options["history"] = lambda: history(queue)
    consensus = for_spec(labels, spec, **options) if spec is not None else aggregate(labels, **options)
    entropy = None
    if count:
        entropy = -sum((n / count) * math.log2(n / count) for _, n in counts) + 0.0
    accuracies = []
    for v in votes:
        answered, correct = accuracy.get(v["worker"], (0, 0))
        if answered:
            accuracies.append(correct / answered)
    return {
        "count": count,
        "labels": labels,
        "workers": workers,
        "queues": queues,
        **consensus.facts(),
        "entropy": entropy,
        "min_accuracy": min(accuracies) if accuracies else None,
        "any_flagged": any(bool(v["flagged"]) for v in votes),
    }


def review_facts(annotation: Mapping[str, Any] | None, worker: str, automatic: bool = False) -> dict[str, Any]:
    """``review.*`` from a reviewer's or expert's submission."""
    if annotation is None:
        return {}
    return {
        "verdict": annotation["verdict"],
        "label": annotation["label"],
        "reviewer": worker,
        "comment": annotation["comment"],
        "automatic": automatic,
    }


def case_votes_facts(votes: Mapping[str, Any], workflow: Any) -> dict[str, Any]:
    """``votes.*`` for a rule-test case, as the engine computes them for ``workflow``.

    The case's ``votes.labels`` go through the workflow's label type and
    ``quality.consensus``, cast by ``votes.workers`` when given (else made-up
    names), with no gold answered and nobody flagged. A label the type cannot
    hold is a :class:`ValueError` naming it, as ``submit`` would refuse it.
    """
    from .quality import QualityError
    from .store import dumps

    labels = list(votes["labels"])
    workers = votes.get("workers")
    if not (isinstance(workers, list) and len(workers) == len(labels) and all(isinstance(w, str) for w in workers)):
        workers = [f"voter {n}" for n in range(1, len(labels) + 1)]
    for n, label in enumerate(labels):
        problem = workflow.labels.problem(label)
        if problem:
            raise ValueError(f"`votes.labels[{n}]`: {problem}")
    rows = [{"label": dumps(label), "worker": worker, "queue": None, "flagged": 0}
            for label, worker in zip(labels, workers)]
    method = workflow.quality.get("consensus") or "majority"
    try:
        facts = votes_facts(rows, {}, spec=workflow.labels, method=method)
    except (QualityError, TypeError, ValueError) as exc:
        raise ValueError(f"`votes.labels`: {exc}") from None
    del facts["workers"], facts["queues"]  # only what the case gave
    return facts
