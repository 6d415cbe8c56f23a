"""The names rule expressions can read, and which workflow section sees which.

``CONTEXT_SCHEMA`` maps each root (``task``, ``prediction``, ...) to its fields.
A field is ``LEAF`` (one value) or ``OPEN`` (data of any shape: any key,
dotted or subscripted, may be read below it). ``now`` is a root that is
itself a leaf (epoch seconds).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


class _Marker:
    """A named sentinel."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


LEAF = _Marker("LEAF")
"""A single value: it has no fields and cannot be subscripted."""
OPEN = _Marker("OPEN")
"""Data of any shape: any sub-key (``.key`` or ``["key"]``) or list index is allowed below it."""
GROUP = _Marker("GROUP")
"""What :func:`field_kind` says of a root that has fields (``task``, ``votes``, ...)."""


def _fields(*names: str, open: Sequence[str] = ()) -> dict[str, object]:
    return {name: OPEN if name in open else LEAF for name in names}


CONTEXT_SCHEMA: dict[str, dict[str, object] | object] = {
    "task": _fields(
        "id", "external_id", "source", "category", "tags", "data", "age", "stage_age", "stage",
        "queue", "attempts", "priority", "status", "gold", open=("data",),
    ),
    "prediction": _fields("label", "confidence", "model", "scores", "margin", "entropy", open=("scores",)),
    "votes": _fields(
        "count", "labels", "top", "top_count", "agreement", "unanimous", "tie",
        "entropy", "min_accuracy", "any_flagged", open=("labels",),
    ),
    "review": _fields("verdict", "label", "reviewer", "comment", "automatic"),
    "assignment": _fields("age", "worker", "kind"),
    "worker": _fields(
        "id", "roles", "skills", "submitted", "gold_count", "gold_accuracy",
        "agreement", "fast_submits", "skips_in_row", "flagged",
    ),
    "queue": _fields("name", "waiting", "active", "oldest_age", "sla", "kappa", "alpha"),
    "now": LEAF,
}

# The type of each fact the engine always gives, never null: `validate` refuses an operation that
# fails for every value of these types (`task.age > "1d"`, `matches(now, "x")`). A rule test or a
# replay that leaves one of them out sees null there (and the operation gives null or false).
FACT_TYPES: dict[str, str] = {
    "task.age": "number", "task.stage_age": "number", "task.attempts": "number", "task.priority": "number",
    "task.status": "text", "task.gold": "boolean",
    "votes.count": "number", "votes.labels": "list", "votes.any_flagged": "boolean",
    "worker.id": "text", "worker.roles": "list", "worker.skills": "list", "worker.submitted": "number",
    "worker.gold_count": "number", "worker.fast_submits": "number", "worker.skips_in_row": "number",
    "worker.flagged": "boolean",
    "now": "number",
}

SECTION_ROOTS: dict[str, frozenset[str]] = {
    "on_create": frozenset({"task", "prediction", "queue", "now"}),
    "on_quorum": frozenset({"task", "prediction", "votes", "queue", "now"}),
    "on_review": frozenset({"task", "prediction", "votes", "review", "queue", "now"}),
    "on_worker": frozenset({"worker", "task", "prediction", "votes", "now"}),
    "on_timer": frozenset({"task", "assignment", "prediction", "queue", "now"}),
}


def all_names() -> list[str]:
    """Every dotted name, in schema order: ``task.id``, ..., ``now``."""
    names: list[str] = []
    for root, fields in CONTEXT_SCHEMA.items():
        if isinstance(fields, dict):
            names.extend(f"{root}.{field}" for field in fields)
        else:
            names.append(root)
    return names


def open_names() -> list[str]:
    """The dotted names of ``OPEN`` fields (the ones that may be subscripted)."""
    return [
        f"{root}.{field}"
        for root, fields in CONTEXT_SCHEMA.items()
        if isinstance(fields, dict)
        for field, kind in fields.items()
        if kind is OPEN
    ]


def field_kind(path: Sequence[str]) -> object | None:
    """``GROUP``, ``LEAF`` or ``OPEN`` for a path like ``("task", "data", "x")``; ``None`` if unknown."""
    if not path or path[0] not in CONTEXT_SCHEMA:
        return None
    kind: object = CONTEXT_SCHEMA[path[0]]
    for part in path[1:]:
        if kind is OPEN:
            return OPEN
        if not isinstance(kind, dict) or part not in kind:
            return None
        kind = kind[part]
    return GROUP if isinstance(kind, dict) else kind


def score_facts(scores: Mapping[str, Any]) -> dict[str, float | None]:
    """``prediction.margin`` and ``prediction.entropy`` of a model's class scores (null when unknown).

    Only finite numbers count (not booleans). The margin is null when it overflows
    (``1e308 - -1e308``). The entropy is that of the positive scores as shares of their
    sum: a score of 0 or below (a logit, a penalty) has no share, so the entropy is never
    negative, and null when no score is positive. Shares are taken of the scores scaled by
    the top one, so huge scores cannot overflow the sum.
    """
    values = sorted((float(v) for v in scores.values()
                     if isinstance(v, (int, float)) and not isinstance(v, bool)
                     and (math.isfinite(v) if isinstance(v, float) else abs(v) < 10**300)), reverse=True)
    margin = entropy = None
    if values:
        margin = values[0] - (values[1] if len(values) > 1 else 0.0)
        if not math.isfinite(margin):
            margin = None
        top = values[0]
        positive = [v / top for v in values if v > 0]  # empty unless top > 0
        if positive:
            total = sum(positive)
            entropy = max(0.0, -sum(p * math.log2(p) for p in (v / total for v in positive) if p > 0))
    return {"margin": margin, "entropy": entropy}
