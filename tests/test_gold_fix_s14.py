"""Session 14 fixes from the gold tester's findings (README walk-through, demo, gold lifecycle).

Every test runs the real ``labelyard`` command on a real SQLite file (the ``run`` fixture of
``conftest.py``); older demo databases are faked from a new one, as ``test_upgrade_fix_s12`` does.
"""

from __future__ import annotations

import json
import sqlite3

import pytest


def _execute(db, *statements: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


def _rows(db, sql: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# -- F8: deleting .labelyard-demo protects a demo folder someone went on working in ------------------
SMALL_DEMO = ("--tasks", "3", "--steps", "0")


def _demo_folder(run, folder):
    run.json("demo", "--dir", folder, "--tasks", "5", "--steps", "6", "--json")
    (folder / ".labelyard-demo").unlink()
    return folder / "labelyard.db"


def test_demo_leaves_a_demo_folder_alone_once_its_marker_is_deleted(run, tmp_path):
    """It rebuilt the folder (exit 0), deleting the lead added there and 5 tasks becoming 3."""
    db = _demo_folder(run, tmp_path / "keep")
    run.ok("workers", "add", "--db", db, "lead1", "--role", "lead")
    before = _rows(db, "SELECT count(*) FROM tasks"), _rows(db, "SELECT id FROM workers ORDER BY id")
    proc = run("demo", "--dir", tmp_path / "keep", *SMALL_DEMO)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith(f"labelyard: {tmp_path / 'keep'}: not a folder the demo made (it holds labelyard.db")
    assert proc.stderr.endswith("give --dir a new or empty folder (a demo folder without its .labelyard-demo, "
                                "deleted to keep the work done there, is left alone)\n")
    assert (_rows(db, "SELECT count(*) FROM tasks"), _rows(db, "SELECT id FROM workers ORDER BY id")) == before
    assert ("lead1",) in before[1] and not (tmp_path / "keep" / ".labelyard-demo").exists()


def test_demo_leaves_a_new_demos_folder_alone_without_its_marker_even_with_no_work_in_it(run, tmp_path):
    """Only a demo older than the marker leaves a folder without one; this database is newer."""
    db = _demo_folder(run, tmp_path / "keep")
    assert run("demo", "--dir", tmp_path / "keep", *SMALL_DEMO).returncode == 1
    assert _rows(db, "SELECT count(*) FROM tasks") == [(5,)]


@pytest.mark.parametrize("work", [
    "INSERT INTO workers (id, created_at) VALUES ('lead1', 0)",
    "UPDATE events SET actor = 'lucy' WHERE id = (SELECT max(id) FROM events)",
    "DROP TABLE workers",
])
def test_demo_rebuilds_an_older_demos_folder_only_when_its_database_holds_only_the_demos_work(run, tmp_path, work):
    db = _demo_folder(run, tmp_path / "old")
    _execute(db, "UPDATE schema_version SET version = 7")  # as a demo before the marker left it
    _execute(db, work)
    assert run("demo", "--dir", tmp_path / "old", *SMALL_DEMO).returncode == 1
    assert not (tmp_path / "old" / ".labelyard-demo").exists()
    db.write_text("not a database\n", encoding="utf-8")
    assert run("demo", "--dir", tmp_path / "old", *SMALL_DEMO).returncode == 1
    assert db.read_text(encoding="utf-8") == "not a database\n"


# -- F7: the demo's simulation stops once no simulated worker can get work ---------------------------
def test_demo_stops_claiming_once_no_worker_can_get_work(run, tmp_path):
    """10 tasks are done after a few steps; 10,000,000 steps went on claiming nothing for ~35 minutes
    (the runner's 120 s timeout fails this test then)."""
    few = run.json("demo", "--dir", tmp_path / "few", "--tasks", "10", "--steps", "20000", "--json")
    many = run.json("demo", "--dir", tmp_path / "many", "--tasks", "10", "--steps", "10000000", "--json")
    assert few["status"]["tasks"]["open"] == 0
    assert (many["submitted"], many["status"]["tasks"]) == (few["submitted"], few["status"]["tasks"])
    help_text = run.ok("demo", "--help").stdout
    assert "make at most (0 to 10,000,000); they stop sooner when none of them can get work." in " ".join(help_text.split())


# -- gold projects -----------------------------------------------------------------------------------
GOLD_WORKFLOW = """\
workflow: pets
labels: {type: choice, choices: [a, b]}
queues:
  main: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - {name: d, do: {annotate: main, overlap: 1}}
on_quorum:
  - {name: acc, do: accept}
quality: {gold: {rate: 1.0}}
"""


@pytest.fixture
def gold_project(run, write_workflow):
    """A project (lead `lead-lucy`, who ran init) whose workflow serves gold on every claim."""
    run.ok("init")
    run.ok("apply", write_workflow(GOLD_WORKFLOW, "pets.workflow.yaml"))
    return run


def _jsonl(path, *rows: str):
    path.write_text("".join(row + "\n" for row in rows), encoding="utf-8")
    return path


# -- F1: gold add tells the top-level keys it ignores, as ingest does -------------------------------
def test_gold_add_warns_about_misspelt_top_level_keys_as_ingest_does(gold_project, tmp_path):
    """`qeue` and `predictions` were dropped without a word: G20 sat in `main`, not `senior`."""
    run = gold_project
    path = _jsonl(tmp_path / "typo.jsonl", '{"id":"G20","data":{"x":1},"answer":"a","qeue":"senior"}',
                  '{"id":"G21","data":{"x":1},"answer":"a","predictions":{"label":"a"}}',
                  '{"id":"G22","data":{"x":1},"answer":"b","queue":"senior"}')
    proc = run.ok("gold", "add", path, "--json")
    assert json.loads(proc.stdout) == {"added": 3, "updated": 0, "unchanged": 0, "rejected": 0,
                                       "source": str(path), "ignored_keys": {"qeue": 1, "predictions": 1}}
    assert proc.stderr.splitlines() == [
        "warning: rows with `data` keep only their id, data, category, tags, prediction, answer and queue; "
        "other top-level keys were ignored:",
        f"  `qeue`: 1 row, first at {path}:1 (did you mean `queue`?)",
        f"  `predictions`: 1 row, first at {path}:2 (did you mean `prediction`?)"]
    clean = _jsonl(tmp_path / "clean.jsonl", '{"id":"G30","data":{"x":1},"answer":"a","queue":"senior"}')
    proc = run.ok("gold", "add", clean, "--json")
    assert proc.stderr == "" and "ignored_keys" not in json.loads(proc.stdout)


# -- F2: one id twice in one gold file ----------------------------------------------------------------
def test_gold_add_rejects_an_id_the_file_gives_again_and_keeps_the_first(gold_project, tmp_path):
    """It said "added 1, updated 1" and the second row (dog.png, b) replaced the first."""
    run = gold_project
    path = _jsonl(tmp_path / "gold.jsonl", '{"id":"G1","data":{"img":"cat.png"},"answer":"a"}',
                  '{"id":"G1","data":{"img":"dog.png"},"answer":"b"}',
                  '["not an object"]', '{"id":"G1","data":{"img":"cat.png"},"answer":"a"}')
    assert run.json("gold", "add", path, "--json") == {"added": 1, "updated": 0, "unchanged": 0, "rejected": 3,
                                                        "source": str(path)}
    rejects = run.json("rejects", "--json")
    rows = rejects["rejects"] if isinstance(rejects, dict) else rejects
    assert sorted((r["line"], r["reason"]) for r in rows) == [
        (2, "id G1 is given again: the row at line 1 counts"), (3, "a row must be a JSON object"),
        (4, "id G1 is given again: the row at line 1 counts")]
    shown = run.json("show", "G1", "--json")
    assert shown["task"]["data"] == {"img": "cat.png"}
    assert [e["kind"] for e in shown["events"]] == ["gold_added"]
    assert shown["events"][0]["detail"]["answer"] == "a"


# -- F4: an answer written another way is unchanged -----------------------------------------------------
@pytest.mark.parametrize("labels, first, again, stored", [
    ("{type: multi_choice, choices: [a, b, c]}", '["b", "a", "b"]', '["a", "b"]', ["a", "b"]),
    ("{type: number}", "4", "4.0", 4),
])
def test_gold_add_counts_an_answer_written_another_way_as_unchanged(run, write_workflow, tmp_path, labels, first,
                                                                    again, stored):
    """It said "updated 1" with `gold_updated: answer ["b", "a"], was ["a", "b"]` (and `4.0, was 4`)."""
    run.ok("init")
    run.ok("apply", write_workflow(GOLD_WORKFLOW.replace("{type: choice, choices: [a, b]}", labels)))
    row = '{"id":"G0","data":{"i":0},"answer":%s}'
    assert run.json("gold", "add", _jsonl(tmp_path / "one.jsonl", row % first), "--json")["added"] == 1
    result = run.json("gold", "add", _jsonl(tmp_path / "two.jsonl", row % again), "--json")
    assert (result["updated"], result["unchanged"]) == (0, 1)
    shown = run.json("show", "G0", "--json")
    assert [e["kind"] for e in shown["events"]] == ["gold_added"]
    assert shown["events"][0]["detail"]["answer"] == stored
    assert run.json("gold", "add", _jsonl(tmp_path / "three.jsonl", row % '["c"]' if "multi" in labels
                                          else row % "5"), "--json")["updated"] == 1


# -- F9: a CSV file is refused once, not quarantined line by line ----------------------------------------
def test_gold_add_refuses_a_csv_file_saying_it_reads_json(gold_project, tmp_path):
    """Every line, the header too, was a reject "invalid JSON at column 1", exit 0."""
    run = gold_project
    path = tmp_path / "g.csv"
    path.write_text("id,x,answer\nG1,1,a\nG2,2,b\n", encoding="utf-8")
    proc = run("gold", "add", path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"labelyard: {path}: `gold add` reads JSON Lines or one JSON array, not CSV; give each "
                           'row as a JSON object with its "answer" (nothing was added)\n')
    assert run.json("status", "--json").get("gold", 0) == 0
    assert _rows(run.db, "SELECT count(*) FROM rejects") == [(0,)]


# -- F5: show and explain keep a gold question blind to annotators and whole for a lead ---------------
def _answered_gold(run, tmp_path):
    run.ok("workers", "add", "w", "--role", "annotator")
    run.ok("workers", "add", "v", "--role", "annotator")
    run.ok("gold", "add", _jsonl(tmp_path / "gold.jsonl", '{"id":"G1","data":{"img":"blurry.png"},"answer":"a"}'))
    for worker, label in (("w", "b"), ("v", "a")):
        slot = run.json("claim", "--as", worker, "--json")
        assert slot["external_id"] == "G1"
        run.ok("submit", "--as", worker, slot["assignment"], "--label", label)


def test_explain_and_show_do_not_tell_an_annotator_that_a_task_is_gold(gold_project, tmp_path):
    """`explain G1` (no role needed) printed "added it as a gold question" and `answer "a"`."""
    run = gold_project
    _answered_gold(run, tmp_path)
    text = run.ok("explain", "G1", env={"LABELYARD_WORKER": "w"}).stdout
    assert "gold" not in text and '"a"' not in text and " by v" not in text
    assert text.startswith("task 1 (G1): open: waiting in `main` for annotate\n")
    assert "submitted by w: label \"b\"" in text
    explained = run.json("explain", "G1", "--as", "w", "--json")
    assert [(e["kind"], e["actor"]) for e in explained["events"]] == [("claimed", "w"), ("submitted", "w")]
    shown = run.json("show", "G1", "--as", "w", "--json")
    assert "is_gold" not in shown["task"] and "gold" not in shown
    assert [a["worker"] for a in shown["annotations"]] == ["w"] and "gold" not in json.dumps(shown["events"])
    text = run.ok("show", "G1", "--as", "w").stdout
    assert "gold" not in text and "  annotate  w            \"b\"\n" in text and " v " not in text


def test_show_tells_a_lead_a_gold_questions_answer_and_how_each_answer_scored(gold_project, tmp_path):
    """The lead's `show G1` read like an ordinary open task: no "gold", no answer, no right/wrong."""
    run = gold_project
    _answered_gold(run, tmp_path)
    text = run.ok("show", "G1").stdout.splitlines()
    assert text[2] == 'gold question (open): answer "a"; answered 2 times: 1 right, 1 wrong'
    assert text[3:5] == ['  annotate  w            "b" (wrong)', '  annotate  v            "a" (right)']
    shown = run.json("show", "G1", "--json")
    assert shown["task"]["is_gold"] is True
    assert shown["gold"] == {"answer": "a", "queue": "main", "state": "open", "reason": None, "answered": 2,
                             "right": 1, "wrong": 1}
    assert [a["gold_right"] for a in shown["annotations"]] == [False, True]
    assert "added it as a gold question" in run.ok("explain", "G1").stdout


# -- F6: a lead who also annotates is not served the gold they wrote ----------------------------------
def test_a_lead_who_annotates_is_not_served_the_gold_questions_they_added_or_changed(gold_project, tmp_path):
    """root's claims gave T1, then G20 and G21, the questions root added, scored as root's accuracy."""
    run = gold_project
    run.ok("workers", "set", "lead-lucy", "--role", "lead", "--role", "annotator")
    run.ok("workers", "add", "lead-max", "--role", "lead", "--role", "annotator")
    run.ok("gold", "add", _jsonl(tmp_path / "g.jsonl", '{"id":"G20","data":{"x":1},"answer":"a"}',
                                 '{"id":"G21","data":{"x":2},"answer":"b"}', '{"id":"G22","data":{"x":3},"answer":"b"}'))
    run.ok("gold", "add", "--as", "lead-max", _jsonl(tmp_path / "h.jsonl", '{"id":"G22","data":{"x":3},"answer":"a"}'))
    run.ok("ingest", _jsonl(tmp_path / "t.jsonl", '{"id":"T1","data":{"x":1}}'))
    assert run.json("claim", "--json")["external_id"] == "T1"  # gold rate 1.0: no gold of lucy's to serve
    assert run("claim").returncode == 3
    served = [run.json("claim", "--as", "lead-max", "--json")["external_id"] for _ in range(2)]
    assert served == ["G20", "G21"]  # G22 is lead-max's: they changed its answer
    assert run("claim", "--as", "lead-max").returncode == 3


# -- F3: gold list and gold retire ------------------------------------------------------------------------
def _counters(run) -> dict[str, tuple[int, int]]:
    return {w: (n, ok) for w, n, ok in _rows(run.db, "SELECT id, gold_answered, gold_correct FROM workers "
                                                     "WHERE id IN ('w', 'v') ORDER BY id")}


def test_gold_list_shows_each_questions_answer_queue_state_and_scores(gold_project, tmp_path, write_workflow):
    """Nothing listed gold questions: `status` gave a count, and which one apply held was said once."""
    run = gold_project
    _answered_gold(run, tmp_path)
    run.ok("gold", "add", _jsonl(tmp_path / "more.jsonl", '{"id":"G2","data":{"i":2},"answer":"b","queue":"senior"}'))
    listed = run.json("gold", "list", "--json")["questions"]
    assert listed == [
        {"id": "G1", "task": 1, "answer": "a", "queue": "main", "state": "open", "reason": None, "answered": 2,
         "right": 1, "wrong": 1},
        {"id": "G2", "task": 2, "answer": "b", "queue": "senior", "state": "open", "reason": None, "answered": 0,
         "right": 0, "wrong": 0}]
    run.ok("apply", write_workflow(GOLD_WORKFLOW.replace("choices: [a, b]", "choices: [b, c]"), "pets.workflow.yaml"))
    text = run.ok("gold", "list").stdout.splitlines()
    assert text[0].split() == ["id", "state", "queue", "right", "wrong", "answer"]
    assert text[1].split() == ["G1", "held", "main", "1", "1", '"a"']
    assert text[2].startswith("    its gold answer is no label of version 2 of workflow `pets`")
    assert text[3].split() == ["G2", "open", "senior", "0", "0", '"b"']
    assert text[-1] == "open 1, held 1, retired 0"
    assert run.ok("status").stdout.splitlines()[-1] == \
        "gold questions: 2 (not counted in tasks or queues; 1 held: labelyard gold list)"
    proc = run("gold", "list", "--as", "w")
    assert proc.returncode == 1 and "w needs the lead role" in proc.stderr and proc.stdout == ""


def test_gold_retire_stops_serving_a_question_and_takes_it_out_of_gold_accuracy(gold_project, tmp_path):
    """A bad gold question could only be given another answer (still served and scored)."""
    run = gold_project
    _answered_gold(run, tmp_path)  # w answered G1 wrong, v right
    run.ok("gold", "add", _jsonl(tmp_path / "g2.jsonl", '{"id":"G2","data":{"i":2},"answer":"b"}',
                                 '{"id":"G3","data":{"i":3},"answer":"a"}'))
    slot = run.json("claim", "--as", "w", "--json")
    assert slot["external_id"] == "G2"
    run.ok("submit", "--as", "w", slot["assignment"], "--label", "b")
    held = run.json("claim", "--as", "w", "--json")
    assert held["external_id"] == "G3"
    assert _counters(run) == {"v": (1, 1), "w": (2, 1)}
    before = _rows(run.db, "SELECT count(*) FROM tasks")

    proc = run("gold", "retire", "G1", "T-nope")  # checked first: nothing retired
    assert proc.returncode == 1 and proc.stderr == "labelyard: no task `T-nope` (by id or external id)\n"
    assert run("gold", "retire", "G1", "--as", "w").returncode == 1
    assert _counters(run) == {"v": (1, 1), "w": (2, 1)}

    proc = run.ok("gold", "retire", "G1", "G3", "--reason", "ambiguous picture")
    assert proc.stdout.splitlines() == ["retired G1; gold accuracy scored again: v 0/0, w 1/1",
                                        f"retired G3: released assignment(s) {held['assignment']}"]
    assert _counters(run) == {"v": (0, 0), "w": (1, 1)}
    assert _rows(run.db, "SELECT count(*) FROM tasks") == before
    late = run("submit", "--as", "w", held["assignment"], "--label", "a")
    assert late.returncode != 0 and _counters(run) == {"v": (0, 0), "w": (1, 1)}  # a released slot scores nothing
    assert run.json("claim", "--as", "v", "--json")["external_id"] == "G2"
    assert run("claim", "--as", "v").returncode == 3  # G3 is served no more
    events = run.json("show", "G1", "--json")["events"]
    assert events[-1]["kind"] == "gold_retired" and events[-1]["actor"] == "lead-lucy"
    assert events[-1]["detail"] == {"reason": "ambiguous picture", "was_status": "open", "queue": "main",
                                    "answer": "a", "released": []}
    rescored = [json.loads(d) for (d,) in _rows(run.db, "SELECT detail FROM events WHERE kind = 'gold_rescored'")]
    assert [(d["worker"], d["gold_answered"], d["gold_correct"], d["retired"]) for d in rescored] == [
        ("v", 0, 0, "G1"), ("w", 1, 1, "G1")]
    assert run.json("gold", "retire", "G1", "--json") == {
        "retired": [{"id": "G1", "task": 1, "retired": False, "released": [], "rescored": {}}]}
    states = {q["id"]: (q["state"], q["reason"]) for q in run.json("gold", "list", "--json")["questions"]}
    assert states == {"G1": ("retired", "ambiguous picture"), "G2": ("open", None),
                      "G3": ("retired", "ambiguous picture")}
    assert run.ok("status").stdout.splitlines()[-1] == \
        "gold questions: 3 (not counted in tasks or queues; 2 retired: labelyard gold list)"
    result = run.json("gold", "add", _jsonl(tmp_path / "again.jsonl", '{"id":"G1","data":{"img":"blurry.png"},'
                                                                      '"answer":"a"}'), "--json")
    assert (result["updated"], result["rejected"]) == (0, 1)
    assert _counters(run) == {"v": (0, 0), "w": (1, 1)}
    assert "is a retired gold question; add the question under a new id" in run.ok("rejects").stdout
    assert "gold question (retired: ambiguous picture)" in run.ok("show", "G1").stdout
