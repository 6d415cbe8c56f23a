"""The ``labelyard`` command end to end, as a user runs it: real subprocesses on a real database file.

Acceptance of issue #2: init, ingest, workers, claim/submit/review, status,
show, export, demo, and a full scenario from an empty folder to an export.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import sqlite3
import stat
import subprocess
from pathlib import Path

from conftest import LEAD, NOW, SMALL_WORKFLOW

CLAIM_KEYS = {"assignment", "task", "external_id", "kind", "queue", "data", "choices"}

REVIEW_WORKFLOW = """\
workflow: pets
labels: {type: choice, choices: [cat, dog, bird]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - name: three votes
    do: {annotate: triage, overlap: 3}
on_quorum:
  - name: unanimous
    when: votes.unanimous
    do: accept
  - name: split
    do: {review: senior}
"""


def write_jsonl(path: Path, rows: list) -> Path:
    """One line per row: dicts as JSON, strings as they are (for broken lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def project(run, write_workflow, workflow: str = SMALL_WORKFLOW, rows: list | None = None,
            workers: dict[str, list[str]] | None = None) -> dict:
    """init, apply, add workers (name -> extra args) and ingest ``rows``; returns the ingest report."""
    run.ok("init")
    run.ok("apply", write_workflow(workflow))
    for name, args in (workers or {}).items():
        run.ok("workers", "add", name, *args)
    if rows is None:
        return {}
    write_jsonl(run.folder / "tasks.jsonl", rows)
    return run.json("ingest", "tasks.jsonl", "--json")


def claim(run, worker: str, *args: str) -> dict:
    view = run.json("claim", "--as", worker, "--json", *args)
    assert CLAIM_KEYS <= set(view)
    return view


def no_claim(run, worker: str, *args: str) -> str:
    """Claim that must find nothing: exit 3, nothing on stdout; returns stderr."""
    proc = run("claim", "--as", worker, "--json", *args)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout == ""
    return proc.stderr


def submit(run, assignment: int, worker: str, *args: str) -> dict:
    return run.json("submit", assignment, "--as", worker, "--json", *args)


# -- init ----------------------------------------------------------------------------------


def test_init_creates_the_database_once_owner_and_group_only_with_a_lead(run):
    first = run("init")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(f"{run.db}: applied m001_initial")
    assert first.stdout.strip().endswith(f"; {LEAD} is a lead")
    assert stat.S_IMODE(run.db.stat().st_mode) == 0o660

    again = run.json("init", "--json")
    assert again == {"db": str(run.db), "migrations_applied": [], "leads": [LEAD], "lead": LEAD}
    assert "already up to date" in run.ok("init").stdout
    leads = run.json("workers", "list", "--json")
    assert [(w["id"], w["roles"]) for w in leads] == [(LEAD, ["lead"])]
    # once the project has a lead, init makes nobody else one (only a lead adds workers)
    other = run.json("init", "--json", env={"LABELYARD_WORKER": "mallory"})
    assert (other["leads"], other["lead"]) == ([LEAD], None)
    assert run.ok("init", env={"LABELYARD_WORKER": "mallory"}).stdout.strip().endswith(f"; leads: {LEAD}")
    assert [w["id"] for w in run.json("workers", "list", "--json")] == [LEAD]


def test_init_registers_the_operating_system_user_without_labelyard_worker(run):
    result = run.json("init", "--json", env={"LABELYARD_WORKER": None})
    assert result["lead"] == getpass.getuser()
    assert [w["id"] for w in run.json("workers", "list", "--json")] == [getpass.getuser()]


def test_the_database_file_is_chosen_by_db_option_then_labelyard_db_then_cwd(run, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    default = run.json("init", "--json", env={"LABELYARD_DB": None}, cwd=folder)
    assert default["db"] == "labelyard.db"
    assert (folder / "labelyard.db").is_file()
    assert not run.db.exists()

    run.ok("init", env={"LABELYARD_DB": str(tmp_path / "from-env.db")})
    assert (tmp_path / "from-env.db").is_file()

    # --db wins over LABELYARD_DB, after the command name and before it
    run.ok("init", "--db", tmp_path / "after.db")
    run.ok("--db", tmp_path / "before.db", "init")
    assert (tmp_path / "after.db").is_file() and (tmp_path / "before.db").is_file()
    assert not run.db.exists()
    for name in ("from-env.db", "after.db", "before.db"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o660
    status = run.json("--db", tmp_path / "before.db", "status", "--json")
    assert status["tasks"] == {"open": 0, "done": 0, "held": 0, "invalid": 0}


def test_commands_on_a_missing_database_say_run_init_and_create_nothing(run, write_workflow):
    for args in (("status",), ("apply", write_workflow()), ("claim", "--as", "x"), ("workers", "list")):
        proc = run(*args)
        assert proc.returncode == 1, args
        assert "labelyard init" in proc.stderr
        assert proc.stdout == ""
    assert not run.db.exists()


def test_a_file_that_is_not_a_database_and_an_unwritable_export_are_errors_not_tracebacks(run, write_workflow):
    junk = run.folder / "notes.db"
    junk.write_text("shopping list\n" * 200, encoding="utf-8")
    for args in (("status",), ("init",), ("claim", "--as", "x")):
        proc = run("--db", junk, *args)
        assert proc.returncode == 1, args
        assert proc.stderr.startswith(f"labelyard: {junk}: "), proc.stderr
        assert "file is not a database" in proc.stderr
    assert junk.read_text(encoding="utf-8") == "shopping list\n" * 200  # left as it was
    sqlite_only = run.folder / "other.db"
    sqlite3.connect(sqlite_only).execute("CREATE TABLE t (x)").connection.close()
    assert "holds other tables (t), not a Labelyard database; choose another --db path" in \
        run("--db", sqlite_only, "status").stderr  # another program's: `init` would refuse it

    run.ok("init")
    run.ok("apply", write_workflow())
    proc = run("export", "--format", "csv", "-o", run.folder / "missing" / "out.csv")
    assert (proc.returncode, proc.stderr) == (1, f"labelyard: {run.folder / 'missing' / 'out.csv'}: cannot write: "
                                                 "No such file or directory\n")
    assert not (run.folder / "missing").exists()


def test_export_into_a_pipe_that_closes_early_is_quiet(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow())
    write_jsonl(run.folder / "t.jsonl", [{"id": f"t{i}", "data": {"text": "x" * 200},
                                          "prediction": {"label": "cat", "confidence": 0.99}} for i in range(5000)])
    run.ok("ingest", "t.jsonl")
    export = subprocess.Popen([*run.command, "export", "--format", "jsonl"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=run.env, cwd=run.folder)
    assert json.loads(export.stdout.readline())["label"] == "cat"
    export.stdout.close()  # as `| head -1` does
    _, err = export.communicate(timeout=60)
    assert (export.returncode, err) == (0, b"")


# -- ingest --------------------------------------------------------------------------------


GOOD_AND_BAD_ROWS = [
    {"id": "A", "data": {"photo": "a.jpg"}, "prediction": {"label": "cat", "confidence": 0.95, "model": "m1"}},
    {"id": "B", "data": {"photo": "b.jpg"}, "prediction": {"label": "dog", "confidence": 0.3}},
    {"id": "C", "category": "medical", "data": {"photo": "c.jpg"}, "prediction": {"label": "dog", "confidence": 0.6}},
    {"id": 4, "photo": "d.jpg"},
    "{not json",
    {"data": {"photo": "no-id.jpg"}},
    {"id": "F", "prediction": {"label": "cat", "confidence": 1.5}},
    {"id": "G", "prediction": {"label": "cow", "confidence": 0.5}},
    "",
    {"id": "H", "tags": ["x"], "data": {"photo": "h.jpg"}},
]


def test_ingest_jsonl_routes_quarantines_and_is_idempotent(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow())
    write_jsonl(run.folder / "tasks.jsonl", GOOD_AND_BAD_ROWS)

    proc = run.ok("ingest", "tasks.jsonl", "--json")
    assert proc.stderr == ""  # no noise under --json
    assert json.loads(proc.stdout) == {
        "ingested": 5, "duplicates": 0, "rejected": 4,
        "routed": {"confident": 1, "uncertain": 1, "medical": 1, "default": 2},
        "source": str((run.folder / "tasks.jsonl").resolve()),
    }
    again = run.json("ingest", "tasks.jsonl", "--json")
    assert (again["ingested"], again["duplicates"], again["routed"]) == (0, 5, {})

    rejects = run.json("rejects", "--json")
    source = str((run.folder / "tasks.jsonl").resolve())
    assert {r["source"] for r in rejects} == {source}
    reasons = {r["line"]: r["reason"] for r in rejects}
    assert sorted(reasons) == [5, 6, 7, 8]  # kept once although the file was read twice
    assert reasons[5].startswith("invalid JSON")
    assert reasons[6] == "missing `id`"
    assert "outside 0..1" in reasons[7]
    assert '"cow" is not one of cat, dog, bird' in reasons[8]
    assert {r["raw"] for r in rejects if r["line"] == 5} == {"{not json"}

    status = run.json("status", "--json")
    assert status["tasks"] == {"open": 4, "done": 1, "held": 0, "invalid": 0}
    assert status["rejects"] == 4
    assert {q: (v["waiting"], v["active"]) for q, v in status["queues"].items()} == {
        "triage": (3, 0), "vets": (1, 0), "senior": (0, 0)}

    a = run.json("show", "A", "--json")
    assert a["task"]["status"] == "done"
    assert (a["task"]["final_label"], a["task"]["final_by"], a["task"]["final_rule"]) == ("cat", "model", "confident")
    assert (a["prediction"]["label"], a["prediction"]["confidence"], a["prediction"]["model"]) == ("cat", 0.95, "m1")
    b = run.json("show", "B", "--json")["task"]
    assert (b["stage"], b["queue"], b["needed"], b["priority"]) == ("annotate", "triage", 2, 0.7)
    assert run.json("show", "4", "--json")["task"]["data"] == {"photo": "d.jpg"}  # keys other than id go to data
    assert run.json("show", "H", "--json")["task"]["tags"] == ["x"]


def test_ingest_csv_puts_other_columns_in_data(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow())
    (run.folder / "tasks.csv").write_text(
        "id,category,caption,prediction_label,prediction_confidence\n"
        "c1,,a sleepy cat,cat,0.97\n"
        "c2,medical,limping dog,dog,0.5\n"
        ",,no id,cat,0.5\n"
        "c4,,a cow,cow,0.5\n"
        "c5,,too sure,cat,2\n"
        "c6,,plain,,\n",
        encoding="utf-8",
    )
    report = run.json("ingest", "tasks.csv", "--json")
    assert report == {"ingested": 3, "duplicates": 0, "rejected": 3,
                      "routed": {"confident": 1, "medical": 1, "default": 1},
                      "source": str((run.folder / "tasks.csv").resolve())}
    c2 = run.json("show", "c2", "--json")
    assert c2["task"]["data"] == {"caption": "limping dog"}
    assert (c2["task"]["category"], c2["task"]["queue"]) == ("medical", "vets")
    assert (c2["prediction"]["label"], c2["prediction"]["confidence"]) == ("dog", 0.5)
    assert run.json("show", "c1", "--json")["task"]["final_label"] == "cat"
    assert run.json("show", "c6", "--json")["prediction"]["label"] is None
    reasons = {r["line"]: r["reason"] for r in run.json("rejects", "--json")}
    assert reasons == {4: "missing `id`", 5: reasons[5], 6: reasons[6]}
    assert "cow" in reasons[5] and "outside 0..1" in reasons[6]
    assert run.json("ingest", "tasks.csv", "--json")["duplicates"] == 3


def test_ingest_without_a_terminal_prints_a_summary_and_no_progress_bar(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow())
    write_jsonl(run.folder / "tasks.jsonl", GOOD_AND_BAD_ROWS)
    proc = run.ok("ingest", "tasks.jsonl")
    assert proc.stdout.splitlines()[0] == "ingested 5, duplicates 0, rejected 4"
    assert "\r" not in proc.stdout + proc.stderr and "\x1b" not in proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"rejected rows are kept with their reasons: labelyard rejects --db {run.db}"
    assert "rejects --json" not in proc.stdout


def test_ingest_user_errors(run, write_workflow, tmp_path):
    run.ok("init")
    write_jsonl(tmp_path / "tasks.jsonl", GOOD_AND_BAD_ROWS[:1])
    no_workflow = run("ingest", "tasks.jsonl")
    assert no_workflow.returncode == 1 and "apply" in no_workflow.stderr
    run.ok("apply", write_workflow())
    (tmp_path / "tasks.txt").write_text("id\n1\n")
    for source in ("missing.jsonl", "tasks.txt"):
        proc = run("ingest", source, "--json")
        assert proc.returncode == 1 and proc.stdout == "" and source in proc.stderr
    assert run.json("status", "--json")["total"] == 0


# -- workers -------------------------------------------------------------------------------


def test_workers_add_and_list(run, write_workflow):
    run.ok("init")
    assert run.ok("workers", "add", "vera", "--role", "annotator", "--skill", "vet", "--skill", "birds",
                  "--capacity", "2").stdout.strip() == "added vera"
    run.ok("workers", "add", "sam", "--role", "senior", "--role", "annotator")
    listed = {w["id"]: w for w in run.json("workers", "list", "--json")}
    assert set(listed) == {LEAD, "vera", "sam"}
    assert {k: listed["vera"][k] for k in ("roles", "skills", "capacity", "paused", "active")} == {
        "roles": ["annotator"], "skills": ["birds", "vet"], "capacity": 2, "paused": False, "active": 0}
    assert (listed["sam"]["roles"], listed["sam"]["capacity"]) == (["annotator", "senior"], None)

    assert run.ok("workers", "add", "vera", "--role", "annotator", "--capacity", "5").stdout.strip() == "updated vera"
    vera = next(w for w in run.json("workers", "list", "--json") if w["id"] == "vera")
    assert (vera["skills"], vera["capacity"]) == (["birds", "vet"], 5)  # skills not given are kept

    bad = run("workers", "add", "zed", "--role", "annotator", "--capacity", "0")
    assert bad.returncode == 1 and "capacity" in bad.stderr
    usage = run("workers", "add", "zed")
    assert usage.returncode == 2 and "--role" in usage.stderr
    assert "zed" not in {w["id"] for w in run.json("workers", "list", "--json")}


# -- claim and submit ----------------------------------------------------------------------


def test_claim_order_roles_skills_capacity_and_one_slot_per_task(run, write_workflow):
    rows = [
        {"id": "plain-1", "data": {"n": 1}},                                  # default, priority 0
        {"id": "unsure", "data": {"n": 2}, "prediction": {"label": "cat", "confidence": 0.4}},   # priority 0.6
        {"id": "very-unsure", "data": {"n": 3}, "prediction": {"label": "dog", "confidence": 0.1}},  # 0.9
        {"id": "plain-2", "data": {"n": 4}},                                  # default, priority 0
        {"id": "sick", "category": "medical", "data": {"n": 5}},             # vets queue
    ]
    workers = {"ann": ["--role", "annotator"], "vet": ["--role", "annotator", "--skill", "vet"],
               "solo": ["--role", "annotator", "--capacity", "1"], "boss": ["--role", "senior"]}
    project(run, write_workflow, rows=rows, workers=workers)

    # highest priority first, then oldest; never the second slot of a task already held
    order = [claim(run, "ann")["external_id"] for _ in range(4)]
    assert order == ["very-unsure", "unsure", "plain-1", "plain-2"]
    assert "no work for ann" in no_claim(run, "ann")  # the other slots of unsure tasks are not for ann
    assert "may not take" in no_claim(run, "ann", "--queue", "vets")  # no vet skill
    unknown_queue = run("claim", "--as", "ann", "--queue", "nowhere")
    assert unknown_queue.returncode == 1 and "nowhere" in unknown_queue.stderr
    assert no_claim(run, "boss") != ""  # a senior has no annotate work

    sick = claim(run, "vet", "--queue", "vets")
    assert (sick["external_id"], sick["kind"], sick["queue"], sick["data"]) == ("sick", "annotate", "vets", {"n": 5})
    assert sick["choices"] == ["cat", "dog", "bird"]
    assert claim(run, "vet")["external_id"] == "very-unsure"  # its second slot

    first = claim(run, "solo")
    assert first["external_id"] == "unsure"
    assert "capacity" in no_claim(run, "solo")
    submit(run, first["assignment"], "solo", "--label", "cat")
    assert no_claim(run, "solo") != ""  # nothing left that solo has not worked on

    unknown = run("claim", "--as", "nobody", "--json")
    assert unknown.returncode == 1 and "workers add nobody" in unknown.stderr and unknown.stdout == ""
    workers_now = {w["id"]: w["active"] for w in run.json("workers", "list", "--json")}
    assert workers_now == {LEAD: 0, "ann": 4, "vet": 2, "solo": 0, "boss": 0}


def test_submit_refuses_mistakes_without_losing_the_slot(run, write_workflow):
    project(run, write_workflow, rows=[{"id": "t1", "data": {}}],
            workers={"ann": ["--role", "annotator"], "other": ["--role", "annotator"]})
    slot = claim(run, "ann")["assignment"]
    mistakes = [
        (("--as", "other", "--label", "cat"), "belongs to ann"),
        (("--as", "ann", "--label", "cow"), "not one of cat, dog, bird"),
        (("--as", "ann", "--approve"), "not a verdict"),
        (("--as", "ann"), "--label"),
    ]
    for args, message in mistakes:
        proc = run("submit", slot, *args)
        assert proc.returncode == 1, args
        assert message in proc.stderr, proc.stderr
    missing = run("submit", 999, "--as", "ann", "--label", "cat")
    assert missing.returncode == 1 and "no assignment 999" in missing.stderr
    both = run("submit", slot, "--as", "ann", "--label", "cat", "--value", '"cat"')
    assert both.returncode == 2

    done = submit(run, slot, "ann", "--label", "cat")
    assert done["decision"]["rule"] == "unanimous" and done["decision"]["status"] == "done"
    twice = run("submit", slot, "--as", "ann", "--label", "dog")
    assert twice.returncode == 1 and "not active" in twice.stderr
    task = run.json("show", "t1", "--json")["task"]
    assert (task["final_label"], task["final_by"], task["final_rule"]) == ("cat", "consensus", "unanimous")


def test_blind_annotation_review_approve_correct_and_return(run, write_workflow):
    workers = {"ann1": ["--role", "annotator"], "ann2": ["--role", "annotator"],
               "both": ["--role", "annotator", "--role", "senior"], "sen": ["--role", "senior"]}
    project(run, write_workflow, REVIEW_WORKFLOW, rows=[{"id": f"R{i}", "data": {"n": i}} for i in (1, 2, 3)],
            workers=workers)
    votes = {"ann1": ["cat", "cat", "cat"], "ann2": ["cat", "dog", "dog"], "both": ["dog", "dog", "cat"]}
    for worker, labels in votes.items():
        views = [claim(run, worker) for _ in labels]
        assert [v["external_id"] for v in views] == ["R1", "R2", "R3"]
        for view, label in zip(views, labels):
            assert view["kind"] == "annotate"
            assert "votes" not in view  # blind: never the other annotators' labels
            submit(run, view["assignment"], worker, "--label", label)

    status = run.json("status", "--json")
    assert status["queues"]["senior"] == {"waiting": 3, "active": 0, "open": 3, "eligible_workers": 2}
    assert no_claim(run, "both", "--queue", "senior") != ""  # never reviews their own work

    reviews = {}
    for _ in range(3):
        view = claim(run, "sen")
        assert view["kind"] == "review"
        reviews[view["external_id"]] = view
    assert sorted(reviews) == ["R1", "R2", "R3"]
    r1_votes = [(v["worker"], v["label"]) for v in reviews["R1"]["votes"]]
    assert r1_votes == [("ann1", "cat"), ("ann2", "cat"), ("both", "dog")]

    approved = submit(run, reviews["R1"]["assignment"], "sen", "--approve")
    assert approved["decision"]["action"] == "accept"
    corrected = submit(run, reviews["R2"]["assignment"], "sen", "--approve", "--label", "bird")
    assert corrected["decision"]["status"] == "done"
    returned = submit(run, reviews["R3"]["assignment"], "sen", "--reject", "--comment", "look at the ears")
    assert (returned["decision"]["action"], returned["decision"]["status"]) == ("return", "open")

    r1 = run.json("show", "R1", "--json")
    assert (r1["task"]["final_label"], r1["task"]["final_by"], r1["task"]["final_rule"]) == (
        "cat", "reviewer", "default: approved")
    assert [(a["worker"], a["verdict"]) for a in r1["annotations"] if a["stage"] == "review"] == [("sen", "approve")]
    assert [e["rule"] for e in r1["events"] if e["kind"] == "final"] == ["default: approved"]
    r2 = run.json("show", "R2", "--json")["task"]
    assert (r2["final_label"], r2["final_by"]) == ("bird", "reviewer")

    # the rejected task goes back to each of its annotators, with the comment
    for worker in ("ann1", "ann2", "both"):
        view = claim(run, worker)
        assert (view["external_id"], view["kind"], view["comment"]) == ("R3", "correct", "look at the ears")
        assert "votes" not in view
        result = submit(run, view["assignment"], worker, "--label", "cat")
    assert result["decision"] == {"rule": "unanimous", "action": "accept", "target": None, "reason": None,
                                  "status": "done"}
    r3 = run.json("show", "R3", "--json")
    assert (r3["task"]["final_label"], r3["task"]["final_by"]) == ("cat", "consensus")
    assert [e["action"] for e in r3["events"] if e["rule"]] == ["annotate", "review", "return", "accept"]
    assert run.json("status", "--json")["tasks"] == {"open": 0, "done": 3, "held": 0, "invalid": 0}
    no_claim(run, "sen")


def test_status_show_and_export(run, write_workflow, tmp_path):
    rows = [
        {"id": "sure", "category": "pets", "data": {"n": 1}, "prediction": {"label": "dog", "confidence": 0.99}},
        {"id": "open", "data": {"n": 2}},
    ]
    project(run, write_workflow, rows=rows, workers={"ann": ["--role", "annotator"]})
    view = claim(run, "ann")
    status = run.json("status", "--json")
    assert status["tasks"] == {"open": 1, "done": 1, "held": 0, "invalid": 0}
    assert {q: (v["waiting"], v["active"]) for q, v in status["queues"].items()} == {
        "triage": (0, 1), "vets": (0, 0), "senior": (0, 0)}
    text = run.ok("status").stdout
    assert "triage" in text and "open" in text
    assert run.json("init", "--json")["migrations_applied"] == []  # harmless on a working database
    assert run.json("status", "--json") == status

    shown = run.json("show", view["task"], "--json")  # by numeric id as well as external id
    assert set(shown) == {"task", "prediction", "assignments", "annotations", "events", "stalled"}
    assert shown["stalled"] is None  # ann holds its one slot
    assert shown["task"]["external_id"] == "open"
    assert [(a["worker"], a["status"]) for a in shown["assignments"]] == [("ann", "active")]
    assert [e["kind"] for e in shown["events"]] == ["created", "claimed"]
    missing = run("show", "nope", "--json")
    assert missing.returncode == 1 and "nope" in missing.stderr and missing.stdout == ""

    lines = run.ok("export").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [{
        "id": "sure", "label": "dog", "final_by": "model", "rule": "confident", "final_at": "2025-03-01T09:00:00+00:00",
        "category": "pets", "tags": [], "prediction": {"label": "dog", "confidence": 0.99, "model": None, "scores": None},
        "data": {"n": 1}}]
    export = run.ok("export", "--format", "csv", "-o", tmp_path / "final.csv")
    assert export.stdout == "" and "exported 1 tasks" in export.stderr
    table = list(csv.DictReader(io.StringIO((tmp_path / "final.csv").read_text())))
    assert table == [{"id": "sure", "label": "dog", "final_by": "model", "rule": "confident",
                      "final_at": "2025-03-01T09:00:00+00:00", "category": "pets"}]
    assert run("export", "--format", "xml").returncode == 2


# -- demo ----------------------------------------------------------------------------------


def test_demo_builds_a_project_with_tasks_in_several_states(run, tmp_path):
    proc = run("demo", "--dir", "demo", env={"LABELYARD_DB": None})
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "demo"
    for name in ("labelyard.db", "ticket-triage.workflow.yaml", "tickets.jsonl", "workflow.schema.json"):
        assert (folder / name).is_file(), name
    assert "tasks: open" in proc.stdout and "queue triage" in proc.stdout
    status = run.json("status", "--json", "--db", folder / "labelyard.db")
    assert status["total"] == 300
    assert sum(1 for n in status["tasks"].values() if n > 0) >= 3
    assert status["tasks"]["done"] > 0 and status["tasks"]["open"] > 0
    assert run("validate", folder / "ticket-triage.workflow.yaml").returncode == 0


# -- the whole story -----------------------------------------------------------------------


SCENARIO_WORKFLOW = """\
workflow: scenario
labels: {type: choice, choices: [cat, dog, bird]}
queues:
  triage: {roles: [annotator]}
on_create:
  - name: confident
    when: prediction.confidence >= 0.9
    do: accept
  - name: uncertain
    when: prediction.confidence < 0.5
    do: {annotate: triage, overlap: 3, priority: 1 - prediction.confidence}
  - name: default
    do: {annotate: triage, overlap: 1}
"""


def test_full_scenario_from_empty_folder_to_export(run, write_workflow, tmp_path):
    labels = ["cat", "dog", "bird"]
    truth = {f"S-{i:02d}": labels[i % 3] for i in range(30)}
    confidence = [0.95] * 15 + [0.3] * 3 + [0.7] * 12
    rows = [{"id": ext, "data": {"truth": label, "hard": c < 0.5},
             "prediction": {"label": label, "confidence": c, "model": "m"}}
            for (ext, label), c in zip(truth.items(), confidence)]
    annotators = ["alice", "bob", "carol"]
    report = project(run, write_workflow, SCENARIO_WORKFLOW, rows,
                     {name: ["--role", "annotator", "--capacity", "1"] for name in annotators})
    assert report == {"ingested": 30, "duplicates": 0, "rejected": 0,
                      "routed": {"confident": 15, "uncertain": 3, "default": 12},
                      "source": str(run.folder / "tasks.jsonl")}

    # every annotator claims and submits in turn until none of them gets work;
    # on hard tasks carol always answers "bird", which the majority of three outvotes
    idle: set[str] = set()
    submitted = 0
    while len(idle) < len(annotators):
        assert submitted <= 30, "the loop should have run out of work"
        for name in annotators:
            proc = run("claim", "--as", name, "--json")
            if proc.returncode == 3:
                assert proc.stdout == ""
                idle.add(name)
                continue
            assert proc.returncode == 0, proc.stderr
            idle.clear()
            view = json.loads(proc.stdout)
            label = "bird" if name == "carol" and view["data"]["hard"] else view["data"]["truth"]
            submit(run, view["assignment"], name, "--label", label)
            submitted += 1
    assert submitted == 12 + 3 * 3

    status = run.json("status", "--json")
    assert status["tasks"] == {"open": 0, "done": 30, "held": 0, "invalid": 0}
    assert all(q["waiting"] == 0 and q["active"] == 0 for q in status["queues"].values())

    exported = [json.loads(line) for line in run.ok("export", "--format", "jsonl").stdout.splitlines()]
    assert len(exported) == 30
    assert {row["id"]: row["label"] for row in exported} == truth
    by = {row["id"]: (row["final_by"], row["rule"]) for row in exported}
    assert list(by.values()).count(("model", "confident")) == 15
    assert list(by.values()).count(("consensus", "default: strict majority")) == 15

    run.ok("export", "--format", "csv", "-o", tmp_path / "final.csv")
    table = list(csv.DictReader(io.StringIO((tmp_path / "final.csv").read_text())))
    assert len(table) == 30 and {r["id"]: r["label"] for r in table} == truth

    uncertain = [ext for ext, c in zip(truth, confidence) if c < 0.5]
    for ext in uncertain:
        shown = run.json("show", ext, "--json")
        assert sorted(a["worker"] for a in shown["assignments"]) == annotators  # one slot each
        assert shown["task"]["final_at"] is not None
    assert {row["final_at"] for row in exported} == {NOW.replace("Z", "+00:00")}  # every time from LABELYARD_NOW


def test_inits_of_a_new_file_at_once_all_succeed(run):
    """They queue on the writer lock: unqueued, one in ten lost the race to switch the file to WAL
    and said "database is locked" (three rounds of twelve, each on a new file)."""
    for round_ in range(3):
        db = run.folder / f"new-{round_}.db"
        procs = [subprocess.Popen([*run.command, "init", "--db", str(db)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=run.env) for _ in range(12)]
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        assert [r for r in results if r[0] != 0] == []
