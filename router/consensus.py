"""Consensus per label type: what ``votes.top``, ``votes.agreement``, ``votes.tie``… say.

Pure functions over plain values (no database); the engine gives them each
annotator's latest vote, the workers' gold records and, for Dawid-Skene, the
queue's recent votes. One entry point, :func:`aggregate`, returns a
:class:`Consensus` for one task:

- ``choice``: a vote. ``method`` picks the aggregator — ``majority`` (plain
  vote), ``weighted`` (each vote weighs ``log_odds_weight`` of its worker's
  gold accuracy) or ``dawid_skene`` (EM over the queue's recent votes and
  this task's).
- ``text``: an exact vote (like ``choice`` with ``majority``).
- ``multi_choice``: a vote per choice; a choice is in the consensus when a
  strict majority of the annotators chose it.
- ``boxes`` / ``spans``: objects are matched across annotators (IoU ≥
  ``labels.iou`` for boxes, overlap ≥ 0.5 of the union for spans); an object
  is kept when a strict majority drew it; its geometry is the median of the
  matched ones and its class their majority.
- ``number``: the median; ``agreement`` is the share of the votes within a
  tolerance of it.

A tie anywhere (two choices with the top count, a choice or an object exactly
half the annotators gave, an object whose class is split evenly) is never
broken: ``label`` is ``None`` and ``tie`` is true. Votes that do not fit the
label type (a workflow that changed its labels) are counted by exact equality.
``docs/design.md`` ("Consensus per label type") is the reference.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from rules.workflow import in_choice_order

from .matching import max_matching
from .quality import (
    QualityError,
    box_iou,
    dawid_skene_fit,
    log_odds_weight,
    majority_vote,
    weighted_vote,
)

METHODS = ("majority", "weighted", "dawid_skene")
DEFAULT_IOU = 0.5
"""Boxes match when their IoU reaches this (``labels.iou`` overrides it)."""
SPAN_OVERLAP = 0.5
"""Spans match when their overlap is at least this share of their union."""
NUMBER_TOLERANCE = 0.05
"""A number vote agrees with the median when within 5% of the scale (see :func:`number_tolerance`)."""
DEFAULT_ACCURACY = 0.7
"""The accuracy assumed for a worker with no gold answers (weighted voting)."""
PRIOR_ANSWERS = 2
"""How many gold answers the default accuracy is worth (a Beta prior), so one lucky answer does not dominate."""
DS_HISTORY = 2000
"""Dawid-Skene reads at most this many of the queue's latest annotations."""
DS_ITERATIONS = 50


@dataclass(frozen=True)
class Consensus:
    """One task's consensus.

    Attributes:
        label: the consensus label (``None`` on a tie or without votes).
        count: number of votes.
        top_count: votes that agree with the consensus (for a choice tie: the
            largest number of votes any label got).
        agreement: ``choice``/``text``: ``top_count / count``; ``multi_choice``:
            mean Jaccard similarity of each vote with the consensus; ``boxes``/
            ``spans``: mean IoU of the annotator pairs per object, a pair where
            one of them did not draw the object counting 0; ``number``: share of
            the votes within the tolerance of the median. ``None`` without votes.
        unanimous: every vote is the same label (exactly).
        tie: a tie was found and not broken.
        method: the aggregator used.
        detail: per-type extras (weights, posterior, objects, mean IoU…).
    """

    label: Any
    count: int
    top_count: int
    agreement: float | None
    unanimous: bool
    tie: bool
    method: str = "majority"
    detail: dict[str, Any] = field(default_factory=dict)

    def facts(self) -> dict[str, Any]:
        """The ``votes.*`` facts this consensus decides."""
        return {"top": self.label, "top_count": self.top_count, "agreement": self.agreement,
                "unanimous": self.unanimous, "tie": self.tie, "consensus": self.method}


def _by_value(value: Any) -> Any:
    """``value`` with whole floats as ints (``4.0`` is ``4``), all the way down."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, list):
        return [_by_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _by_value(v) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True)
class JsonBool:
    """A boolean in canonical form: JSON's ``true`` is not the number 1 (Python's ``True == 1``)."""

    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True, order=True)
class JsonStructure:
    """A list or object in canonical form, held as its canonical JSON text.

    Never equal to text: the label ``["car"]`` is not the text ``"[\"car\"]"``
    that spells it (a plain ``str`` would be). Ordered by that text, so a
    column of them sorts.
    """

    text: str

    def __str__(self) -> str:
        return self.text


def canonical(label: Any) -> Hashable:
    """The one form in which labels that mean the same are equal (votes, consensus, agreement, gold).

    Numbers by value (``4.0`` is ``4``); booleans never equal numbers
    (``true`` is not ``1``); objects whatever their key order; a label's list
    in any order, since no label type orders it: a list of strings
    (``multi_choice``) as a set, a list of objects (boxes, spans) as a
    multiset. Lists and objects become :class:`JsonStructure` (their canonical
    JSON text, hashable and printable, never equal to a text label); strings
    and whole numbers stay as they are, booleans become :class:`JsonBool`.
    """
    if isinstance(label, bool):
        return JsonBool(label)
    if isinstance(label, str) or label is None or isinstance(label, int):
        return label
    if isinstance(label, float):
        return _by_value(label)
    if isinstance(label, list):
        if all(isinstance(item, str) for item in label):
            return JsonStructure(_text(sorted(set(label))))
        return JsonStructure("[" + ", ".join(sorted(_text(_by_value(item)) for item in label)) + "]")
    return JsonStructure(_text(_by_value(label)))


def value_key(value: Any) -> Hashable:
    """A value inside a label (a box's or span's class, another field of it) as a JSON value.

    Like :func:`canonical` (numbers by value, ``true`` not ``1``, objects
    whatever their key order), except that a list keeps its order, as a whole
    label's :func:`canonical` form holds its objects' fields: ``["a", "b"]``
    and ``["b", "a"]`` are two classes everywhere.
    """
    if isinstance(value, (list, dict)):
        return JsonStructure(_text(_by_value(value)))
    return canonical(value)


def same_class(a: Any, b: Any) -> bool:
    """Whether two box/span classes are the same class: JSON values by :func:`value_key`."""
    return value_key(a) == value_key(b)


def final_form(label: Any, spec: Any = None) -> Any:
    """A final label as it is stored: a ``multi_choice`` label as a set in choice order, like its consensus.

    Every way a label becomes final (a prediction accepted, a reviewer's
    correction, an expert's label, a rule's ``{accept: {label: …}}``) stores
    this form, so ``["c", "b", "b"]`` is kept as ``["b", "c"]``. Other labels
    are kept as they are. Votes and a reviewer's label are stored so too
    (:meth:`rules.workflow.LabelSpec.stored`, for a spec of the workflow's).
    """
    if (getattr(spec, "type", None) == "multi_choice" and isinstance(label, list)
            and all(isinstance(c, str) for c in label)):
        return in_choice_order(label, getattr(spec, "choices", ()))
    return label


def gold_weight(answered: int, correct: int, n_classes: int) -> float:
    """A vote's weight from its worker's gold record: ``log_odds_weight`` of the smoothed accuracy.

    The accuracy is ``(correct + PRIOR_ANSWERS * DEFAULT_ACCURACY) / (answered +
    PRIOR_ANSWERS)``: a worker without gold gets ``DEFAULT_ACCURACY`` (0.7),
    and a record of 1/1 gives 0.8, not certainty.
    """
    p = (correct + PRIOR_ANSWERS * DEFAULT_ACCURACY) / (answered + PRIOR_ANSWERS)
    return log_odds_weight(p, max(2, n_classes))


def aggregate(
    labels: Sequence[Any],
    label_type: str = "choice",
    *,
    workers: Sequence[str] | None = None,
    choices: Sequence[str] = (),
    iou: float | None = None,
    method: str = "majority",
    accuracy: Mapping[str, tuple[int, int]] | None = None,
    history: Iterable[tuple[Hashable, str, Any]] | Callable[[], Iterable[tuple[Hashable, str, Any]]] = (),
    task: Hashable | None = None,
    low: float | None = None,
    high: float | None = None,
) -> Consensus:
    """The consensus of one task's votes (``labels[i]`` by ``workers[i]``).

    ``method`` applies to ``choice`` labels (other types have one aggregator
    each): ``weighted`` needs ``workers`` and reads ``accuracy`` (worker ->
    (gold answered, gold correct)); ``dawid_skene`` needs ``workers`` and fits
    over ``history`` ((task, worker, label) rows of other tasks, or a function
    returning them, called only then) plus this task's votes; rows of
    ``task`` in the history are replaced by ``labels``. ``low`` and ``high``
    (``labels.min`` / ``labels.max``) set the tolerance of ``number`` votes.

    Raises:
        QualityError: an unknown method or label type, or ``workers`` missing
            or of another length where the method needs them.
    """
    labels = list(labels)
    if method not in METHODS:
        raise QualityError(f"consensus: unknown method {method!r}; use one of {', '.join(METHODS)}")
    if workers is not None and len(workers) != len(labels):
        raise QualityError(f"consensus: {len(labels)} labels but {len(workers)} workers")
    if label_type not in _BY_TYPE:
        raise QualityError(f"consensus: unknown label type {label_type!r}")
    if not labels:
        return Consensus(None, 0, 0, None, False, False, method if label_type == "choice" else "majority")
    if label_type == "choice" and method != "majority":
        if workers is None:
            raise QualityError(f"consensus: the {method} method needs the worker of each vote")
        if all(isinstance(label, str) for label in labels):
            if method == "weighted":
                return _weighted(labels, list(workers), choices, accuracy or {})
            rows = history() if callable(history) else history
            return _dawid_skene(labels, list(workers), rows, task)
    try:
        return _BY_TYPE[label_type](labels, choices=choices, iou=DEFAULT_IOU if iou is None else iou,
                                    low=low, high=high)
    except (TypeError, KeyError, ValueError, QualityError):
        return exact_vote(labels)


# -- choice and text ---------------------------------------------------------------------------
def exact_vote(labels: Sequence[Any], **_: Any) -> Consensus:
    """Plain vote by exact equality (``choice``, ``text``, and votes that fit no type)."""
    keys = [canonical(label) for label in labels]
    counts = Counter(keys)
    top_key, tie = majority_vote(keys)
    top_count = counts[top_key] if not tie else max(counts.values())
    label = None if tie else labels[keys.index(top_key)]
    return Consensus(label, len(labels), top_count, top_count / len(labels), len(counts) == 1, tie)


def _counted(labels: list[str], label: str | None, tie: bool, method: str, detail: dict[str, Any]) -> Consensus:
    counts = Counter(labels)
    top_count = counts[label] if label is not None else (max(counts.values()) if tie else 0)
    return Consensus(label, len(labels), top_count, top_count / len(labels), len(counts) == 1, tie,
                     method, detail)


def _weighted(labels: list[str], workers: list[str], choices: Sequence[str],
              accuracy: Mapping[str, tuple[int, int]]) -> Consensus:
    n_classes = len(choices) or len(set(labels))
    weights = [gold_weight(*accuracy.get(w, (0, 0)), n_classes) for w in workers]
    label, tie = weighted_vote(labels, weights)
    return _counted(labels, label, tie, "weighted", {"weights": dict(zip(workers, weights))})


_THIS_TASK = ("labelyard:this-task",)  # this task's key in a Dawid-Skene fit when the caller gives none
_NO_CLASS = ("labelyard:no-class",)  # an object drawn without a class, for the class vote


def _dawid_skene(labels: list[str], workers: list[str], history: Iterable[tuple[Hashable, str, Any]],
                 task: Hashable | None) -> Consensus:
    this = _THIS_TASK if task is None else task
    rows = [(t, w, label) for t, w, label in history if t != this and isinstance(label, str)]
    rows.extend((this, w, label) for w, label in zip(workers, labels))
    fit = dawid_skene_fit(rows, iterations=DS_ITERATIONS)
    label = fit.labels[this]
    posterior = fit.posteriors[this]
    return _counted(labels, label, this in fit.ties, "dawid_skene",
                    {"posterior": posterior, "history_rows": len(rows) - len(labels)})


def dawid_skene_consensus(votes: Mapping[Hashable, Sequence[tuple[str, str]]]) -> dict[Hashable, Consensus]:
    """Dawid-Skene consensus of many tasks at once (one fit): ``{task: [(worker, label), …]}``."""
    rows = [(t, w, label) for t, cast in votes.items() for w, label in cast]
    fit = dawid_skene_fit(rows, iterations=DS_ITERATIONS)
    return {t: _counted([label for _, label in cast], fit.labels[t], t in fit.ties, "dawid_skene",
                        {"posterior": fit.posteriors[t]})
            for t, cast in votes.items() if cast}


# -- multi_choice ----------------------------------------------------------------------------
def multi_choice_vote(labels: Sequence[Any], choices: Sequence[str] = (), **_: Any) -> Consensus:
    """A vote per choice: in the consensus when more than half of the annotators chose it."""
    sets = []
    for label in labels:
        if not isinstance(label, list) or not all(isinstance(c, str) for c in label):
            raise TypeError("not a multi_choice label")
        sets.append(frozenset(label))
    n = len(sets)
    support = Counter(c for s in sets for c in s)
    chosen = frozenset(c for c, k in support.items() if 2 * k > n)
    split = sorted(c for c, k in support.items() if 2 * k == n)
    candidate = in_choice_order(chosen, choices)
    jaccard = [1.0 if not (s | chosen) else len(s & chosen) / len(s | chosen) for s in sets]
    top_count = sum(s == chosen for s in sets)
    return Consensus(None if split else candidate, n, top_count, math.fsum(jaccard) / n,
                     len(set(sets)) == 1, bool(split), "majority",
                     {"support": dict(sorted(support.items())), "split": split})


# -- boxes and spans -------------------------------------------------------------------------
def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError("not a number")
    return value


def span_overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Overlap of two spans ``(start, end)`` as a share of their union (1-D IoU).

    Equal spans give 1 (two equal empty spans too), other empty ones 0; spans
    near the float limit are measured exactly, never as ``inf`` or ``nan``.
    """
    if tuple(a) == tuple(b):
        return 1.0
    inter, union = _span_parts(a, b)
    if not (math.isfinite(inter) and math.isfinite(union)):
        inter, union = _span_parts(tuple(map(Fraction, a)), tuple(map(Fraction, b)))
    return float(inter / union) if union > 0 else 0.0


def _span_parts(a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter, (a[1] - a[0]) + (b[1] - b[0]) - inter


def _object_key(geometry: tuple[float, ...], obj: dict) -> tuple:
    """An object's place in the canonical order: its coordinates, then its JSON text by value, then as written."""
    return geometry, _text(_by_value(obj)), _text(obj)


def _label_objects(label: Any, fields: tuple[str, ...]) -> list[tuple[tuple[float, ...], dict]]:
    """One label's objects as ``(geometry, object)``, in the canonical order (:func:`_object_key`)."""
    if not isinstance(label, list):
        raise TypeError("not a list of objects")
    found = []
    for obj in label:
        if not isinstance(obj, dict):
            raise TypeError("not an object")
        found.append((tuple(_number(obj[f]) for f in fields), obj))
    found.sort(key=lambda o: _object_key(*o))
    return found


def _objects(labels: Sequence[Any], fields: tuple[str, ...]) -> list[tuple[int, tuple[float, ...], dict]]:
    """Every object of ``labels`` as ``(voter, geometry, object)``, the votes and each one's objects in the
    canonical order, so that what is matched never depends on the order the votes or objects came in."""
    per_vote = sorted((_label_objects(label, fields) for label in labels),
                      key=lambda objs: [_object_key(*o) for o in objs])
    return [(voter, geometry, obj) for voter, objs in enumerate(per_vote) for geometry, obj in objs]


def match_objects(voters: Sequence[int], similarity: list[list[float]], threshold: float) -> list[list[int]]:
    """Group objects of different annotators that show the same thing.

    ``voters[i]`` is the annotator of object ``i``; ``similarity`` their
    pairwise IoU (or span overlap). Greedy, best pair first: two groups join
    when they have no annotator in common and the mean similarity of the
    pairs between them reaches ``threshold`` (average linkage). Ties between
    pairs go to the earlier objects; consensus gives the objects in the
    canonical order (:func:`_objects`), so a tie goes by the objects' values,
    never by the order the votes came in. Returns groups of object indexes.
    """
    n = len(voters)
    pairs = sorted(((similarity[i][j], i, j) for i in range(n) for j in range(i + 1, n)
                    if voters[i] != voters[j] and similarity[i][j] >= threshold),
                   key=lambda p: (-p[0], p[1], p[2]))
    group_of = list(range(n))
    groups: dict[int, list[int]] = {i: [i] for i in range(n)}
    for _, i, j in pairs:
        gi, gj = group_of[i], group_of[j]
        if gi == gj:
            continue
        a, b = groups[gi], groups[gj]
        if {voters[k] for k in a} & {voters[k] for k in b}:
            continue
        if math.fsum(similarity[x][y] for x in a for y in b) / (len(a) * len(b)) < threshold:
            continue
        for k in b:
            group_of[k] = gi
        a.extend(b)
        del groups[gj]
    return [sorted(g) for _, g in sorted(groups.items())]


def _geometric_vote(labels: Sequence[Any], kind: str, threshold: float,
                    combine: Callable[[list[tuple[float, ...]]], tuple[float, ...]]) -> Consensus:
    fields, similarity = _GEOMETRY[kind]
    n = len(labels)
    items = _objects(labels, fields)
    voters = [v for v, _, _ in items]
    sim = [[similarity(a[1], b[1]) if i != j else 1.0 for j, b in enumerate(items)] for i, a in enumerate(items)]
    groups = match_objects(voters, sim, threshold)
    tie = False
    kept: list[tuple[list[int], Any]] = []  # (group, class or None)
    pair_total = 0.0
    matched: list[float] = []
    described = []
    for group in groups:
        support = len(group)
        pairs = [sim[x][y] for a, x in enumerate(group) for y in group[a + 1:]]
        matched.extend(pairs)
        pair_total += math.fsum(pairs)
        classes = [items[k][2].get("label") for k in group]
        class_keys = [_NO_CLASS if c is None else value_key(c) for c in classes]
        top_class, cls_tie = majority_vote(class_keys)
        cls = None if cls_tie or top_class == _NO_CLASS else classes[class_keys.index(top_class)]
        described.append({"support": support, "members": [[voters[k], items[k][1]] for k in group]})
        if 2 * support == n:
            tie = True
        elif 2 * support > n:
            if cls_tie:
                tie = True
            kept.append((group, cls))
    objects = []
    for group, cls in kept:
        geometry = combine([items[k][1] for k in group])
        obj: dict[str, Any] = dict(zip(fields, geometry))
        if cls is not None:
            obj["label"] = cls
        extras = set.intersection(*(set(items[k][2]) for k in group)) - set(fields) - {"label"}
        for name in sorted(extras):
            values = [items[k][2][name] for k in group]
            if all(value_key(v) == value_key(values[0]) for v in values):
                obj[name] = values[0]
        objects.append(obj)
    objects.sort(key=lambda o: _object_key(tuple(o[f] for f in fields), o))
    # the votes that give the kept objects, as same_label judges them: one to one, with their classes
    top_count = sum(_same_objects(label, objects, kind, threshold) for label in labels)
    if n == 1 or not groups:
        agreement = 1.0
    else:
        agreement = pair_total / (len(groups) * n * (n - 1) / 2)
    unanimous = len({canonical(label) for label in labels}) == 1
    detail = {"objects": described, "mean_iou": (math.fsum(matched) / len(matched)) if matched else None}
    return Consensus(None if tie else objects, n, top_count, agreement, unanimous, tie, "majority", detail)


BOX_FIELDS = ("x", "y", "width", "height")
SPAN_FIELDS = ("start", "end")


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return box_iou(a, b)


_GEOMETRY: dict[str, tuple[tuple[str, ...], Callable[[Any, Any], float]]] = {
    "boxes": (BOX_FIELDS, _box_iou),
    "spans": (SPAN_FIELDS, span_overlap),
}


def _median_box(boxes: list[tuple[float, ...]]) -> tuple[float, ...]:
    return tuple(_median([b[i] for b in boxes]) for i in range(4))


def _median_span(spans: list[tuple[float, ...]]) -> tuple[float, ...]:
    """The lower middle start and the upper middle end (one vote's value each, never a mean)."""
    starts, ends = sorted(s[0] for s in spans), sorted(s[1] for s in spans)
    return _vote_at(starts, (len(spans) - 1) // 2), _vote_at(ends, len(spans) // 2)


def boxes_vote(labels: Sequence[Any], iou: float = DEFAULT_IOU, **_: Any) -> Consensus:
    """Boxes ``{x, y, width, height, label?}``: match by IoU ≥ ``iou``, keep what most drew, median geometry."""
    return _geometric_vote(labels, "boxes", iou, _median_box)


def spans_vote(labels: Sequence[Any], **_: Any) -> Consensus:
    """Spans ``{start, end, label?}``: match by overlap ≥ 0.5 of the union, keep what most marked."""
    for label in labels:
        for obj in label if isinstance(label, list) else ():
            if isinstance(obj, dict) and _number(obj["end"]) < _number(obj["start"]):
                raise ValueError("a span ends before it starts")
    return _geometric_vote(labels, "spans", SPAN_OVERLAP, _median_span)


# -- number ----------------------------------------------------------------------------------
def number_tolerance(median: float, low: float | None = None, high: float | None = None) -> float:
    """How far a vote may be from the median and still agree.

    ``NUMBER_TOLERANCE`` (5%) of the label's range when ``labels.min`` and
    ``labels.max`` are both set, else of the median's magnitude (so a median
    of 0 asks for exact votes).
    """
    if low is not None and high is not None and high > low:
        return NUMBER_TOLERANCE * high - NUMBER_TOLERANCE * low  # no overflow for a range near the float limit
    return NUMBER_TOLERANCE * abs(median)


def _within(value: float, centre: float, tolerance: float) -> bool:
    """Whether a number vote is within ``tolerance`` of ``centre`` (the median, a final label): how
    ``top_count`` and :func:`agrees_with_final` judge number votes. Exact where a float difference
    would overflow (votes near 1e308)."""
    try:
        gap = abs(value - centre)
    except OverflowError:  # an integer too large for a float against a float
        gap = math.inf
    if math.isfinite(gap):
        return gap <= tolerance
    return abs(Fraction(value) - Fraction(centre)) <= Fraction(tolerance)


def _vote_at(ordered: list[float], index: int) -> float:
    """The vote at ``index`` of sorted votes, as an integer when a vote equal to it is one (``1``, not
    ``1.0``, of ``[1.0, 1, 1.0]``): the form never depends on the order the votes came in."""
    value = ordered[index]
    if isinstance(value, float):
        return next((v for v in ordered if isinstance(v, int) and v == value), value)
    return value


def _median(values: list[float], whole_as_int: bool = False) -> float:
    """The median: the middle vote (:func:`_vote_at`), or the mean of the two middle votes computed
    exactly (no rounding of huge integers, no overflow between two huge floats) as the nearest float
    — an integer when ``whole_as_int`` and it is whole."""
    ordered = sorted(values)
    n = len(ordered)
    if n % 2:
        return _vote_at(ordered, n // 2)
    middle = (Fraction(ordered[n // 2 - 1]) + Fraction(ordered[n // 2])) / 2
    return int(middle) if whole_as_int and middle.denominator == 1 else float(middle)


def number_vote(labels: Sequence[Any], low: float | None = None, high: float | None = None, **_: Any) -> Consensus:
    """The median; ``agreement`` is the share of the votes within :func:`number_tolerance` of it."""
    values = [_number(v) for v in labels]
    median = _median(values, whole_as_int=all(isinstance(v, int) for v in values))
    tolerance = number_tolerance(median, low, high)
    close = sum(_within(v, median, tolerance) for v in values)
    # halved, so that votes near the float limit (1e308 and -1e308) give no infinity or overflow
    spread = 2 * math.fsum(abs(v / 2 - median / 2) / len(values) for v in values)
    return Consensus(median, len(values), close, close / len(values), len(set(values)) == 1, False, "majority",
                     {"tolerance": tolerance, "mean_abs_deviation": spread})


_BY_TYPE: dict[str, Callable[..., Consensus]] = {
    "choice": exact_vote,
    "text": exact_vote,
    "multi_choice": multi_choice_vote,
    "boxes": boxes_vote,
    "spans": spans_vote,
    "number": number_vote,
}


def same_label(label: Any, reference: Any, spec: Any = None) -> bool:
    """Whether ``label`` gives ``reference`` (a gold answer, a final label), judged as consensus judges votes.

    ``choice``/``text`` exactly, ``number`` by value, ``multi_choice`` as a set
    (:func:`canonical`); ``boxes``/``spans`` (with ``spec``, a
    ``rules.workflow.LabelSpec``) when the objects match one to one — boxes at
    IoU ≥ ``labels.iou``, spans at an overlap ≥ ``SPAN_OVERLAP`` of their
    union — with the same classes: some one-to-one pairing of all the
    objects exists (a maximum matching, :func:`router.matching.max_matching`,
    not the best pair first, which can use up an object another pair
    needed). Labels that do not fit the type compare by :func:`canonical`
    form. For every type but ``number``, consensus's ``top_count`` counts
    the votes this says give the consensus; a vote's agreement with a final
    label (:func:`agrees_with_final`) and a gold answer's score
    (:func:`gold_answer_right`) are this but for numbers.
    """
    kind = getattr(spec, "type", None)
    if kind in ("boxes", "spans"):
        try:
            return _same_objects(label, reference, kind, getattr(spec, "iou", None))
        except (TypeError, KeyError, ValueError, QualityError):
            pass
    return canonical(label) == canonical(reference)


def agrees_with_final(label: Any, final: Any, spec: Any = None) -> bool:
    """Whether a vote agrees with its task's final label, as consensus's ``top_count`` counts the votes
    that give the consensus: the one definition of ``worker.agreement``, the per-annotator agreement of
    ``labelyard agreement`` and sinks' ``agreement``.

    :func:`same_label`, except for ``number`` labels (``spec.type``): a vote within
    :func:`number_tolerance` of the final label agrees (5% of ``labels.max - labels.min`` when both are
    set, else of the final label's magnitude), as ``top_count`` counts the votes near the median — so
    votes of 3 and 3.1 on a 0..10 scale both agree with their median 3.05. A vote that is not a number
    compares by :func:`same_label`. Gold answers are scored by it too (:func:`gold_answer_right`).
    """
    if getattr(spec, "type", None) == "number":
        try:
            vote, reference = _number(label), _number(final)
        except TypeError:
            pass
        else:
            return _within(vote, reference, number_tolerance(reference, spec.min, spec.max))
    return same_label(label, final, spec)


def gold_answer_right(label: Any, answer: Any, spec: Any = None) -> bool:
    """Whether a worker's ``label`` on a gold question is right against its known ``answer``: as a vote
    agrees with a final label (:func:`agrees_with_final`, the gold answer in the final label's place),
    so a ``number`` within the consensus tolerance of the answer is right (3.1 for a gold 3.0 on a 0..10
    scale), as it would agree with a final 3.0; other types as :func:`same_label`. The one scoring of
    ``submit``, ``gold add``'s and ``apply``'s rescoring, and the migrations that score again."""
    return agrees_with_final(label, answer, spec)


def final_agreement(labels: Sequence[Any], final: Any, spec: Any = None) -> float | None:
    """The share of a task's votes that agree with its final label (:func:`agrees_with_final`): sinks'
    ``agreement``, whoever made the label final (consensus by any method, a reviewer, an expert, a
    rule). ``None`` without votes or without a final label."""
    if not labels or final is None:
        return None
    return sum(agrees_with_final(label, final, spec) for label in labels) / len(labels)


def _same_objects(label: Any, reference: Any, kind: str, threshold: float | None) -> bool:
    """Whether ``label``'s objects match ``reference``'s one to one, each pair of the same class."""
    mine, theirs, sim, limit = _measured(label, reference, kind, threshold)
    if len(mine) != len(theirs):
        return False
    same = _partners(mine, theirs, sim, limit, classed=True)
    return all(j is not None for j in max_matching(same, len(theirs)))


def object_pairs(label: Any, reference: Any, spec: Any) -> list[tuple[dict | None, dict | None]] | None:
    """``label``'s boxes or spans paired with ``reference``'s as :func:`same_label` pairs them.

    ``(mine, theirs)`` per matched pair, ``(mine, None)`` for an object the
    reference does not have, ``(None, theirs)`` for one ``label`` misses.
    ``None`` when ``spec`` is not boxes or spans, or a label does not fit it.
    """
    kind = getattr(spec, "type", None)
    if kind not in ("boxes", "spans"):
        return None
    try:
        return _object_pairs(label, reference, kind, getattr(spec, "iou", None))
    except (TypeError, KeyError, ValueError, QualityError):
        return None


def _object_pairs(label: Any, reference: Any, kind: str, iou: float | None) -> list[tuple[dict | None, dict | None]]:
    """The largest one-to-one matching of same-class pairs (as :func:`_same_objects`), then, among the objects
    it leaves, the largest of pairs of other classes (a class confused), then the objects left alone."""
    mine, theirs, sim, limit = _measured(label, reference, kind, iou)
    match = max_matching(_partners(mine, theirs, sim, limit, classed=True), len(theirs))
    taken = {j for j in match if j is not None}
    rest = [i for i, j in enumerate(match) if j is None]
    loose = _partners(mine, theirs, sim, limit, classed=False)
    confused = max_matching([[j for j in loose[i] if j not in taken] for i in rest], len(theirs))
    for i, j in zip(rest, confused):
        match[i] = j
    taken.update(j for j in confused if j is not None)
    pairs: list[tuple[dict | None, dict | None]] = [
        (obj, None if j is None else theirs[j][1]) for (_, obj), j in zip(mine, match)]
    pairs.extend((None, obj) for j, (_, obj) in enumerate(theirs) if j not in taken)
    return pairs


def _measured(label: Any, reference: Any, kind: str, threshold: float | None) -> tuple[list, list, list, float]:
    """Both labels' objects in the canonical order, their pairwise similarity and the threshold of ``kind``."""
    fields, similarity = _GEOMETRY[kind]
    if threshold is None:
        threshold = DEFAULT_IOU if kind == "boxes" else SPAN_OVERLAP
    if kind == "spans":
        threshold = SPAN_OVERLAP
    mine, theirs = _label_objects(label, fields), _label_objects(reference, fields)
    sim = [[similarity(a, b) for b, _ in theirs] for a, _ in mine]
    return mine, theirs, sim, threshold


def _partners(mine: list, theirs: list, sim: list[list[float]], threshold: float, classed: bool) -> list[list[int]]:
    """Per object of ``mine``, the objects of ``theirs`` it may match (of its class when ``classed``), best first."""
    return [sorted((j for j, (_, other) in enumerate(theirs) if row[j] >= threshold
                    and (not classed or same_class(obj.get("label"), other.get("label")))),
                   key=lambda j, row=row: (-row[j], j))
            for row, (_, obj) in zip(sim, mine)]


def for_spec(labels: Sequence[Any], spec: Any, **kwargs: Any) -> Consensus:
    """:func:`aggregate` with the type, choices, IoU and range of a ``rules.workflow.LabelSpec``."""
    return aggregate(labels, spec.type, choices=spec.choices, iou=spec.iou, low=spec.min, high=spec.max, **kwargs)
