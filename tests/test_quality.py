"""router.quality against its reference libraries, on the same inputs, to 1e-9.

References: statsmodels (Fleiss), scikit-learn (Cohen), krippendorff (alpha),
crowd-kit (Dawid-Skene), scipy (entropy, dice). They are test dependencies
only; router.quality itself uses the standard library alone.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import warnings
from pathlib import Path

import krippendorff
import numpy as np
import pandas as pd
import pytest
import scipy.spatial.distance
import scipy.stats
from crowdkit.aggregation import DawidSkene
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import aggregate_raters
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from router.quality import (
    DawidSkeneResult,
    QualityError,
    agreement_share,
    box_iou,
    cohen_kappa,
    dawid_skene,
    dawid_skene_fit,
    dice,
    fleiss_kappa,
    krippendorff_alpha,
    log_odds_weight,
    majority_vote,
    vote_entropy,
    weighted_vote,
)

TOL = 1e-9

# crowd-kit 1.4 uses pandas keywords that pandas 3 deprecates; not our concern.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:The (inplace|copy) keyword:DeprecationWarning",
    r"ignore:The (inplace|copy) keyword:FutureWarning",
)
ROOT = Path(__file__).resolve().parents[1]


def noisy_label(rng: random.Random, truth, accuracy: float, classes):
    """truth with probability `accuracy`, else a uniformly chosen wrong class."""
    if rng.random() < accuracy:
        return truth
    return rng.choice([c for c in classes if c != truth])


# --------------------------------------------------------------------------
# module hygiene


def test_quality_imports_no_numpy():
    code = (
        "import sys, router.quality; "
        "heavy = [m for m in ('numpy', 'pandas', 'scipy', 'sqlite3', 'sqlite_utils') "
        "if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_quality_error_is_value_error():
    assert issubclass(QualityError, ValueError)
    with pytest.raises(ValueError):
        fleiss_kappa([])


# --------------------------------------------------------------------------
# Fleiss' kappa


def statsmodels_fleiss(items) -> float:
    table, _ = aggregate_raters(np.array(items))
    return float(sm_fleiss_kappa(table))


@pytest.mark.parametrize("seed", range(8))
def test_fleiss_matches_statsmodels_on_random_data(seed):
    rng = random.Random(seed)
    n_items = rng.randint(1, 60)
    n_raters = rng.randint(2, 9)
    classes = list(range(rng.randint(2, 6)))
    # raters with some signal so kappa is not always ~0
    items = []
    for _ in range(n_items):
        truth = rng.choice(classes)
        items.append([noisy_label(rng, truth, 0.7, classes) for _ in range(n_raters)])
    if len({x for item in items for x in item}) < 2:
        items[0][0] = (items[0][0] + 1) % len(classes)
    assert fleiss_kappa(items) == pytest.approx(statsmodels_fleiss(items), abs=TOL)


def test_fleiss_matches_statsmodels_on_string_labels_and_wikipedia_example():
    rng = random.Random(42)
    classes = ["cat", "dog", "bird"]
    items = [[rng.choice(classes) for _ in range(4)] for _ in range(30)]
    assert fleiss_kappa(items) == pytest.approx(statsmodels_fleiss(items), abs=TOL)

    # Wikipedia's worked example (14 raters, 10 subjects, 5 categories): 0.210
    table = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    items = [[cat for cat, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(items) == pytest.approx(float(sm_fleiss_kappa(np.array(table))), abs=TOL)
    assert round(fleiss_kappa(items), 3) == 0.210


def gwet_generalised_fleiss(items) -> float:
    """Independent numpy implementation of the generalised form (Gwet)."""
    cats = sorted({x for item in items for x in item})
    table = np.array([[item.count(c) for c in cats] for item in items], dtype=float)
    r = table.sum(axis=1)
    pa = np.mean((table * (table - 1)).sum(axis=1) / (r * (r - 1)))
    pi = (table / r[:, None]).mean(axis=0)
    pe = (pi**2).sum()
    return float((pa - pe) / (1 - pe))


@pytest.mark.parametrize("seed", range(4))
def test_fleiss_unequal_rater_counts_uses_generalised_form(seed):
    rng = random.Random(100 + seed)
    classes = [0, 1, 2]
    items = []
    for _ in range(40):
        truth = rng.choice(classes)
        items.append([noisy_label(rng, truth, 0.75, classes) for _ in range(rng.randint(2, 7))])
    assert fleiss_kappa(items) == pytest.approx(gwet_generalised_fleiss(items), abs=TOL)


def test_fleiss_unequal_counts_hand_worked():
    # P_i: [a,a] -> 1, [a,b,b] -> 1/3; P_o = 2/3
    # shares: a = (1 + 1/3)/2 = 2/3, b = 1/3; P_e = 5/9; kappa = (2/3-5/9)/(4/9) = 1/4
    assert fleiss_kappa([["a", "a"], ["a", "b", "b"]]) == pytest.approx(0.25, abs=TOL)


def test_fleiss_unequal_equals_standard_when_counts_equal():
    items = [[0, 0, 1], [1, 1, 1], [0, 2, 2], [2, 2, 2]]
    assert fleiss_kappa(items) == pytest.approx(gwet_generalised_fleiss(items), abs=TOL)
    assert fleiss_kappa(items) == pytest.approx(statsmodels_fleiss(items), abs=TOL)


def test_fleiss_perfect_agreement_over_two_categories_is_one():
    assert fleiss_kappa([[0, 0, 0], [1, 1, 1]]) == pytest.approx(1.0, abs=TOL)
    assert statsmodels_fleiss([[0, 0, 0], [1, 1, 1]]) == pytest.approx(1.0, abs=TOL)


def test_fleiss_degenerate_inputs():
    with pytest.raises(QualityError, match="at least one item"):
        fleiss_kappa([])
    with pytest.raises(QualityError, match="at least two"):
        fleiss_kappa([["a", "b"], ["a"]])
    with pytest.raises(QualityError, match="at least two"):
        fleiss_kappa([[], []])
    with pytest.raises(QualityError, match="None is not a label"):
        fleiss_kappa([["a", None]])
    with pytest.raises(QualityError, match="string"):
        fleiss_kappa(["ab", "ab"])
    # one category everywhere: statsmodels gives nan, we raise
    single = [["x", "x", "x"], ["x", "x", "x"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(statsmodels_fleiss(single))
    with pytest.raises(QualityError, match="same category"):
        fleiss_kappa(single)
    with pytest.raises(QualityError, match="same category"):
        fleiss_kappa([["x", "x"], ["x", "x", "x"]])


def test_fleiss_single_item_follows_statsmodels():
    items = [["a", "b", "b"]]
    assert fleiss_kappa(items) == pytest.approx(statsmodels_fleiss(items), abs=TOL)


# --------------------------------------------------------------------------
# Cohen's kappa


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_matches_sklearn_on_random_data(seed, weights):
    rng = random.Random(seed)
    classes = list(range(rng.randint(2, 6)))
    n = rng.randint(5, 200)
    a, b = [], []
    for _ in range(n):
        truth = rng.choice(classes)
        a.append(noisy_label(rng, truth, 0.8, classes))
        b.append(noisy_label(rng, truth, 0.6, classes))
    if len(set(a) | set(b)) < 2:
        a[0] = (a[0] + 1) % len(classes)
    expected = cohen_kappa_score(a, b, weights=weights)
    assert cohen_kappa(a, b, weights=weights) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_labels_order_matches_sklearn(weights):
    rng = random.Random(5)
    classes = ["low", "mid", "high", "unused"]
    a = [rng.choice(classes[:3]) for _ in range(80)]
    b = [noisy_label(rng, x, 0.7, classes[:3]) for x in a]
    order = ["low", "mid", "high", "unused"]
    for labels in (order, list(reversed(order)), None):
        expected = cohen_kappa_score(a, b, weights=weights, labels=labels)
        got = cohen_kappa(a, b, weights=weights, labels=labels)
        assert got == pytest.approx(expected, abs=TOL)
    if weights is not None:
        # the order matters for weighted kappa: sorted strings != semantic order
        assert cohen_kappa(a, b, weights=weights) != pytest.approx(
            cohen_kappa(a, b, weights=weights, labels=order), abs=1e-6
        )


def test_cohen_edge_values_follow_sklearn():
    # perfect agreement over two categories
    assert cohen_kappa([0, 1, 0, 1], [0, 1, 0, 1]) == pytest.approx(1.0, abs=TOL)
    # each rater uses one category, different ones: sklearn says 0
    a, b = ["x", "x", "x"], ["y", "y", "y"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=TOL)
    # single item, disagreement
    assert cohen_kappa([1], [2], weights="quadratic") == pytest.approx(
        cohen_kappa_score([1], [2], weights="quadratic"), abs=TOL
    )


def test_cohen_degenerate_inputs():
    with pytest.raises(QualityError, match="same items"):
        cohen_kappa([1, 2], [1])
    with pytest.raises(QualityError, match="at least one item"):
        cohen_kappa([], [])
    with pytest.raises(QualityError, match="weights"):
        cohen_kappa([1, 2], [1, 2], weights="cubic")  # type: ignore[arg-type]
    with pytest.raises(QualityError, match="not in `labels`"):
        cohen_kappa([1, 2, 3], [1, 2, 2], labels=[1, 2])
    with pytest.raises(QualityError, match="duplicates"):
        cohen_kappa([1, 2], [1, 2], labels=[1, 2, 2])
    with pytest.raises(QualityError, match="None is not a label"):
        cohen_kappa([1, None], [1, 2])
    with pytest.raises(QualityError, match="sorted"):
        cohen_kappa([1, "a"], ["a", 1], weights="linear")
    # unsortable labels are fine unweighted
    assert cohen_kappa([1, "a", 1], ["a", "a", 1]) == pytest.approx(
        cohen_kappa_score(["1", "a", "1"], ["a", "a", "1"]), abs=TOL
    )
    # one identical category for both raters: sklearn returns nan, we raise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(cohen_kappa_score(["x", "x"], ["x", "x"]))
    with pytest.raises(QualityError, match="undefined"):
        cohen_kappa(["x", "x"], ["x", "x"])
    with pytest.raises(QualityError, match="undefined"):
        cohen_kappa(["x", "x"], ["x", "x"], weights="linear", labels=["x", "y"])


# --------------------------------------------------------------------------
# Krippendorff's alpha


def reference_alpha(data, level) -> float:
    return float(
        krippendorff.alpha(
            reliability_data=np.array(data, dtype=float), level_of_measurement=level
        )
    )


def random_reliability_data(rng: random.Random, missing: float, values):
    n_raters = rng.randint(2, 6)
    n_items = rng.randint(3, 50)
    data = [[None] * n_items for _ in range(n_raters)]
    for i in range(n_items):
        truth = rng.choice(values)
        for r in range(n_raters):
            if rng.random() >= missing:
                data[r][i] = noisy_label(rng, truth, 0.6, values)
    # make sure two raters share an item and two values occur
    data[0][0], data[1][0] = values[0], values[1]
    return data


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_matches_krippendorff_with_missing_values(seed, level):
    rng = random.Random(seed)
    values = [1, 2, 3, 4, 5] if seed % 2 else [0.5, 1.25, 3.0, 7.5]
    data = random_reliability_data(rng, missing=0.3, values=values)
    assert krippendorff_alpha(data, level=level) == pytest.approx(
        reference_alpha(data, level), abs=TOL
    )


def test_alpha_krippendorff_documented_example():
    nan = None
    data = [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
    assert round(krippendorff_alpha(data, "nominal"), 6) == 0.691358
    assert round(krippendorff_alpha(data, "interval"), 6) == 0.810845
    for level in ("nominal", "interval"):
        assert krippendorff_alpha(data, level) == pytest.approx(reference_alpha(data, level), abs=TOL)
    # float nan counts as missing too
    with_nan = [[float("nan") if v is None else v for v in row] for row in data]
    assert krippendorff_alpha(with_nan, "interval") == pytest.approx(
        reference_alpha(data, "interval"), abs=TOL
    )


def test_alpha_nominal_accepts_any_hashable_labels():
    rng = random.Random(11)
    numeric = random_reliability_data(rng, missing=0.2, values=[0, 1, 2])
    names = {0: "cat", 1: "dog", 2: "bird"}
    named = [[None if v is None else names[v] for v in row] for row in numeric]
    assert krippendorff_alpha(named, "nominal") == pytest.approx(
        reference_alpha(numeric, "nominal"), abs=TOL
    )


def test_alpha_degenerate_inputs():
    with pytest.raises(QualityError, match="at least one rater"):
        krippendorff_alpha([])
    with pytest.raises(QualityError, match="one entry per item"):
        krippendorff_alpha([[1, 2], [1]])
    with pytest.raises(QualityError, match="level"):
        krippendorff_alpha([[1, 2], [1, 2]], level="cardinal")  # type: ignore[arg-type]
    with pytest.raises(QualityError, match="number"):
        krippendorff_alpha([["a", "b"], ["a", "b"]], level="interval")
    # one value only: the reference raises, so do we
    with pytest.raises(ValueError):
        reference_alpha([[1, 1], [1, 1]], "nominal")
    with pytest.raises(QualityError, match="two distinct values"):
        krippendorff_alpha([[1, 1], [1, 1]])
    with pytest.raises(QualityError, match="two distinct values"):
        krippendorff_alpha([[None, None], [None, None]])
    # nobody overlaps: the reference raises, so do we
    with pytest.raises(ValueError):
        reference_alpha([[1, np.nan], [np.nan, 2]], "nominal")
    with pytest.raises(QualityError, match="two or more raters"):
        krippendorff_alpha([[1, None], [None, 2]])
    # pairable ratings show no variation: the reference gives nan, we raise
    data = [[1, 1, None], [1, 1, 2]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(reference_alpha(data, "nominal"))
    with pytest.raises(QualityError, match="no variation"):
        krippendorff_alpha(data)


# --------------------------------------------------------------------------
# votes


def test_majority_vote():
    assert majority_vote(["a", "b", "a"]) == ("a", False)
    assert majority_vote(["a"]) == ("a", False)
    assert majority_vote([]) == (None, False)
    assert majority_vote(["a", "b"]) == (None, True)
    assert majority_vote(["a", "b", "b", "a", "c"]) == (None, True)
    assert majority_vote(iter([3, 3, 1])) == (3, False)
    with pytest.raises(QualityError, match="None is not a label"):
        majority_vote(["a", None])


def test_weighted_vote():
    assert weighted_vote(["a", "b", "b"], [3.0, 1.0, 1.0]) == ("a", False)
    assert weighted_vote(["a", "b", "b"], [1.0, 1.0, 1.0]) == ("b", False)
    assert weighted_vote([], []) == (None, False)
    # 0.1 + 0.2 == 0.3 for voting purposes
    assert weighted_vote(["a", "a", "b"], [0.1, 0.2, 0.3]) == (None, True)
    assert weighted_vote(["a", "b"], [0.0, 0.0]) == (None, True)
    # a worse-than-chance voter counts against its label
    assert weighted_vote(["a", "b"], [-1.0, -2.0]) == ("a", False)
    with pytest.raises(QualityError, match="2 labels but 1 weights"):
        weighted_vote(["a", "b"], [1.0])
    with pytest.raises(QualityError, match="finite"):
        weighted_vote(["a"], [math.inf])
    with pytest.raises(QualityError, match="finite"):
        weighted_vote(["a"], [math.nan])
    with pytest.raises(QualityError, match="None is not a label"):
        weighted_vote([None], [1.0])


def test_log_odds_weight():
    assert log_odds_weight(0.5) == pytest.approx(0.0, abs=TOL)
    assert log_odds_weight(1 / 3, n_classes=3) == pytest.approx(0.0, abs=TOL)
    assert log_odds_weight(0.9) == pytest.approx(math.log(9), abs=TOL)
    assert log_odds_weight(0.9, n_classes=3) == pytest.approx(math.log(18), abs=TOL)
    assert log_odds_weight(1.0) == pytest.approx(math.log((1 - 1e-6) / 1e-6), abs=TOL)
    assert log_odds_weight(0.0) == pytest.approx(-math.log((1 - 1e-6) / 1e-6), abs=TOL)
    with pytest.raises(QualityError, match=r"\[0, 1\]"):
        log_odds_weight(1.5)
    with pytest.raises(QualityError, match="2 classes"):
        log_odds_weight(0.5, n_classes=1)


def test_agreement_share():
    assert agreement_share(["a", "a", "a"]) == 1.0
    assert agreement_share(["a", "b", "a", "c"]) == 0.5
    assert agreement_share(["a", "b"]) == 0.5
    assert agreement_share([]) is None
    with pytest.raises(QualityError):
        agreement_share([None])


@pytest.mark.parametrize("seed", range(6))
def test_vote_entropy_matches_scipy(seed):
    rng = random.Random(seed)
    votes = [rng.choice("abcde"[: rng.randint(1, 5)]) for _ in range(rng.randint(1, 30))]
    counts = [votes.count(x) for x in sorted(set(votes))]
    assert vote_entropy(votes) == pytest.approx(scipy.stats.entropy(counts, base=2), abs=TOL)


def test_vote_entropy_edges():
    assert vote_entropy(["a", "a"]) == 0.0
    assert vote_entropy(["a", "b"]) == pytest.approx(1.0, abs=TOL)
    assert vote_entropy(["a", "b", "c", "d"]) == pytest.approx(2.0, abs=TOL)
    assert vote_entropy([]) is None
    with pytest.raises(QualityError):
        vote_entropy([None])


# --------------------------------------------------------------------------
# Dawid-Skene


def crowdkit_fit(rows, n_iter=100, tol=1e-5) -> DawidSkene:
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    return DawidSkene(n_iter=n_iter, tol=tol).fit(df)


def assert_matches_crowdkit(rows, result: DawidSkeneResult, ds: DawidSkene) -> None:
    tasks = list(dict.fromkeys(t for t, _, _ in rows))
    classes = list(ds.probas_.columns)
    assert set(result.posteriors) == set(tasks)
    assert set(result.priors) == set(classes)
    assert result.loss_history == pytest.approx(ds.loss_history_, abs=TOL)
    worst = 0.0
    for task in tasks:
        for c in classes:
            ours = result.posteriors[task][c]
            theirs = float(ds.probas_.loc[task, c])
            worst = max(worst, abs(ours - theirs))
            # crowd-kit floors posteriors at 1e-10 after each EM round (not
            # after 0 rounds); with the same floor we agree to rounding error
            floored = max(ours, 1e-10) if result.iterations else ours
            assert floored == pytest.approx(theirs, abs=1e-12)
        assert math.fsum(result.posteriors[task].values()) == pytest.approx(1.0, abs=1e-12)
        if task in result.ties:
            assert result.labels[task] is None
        else:
            assert result.labels[task] == ds.labels_[task]
    assert worst <= TOL
    for (worker, observed), row in ds.errors_.iterrows():
        for true in classes:
            assert result.confusion[worker][true][observed] == pytest.approx(
                float(row[true]), abs=TOL
            )
    for worker, by_true in result.confusion.items():
        for true, dist in by_true.items():
            assert math.fsum(dist.values()) == pytest.approx(1.0, abs=1e-12)
    for c in classes:
        assert result.priors[c] == pytest.approx(float(ds.priors_[c]), abs=TOL)


def simulate(seed, accuracies, n_tasks=200, classes=(0, 1, 2), coverage=1.0):
    rng = random.Random(seed)
    truth = {f"t{i:03d}": rng.choice(classes) for i in range(n_tasks)}
    rows = []
    for task, y in truth.items():
        for w, accuracy in enumerate(accuracies):
            if rng.random() < coverage:
                rows.append((task, f"w{w}", noisy_label(rng, y, accuracy, classes)))
    return truth, rows


ACCURACIES = [0.9, 0.85, 0.6, 0.55, 0.5]


def test_dawid_skene_beats_majority_on_simulated_annotators():
    truth, rows = simulate(seed=2024, accuracies=ACCURACIES)
    votes: dict[str, list] = {}
    workers: dict[str, list] = {}
    for task, worker, label in rows:
        votes.setdefault(task, []).append(label)
        workers.setdefault(task, []).append(worker)

    def accuracy(labels) -> float:
        return sum(labels[t] == truth[t] for t in truth) / len(truth)

    mv = {t: majority_vote(votes[t])[0] for t in truth}
    # the most generous majority: ties resolved in favour of the truth
    mv_oracle_ties = {
        t: truth[t] if majority_vote(votes[t])[1] and votes[t].count(truth[t]) == max(
            votes[t].count(x) for x in votes[t]) else mv[t]
        for t in truth
    }
    result = dawid_skene_fit(rows)
    ds_acc = accuracy(result.labels)

    # weighted vote with each worker's accuracy estimated against majority labels
    agree: dict[str, list[bool]] = {}
    for task, worker, label in rows:
        if mv[task] is not None:
            agree.setdefault(worker, []).append(label == mv[task])
    estimated = {w: sum(a) / len(a) for w, a in agree.items()}
    wv_est = {
        t: weighted_vote(votes[t], [log_odds_weight(estimated[w], 3) for w in workers[t]])[0]
        for t in truth
    }
    wv_true = {
        t: weighted_vote(
            votes[t], [log_odds_weight(ACCURACIES[int(w[1:])], 3) for w in workers[t]]
        )[0]
        for t in truth
    }

    assert ds_acc >= accuracy(mv)
    assert accuracy(wv_est) >= accuracy(mv)
    assert accuracy(wv_true) >= accuracy(mv)
    # strictly better on this seed, even against majority with oracle tie-breaks
    assert ds_acc > accuracy(mv_oracle_ties)
    assert ds_acc >= 0.9

    # the estimated confusion matrices recover the workers' accuracies
    for w, true_accuracy in enumerate(ACCURACIES):
        diag = [result.confusion[f"w{w}"][c][c] for c in (0, 1, 2)]
        assert sum(diag) / 3 == pytest.approx(true_accuracy, abs=0.1)

    assert_matches_crowdkit(rows, result, crowdkit_fit(rows))
    assert dawid_skene(rows) == result.labels


@pytest.mark.parametrize("seed", range(4))
def test_dawid_skene_matches_crowdkit_on_sparse_random_data(seed):
    rng = random.Random(seed)
    accuracies = [rng.uniform(0.4, 0.95) for _ in range(rng.randint(3, 8))]
    classes = ("neg", "neu", "pos")[: rng.randint(2, 3)]
    _, rows = simulate(
        seed=seed, accuracies=accuracies, n_tasks=rng.randint(20, 120), classes=classes,
        coverage=0.6,
    )
    rng.shuffle(rows)
    assert_matches_crowdkit(rows, dawid_skene_fit(rows), crowdkit_fit(rows))


@pytest.mark.parametrize("n_iter,tol", [(0, 1e-5), (1, 1e-5), (3, 0.0), (50, 1e-3)])
def test_dawid_skene_iteration_controls_match_crowdkit(n_iter, tol):
    _, rows = simulate(seed=9, accuracies=[0.8, 0.7, 0.6, 0.65], n_tasks=60, coverage=0.8)
    result = dawid_skene_fit(rows, iterations=n_iter, tol=tol)
    ds = crowdkit_fit(rows, n_iter=n_iter, tol=tol)
    assert result.iterations == len(ds.loss_history_)
    assert_matches_crowdkit(rows, result, ds)


def test_dawid_skene_tie_is_not_broken():
    rows = [("t1", "w1", "a"), ("t1", "w2", "b"), ("t2", "w1", "b"), ("t2", "w2", "a")]
    result = dawid_skene_fit(rows)
    assert result.labels == {"t1": None, "t2": None}
    assert result.ties == {"t1", "t2"}
    ds = crowdkit_fit(rows)
    assert result.posteriors["t1"]["a"] == pytest.approx(float(ds.probas_.loc["t1", "a"]), abs=TOL)
    assert_matches_crowdkit(rows, result, ds)


def test_dawid_skene_edges():
    empty = dawid_skene_fit([])
    assert empty.labels == {} and empty.posteriors == {} and empty.priors == {}
    assert dawid_skene([]) == {}
    # one label everywhere
    result = dawid_skene_fit([("t1", "w1", "x"), ("t2", "w2", "x")])
    assert result.labels == {"t1": "x", "t2": "x"}
    assert result.posteriors["t1"] == {"x": 1.0}
    # a single vote
    assert dawid_skene([("t1", "w1", 7)]) == {"t1": 7}
    # unused labels are 0.0 in a worker's confusion matrix
    rows = [("t1", "w1", "a"), ("t1", "w2", "b"), ("t2", "w1", "a"), ("t2", "w2", "a")]
    result = dawid_skene_fit(rows)
    assert result.confusion["w1"]["a"]["b"] == 0.0
    assert result.confusion["w1"]["b"]["b"] == 0.0
    assert_matches_crowdkit(rows, result, crowdkit_fit(rows))


def test_dawid_skene_bad_input():
    with pytest.raises(QualityError, match=r"\(task, worker, label\)"):
        dawid_skene([("t1", "w1")])  # type: ignore[list-item]
    with pytest.raises(QualityError, match="None is not a label"):
        dawid_skene([("t1", "w1", None)])
    with pytest.raises(QualityError, match="iterations"):
        dawid_skene([("t1", "w1", "a")], iterations=-1)
    with pytest.raises(QualityError, match="tol"):
        dawid_skene([("t1", "w1", "a")], tol=-1.0)


# --------------------------------------------------------------------------
# boxes and masks


def test_box_iou_hand_worked():
    assert box_iou([0, 0, 2, 2], [0, 0, 2, 2]) == 1.0
    assert box_iou([0, 0, 2, 2], [1, 1, 2, 2]) == pytest.approx(1 / 7, abs=TOL)
    assert box_iou([0, 0, 2, 2], [1, 0, 2, 2]) == pytest.approx(2 / 6, abs=TOL)
    assert box_iou([0, 0, 4, 4], [1, 1, 2, 2]) == pytest.approx(4 / 16, abs=TOL)
    assert box_iou([0, 0, 1, 1], [1, 0, 1, 1]) == 0.0  # touching
    assert box_iou([0, 0, 1, 1], [5, 5, 1, 1]) == 0.0
    assert box_iou([0.5, 0.5, 1.5, 1.0], [1.0, 0.0, 1.0, 2.0]) == pytest.approx(
        1.0 / (1.5 + 2.0 - 1.0), abs=TOL
    )


@pytest.mark.parametrize("seed", range(5))
def test_box_iou_matches_pixel_counting(seed):
    rng = random.Random(seed)
    for _ in range(40):
        a = [rng.randint(0, 10), rng.randint(0, 10), rng.randint(1, 8), rng.randint(1, 8)]
        b = [rng.randint(0, 10), rng.randint(0, 10), rng.randint(1, 8), rng.randint(1, 8)]
        pa = {(x, y) for x in range(a[0], a[0] + a[2]) for y in range(a[1], a[1] + a[3])}
        pb = {(x, y) for x in range(b[0], b[0] + b[2]) for y in range(b[1], b[1] + b[3])}
        assert box_iou(a, b) == pytest.approx(len(pa & pb) / len(pa | pb), abs=TOL)
        assert box_iou(a, b) == box_iou(b, a)


def test_box_iou_degenerate():
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 1.0  # equal boxes, whatever their size
    assert box_iou([0, 0, 0, 0], [1, 0, 0, 0]) == 0.0  # two different points
    assert box_iou([1, 1, 0, 5], [1, 1, 3, 0]) == 0.0
    assert box_iou([0, 0, 0, 0], [0, 0, 2, 2]) == 0.0
    with pytest.raises(QualityError, match="negative"):
        box_iou([0, 0, -1, 1], [0, 0, 1, 1])
    with pytest.raises(QualityError, match=r"\[x, y, w, h\]"):
        box_iou([0, 0, 1], [0, 0, 1, 1])
    with pytest.raises(QualityError, match="finite"):
        box_iou([0, 0, math.nan, 1], [0, 0, 1, 1])
    with pytest.raises(QualityError, match="number"):
        box_iou(["0", 0, 1, 1], [0, 0, 1, 1])


@pytest.mark.parametrize("seed", range(5))
def test_dice_grid_matches_scipy(seed):
    rng = random.Random(seed)
    rows, cols = rng.randint(1, 12), rng.randint(1, 12)
    a = [[int(rng.random() < 0.4) for _ in range(cols)] for _ in range(rows)]
    b = [[int(rng.random() < 0.4) for _ in range(cols)] for _ in range(rows)]
    a[0][0] = 1  # scipy's dice is 0/0 for two empty masks
    expected = 1.0 - scipy.spatial.distance.dice(
        np.array(a, dtype=bool).ravel(), np.array(b, dtype=bool).ravel()
    )
    assert dice(a, b) == pytest.approx(expected, abs=TOL)
    sa = {(r, c) for r in range(rows) for c in range(cols) if a[r][c]}
    sb = {(r, c) for r in range(rows) for c in range(cols) if b[r][c]}
    assert dice(sa, sb) == pytest.approx(expected, abs=TOL)
    assert dice(frozenset(sa), sb) == pytest.approx(expected, abs=TOL)


def test_dice_edges():
    assert dice([[0, 0], [0, 0]], [[0, 0], [0, 0]]) == 1.0
    assert dice(set(), set()) == 1.0
    assert dice([], []) == 1.0
    assert dice([[1, 0]], [[0, 1]]) == 0.0
    assert dice(set(), {(0, 0)}) == 0.0
    assert dice([[True, False]], [[1, 0]]) == 1.0
    assert dice([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(2 / 3, abs=TOL)  # 1-D
    with pytest.raises(QualityError, match="different shapes"):
        dice([[1, 0]], [[1, 0, 0]])
    with pytest.raises(QualityError, match="ragged"):
        dice([[1, 0], [1]], [[1, 0], [1, 0]])
    with pytest.raises(QualityError, match="0/1"):
        dice([[2, 0]], [[1, 0]])
    with pytest.raises(QualityError, match="both"):
        dice({(0, 0)}, [[1]])
