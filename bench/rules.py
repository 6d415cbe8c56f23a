"""Bench: rule decisions per second for a 12-rule workflow.

Labelyard: ``Workflow.decide("on_quorum", facts)`` of a compiled 12-rule
``on_quorum`` section (the first matching rule wins, its action's values are
evaluated, the firing rule is traced as explain needs).

Peers, measured in the same run on the same facts:
- the limit: the same twelve conditions as plain Python lambdas, first match
  wins (what a hand-written router would do);
- ``simpleeval``: the same conditions as text, parsed once
  (``EvalWithCompoundTypes.parse``) and evaluated per decision, the usual
  "safe eval" library. It is a test dependency (``pip install -e '.[test]'``
  or ``pip install simpleeval``); without it the bench says so in one line
  on stderr, measures the other two, and its JSON line names the peer under
  ``detail.skipped``.

Each figure is the median of ``--runs`` interleaved runs. Target: Labelyard
at ≥ 50% of the plain-lambda rate.
"""

from __future__ import annotations

import importlib.util
import random
import time
from typing import Any

from . import common

TARGET_RATIO = 0.5
SIMPLEEVAL_MISSING = ("simpleeval is not installed: the simpleeval peer is skipped "
                      "(pip install -e '.[test]', or pip install simpleeval)")

# (name, labelyard condition, simpleeval condition, python lambda)
RULES: list[tuple[str, str, str, Any]] = [
    ("flagged", "votes.any_flagged and votes.count < 5", "votes['any_flagged'] and votes['count'] < 5",
     lambda t, p, v: v["any_flagged"] and v["count"] < 5),
    ("legal", 'task.category == "legal" and votes.agreement < 1', "task['category'] == 'legal' and votes['agreement'] < 1",
     lambda t, p, v: t["category"] == "legal" and v["agreement"] < 1),
    ("weak", "votes.min_accuracy < 0.6", "votes['min_accuracy'] is not None and votes['min_accuracy'] < 0.6",
     lambda t, p, v: v["min_accuracy"] is not None and v["min_accuracy"] < 0.6),
    ("old", "task.age > 7d", "task['age'] > 604800", lambda t, p, v: t["age"] > 604800),
    ("vip", '"vip" in task.tags', "'vip' in task['tags']", lambda t, p, v: "vip" in t["tags"]),
    ("model disagrees", "prediction.confidence > 0.9 and votes.top != prediction.label",
     "prediction['confidence'] > 0.9 and votes['top'] != prediction['label']",
     lambda t, p, v: p["confidence"] > 0.9 and v["top"] != p["label"]),
    ("unanimous", "votes.unanimous and votes.count >= 3", "votes['unanimous'] and votes['count'] >= 3",
     lambda t, p, v: v["unanimous"] and v["count"] >= 3),
    ("two of three", "votes.count == 3 and votes.top_count == 2", "votes['count'] == 3 and votes['top_count'] == 2",
     lambda t, p, v: v["count"] == 3 and v["top_count"] == 2),
    ("long text", "len(task.data.text) > 2000", "len(task['data']['text']) > 2000",
     lambda t, p, v: len(t["data"]["text"]) > 2000),
    ("many attempts", "task.attempts >= 4", "task['attempts'] >= 4", lambda t, p, v: t["attempts"] >= 4),
    ("no majority yet", "votes.agreement < 0.5 and votes.count < 5",
     "votes['agreement'] < 0.5 and votes['count'] < 5", lambda t, p, v: v["agreement"] < 0.5 and v["count"] < 5),
    ("default", "true", "True", lambda t, p, v: True),
]
LABELS = ["billing", "bug", "feature", "spam"]


def workflow_spec() -> dict[str, Any]:
    """The 12-rule workflow, as ``apply`` would store it."""
    rules = []
    for i, (name, cond, _se, _fn) in enumerate(RULES):
        do: Any = "accept" if i % 3 == 0 else ({"review": "senior"} if i % 3 == 1 else
                                               {"annotate": "triage", "overlap": "votes.count + 2"})
        rule = {"name": name, "do": do}
        if cond != "true":
            rule["when"] = cond
        rules.append(rule)
    return {
        "workflow": "bench-rules",
        "labels": {"type": "choice", "choices": LABELS},
        "queues": {"triage": {"roles": ["annotator"]}, "senior": {"roles": ["senior"]}},
        "on_quorum": rules,
    }


def make_facts(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """Facts that exercise every rule; most decisions run deep into the list."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        count = rng.choice([2, 3, 3, 3, 5])
        top_count = rng.randint(1, count)
        out.append({
            "task": {"id": i, "external_id": f"T{i}", "category": rng.choice(["support", "support", "legal"]),
                     "tags": rng.choice([[], ["x"], ["vip"]]) if rng.random() < 0.1 else [],
                     "age": rng.uniform(0, 10 * 86400), "attempts": rng.randint(0, 5),
                     "data": {"text": "x" * rng.randint(10, 3000)}},
            "prediction": {"label": rng.choice(LABELS), "confidence": rng.random()},
            "votes": {"count": count, "top_count": top_count, "agreement": top_count / count,
                      "unanimous": top_count == count, "top": rng.choice(LABELS),
                      "min_accuracy": rng.choice([None, rng.uniform(0.5, 1.0)]),
                      "any_flagged": rng.random() < 0.02},
            "now": 1.7e9,
        })
    return out


def _labelyard(facts: list[dict]) -> tuple[float, list[str]]:
    from rules.workflow import Workflow

    workflow = Workflow.from_spec(workflow_spec())
    started = time.perf_counter()
    fired = [workflow.decide("on_quorum", f).rule for f in facts]
    return len(facts) / (time.perf_counter() - started), fired


def _lambdas(facts: list[dict]) -> tuple[float, list[str]]:
    rules = [(name, fn) for name, _c, _s, fn in RULES]
    started = time.perf_counter()
    fired = []
    for f in facts:
        t, p, v = f["task"], f["prediction"], f["votes"]
        fired.append(next(name for name, fn in rules if fn(t, p, v)))
    return len(facts) / (time.perf_counter() - started), fired


def _simpleeval(facts: list[dict]) -> tuple[float, list[str]]:
    from simpleeval import EvalWithCompoundTypes

    evaluator = EvalWithCompoundTypes(functions={"len": len})
    parsed = [(name, evaluator.parse(expr)) for name, _c, expr, _f in RULES]
    started = time.perf_counter()
    fired = []
    for f in facts:
        evaluator.names = f
        fired.append(next(name for name, tree in parsed if evaluator.eval("", previously_parsed=tree)))
    return len(facts) / (time.perf_counter() - started), fired


def main(args) -> dict:
    n = 5_000 if args.quick else args.n
    runs = 3 if args.quick else args.runs
    facts = make_facts(n)
    sides = [("labelyard", _labelyard), ("lambda", _lambdas), ("simpleeval", _simpleeval)]
    skipped: dict[str, str] = {}
    if importlib.util.find_spec("simpleeval") is None:
        common.log(f"rules: {SIMPLEEVAL_MISSING}")
        skipped["simpleeval"] = SIMPLEEVAL_MISSING
        sides = [side for side in sides if side[0] not in skipped]
    rates: dict[str, list[float]] = {name: [] for name, _fn in sides}
    agree = True
    for r in range(runs):
        order = list(reversed(sides)) if r % 2 else list(sides)
        fired_by: dict[str, list[str]] = {}
        for name, fn in order:
            rate, fired = fn(facts)
            rates[name].append(rate)
            fired_by[name] = fired
        agree = agree and all(fired == fired_by["labelyard"] for fired in fired_by.values())
        common.log(f"rules run {r + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()))
    med = {k: common.median(v) for k, v in rates.items()}
    vs_lambda = common.ratio(med["labelyard"], med["lambda"])
    ratios = {"vs_lambda": vs_lambda}
    if "simpleeval" in med:
        ratios["vs_simpleeval"] = common.ratio(med["labelyard"], med["simpleeval"])
    targets = [
        common.target("decisions/s vs plain lambdas", vs_lambda, ">=", TARGET_RATIO, "labelyard / lambdas"),
        common.target("same rule fired as the peers", float(agree), "==", 1.0, "every decision, every run"),
    ]
    common.table(
        f"== rules: 12-rule on_quorum, {n:,} decisions, median of {runs} ==",
        ["evaluator", "decisions/s", "vs lambdas"],
        [[k, f"{v:,.0f}", f"{common.ratio(v, med['lambda']):.2f}"] for k, v in med.items()]
        + [[k, "skipped: not installed", "-"] for k in skipped],
        targets,
    )
    return common.emit(
        "rules", "on_quorum-12",
        {f"{k}_per_s": v for k, v in med.items()},
        ratios,
        targets,
        detail={"skipped": skipped} if skipped else None,
        params={"n": n, "runs": runs, "quick": bool(args.quick)},
    )
