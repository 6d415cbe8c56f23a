"""Fixes around gold and worker quality: `worker.skips_in_row` counts back from the submitted slot,
`gold add` is a lead's action, and `apply` holds gold questions whose answer the new labels refuse.

Every test runs the real ``labelyard`` command in a subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3

from lead_support import WORKFLOW, Project, engine_at
from test_scale_paths import steps  # SQLite VM steps a call takes, never time

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
    early = steps(store.conn, lambda: store.worker_statuses_before("al", ids[200], 50))
    late = steps(store.conn, lambda: store.worker_statuses_before("al", ids[-1], 50))
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
    assert p.json("gold", "add", gold) == {"added": 1, "updated": 0, "unchanged": 0, "rejected": 0,
        "source": str(gold)}  # lena, the lead
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


# -- 3. `apply` and gold answers the new labels refuse -----------------------------------------

LABELS_V1 = """\
workflow: g
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: rest, do: {annotate: q}}
quality:
  gold: {rate: 1.0}
"""
LABELS_V2 = LABELS_V1.replace("choices: [a, b]", "choices: [b, c]")


def gold_project(run, write_workflow, tmp_path):
    """v1 with gold G1 (answer a) and G2 (answer b); bo holds a slot of G1."""
    run.ok("init")
    run.ok("apply", write_workflow(LABELS_V1, "g.workflow.yaml"))
    for name in ("al", "bo"):
        run.ok("workers", "add", name, "--role", "annotator")
    (tmp_path / "t.jsonl").write_text('{"id": "T1", "data": {}}\n')
    run.ok("ingest", "t.jsonl")
    (tmp_path / "gold.jsonl").write_text('{"id": "G1", "data": {}, "answer": "a"}\n'
                                         '{"id": "G2", "data": {}, "answer": "b"}\n')
    run.ok("gold", "add", "gold.jsonl")
    held = run.json("claim", "--as", "bo", "--json")
    assert held["external_id"] == "G1"
    return held["assignment"]


def test_apply_holds_gold_whose_answer_the_new_labels_refuse_until_gold_add_fixes_it(run, write_workflow,
                                                                                      tmp_path):
    slot = gold_project(run, write_workflow, tmp_path)
    applied = run.json("apply", write_workflow(LABELS_V2, "g2.workflow.yaml"), "--json")
    assert applied["changed"] and applied["held_gold"] == {"G1": 'label "a" is not one of b, c'}
    assert applied["gold_in_dropped_queues"] == {} and applied["held_orphans"] == 0
    g1 = run.json("show", "G1", "--json")
    assert g1["task"]["status"] == "held"
    assert g1["task"]["reason"] == ('its gold answer is no label of version 2 of workflow `g` '
                                    '(label "a" is not one of b, c): `labelyard gold add` it again with a valid answer')
    assert [a["status"] for a in g1["assignments"]] == ["released"]  # bo is not scored against it
    assert run.json("show", "G2", "--json")["task"]["status"] == "open"  # b is still a label
    late = run("submit", slot, "--as", "bo", "--label", "b")
    assert late.returncode == 1 and "taken back" in late.stderr
    status = run.json("status", "--json")
    assert status["gold"] == 2 and status["tasks"].get("held", 0) == 0  # gold is counted apart, as before

    # not served: al gets G2, then ordinary work, never G1
    assert [run.json("claim", "--as", "al", "--json")["external_id"] for _ in range(2)] == ["G2", "T1"]

    # the same row is still refused under v2; a valid answer reopens the question and it is served again
    run.ok("gold", "add", "gold.jsonl")
    assert run.json("show", "G1", "--json")["task"]["status"] == "held"
    (tmp_path / "fix.jsonl").write_text('{"id": "G1", "data": {}, "answer": "c"}\n')
    assert run.json("gold", "add", "fix.jsonl", "--json") == {"added": 0, "updated": 1, "unchanged": 0, "rejected": 0,
        "source": str(tmp_path / "fix.jsonl")}
    g1 = run.json("show", "G1", "--json")
    assert (g1["task"]["status"], g1["task"]["reason"]) == ("open", None)
    assert [e["detail"].get("was_status") for e in g1["events"] if e["kind"] == "gold_updated"] == ["held"]
    view = run.json("claim", "--as", "al", "--json")
    assert view["external_id"] == "G1"
    run.ok("submit", view["assignment"], "--as", "al", "--label", "c")
    by = {a["worker"]: a for a in run.json("agreement", "--json")["annotators"]}
    assert (by["al"]["gold_answered"], by["al"]["gold_accuracy"]) == (1, 1.0)  # G1 scored right


def test_apply_says_which_gold_it_held_and_why(run, write_workflow, tmp_path):
    gold_project(run, write_workflow, tmp_path)
    applied = run.ok("apply", write_workflow(LABELS_V2, "g2.workflow.yaml"))
    assert applied.stdout == "applied g version 2\n"
    assert applied.stderr == ('held gold question G1: its answer is no label of this version '
                              '(label "a" is not one of b, c); `labelyard gold add` it again with a valid answer\n')
    (event,) = [e for e in run.json("show", "G1", "--json")["events"] if e["kind"] == "held"]
    assert event["actor"] == "lead-lucy" and "no label of version 2" in event["detail"]["reason"]
