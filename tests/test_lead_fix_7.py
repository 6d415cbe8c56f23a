"""Fixes of the seventh session: `init` checks before it writes, worker names, roles, skills and
capacity are checked, reassign keeps a worker to one vote per task, lead dry runs run the real
checks, gold slots are no lead's, and an unchanged pause writes nothing.

Every test runs the real ``labelyard`` command in a subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import LEAD as RUN_LEAD
from lead_support import LEAD, WORKFLOW, Project

from router.store import SCHEMA_VERSION


def events(db, kind: str | None = None) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT kind, detail FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    return [r for r in rows if kind is None or r[0] == kind]


def task(p, ref):
    return p.show(ref)["task"]


def statuses(p, ref):
    return [(a["worker"], a["status"]) for a in p.show(ref)["assignments"]]


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    for name in ("ann1", "ann2", "ann3"):
        p.worker(name, "annotator")
    p.ingest([{"id": f"T{i}", "data": {"n": i}} for i in range(1, 5)])
    return p


# -- 1. `init` on a database a newer Labelyard migrated --------------------------------------


def test_init_refuses_a_newer_schema_like_every_command_and_writes_nothing(run):
    run.ok("init")
    conn = sqlite3.connect(run.db)
    with conn:
        conn.execute("UPDATE schema_version SET version = 99")
        conn.execute("DELETE FROM workers")  # a project without a lead: init would register one
    conn.close()
    before = events(run.db)
    status = run("status")
    assert status.returncode == 1
    assert f"database schema 99 is newer than this Labelyard ({SCHEMA_VERSION}); upgrade labelyard" in status.stderr

    proc = run("init", "--json", env={"LABELYARD_WORKER": "newlead"})
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout == ""
    assert proc.stderr == (f"labelyard: {run.db}: database schema 99 is newer than this Labelyard ({SCHEMA_VERSION}); "
                           "upgrade labelyard\n")
    assert "already up to date" not in proc.stdout + proc.stderr
    conn = sqlite3.connect(run.db)
    assert conn.execute("SELECT count(*) FROM workers").fetchone()[0] == 0
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(99,)]
    conn.close()
    assert events(run.db) == before


# -- 2. capacities SQLite cannot store ---------------------------------------------------------


def test_a_capacity_too_large_is_a_clear_error_not_an_overflow(run):
    run.ok("init")
    proc = run("workers", "add", "big", "--role", "annotator", "--capacity", "99999999999999999999")
    assert proc.returncode == 1  # like --capacity 0; conftest checks there is no traceback
    assert proc.stderr.startswith("labelyard: --capacity must be at most 10,000, not 99999999999999999999")
    assert "big" not in {w["id"] for w in run.json("workers", "list", "--json")}

    run.ok("workers", "add", "alice", "--role", "annotator", "--capacity", "10000")  # the bound itself is fine
    proc = run("workers", "set", "alice", "--capacity", "9223372036854775808")
    assert proc.returncode == 1 and "--capacity must be at most 10,000" in proc.stderr
    proc = run("workers", "set", "alice", "--capacity", "0")
    assert proc.returncode == 1 and "--capacity must be at least 1" in proc.stderr
    alice = next(w for w in run.json("workers", "list", "--json") if w["id"] == "alice")
    assert alice["capacity"] == 10000


# -- 3. reassign never gives a voter a second vote ---------------------------------------------

MORE_VOTES = """\
workflow: more
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - name: default
    do: {annotate: triage, overlap: 2}
on_quorum:
  - name: unanimous
    when: votes.unanimous
    do: accept
  - name: third opinion
    when: votes.count < 3
    do: {annotate: triage, overlap: 3}
  - name: split
    do: {review: senior}
"""


def test_reassign_refuses_a_worker_whose_vote_counts_in_a_new_annotate_round(tmp_path):
    p = Project(tmp_path, MORE_VOTES)
    for name in ("ann1", "ann2", "ann3", "ann4"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    first_round = task(p, "T1")["round"]
    for worker, label in (("ann1", "cat"), ("ann2", "dog")):
        view = p.claim(worker)
        assert view["external_id"] == "T1"
        p.submit(view["assignment"], worker, "--label", label)
    t1 = task(p, "T1")
    assert (t1["stage"], t1["round"], t1["needed"]) == ("annotate", first_round + 1, 1)  # one more vote wanted

    proc = p.run("reassign", "T1", "--to", "ann1")
    assert proc.returncode == 1
    assert "cannot reassign task T1 to ann1: ann1 already voted on this task" in proc.stderr
    assert "--force" in proc.stderr
    assert [w for w, s in statuses(p, "T1") if s == "active"] == []
    dry = p.run("reassign", "T1", "--to", "ann2", "--dry-run")
    assert dry.returncode == 1 and "ann2 already voted on this task" in dry.stderr

    # a worker who has not voted takes it; with --force a voter does, and the event says why
    assert p.json("reassign", "T1", "--to", "ann3")["done"][0]["to"] == "ann3"
    out = p.json("reassign", "T1", "--to", "ann1", "--force")
    assert "ann1 already voted on this task" in out["done"][0]["forced"]
    (event,) = [e for e in p.show("T1")["events"] if e["kind"] == "reassigned" and e["detail"]["to"] == "ann1"]
    assert "already voted" in event["detail"]["forced"]

    # in the first round nobody has voted: reassign works as before
    assert p.json("reassign", "T2", "--to", "ann4")["done"][0]["to"] == "ann4"


def test_reassign_refuses_a_same_round_submitter_even_with_force(tmp_path):
    p = Project(tmp_path, MORE_VOTES)
    for name in ("ann1", "ann2"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1"}])
    view = p.claim("ann1")
    p.submit(view["assignment"], "ann1", "--label", "cat")
    proc = p.run("reassign", "T1", "--to", "ann1", "--force")
    assert proc.returncode == 1 and "ann1 already submitted for task T1 in this stage" in proc.stderr


# -- 4. dry runs run the real checks; a task counts once ---------------------------------------


def test_a_task_named_twice_is_matched_once(project):
    t1 = task(project, "T1")
    out = project.json("hold", "T1", "T1")
    assert (out["matched"], len(out["done"])) == (1, 1)
    out = project.json("unhold", "T1", f"id:{t1['id']}")
    assert (out["matched"], len(out["done"])) == (1, 1)
    out = project.json("priority", "T2", "ext:T2", "T2", "3", "--dry-run")
    assert (out["matched"], len(out["done"])) == (1, 1)


def test_dry_run_with_task_ids_refuses_what_the_real_run_refuses(project):
    project.json("hold", "T1")
    before = events(project.db)
    dry = project.run("unhold", "T1", "T2", "--dry-run")  # T2 is open: skipped; T1 would be done
    assert dry.returncode == 0 and dry.stderr.startswith("dry run: skipped T2 (id:2): task T2 is already open\n")
    dry = project.run("reassign", "T2", "T1", "--to", "ann3", "--dry-run")
    real = project.run("reassign", "T2", "T1", "--to", "ann3")
    assert dry.returncode == real.returncode == 1
    assert dry.stderr == real.stderr == "labelyard: task T1 is held: only open tasks can be reassigned\n"
    assert task(project, "T2")["status"] == "open"
    assert events(project.db) == before

    project.run_ok("workers", "pause", "ann3")
    dry = project.run("reassign", "T2", "--to", "ann3", "--dry-run")
    assert dry.returncode == 1 and "ann3 is paused" in dry.stderr


def test_dry_run_reports_what_the_real_run_does_and_changes_nothing(project):
    a = project.claim("ann1")
    before = events(project.db)
    dry = project.json("hold", "T1", "T2", "--reason", "check", "--dry-run")
    assert dry["dry_run"] and dry["matched"] == 2
    assert all(d["status"] == "held" and d["reason"] == "check" for d in dry["done"])
    assert dry["done"][0]["released"] == [a["assignment"]]
    assert events(project.db) == before
    assert task(project, "T1")["status"] == "open" and statuses(project, "T1") == [("ann1", "active")]
    text = project.run_ok("hold", "T1", "--dry-run")
    assert text.stdout == "dry run: held T1 (id:1)\n"
    assert "nothing changed" in text.stderr

    real = project.json("hold", "T1", "T2", "--reason", "check")
    assert real["done"] == dry["done"]
    assert task(project, "T1")["status"] == "held"


def test_unhold_where_dry_run_skips_what_the_real_run_skips(tmp_path):
    workflow = WORKFLOW.replace("on_create:\n", "on_create:\n  - name: odd\n    when: task.category == \"odd\"\n"
                                              "    do: hold\n")
    p = Project(tmp_path, workflow)
    p.ingest([{"id": "T1"}, {"id": "ODD", "category": "odd"}])
    p.json("hold", "T1")
    assert task(p, "ODD")["status"] == "held"
    dry = p.json("unhold", "--where", "true", "--dry-run")
    assert dry["matched"] == 2
    assert [d["external_id"] for d in dry["done"]] == ["T1"]
    assert [s["external_id"] for s in dry["skipped"]] == ["ODD"]
    assert "no work left in its stage" in dry["skipped"][0]["reason"]
    assert task(p, "T1")["status"] == "held"
    real = p.json("unhold", "--where", "true")
    assert (real["done"], real["skipped"]) == (dry["done"], dry["skipped"])
    assert task(p, "T1")["status"] == "open"


def test_release_of_one_assignment_has_a_real_dry_run(project):
    a = project.claim("ann1")
    out = project.json("release", "--assignment", a["assignment"], "--dry-run")
    assert (out["status"], out["dry_run"]) == ("released", True)
    assert statuses(project, "T1") == [("ann1", "active")]
    assert events(project.db, "released") == []
    text = project.run_ok("release", "--assignment", a["assignment"], "--dry-run").stdout
    assert text == f"dry run: released assignment {a['assignment']} of ann1 (released)\n"


# -- 5. the name `init` registers is checked before the file is made --------------------------


@pytest.mark.parametrize("name, problem", [(" ", "a worker needs a name"),
                                           ("  alice ", "it starts or ends with a space")])
def test_init_checks_the_lead_name_before_creating_anything(run, name, problem):
    proc = run("init", env={"LABELYARD_WORKER": name})
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"labelyard: LABELYARD_WORKER is {name!r}")
    assert problem in proc.stderr
    assert not run.db.exists()
    assert not list(run.folder.glob("labelyard.db*"))


def test_worker_names_are_checked_the_same_way_everywhere(run):
    run.ok("init")
    proc = run("workers", "add", "  alice ", "--role", "annotator")
    assert proc.returncode == 1 and "worker name '  alice ': it starts or ends with a space" in proc.stderr
    proc = run("workers", "add", "alice", "--role", "annotator", "--as", " ")
    assert proc.returncode == 1 and proc.stderr == "labelyard: --as is ' ': a worker needs a name\n"
    proc = run("claim", env={"LABELYARD_WORKER": " "})
    assert proc.returncode == 1 and proc.stderr == "labelyard: LABELYARD_WORKER is ' ': a worker needs a name\n"
    assert {w["id"] for w in run.json("workers", "list", "--json")} == {RUN_LEAD}


# -- 6. empty roles and skills; gold slots; an unchanged pause ---------------------------------


def test_empty_roles_and_skills_are_refused(run):
    run.ok("init")
    for args, message in ((("--role", ""), "role '': it is empty"),
                          (("--role", "annotator", "--skill", " "), "skill ' ': it is empty"),
                          (("--role", "annotator "), "role 'annotator ': it starts or ends with a space")):
        proc = run("workers", "add", "a b", *args)
        assert proc.returncode == 1 and message in proc.stderr, args
    run.ok("workers", "add", "a b", "--role", "annotator")
    proc = run("workers", "set", "a b", "--role", "")
    assert proc.returncode == 1 and "role '': it is empty" in proc.stderr
    (ab,) = [w for w in run.json("workers", "list", "--json") if w["id"] == "a b"]
    assert (ab["roles"], ab["skills"]) == (["annotator"], [])


def test_a_gold_slot_is_refused_by_assignment_as_by_task(tmp_path):
    p = Project(tmp_path, WORKFLOW + "quality:\n  gold: {rate: 1.0}\n")
    p.worker("ann1", "annotator")
    p.ingest([{"id": "T1"}])
    (tmp_path / "gold.jsonl").write_text(json.dumps({"id": "G1", "answer": "cat"}) + "\n")
    p.json("gold", "add", tmp_path / "gold.jsonl")
    view = p.claim("ann1")
    assert view["external_id"] == "G1"
    message = "labelyard: task G1 is a gold question; lead actions do not apply to it\n"
    by_task = p.run("release", "G1")
    by_assignment = p.run("release", "--assignment", view["assignment"])
    assert by_task.returncode == by_assignment.returncode == 1
    assert by_task.stderr == by_assignment.stderr == message
    assert statuses(p, "G1") == [("ann1", "active")]
    assert events(p.db, "released") == []


def test_an_unchanged_pause_or_resume_writes_no_event(project):
    assert project.run_ok("workers", "pause", "ann1", "--reason", "break").stdout == "paused ann1\n"
    again = project.run_ok("workers", "pause", "ann1")
    assert again.stdout == "ann1 is already paused; nothing changed\n"
    project.run_ok("workers", "pause", "ann1", "--reason", "break")
    assert len(events(project.db, "worker_paused")) == 1
    ann1 = next(w for w in project.json("workers", "list") if w["id"] == "ann1")
    assert (ann1["paused"], ann1["pause_reason"]) == (True, "break")  # kept: no reason given again
    project.run_ok("workers", "pause", "ann1", "--reason", "training")  # a new reason is a change
    assert [json.loads(d)["reason"] for _, d in events(project.db, "worker_paused")] == ["break", "training"]

    assert project.run_ok("workers", "resume", "ann1").stdout == "resumed ann1\n"
    assert project.run_ok("workers", "resume", "ann1").stdout == "ann1 is not paused; nothing changed\n"
    assert project.run_ok("workers", "resume", "ann2").stdout == "ann2 is not paused; nothing changed\n"
    assert len(events(project.db, "worker_resumed")) == 1
    assert LEAD in {w["id"] for w in project.json("workers", "list")}
