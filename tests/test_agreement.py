"""``labelyard agreement``: kappa and alpha per queue and overall, bands, annotators, confusion."""

from __future__ import annotations

import pytest

from lead_support import WORKFLOW, Project
from router.agreement import band
from router.quality import fleiss_kappa, krippendorff_alpha

BANDED = WORKFLOW + "quality:\n  agreement: {metric: fleiss_kappa, excellent: 0.8, alert: 0.3}\n"
PAIRS = {"T1": ("cat", "cat"), "T2": ("dog", "dog"), "T3": ("cat", "dog"), "T4": ("bird", "bird")}


@pytest.fixture
def voted(tmp_path):
    p = Project(tmp_path, BANDED)
    for name in ("ann1", "ann2"):
        p.worker(name, "annotator")
    p.worker("sam", "senior")
    p.ingest([{"id": ref} for ref in PAIRS])
    for ref, (one, two) in PAIRS.items():
        a, b = p.claim("ann1"), p.claim("ann2")
        assert a["external_id"] == b["external_id"] == ref
        p.submit(a["assignment"], "ann1", "--label", one)
        p.submit(b["assignment"], "ann2", "--label", two)
    review = p.claim("sam")
    p.submit(review["assignment"], "sam", "--label", "cat")  # T3 settled as cat
    return p


def test_agreement_matches_router_quality_with_bands(voted):
    report = voted.json("agreement")
    items = list(PAIRS.values())
    kappa = fleiss_kappa([list(pair) for pair in items])
    alpha = krippendorff_alpha([[one for one, _ in items], [two for _, two in items]])
    overall = report["overall"]
    assert overall["items"] == 4 and overall["votes"] == 8
    assert overall["fleiss_kappa"] == pytest.approx(kappa, abs=1e-12)
    assert overall["krippendorff_alpha"] == pytest.approx(alpha, abs=1e-12)
    assert 0.3 <= kappa < 0.8 and overall["band"] == "ok"
    assert report["queues"]["triage"]["fleiss_kappa"] == pytest.approx(kappa, abs=1e-12)
    assert report["bands"] == {"excellent": 0.8, "alert": 0.3} and report["metric"] == "fleiss_kappa"


def test_annotators_agreement_with_final_labels_and_confusion(voted):
    report = voted.json("agreement")
    by = {a["worker"]: a for a in report["annotators"]}
    assert (by["ann1"]["decided"], by["ann1"]["matched"], by["ann1"]["agreement"]) == (4, 4, 1.0)
    assert (by["ann2"]["matched"], by["ann2"]["agreement"]) == (3, 0.75)
    assert by["ann1"]["gold_accuracy"] is None
    assert report["confusion"] == {"bird": {"bird": 2}, "cat": {"cat": 3}, "dog": {"cat": 1, "dog": 2}}


def test_text_output(voted):
    out = voted.run_ok("agreement").stdout
    assert "triage" in out and "(overall)" in out and "ann2" in out and "0.750" in out
    assert "confusion" in out


def test_degenerate_cases_are_null_with_a_reason(tmp_path):
    p = Project(tmp_path, BANDED)
    empty = p.json("agreement")
    assert empty["overall"]["fleiss_kappa"] is None and empty["overall"]["band"] is None
    assert "two votes" in empty["overall"]["reasons"]["fleiss_kappa"]
    for name in ("ann1", "ann2"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    for _ in range(2):
        a, b = p.claim("ann1"), p.claim("ann2")
        p.submit(a["assignment"], "ann1", "--label", "cat")
        p.submit(b["assignment"], "ann2", "--label", "cat")
    same = p.json("agreement")["overall"]
    assert same["items"] == 2 and same["fleiss_kappa"] is None and same["krippendorff_alpha"] is None
    assert same["reasons"]["fleiss_kappa"] and same["reasons"]["krippendorff_alpha"]


def test_queue_filter(voted):
    vets = voted.json("agreement", "--queue", "vets")
    assert vets["overall"]["tasks"] == 0 and vets["queues"] == {}
    triage = voted.json("agreement", "--queue", "triage")
    assert triage["overall"]["items"] == 4
    proc = voted.run("agreement", "--queue", "nowhere")
    assert proc.returncode == 1 and "no queue" in proc.stderr


def test_bands():
    assert band(0.85, 0.8, 0.6) == "excellent"
    assert band(0.8, 0.8, 0.6) == "excellent"
    assert band(0.7, 0.8, 0.6) == "ok"
    assert band(0.6, 0.8, 0.6) == "ok"
    assert band(0.59, 0.8, 0.6) == "alert"
    assert band(None, 0.8, 0.6) is None
