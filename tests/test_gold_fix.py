"""Fixes around gold and worker quality: `worker.skips_in_row` counts back from the submitted slot,
`gold add` is a lead's action, and `apply` holds gold questions whose answer the new labels refuse.

Every test runs the real ``labelyard`` command in a subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3

from lead_support import WORKFLOW, Project, engine_at

# -- 1. skips_in_row with a later slot still held ---------------------------------------------


def skipper(threshold: int) -> str:
    return WORKFLOW + ("on_worker:\n"
                       "  - name: skipper\n"
                       f"    when: worker.skips_in_row >= {threshold}\n"
                       "    do: {flag: true, reason: skips}\n")


def flagged_facts(p) -> list[dict]:
    conn = sqlite3.connect(p.db)
    try:
        rows = conn.execute("SELECT detail FROM events WHERE kind = 'worker_flagged' ORDER BY id").fetchall()
    finally:
        conn.close()
    return [json.loads(r[0])["facts"] for r in rows]


def test_a_slot_claimed_after_the_submitted_one_does_not_hide_the_skips_before_it(tmp_path):
    p = Project(tmp_path, skipper(1))
    p.worker("al", "annotator")
    p.ingest([{"id": f"T{i}"} for i in range(1, 4)])
    first = p.claim("al")["assignment"]
    p.run_ok("release", "--assignment", first)  # al's slot given back
    second = p.claim("al")["assignment"]
    held = p.claim("al")["assignment"]  # a newer slot al still holds
    assert first < second < held
    p.submit(second, "al", "--label", "cat")
    al = {w["id"]: w for w in p.json("workers", "list")}["al"]
    assert al["flagged"]
    assert [f["skips_in_row"] for f in flagged_facts(p)] == [1]


def test_skips_are_counted_back_from_the_submitted_slot_over_slots_still_open(tmp_path):
    p = Project(tmp_path, skipper(2))
    p.worker("al", "annotator")
    p.ingest([{"id": f"T{i}"} for i in range(1, 7)])
    done = p.claim("al")["assignment"]
    p.submit(done, "al", "--label", "cat")  # a submission ends any run before it
    given_back = p.claim("al")["assignment"]
    p.run_ok("release", "--assignment", given_back)
    kept = p.claim("al")["assignment"]  # still active when al submits: passed over, not the run's end
    also_given_back = p.claim("al")["assignment"]
    p.run_ok("release", "--assignment", also_given_back)
    submitted = p.claim("al")["assignment"]
    later = p.claim("al")["assignment"]  # claimed after the submitted slot: not before this submission
    assert done < given_back < kept < also_given_back < submitted < later
    p.submit(submitted, "al", "--label", "cat")
    assert [f["skips_in_row"] for f in flagged_facts(p)] == [2]
    assert {w["id"]: w for w in p.json("workers", "list")}["al"]["flagged"]


def vm_steps(conn, call) -> int:
    """SQLite virtual-machine steps (in units of 100) of ``call()``: a cost without a clock."""
    counted = [0]

    def count() -> int:
        counted[0] += 1
        return 0

    conn.set_progress_handler(count, 100)
    try:
        call()
    finally:
        conn.set_progress_handler(None, 0)
    return counted[0]


def test_the_skips_read_costs_the_same_however_long_the_worker_history(tmp_path, monkeypatch):
    p = Project(tmp_path)
    p.worker("al", "annotator")
    p.ingest([{"id": "T1"}])
    engine = engine_at(p.db, monkeypatch, 1)
    store = engine.store
    task = store.task("T1")
    with store.transaction():
        ids = [store.insert_assignment(task["id"], "al", "annotate", "triage", task["round"], status, 1.0)
               for status in ("released", "active") * 2000]
    early = vm_steps(store.conn, lambda: store.worker_statuses_before("al", ids[200], 50))
    late = vm_steps(store.conn, lambda: store.worker_statuses_before("al", ids[-1], 50))
    assert store.worker_statuses_before("al", ids[-1], 50) == ["released"] * 50  # the active ones passed over
    assert store.worker_statuses_before("al", ids[3], 50) == ["released"] * 2
    assert late <= 2 * early + 2, (early, late)  # a walk of the whole history would cost ~40 times more
    engine.close()


# -- 2. `gold add` is a lead's action ----------------------------------------------------------


def write_gold(p, rows, name="gold.jsonl"):
    path = p.folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gold_add_needs_the_lead_role_like_hold(tmp_path):
    p = Project(tmp_path, WORKFLOW + "quality:\n  gold: {rate: 1.0}\n")
    for name in ("al", "bo"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1"}])
    gold = write_gold(p, [{"id": "G1", "data": {}, "answer": "cat"}])
    assert p.json("gold", "add", gold) == {"added": 1, "updated": 0, "rejected": 0}  # lena, the lead
    view = p.claim("bo")
    assert view["external_id"] == "G1"
    p.submit(view["assignment"], "bo", "--label", "cat")  # right: 1 of 1
    rewrite = write_gold(p, [{"id": "G1", "data": {}, "answer": "dog"}], "rewrite.jsonl")
    before = p.show("G1")["events"]

    refused = p.run("gold", "add", rewrite, "--as", "al")
    assert refused.returncode == 1 and refused.stdout == ""
    assert "al needs the lead role for this" in refused.stderr
    assert p.run("hold", "T1", "--as", "al").stderr == refused.stderr  # the same refusal as hold's
    p.env["LABELYARD_WORKER"] = "al"  # without --as: LABELYARD_WORKER, as for hold
    try:
        assert "al needs the lead role" in p.run("gold", "add", rewrite).stderr
        assert p.json("gold", "add", rewrite, "--as", "lena")["updated"] == 1  # --as a lead
    finally:
        p.env["LABELYARD_WORKER"] = "lena"
    events = p.show("G1")["events"]
    assert events[:len(before)] == before
    (updated,) = [e for e in events if e["kind"] == "gold_updated"]
    assert updated["actor"] == "lena" and updated["detail"]["answer"] == "dog"
    by = {a["worker"]: a for a in p.json("agreement")["annotators"]}
    assert (by["bo"]["gold_answered"], by["bo"]["gold_accuracy"]) == (1, 0.0)  # rescored by the lead's file


def test_gold_add_in_a_project_without_a_lead_is_refused_like_hold(tmp_path):
    p = Project(tmp_path)
    gold = write_gold(p, [{"id": "G1", "data": {}, "answer": "cat"}])
    conn = sqlite3.connect(p.db)
    with conn:
        conn.execute("DELETE FROM workers")  # as a database made without `init` (the demo's)
    conn.close()
    refused = p.run("gold", "add", gold)
    assert refused.returncode == 1
    assert "lena needs the lead role for this (`labelyard workers add lena --role lead` by a lead)" in refused.stderr
    assert "lena needs the lead role" in p.run("hold", "G1").stderr
    p.run_ok("workers", "add", "lena", "--role", "lead")  # no lead yet: anyone may register the first
    assert p.json("gold", "add", gold)["added"] == 1
