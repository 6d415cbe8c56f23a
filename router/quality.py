"""Agreement statistics, vote aggregation and overlap measures for labels.

Plain functions over plain Python values: no database, no numpy. Only the
standard library is used so that the core stays light to import (the CLI is
started in loops by annotators and scripts).

Every function either returns a number that matches its reference library
(statsmodels, scikit-learn, krippendorff, crowd-kit, scipy; see
``docs/quality.md``) or, where the reference returns ``nan`` or raises, raises
:class:`QualityError` with a message meant for people. No function returns
``nan``.

``None`` is never a label: in vote functions it means "no decision" and in
:func:`krippendorff_alpha` it means "missing rating".
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from .errors import LabelyardError

__all__ = [
    "QualityError",
    "fleiss_kappa",
    "cohen_kappa",
    "krippendorff_alpha",
    "majority_vote",
    "weighted_vote",
    "log_odds_weight",
    "agreement_share",
    "vote_entropy",
    "DawidSkeneResult",
    "dawid_skene",
    "dawid_skene_fit",
    "box_iou",
    "dice",
]

#: Relative/absolute tolerance under which two vote totals or two posteriors
#: count as tied (float sums such as 0.1 + 0.2 and 0.3 must tie).
TIE_TOLERANCE = 1e-12

#: crowd-kit's floor for probabilities before taking logs (``_EPS``).
_DS_EPS = 1e-10

#: Interval/ratio alpha rescales values larger than this (by a power of two) so squares stay finite.
_RESCALE_ABOVE = 2.0**256


class QualityError(LabelyardError, ValueError):
    """A quality statistic that cannot be computed for these inputs.

    The message says why in words meant for people (e.g. "kappa is undefined
    when every rating is the same category"). It is a ``ValueError`` so that
    callers outside Labelyard can catch it as such, and a ``LabelyardError``
    so that the CLI prints it without a traceback.
    """


# --------------------------------------------------------------------------
# helpers


def _check_label(label: Any, where: str) -> None:
    if label is None:
        raise QualityError(
            f"{where}: None is not a label (it is reserved for 'no decision' / "
            "'missing'); drop missing ratings before calling"
        )


def _ordered(labels: Iterable[Hashable]) -> list[Hashable]:
    """Distinct labels, sorted when they are mutually comparable, else first-seen order."""
    distinct = list(dict.fromkeys(labels))
    try:
        return sorted(distinct)  # type: ignore[type-var]
    except TypeError:
        return distinct


def _is_tie(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TIE_TOLERANCE, abs_tol=TIE_TOLERANCE)


def _finite_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QualityError(f"{where}: expected a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise QualityError(f"{where}: expected a finite number, got {value!r}")
    return number


# --------------------------------------------------------------------------
# agreement statistics


def fleiss_kappa(items: Sequence[Sequence[Hashable]]) -> float:
    """Fleiss' kappa for many raters on nominal labels.

    ``items`` holds one sequence of labels per item (one label per rating;
    who rated does not matter). Every item needs at least two ratings.

    With the same number of ratings on every item this is exactly
    ``statsmodels.stats.inter_rater.fleiss_kappa(aggregate_raters(items)[0])``.
    With unequal numbers it uses Gwet's generalised form (Handbook of
    Inter-Rater Reliability, 4th ed., ch. 2), which reduces to Fleiss' when
    the counts are equal::

        P_i   = sum_k n_ik (n_ik - 1) / (n_i (n_i - 1))    per item
        P_o   = mean_i P_i
        pi_k  = mean_i (n_ik / n_i)                        category shares
        P_e   = sum_k pi_k ** 2
        kappa = (P_o - P_e) / (1 - P_e)

    Raises:
        QualityError: no items; an item with fewer than two ratings; a None
            label; or every rating in one single category (chance agreement
            is 1 so kappa is 0/0 -- statsmodels returns nan).
    """
    if len(items) == 0:
        raise QualityError("Fleiss' kappa needs at least one item; got none")
    per_item: list[Counter[Hashable]] = []
    for index, ratings in enumerate(items):
        if isinstance(ratings, (str, bytes)):
            raise QualityError(
                f"Fleiss' kappa: item {index} is a string, not a sequence of labels"
            )
        ratings = list(ratings)
        if len(ratings) < 2:
            raise QualityError(
                f"Fleiss' kappa: item {index} has {len(ratings)} rating(s); "
                "every item needs at least two"
            )
        for label in ratings:
            _check_label(label, "Fleiss' kappa")
        per_item.append(Counter(ratings))

    categories = _ordered(label for counts in per_item for label in counts)
    n_items = len(per_item)
    sizes = [sum(counts.values()) for counts in per_item]
    if len(set(sizes)) == 1:
        # The statsmodels computation, step for step.
        n = sizes[0]
        n_total = float(n * n_items)
        p_cat = [sum(c[k] for c in per_item) / n_total for k in categories]
        p_rat = [
            (sum(float(v) * v for v in c.values()) - n) / (n * (n - 1.0))
            for c in per_item
        ]
        p_mean = math.fsum(p_rat) / n_items
        p_exp = math.fsum(p * p for p in p_cat)
    else:
        p_mean = (
            math.fsum(
                sum(v * (v - 1) for v in c.values()) / (size * (size - 1))
                for c, size in zip(per_item, sizes)
            )
            / n_items
        )
        shares = [
            math.fsum(c[k] / size for c, size in zip(per_item, sizes)) / n_items
            for k in categories
        ]
        p_exp = math.fsum(p * p for p in shares)
    if len(categories) < 2 or p_exp >= 1.0:
        raise QualityError(
            "Fleiss' kappa is undefined when every rating is the same category "
            f"({categories[0]!r}): agreement is perfect but so is chance agreement"
        )
    return (p_mean - p_exp) / (1.0 - p_exp)


def cohen_kappa(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    weights: Literal["linear", "quadratic"] | None = None,
    labels: Sequence[Hashable] | None = None,
) -> float:
    """Cohen's kappa between two raters, optionally weighted.

    ``a[i]`` and ``b[i]`` are the two raters' labels for item ``i``. Equals
    ``sklearn.metrics.cohen_kappa_score(a, b, weights=..., labels=...)``.

    For ``weights="linear"`` (``|i - j|``) or ``"quadratic"`` (``(i - j)**2``)
    the disagreement weight comes from the positions of the labels in
    ``labels`` if given, else in the sorted distinct labels -- as in sklearn.

    Raises:
        QualityError: different lengths; no items; a None label; unknown
            ``weights``; duplicate ``labels``; a rating not in ``labels``
            (sklearn silently drops such items -- we refuse); unsortable
            labels with weights and no ``labels``; or kappa undefined (both
            raters use one and the same category only, so chance
            disagreement is 0 -- sklearn returns nan).
    """
    if weights not in (None, "linear", "quadratic"):
        raise QualityError(
            f"Cohen's kappa: weights must be None, 'linear' or 'quadratic', not {weights!r}"
        )
    a = list(a)
    b = list(b)
    if len(a) != len(b):
        raise QualityError(
            f"Cohen's kappa: the two raters rated {len(a)} and {len(b)} items; "
            "they must rate the same items"
        )
    if not a:
        raise QualityError("Cohen's kappa needs at least one item; got none")
    for label in (*a, *b):
        _check_label(label, "Cohen's kappa")

    if labels is not None:
        order = list(labels)
        if len(set(order)) != len(order):
            raise QualityError("Cohen's kappa: `labels` has duplicates")
        known = set(order)
        unknown = [x for x in dict.fromkeys((*a, *b)) if x not in known]
        if unknown:
            raise QualityError(
                f"Cohen's kappa: ratings {unknown!r} are not in `labels`"
            )
    else:
        distinct = list(dict.fromkeys((*a, *b)))
        try:
            order = sorted(distinct)  # type: ignore[type-var]
        except TypeError:
            if weights is not None:
                raise QualityError(
                    "Cohen's kappa: weighted kappa needs ordered labels; these "
                    "cannot be sorted, so pass `labels` in order"
                ) from None
            order = distinct
    position = {label: i for i, label in enumerate(order)}
    k = len(order)

    confusion = [[0.0] * k for _ in range(k)]
    for x, y in zip(a, b):
        confusion[position[x]][position[y]] += 1.0
    rows = [sum(r) for r in confusion]  # rater a's marginals
    cols = [sum(confusion[i][j] for i in range(k)) for j in range(k)]  # rater b's
    n = float(len(a))

    def weight(i: int, j: int) -> float:
        if weights is None:
            return 0.0 if i == j else 1.0
        if weights == "linear":
            return float(abs(i - j))
        return float((i - j) ** 2)

    observed = math.fsum(
        weight(i, j) * confusion[i][j] for i in range(k) for j in range(k)
    )
    expected = math.fsum(
        weight(i, j) * (rows[i] * cols[j] / n) for i in range(k) for j in range(k)
    )
    if expected == 0.0:
        raise QualityError(
            "Cohen's kappa is undefined: both raters used one and the same "
            "category only, so chance agreement is already perfect"
        )
    return 1.0 - observed / expected


def krippendorff_alpha(
    data: Sequence[Sequence[Any]],
    level: Literal["nominal", "ordinal", "interval", "ratio"] = "nominal",
) -> float:
    """Krippendorff's alpha for raters x items data with missing ratings.

    ``data[r][i]`` is rater ``r``'s value for item ``i``, ``None`` (or a
    float nan) when missing; every row must have the same length. Items with
    fewer than two values are not pairable and are ignored. Equals
    ``krippendorff.alpha(reliability_data=..., level_of_measurement=level)``
    with ``None`` turned into ``nan``.

    ``level``: ``"nominal"`` (any hashable labels), ``"ordinal"`` (values
    ranked by sorting), ``"interval"`` and ``"ratio"`` (real numbers).

    Raises:
        QualityError: ragged rows; unknown level; non-numeric values for
            interval/ratio or unsortable ones for ordinal; fewer than two
            distinct values; no item rated by two raters (the reference
            raises for these); or expected disagreement of 0 (the reference
            returns nan).
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise QualityError(
            "Krippendorff's alpha: level must be 'nominal', 'ordinal', "
            f"'interval' or 'ratio', not {level!r}"
        )
    rows = [list(row) for row in data]
    if not rows:
        raise QualityError("Krippendorff's alpha needs at least one rater; got none")
    n_items = len(rows[0])
    if any(len(row) != n_items for row in rows):
        raise QualityError(
            "Krippendorff's alpha: every rater row must have one entry per item "
            "(use None for a missing rating)"
        )

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    units: list[list[Any]] = []
    for i in range(n_items):
        values = [row[i] for row in rows if not missing(row[i])]
        if level in ("interval", "ratio"):
            values = [
                _finite_number(v, f"Krippendorff's alpha ({level})") for v in values
            ]
        units.append(values)
    if level in ("interval", "ratio"):
        largest = max((abs(v) for unit in units for v in unit), default=0.0)
        if largest > _RESCALE_ABOVE:
            # alpha does not depend on the scale; a power of two keeps the values exact
            # and their squared differences finite (1e200 and -1e200 would overflow)
            factor = 2.0 ** -math.frexp(largest)[1]
            units = [[v * factor for v in unit] for unit in units]

    distinct = list(dict.fromkeys(v for unit in units for v in unit))
    if level == "nominal":
        domain = distinct
    else:
        try:
            domain = sorted(distinct)
        except TypeError:
            raise QualityError(
                f"Krippendorff's alpha ({level}): values must be mutually ordered"
            ) from None
    if len(domain) <= 1:
        raise QualityError(
            "Krippendorff's alpha needs at least two distinct values in the data; "
            f"got {len(domain)}"
        )
    if all(len(unit) <= 1 for unit in units):
        raise QualityError(
            "Krippendorff's alpha needs at least one item rated by two or more raters"
        )

    index = {v: i for i, v in enumerate(domain)}
    size = len(domain)
    # coincidence matrix o[c][k]
    o = [[0.0] * size for _ in range(size)]
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        counts = Counter(index[v] for v in unit)
        for c, nc in counts.items():
            for k, nk in counts.items():
                pairs = nc * nk - (nc if c == k else 0)
                if pairs:
                    o[c][k] += pairs / (m - 1)
    n_v = [math.fsum(o[c][k] for c in range(size)) for k in range(size)]
    n_total = math.fsum(n_v)

    def distance(c: int, k: int) -> float:
        if level == "nominal":
            return 0.0 if c == k else 1.0
        if level == "interval":
            return (domain[c] - domain[k]) ** 2
        if level == "ratio":
            total = domain[c] + domain[k]
            return 0.0 if total == 0 else ((domain[c] - domain[k]) / total) ** 2
        lo, hi = min(c, k), max(c, k)
        between = math.fsum(n_v[lo : hi + 1])
        return (between - (n_v[lo] + n_v[hi]) / 2) ** 2

    d = [[distance(c, k) for k in range(size)] for c in range(size)]
    observed = math.fsum(o[c][k] * d[c][k] for c in range(size) for k in range(size))
    expected = math.fsum(
        ((n_v[c] * n_v[k] - (n_v[c] if c == k else 0.0)) / (n_total - 1)) * d[c][k]
        for c in range(size)
        for k in range(size)
    )
    if expected == 0.0:
        raise QualityError(
            "Krippendorff's alpha is undefined: the pairable ratings show no "
            "variation (only one value occurs in items rated by two or more raters)"
        )
    return 1.0 - observed / expected


# --------------------------------------------------------------------------
# votes


def majority_vote(labels: Iterable[Hashable]) -> tuple[Hashable | None, bool]:
    """The label with the most votes, as ``(label, tie)``.

    A tie for the top is never broken: it returns ``(None, True)``. No votes
    returns ``(None, False)``. Otherwise ``(label, False)``.

    Raises:
        QualityError: a None label.
    """
    votes = list(labels)
    for label in votes:
        _check_label(label, "majority vote")
    if not votes:
        return None, False
    ranked = Counter(votes).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None, True
    return ranked[0][0], False


def weighted_vote(
    labels: Sequence[Hashable], weights: Sequence[float]
) -> tuple[Hashable | None, bool]:
    """Weighted plurality vote, as ``(label, tie)``.

    ``weights[i]`` is the weight of the vote ``labels[i]``; the label with the
    largest total weight wins. For accuracy-weighted voting use
    :func:`log_odds_weight` of each voter's accuracy: ``log((K-1) p / (1-p))``
    is the optimal weight when a voter is right with probability ``p`` and
    otherwise picks one of the ``K-1`` wrong labels uniformly (Nitzan &
    Paroush 1982; for ``K=2`` it is the plain log-odds). Weights may be zero
    or negative (a worse-than-chance voter counts against its label).

    Totals within ``TIE_TOLERANCE`` (1e-12, relative or absolute) of the top
    total tie: ``(None, True)``. No votes: ``(None, False)``.

    Raises:
        QualityError: different lengths, a non-finite weight or a None label.
    """
    labels = list(labels)
    weights = list(weights)
    if len(labels) != len(weights):
        raise QualityError(
            f"weighted vote: {len(labels)} labels but {len(weights)} weights"
        )
    totals: dict[Hashable, list[float]] = {}
    for label, w in zip(labels, weights):
        _check_label(label, "weighted vote")
        totals.setdefault(label, []).append(_finite_number(w, "weighted vote weight"))
    if not totals:
        return None, False
    summed = sorted(
        ((math.fsum(ws), label) for label, ws in totals.items()),
        key=lambda pair: pair[0],
        reverse=True,
    )
    if len(summed) > 1 and _is_tie(summed[0][0], summed[1][0]):
        return None, True
    return summed[0][1], False


def log_odds_weight(accuracy: float, n_classes: int = 2, eps: float = 1e-6) -> float:
    """Vote weight ``log((K-1) * p / (1-p))`` for a voter of accuracy ``p``.

    ``p`` is clamped to ``[eps, 1-eps]`` so a perfect (or perfectly wrong)
    record gives a large finite weight instead of infinity. With ``K``
    classes a voter at chance (``p = 1/K``) gets weight 0.

    Raises:
        QualityError: ``accuracy`` outside [0, 1] or ``n_classes < 2``.
    """
    p = _finite_number(accuracy, "log-odds weight accuracy")
    if not 0.0 <= p <= 1.0:
        raise QualityError(f"log-odds weight: accuracy must be in [0, 1], got {p}")
    if n_classes < 2:
        raise QualityError(f"log-odds weight: need at least 2 classes, got {n_classes}")
    p = min(max(p, eps), 1.0 - eps)
    return math.log((n_classes - 1) * p / (1.0 - p))


def agreement_share(labels: Iterable[Hashable]) -> float | None:
    """Share of the votes that went to the most voted label, by exact votes.

    Rules' ``votes.agreement`` is the label type's own measure (router.consensus);
    for choice and text under majority consensus it is this share.

    1.0 when unanimous, ``1/n`` at worst; ``None`` when there are no votes.

    Raises:
        QualityError: a None label.
    """
    votes = list(labels)
    for label in votes:
        _check_label(label, "agreement share")
    if not votes:
        return None
    return Counter(votes).most_common(1)[0][1] / len(votes)


def vote_entropy(labels: Iterable[Hashable]) -> float | None:
    """Shannon entropy, in bits, of the vote distribution (``votes.entropy`` over canonical labels).

    0.0 when unanimous, ``log2(k)`` when the votes are spread evenly over
    ``k`` labels; ``None`` when there are no votes. Equals
    ``scipy.stats.entropy(counts, base=2)``.

    Raises:
        QualityError: a None label.
    """
    votes = list(labels)
    for label in votes:
        _check_label(label, "vote entropy")
    if not votes:
        return None
    n = len(votes)
    h = -math.fsum((c / n) * math.log2(c / n) for c in Counter(votes).values())
    return h if h > 0.0 else 0.0


# --------------------------------------------------------------------------
# Dawid-Skene


@dataclass(frozen=True)
class DawidSkeneResult:
    """What :func:`dawid_skene_fit` estimated.

    Attributes:
        labels: task -> most probable label, or ``None`` when the top two
            posteriors tie (within ``TIE_TOLERANCE``).
        posteriors: task -> {label: P(true label = label)}; each sums to 1.
        confusion: worker -> true label -> observed label -> P(worker says
            observed | truth is true label); each inner dict sums to 1 and
            covers every label (0.0 for labels the worker never used).
        priors: label -> estimated share of tasks whose true label it is.
        ties: tasks whose label is ``None`` because of a tie.
        iterations: EM iterations run (0 means majority-vote posteriors).
        loss_history: crowd-kit's per-iteration evidence lower bound / rows.
    """

    labels: dict[Hashable, Hashable | None]
    posteriors: dict[Hashable, dict[Hashable, float]]
    confusion: dict[Hashable, dict[Hashable, dict[Hashable, float]]]
    priors: dict[Hashable, float]
    ties: frozenset[Hashable] = frozenset()
    iterations: int = 0
    loss_history: list[float] = field(default_factory=list)


def dawid_skene_fit(
    rows: Iterable[tuple[Hashable, Hashable, Hashable]],
    iterations: int = 100,
    tol: float = 1e-5,
) -> DawidSkeneResult:
    """Dawid-Skene EM over ``(task, worker, label)`` rows, with all estimates.

    Mirrors ``crowdkit.aggregation.DawidSkene(n_iter=iterations, tol=tol)``
    step for step: posteriors start as majority-vote shares; the M-step sums
    posteriors per (worker, observed label), floors them at 1e-10 and
    normalises per (worker, true label); the E-step floors priors at 1e-10
    and works in log2 with a per-task max shift; EM stops after
    ``iterations`` rounds or when the evidence lower bound per row improves
    by less than ``tol``. A worker labelling the same task twice counts twice.

    Differences from crowd-kit: posteriors are not floored at 1e-10 after the
    last round (so they sum to 1; the difference is at most 1e-10) and exact
    ties give ``None`` rather than the first label in sorted order.

    No rows gives an empty result.

    Raises:
        QualityError: a row that is not a (task, worker, label) triple, a None
            label, a negative ``iterations`` or a negative ``tol``.
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise QualityError(f"Dawid-Skene: iterations must be an integer >= 0, got {iterations!r}")
    tol = _finite_number(tol, "Dawid-Skene tol")
    if tol < 0:
        raise QualityError(f"Dawid-Skene: tol must be >= 0, got {tol}")

    data: list[tuple[Hashable, Hashable, Hashable]] = []
    for row in rows:
        try:
            task, worker, label = row
        except (TypeError, ValueError):
            raise QualityError(
                f"Dawid-Skene: each row must be (task, worker, label), got {row!r}"
            ) from None
        _check_label(label, "Dawid-Skene")
        data.append((task, worker, label))
    if not data:
        return DawidSkeneResult(labels={}, posteriors={}, confusion={}, priors={})

    classes = _ordered(label for _, _, label in data)
    K = len(classes)
    cls = {label: c for c, label in enumerate(classes)}
    tasks = list(dict.fromkeys(task for task, _, _ in data))
    tix = {task: t for t, task in enumerate(tasks)}
    workers = list(dict.fromkeys(worker for _, worker, _ in data))
    wix = {worker: w for w, worker in enumerate(workers)}
    obs = [(tix[t], wix[w], cls[y]) for t, w, y in data]
    n_rows = len(obs)
    n_tasks = len(tasks)
    rows_of_task: list[list[tuple[int, int]]] = [[] for _ in tasks]
    for t, w, y in obs:
        rows_of_task[t].append((w, y))
    # (worker, observed label) pairs that occur: crowd-kit's error-matrix rows
    pairs = list(dict.fromkeys((w, y) for _, w, y in obs))
    rows_of_pair: dict[tuple[int, int], list[int]] = {p: [] for p in pairs}
    for t, w, y in obs:
        rows_of_pair[(w, y)].append(t)
    labels_of_worker: dict[int, list[int]] = {}
    for w, y in pairs:
        labels_of_worker.setdefault(w, []).append(y)

    def m_step(probas: list[list[float]]) -> dict[tuple[int, int], list[float]]:
        raw = {
            p: [max(math.fsum(probas[t][c] for t in ts), _DS_EPS) for c in range(K)]
            for p, ts in rows_of_pair.items()
        }
        errors: dict[tuple[int, int], list[float]] = {}
        for w, ys in labels_of_worker.items():
            denom = [math.fsum(raw[(w, y)][c] for y in ys) for c in range(K)]
            for y in ys:
                errors[(w, y)] = [raw[(w, y)][c] / denom[c] for c in range(K)]
        return errors

    def e_step(priors: list[float], errors: dict[tuple[int, int], list[float]]) -> list[list[float]]:
        log_priors = [math.log2(max(p, _DS_EPS)) for p in priors]
        log_err = {p: [math.log2(v) for v in e] for p, e in errors.items()}
        probas = []
        for t in range(n_tasks):
            ll = [
                log_priors[c] + math.fsum(log_err[p][c] for p in rows_of_task[t])
                for c in range(K)
            ]
            top = max(ll)
            scaled = [2.0 ** (v - top) for v in ll]
            total = math.fsum(scaled)
            probas.append([s / total for s in scaled])
        return probas

    def mean_priors(probas: list[list[float]]) -> list[float]:
        return [math.fsum(p[c] for p in probas) / n_tasks for c in range(K)]

    def elbo(probas: list[list[float]], priors: list[float], errors: dict[tuple[int, int], list[float]]) -> float:
        log_priors = [math.log(max(p, _DS_EPS)) for p in priors]
        log_err = {p: [math.log(v) for v in e] for p, e in errors.items()}
        joint = math.fsum(
            probas[t][c] * (log_err[(w, y)][c] + log_priors[c])
            for t, w, y in obs
            for c in range(K)
        )
        entropy = -math.fsum(
            max(q, _DS_EPS) * math.log(max(q, _DS_EPS)) for p in probas for q in p
        )
        return joint + entropy

    # initialisation: majority-vote shares
    probas = []
    for t in range(n_tasks):
        counts = Counter(y for _, y in rows_of_task[t])
        n = len(rows_of_task[t])
        probas.append([counts[c] / n for c in range(K)])
    priors = mean_priors(probas)
    errors = m_step(probas)
    loss = -math.inf
    history: list[float] = []
    done = 0
    for _ in range(iterations):
        probas = e_step(priors, errors)
        priors = mean_priors(probas)
        errors = m_step(probas)
        new_loss = elbo(probas, priors, errors) / n_rows
        history.append(new_loss)
        done += 1
        if new_loss - loss < tol:
            break
        loss = new_loss

    labels: dict[Hashable, Hashable | None] = {}
    ties: set[Hashable] = set()
    for t, task in enumerate(tasks):
        ranked = sorted(range(K), key=lambda c: probas[t][c], reverse=True)
        if K > 1 and _is_tie(probas[t][ranked[0]], probas[t][ranked[1]]):
            labels[task] = None
            ties.add(task)
        else:
            labels[task] = classes[ranked[0]]
    posteriors = {
        task: {classes[c]: probas[t][c] for c in range(K)} for t, task in enumerate(tasks)
    }
    confusion: dict[Hashable, dict[Hashable, dict[Hashable, float]]] = {}
    for w, worker in enumerate(workers):
        confusion[worker] = {
            classes[c]: {
                classes[y]: (errors[(w, y)][c] if (w, y) in errors else 0.0)
                for y in range(K)
            }
            for c in range(K)
        }
    return DawidSkeneResult(
        labels=labels,
        posteriors=posteriors,
        confusion=confusion,
        priors={classes[c]: priors[c] for c in range(K)},
        ties=frozenset(ties),
        iterations=done,
        loss_history=history,
    )


def dawid_skene(
    rows: Iterable[tuple[Hashable, Hashable, Hashable]],
    iterations: int = 100,
    tol: float = 1e-5,
) -> dict[Hashable, Hashable | None]:
    """Dawid-Skene labels: task -> most probable true label (None on a tie).

    ``rows`` are ``(task, worker, label)`` triples. Shorthand for
    ``dawid_skene_fit(rows, iterations, tol).labels``; see
    :func:`dawid_skene_fit` for the algorithm and the posteriors and worker
    confusion matrices. Agrees with ``crowdkit.aggregation.DawidSkene``.
    """
    return dawid_skene_fit(rows, iterations, tol).labels


# --------------------------------------------------------------------------
# geometry


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two axis-aligned boxes ``[x, y, w, h]``.

    ``(x, y)`` is a corner and ``w``, ``h`` >= 0 the extents (COCO style).
    Boxes that only touch have IoU 0.0; equal boxes have 1.0, whatever their
    size. Two zero-area boxes are measured in the dimension they have: two
    zero-width boxes on the same vertical line by the overlap of their
    heights as a share of their union (zero-height boxes alike, along x), so
    two equal points give 1.0; any other pair of zero-area boxes gives 0.0.
    Huge or tiny values are computed exactly, never overflowing to ``nan``.

    Raises:
        QualityError: not four finite numbers, or a negative width/height.
    """
    boxes = []
    for name, box in (("a", a), ("b", b)):
        values = list(box)
        if len(values) != 4:
            raise QualityError(f"box_iou: box {name} must be [x, y, w, h], got {box!r}")
        x, y, w, h = (_finite_number(v, f"box_iou box {name}") for v in values)
        if w < 0 or h < 0:
            raise QualityError(f"box_iou: box {name} has a negative width or height: {box!r}")
        boxes.append((x, y, w, h))
    if boxes[0] == boxes[1]:
        return 1.0
    values = boxes[0] + boxes[1]
    if all(v == 0.0 or _SAFE_LOW <= abs(v) <= _SAFE_HIGH for v in values):
        return _iou(*values)  # no product or sum can overflow or underflow
    return float(_iou(*(Fraction(v) for v in values)))


#: Box values within these magnitudes (or 0) keep every area in ``box_iou`` a normal float.
_SAFE_LOW, _SAFE_HIGH = 2.0**-500, 2.0**500


def _iou(ax: Any, ay: Any, aw: Any, ah: Any, bx: Any, by: Any, bw: Any, bh: Any) -> Any:
    """IoU of two different valid boxes, in floats or exact fractions alike."""
    if (aw == 0 or ah == 0) and (bw == 0 or bh == 0):
        if aw == bw == 0 and ax == bx:
            return _overlap(ay, ah, by, bh)
        if ah == bh == 0 and ay == by:
            return _overlap(ax, aw, bx, bw)
        return 0.0
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


def _overlap(a0: Any, a_len: Any, b0: Any, b_len: Any) -> Any:
    """Overlap of two intervals as a share of their union; two different points give 0."""
    inter = max(0, min(a0 + a_len, b0 + b_len) - max(a0, b0))
    union = a_len + b_len - inter
    return inter / union if union > 0 else 0.0


def _mask_cells(mask: Any, name: str) -> tuple[tuple[int, ...], set[tuple[int, ...]]]:
    """Shape and set of 'on' cells of a nested 0/1 sequence of any depth."""
    on: set[tuple[int, ...]] = set()

    def walk(node: Any, where: tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(node, (str, bytes, Mapping)) or not isinstance(node, Sequence):
            if isinstance(node, bool) or node in (0, 1):
                if node:
                    on.add(where)
                return ()
            raise QualityError(f"dice: mask {name} has {node!r} at {list(where)}; use 0/1")
        shapes = {walk(child, where + (i,)) for i, child in enumerate(node)}
        if len(shapes) > 1:
            raise QualityError(f"dice: mask {name} is ragged at {list(where)}")
        return (len(node),) + (shapes.pop() if shapes else ())

    return walk(mask, ()), on


def dice(mask_a: Any, mask_b: Any) -> float:
    """Dice coefficient ``2 |A & B| / (|A| + |B|)`` of two masks.

    A mask is either a set (or frozenset) of pixel coordinates, e.g.
    ``{(row, col), ...}``, or a nested sequence of 0/1 (or bools) such as a
    list of rows; both masks must be of the same kind, and grids must have
    the same shape. Two empty masks give 1.0 (they agree perfectly).
    Equals ``1 - scipy.spatial.distance.dice(a.ravel(), b.ravel())`` for
    grids with at least one pixel set.

    Raises:
        QualityError: masks of different kinds, grids of different shape or
            ragged, or cells other than 0/1.
    """
    a_is_set = isinstance(mask_a, (set, frozenset))
    b_is_set = isinstance(mask_b, (set, frozenset))
    if a_is_set != b_is_set:
        raise QualityError(
            "dice: both masks must be sets of pixel coordinates or both 0/1 grids"
        )
    if a_is_set:
        cells_a, cells_b = set(mask_a), set(mask_b)
    else:
        shape_a, cells_a = _mask_cells(mask_a, "a")
        shape_b, cells_b = _mask_cells(mask_b, "b")
        if shape_a != shape_b:
            raise QualityError(
                f"dice: masks have different shapes {list(shape_a)} and {list(shape_b)}"
            )
    total = len(cells_a) + len(cells_b)
    if total == 0:
        return 1.0
    return 2.0 * len(cells_a & cells_b) / total
