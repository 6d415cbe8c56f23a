"""Gold questions (`gold add`, mixing into claims, accuracy) and on_worker rules."""

from __future__ import annotations

import json

import pytest

from lead_support import WORKFLOW, Project, engine_at
from router.gold import gold_fraction


def gold_workflow(rate: float, on_worker: str = "") -> str:
    return WORKFLOW + f"quality:\n  gold: {{rate: {rate}}}\n" + on_worker


def add_gold(p, rows, name="gold.jsonl"):
    path = p.folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p.json("gold", "add", path)


GOLD = [{"id": "G1", "data": {"n": 101}, "answer": "cat"},
        {"id": "G2", "data": {"n": 102}, "answer": "dog"},
        {"id": "G3", "data": {"n": 103}, "answer": "bird"}]


def test_gold_add_stores_answers_quarantines_bad_rows_and_is_idempotent(tmp_path):
    p = Project(tmp_path, gold_workflow(0.1))
    p.ingest([{"id": "T1"}])
    rows = GOLD + [{"id": "BAD", "answer": "fish"}, {"id": "NOANSWER"}, {"id": "T1", "answer": "cat"},
                   {"id": "Q", "answer": "cat", "queue": "nowhere"}]
    assert add_gold(p, rows) == {"added": 3, "updated": 0, "unchanged": 0, "rejected": 4,
        "source": str(p.folder / "gold.jsonl")}
    reasons = " | ".join(r["reason"] for r in p.json("rejects"))
    assert "fish" in reasons and "answer" in reasons and "ordinary task" in reasons and "nowhere" in reasons
    g = p.show("G1")
    assert g["task"]["is_gold"] and g["task"]["stage"] == "annotate" and g["task"]["queue"] == "triage"
    assert g["task"]["free_slots"] == 0
    assert [e["kind"] for e in g["events"]] == ["gold_added"]  # on_create never saw it
    # again, with a corrected answer: updated, not duplicated
    assert add_gold(p, [{"id": "G1", "answer": "bird"}], "fix.jsonl") == {
        "added": 0, "updated": 1, "unchanged": 0, "rejected": 0,
        "source": str(p.folder / "fix.jsonl")}
    engine = engine_at(p.db, pytest.MonkeyPatch(), 0)
    assert engine.store.gold_label(g["task"]["id"]) == "bird"
    engine.close()


def test_gold_is_mixed_into_claims_at_the_rate_deterministically(tmp_path):
    p = Project(tmp_path, gold_workflow(0.4))
    p.worker("ann1", "annotator")
    p.ingest([{"id": f"T{i}", "data": {"n": i}} for i in range(12)])
    add_gold(p, GOLD)
    expected = [gold_fraction("ann1", n) < 0.4 for n in range(8)]
    assert any(expected) and not all(expected)  # the rate really mixes (fixed inputs)
    got, seen_gold = [], []
    for _ in range(8):
        view = p.claim("ann1")
        is_gold = view["external_id"].startswith("G")
        if is_gold:
            seen_gold.append(view["external_id"])
        got.append(is_gold)
        assert "answer" not in json.dumps(view) and "gold" not in json.dumps(view)  # nothing gives it away
    # the same decision while gold remains; never the same gold question twice
    first_miss = [i for i, e in enumerate(expected) if e][:3]
    assert [i for i, g in enumerate(got) if g] == first_miss
    assert len(seen_gold) == len(set(seen_gold))


def test_gold_never_reaches_consensus_or_export_and_measures_the_worker(tmp_path):
    p = Project(tmp_path, gold_workflow(1.0))
    for name in ("ann1", "ann2"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1"}])
    add_gold(p, GOLD[:1])
    a = p.claim("ann1")
    b = p.claim("ann2")
    assert a["external_id"] == b["external_id"] == "G1"  # gold has no slot limit
    p.submit(a["assignment"], "ann1", "--label", "cat")
    result = p.submit(b["assignment"], "ann2", "--label", "dog")
    assert "decision" not in result
    g = p.show("G1")["task"]
    assert (g["status"], g["final_label"]) == ("open", None)
    # gold exhausted for both: ordinary work next
    assert p.claim("ann1")["external_id"] == "T1"
    assert p.run_ok("export").stdout == ""
    report = p.json("agreement")
    by = {a["worker"]: a for a in report["annotators"]}
    assert (by["ann1"]["gold_answered"], by["ann1"]["gold_accuracy"]) == (1, 1.0)
    assert (by["ann2"]["gold_answered"], by["ann2"]["gold_accuracy"]) == (1, 0.0)
    assert report["overall"]["votes"] == 0  # gold votes are no agreement data


FAILING_GOLD = """\
on_worker:
  - name: failing gold
    when: worker.gold_count >= 2 and worker.gold_accuracy < 0.7
    do: {pause: worker, reason: "gold accuracy below 70%"}
  - name: too fast
    when: worker.fast_submits >= 3
    do: flag
  - name: promote
    when: worker.submitted >= 2 and worker.gold_count == 0
    do: {add_skill: vet}
"""


def test_on_worker_pauses_a_worker_failing_gold(tmp_path):
    p = Project(tmp_path, gold_workflow(1.0, FAILING_GOLD))
    p.worker("ann1", "annotator")
    p.ingest([{"id": "T1"}])
    add_gold(p, GOLD)
    first = p.claim("ann1", hours=1)
    p.submit(first["assignment"], "ann1", "--label", "bird", hours=2)  # wrong
    second = p.claim("ann1", hours=3)
    p.submit(second["assignment"], "ann1", "--label", "bird", hours=4)  # wrong again: 0/2
    worker = {w["id"]: w for w in p.json("workers", "list")}["ann1"]
    assert worker["paused"] and worker["pause_reason"] == "gold accuracy below 70%"
    proc = p.run("claim", "--as", "ann1", hours=5)
    assert proc.returncode == 3 and "paused" in proc.stderr
    events = [e for e in p.show(second["external_id"])["events"] if e["kind"] == "worker_paused"]
    assert events[0]["rule"] == "failing gold" and events[0]["detail"]["facts"]["gold_count"] == 2
    p.run_ok("workers", "resume", "ann1")
    assert p.claim("ann1", hours=6)["external_id"] == "G3"


def test_on_worker_flags_fast_submitters_and_adds_skills(tmp_path):
    p = Project(tmp_path, WORKFLOW + FAILING_GOLD)
    for name in ("ann1", "ann2"):
        p.worker(name, "annotator")
    p.ingest([{"id": f"T{i}"} for i in range(5)])
    # slow submissions are not fast: ann2 takes ten minutes each
    for hour in (1, 2, 3):
        view = p.claim("ann2", hours=hour)
        p.submit(view["assignment"], "ann2", "--label", "cat", hours=hour + 0.2)
    # ann1 submits the instant they claim (LABELYARD_NOW fixed): three fast submissions
    for _ in range(3):
        view = p.claim("ann1", hours=5)
        p.submit(view["assignment"], "ann1", "--label", "cat", hours=5)
    workers = {w["id"]: w for w in p.json("workers", "list")}
    assert workers["ann1"]["flagged"] and not workers["ann2"]["flagged"]
    # `promote` matched each at their second submission and again at the third (no change, no event)
    assert "vet" in workers["ann2"]["skills"] and "vet" in workers["ann1"]["skills"]
    engine = engine_at(p.db, pytest.MonkeyPatch(), 6)
    rows = engine.store.query("SELECT kind, detail FROM events WHERE kind LIKE 'worker_%' AND kind != 'worker_added'")
    engine.close()
    seen = sorted((r["kind"], json.loads(r["detail"])["worker"]) for r in rows)
    assert seen == [("worker_flagged", "ann1"), ("worker_skill_added", "ann1"), ("worker_skill_added", "ann2")]


def test_worker_facts_unit(tmp_path, monkeypatch):
    from router.worker_rules import FAST_SECONDS, worker_facts

    p = Project(tmp_path, WORKFLOW)
    p.worker("ann1", "annotator")
    p.ingest([{"id": f"T{i}"} for i in range(4)])
    v = p.claim("ann1", hours=1)
    p.submit(v["assignment"], "ann1", "--label", "cat", hours=1)  # fast
    p.claim("ann1", hours=2)
    p.run_ok("release", "T1", hours=2.1)  # given up
    v = p.claim("ann1", hours=3)
    p.submit(v["assignment"], "ann1", "--label", "dog", hours=3 + FAST_SECONDS / 3600 * 2)  # slow
    engine = engine_at(p.db, monkeypatch, 4)
    facts = worker_facts(engine.store, engine.store.worker("ann1"), assignment=v["assignment"])
    assert facts["submitted"] == 2 and facts["fast_submits"] == 1
    assert facts["skips_in_row"] == 1 and facts["gold_count"] == 0 and facts["gold_accuracy"] is None
    assert facts["agreement"] is None and facts["roles"] == ["annotator"] and facts["flagged"] is False
    engine.close()


def test_the_gold_decision_reads_the_same_whatever_the_workers_history(tmp_path, monkeypatch):
    """Deciding whether a claim is a gold one runs under the claim's write lock: the SQLite
    work it takes must not grow with the slots the worker ever had (it counted them: ~7 ms
    at 300,000). Measured in SQLite VM steps, not time."""
    from router.gold import pick_gold

    p = Project(tmp_path, gold_workflow(0.5))
    p.worker("ann1", "annotator")
    p.ingest([{"id": f"T{i}", "data": {"n": i}} for i in range(600)])
    add_gold(p, GOLD)
    engine = engine_at(p.db, monkeypatch, 0)

    def steps() -> int:
        count = [0]

        def tick() -> int:
            count[0] += 1
            return 0
        engine.store.conn.set_progress_handler(tick, 1)
        try:
            pick_gold(engine.store, "ann1", ["triage"], 0.5)
        finally:
            engine.store.conn.set_progress_handler(None, 1)
        return count[0]

    def work(n: int) -> None:
        for _ in range(n):
            view = engine.claim("ann1")
            engine.submit(view["assignment"], "ann1", label="cat")

    work(5)
    early = steps()
    work(500)
    assert steps() < early + 50  # before: one step more (at least) per slot of the worker's history
    engine.close()
