"""Built-in plugins, as a user configures them (session 14 findings).

- ``gold``: an empty (or white-space only) known answer, an empty CSV cell, is no known answer: the
  reviewer abstains instead of rejecting every label as differing from ``""``.
- ``jsonl``, ``csv``, ``labelstudio`` sources: a part hands back its own file's cursor entry
  (``CursorEntries``), so a run's time grows with the files it reads, not with their square; the
  entries of files moved away are dropped; a run killed midway still ingests each row once.
- ``validity``: an image size written as text (a CSV cell) bounds the boxes.
- ``folder``: a file modified within ``finished_after`` seconds waits for a later run;
  ``text_extensions`` ignore case.
- ``webhook`` / ``notify``: ``secret_env: ""`` and ``events: []`` are refused, never "unsigned" or "[done]".
- ``labelstudio`` source: ``from_name`` reads one control; an ``id`` of the wrong type is said so.
- ``validate``: a non-finite setting of an entry is named "sources entry 2 (`csv`)", counting from 1.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from router.plugin_api import PluginRun, ReviewItem
from router.plugins import load_plugins


@pytest.fixture
def builtins(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    return load_plugins()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- gold: an empty cell is no known answer ------------------------------------------------------------

def gold_item(consensus, known) -> ReviewItem:
    return ReviewItem(1, "t1", "senior", {"gold": known}, None, [], {}, [{"worker": "ann", "label": consensus}],
                      consensus, 1.0)


@pytest.mark.parametrize("label_type", ["choice", "text", "number", "multi_choice", "boxes", "spans"])
def test_gold_abstains_on_an_empty_or_blank_known_answer_of_any_label_type(builtins, label_type):
    review = builtins.get("reviewers", "gold").func
    run = PluginRun("gold", "gold", label_type=label_type, choices=("pos", "neg"))
    consensus = {"number": 1, "multi_choice": ["pos"], "boxes": [], "spans": []}.get(label_type, "pos")
    for known in ("", " ", "\t", " \r\n"):
        assert review(run, gold_item(consensus, known)) is None, (label_type, repr(known))


def test_gold_says_when_the_known_answer_is_no_label_of_the_workflow(builtins):
    review = builtins.get("reviewers", "gold").func
    run = PluginRun("gold", "gold", label_type="choice", choices=("pos", "neg"))
    found = review(run, gold_item("pos", " pos "))  # compared as written, as ingest takes a label
    assert found.verdict == "reject"
    assert found.reason == ('label "pos" differs from the known answer " pos ", which is no label of this '
                            'workflow (label " pos " is not one of pos, neg)'), found.reason
    assert review(run, gold_item("pos", "neg")).reason == 'label "pos" differs from the known answer "neg"'


GOLD_WORKFLOW = """\
workflow: g
labels: {type: choice, choices: [pos, neg]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create: [{name: default, do: {annotate: triage, overlap: 1}}]
on_quorum: [{name: check, do: {review: senior}}]
on_review:
  - {name: approved, when: review.verdict == "approve", do: accept}
  - {name: rejected, when: review.verdict == "reject", do: {hold: "rejected"}}
sources: [{plugin: csv, path: "inbox/*.csv"}]
reviewers: [{plugin: gold}]
"""


def test_csv_tasks_with_an_empty_gold_cell_wait_for_a_person_and_the_others_are_judged(run, tmp_path):
    run.ok("init")
    write(tmp_path / "g.workflow.yaml", GOLD_WORKFLOW)
    run.ok("apply", "g.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    write(tmp_path / "inbox" / "a.csv", "id,text,gold\nt1,a,pos\nt2,b,neg\nt3,c,\nt4,d,  \n")
    run.ok("run")
    for _ in range(4):
        slot = run.json("claim", "--as", "ann", "--json")
        run.ok("submit", slot["assignment"], "--as", "ann", "--label", "pos")
    report = run.json("run", "--json")
    assert report["reviewers"]["gold"] == {"approve": 1, "reject": 1, "abstain": 2, "→ accept": 1, "→ hold": 1}
    status = {t: run.json("show", t, "--json")["task"]["status"] for t in ("t1", "t2", "t3", "t4")}
    assert status == {"t1": "done", "t2": "held", "t3": "open", "t4": "open"}, status


# -- jsonl / csv / labelstudio sources: a part's cost does not grow with the files the cursor knows ----

MANY_WORKFLOW = """\
workflow: m
labels: {type: choice, choices: [pos, neg]}
queues: {triage: {roles: [annotator]}}
on_create: [{name: default, do: {annotate: triage, overlap: 1}}]
sources: [{plugin: PLUGIN, path: "inbox/*.SUFFIX"}]
"""
SUFFIX = {"jsonl": "jsonl", "csv": "csv", "labelstudio": "json"}


def one_row_file(folder: Path, plugin: str, n: int, bad: bool = False) -> Path:
    """``inbox/fNNNNN.SUFFIX`` holding task ``tN`` (a row the workflow refuses when ``bad``)."""
    label = "maybe" if bad else "pos"
    text = {"jsonl": f'{{"id": "t{n}", "data": {{"n": {n}}}, "prediction": {{"label": "{label}"}}}}\n',
            "csv": f"id,n,prediction_label\nt{n},{n},{label}\n",
            "labelstudio": f'[{{"id": {n}, "data": {{"n": {n}}}, '
                           f'"predictions": [{{"result": [{{"type": "choices", '
                           f'"value": {{"choices": ["{label}"]}}}}]}}]}}]'}
    return write(folder / "inbox" / f"f{n:05d}.{SUFFIX[plugin]}", text[plugin])


def many_project(run, tmp_path, plugin: str):
    run.ok("init")
    write(tmp_path / "m.workflow.yaml", MANY_WORKFLOW.replace("PLUGIN", plugin).replace("SUFFIX", SUFFIX[plugin]))
    run.ok("apply", "m.workflow.yaml")
    return f"{plugin}:inbox/*.{SUFFIX[plugin]}"  # the entry's key; its cursor is `source:KEY`


def sql(run, query: str, *args) -> list[tuple]:
    conn = sqlite3.connect(run.db)
    try:
        with conn:
            return conn.execute(query, args).fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("plugin", ["jsonl", "csv", "labelstudio"])
def test_the_cursor_of_many_files_is_not_written_whole_after_each_file(run, tmp_path, plugin):
    """Before, each file's part stored the whole cursor (an entry per file ever seen): 400 files wrote
    it 400 times, ~200 times its final size in all, and the time of a run grew with the square of the
    files. Now a part hands back its own file's entry and the cursor is stored once the entries
    changed reach a 32nd of it (and at the end): what is written stays within ~32 times its size."""
    name = many_project(run, tmp_path, plugin)
    sql(run, "CREATE TABLE cursor_writes (bytes INTEGER)")
    for when in ("INSERT", "UPDATE"):
        sql(run, f"CREATE TRIGGER count_{when.lower()} AFTER {when} ON cursors WHEN NEW.name LIKE 'source:%' "
                 "BEGIN INSERT INTO cursor_writes VALUES (length(NEW.value)); END")
    for n in range(400):
        one_row_file(tmp_path, plugin, n)
    assert run.json("run", "--json")["sources"][name]["ingested"] == 400
    (final,) = sql(run, "SELECT length(value) FROM cursors WHERE name = ?", f"source:{name}")[0]
    (written, writes) = sql(run, "SELECT sum(bytes), count(*) FROM cursor_writes")[0]
    assert written <= 40 * final and writes < 200, (written, final, writes)  # before: ~200x, 400+ writes
    assert len(json.loads(sql(run, "SELECT value FROM cursors WHERE name = ?", f"source:{name}")[0][0])) == 400
    again = run.json("run", "--json")["sources"][name]
    assert (again["ingested"], again["duplicates"]) == (0, 0)  # every file's entry was stored


@pytest.mark.parametrize("plugin", ["jsonl", "csv", "labelstudio"])
def test_the_entries_of_files_moved_away_leave_the_cursor(run, tmp_path, plugin):
    name = many_project(run, tmp_path, plugin)
    for n in range(6):
        one_row_file(tmp_path, plugin, n)
    run.ok("run")
    (tmp_path / "archive").mkdir()
    for n in range(4):
        (tmp_path / "inbox" / f"f{n:05d}.{SUFFIX[plugin]}").rename(tmp_path / "archive" / f"f{n}")
    report = run.json("run", "--json")["sources"][name]
    assert (report["ingested"], report["duplicates"]) == (0, 0)
    kept = json.loads(sql(run, "SELECT value FROM cursors WHERE name = ?", f"source:{name}")[0][0])
    assert sorted(os.path.basename(p) for p in kept) == [f"f00004.{SUFFIX[plugin]}", f"f00005.{SUFFIX[plugin]}"]
    (tmp_path / "archive" / "f1").rename(tmp_path / "inbox" / f"f00001.{SUFFIX[plugin]}")  # back: read again
    report = run.json("run", "--json")["sources"][name]
    assert (report["ingested"], report["duplicates"]) == (0, 1)


# A run killed (SIGKILL) as the Nth part of its sources is about to go in.
KILLED_SOURCE_RUN = """
import os, signal, sys
import router.engine
calls, kill_at = [0], int(sys.argv[1])
real = router.engine.Engine.ingest
def ingest(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, *args, **kwargs)
router.engine.Engine.ingest = ingest
from router.cli import main
sys.argv = ["labelyard", "run"]
main()
"""


@pytest.mark.parametrize("plugin", ["jsonl", "csv"])
@pytest.mark.parametrize("kill_at", [2, 70, 180])
def test_a_run_killed_mid_source_then_run_again_has_every_row_once_and_every_reject_once(run, tmp_path, plugin,
                                                                                        kill_at):
    name = many_project(run, tmp_path, plugin)
    for n in range(200):
        one_row_file(tmp_path, plugin, n, bad=n % 10 == 3)  # 20 files hold a row the workflow refuses
    big = tmp_path / "inbox" / f"g.{SUFFIX[plugin]}"  # read in parts of 5000 rows, after the small files
    lines = [f'{{"id": "g{i}", "data": {{}}}}\n' if plugin == "jsonl" else f"g{i},{i}\n" for i in range(12000)]
    write(big, ("" if plugin == "jsonl" else "id,n\n") + "".join(lines))
    killed = subprocess.run([sys.executable, "-c", KILLED_SOURCE_RUN, str(kill_at)], env=run.env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    before = sql(run, "SELECT count(*) FROM tasks")[0][0]
    assert before < 12180
    report = run.json("run", "--json")["sources"][name]
    assert report["ingested"] == 12180 - before, report
    assert sql(run, "SELECT count(*), count(DISTINCT external_id) FROM tasks") == [(12180, 12180)]
    assert sql(run, "SELECT count(*), count(DISTINCT source) FROM rejects") == [(20, 20)]
    again = run.json("run", "--json")["sources"][name]
    assert (again["ingested"], again["duplicates"], again["rejected"]) == (0, 0, 0)


ENTRIES_SOURCE = """\
import datetime
from router import hookimpl
from router.plugin_api import CursorEntries, SourcePart, TaskInput

@hookimpl
def register_sources(register):
    register("pages", read)

def read(run):
    seen = dict(run.state or {})
    with open(run.path("seen.log"), "a") as log:
        log.write(repr(sorted(seen)) + "\\n")
    for page in ("p1", "p2", "p3"):
        if page not in seen:
            drop = ["p1"] if page == "p3" else []
            yield SourcePart(page, [TaskInput(1, f"{page}-a", {})], CursorEntries({page: {"n": 1}}, drop=drop))
    if run.config.get("bad"):
        yield SourcePart("p4", [TaskInput(1, "p4-a", {})], CursorEntries({"p4": datetime.date(2025, 1, 1)}))
"""


def test_a_plugin_source_giving_cursor_entries_gets_the_whole_object_back_and_a_bad_entry_fails_its_part(run,
                                                                                                          tmp_path):
    plugins = tmp_path / "plugins"
    write(plugins / "pages.py", ENTRIES_SOURCE)
    run.env["LABELYARD_PLUGINS_DIR"] = str(plugins)
    run.ok("init")
    entry = '{plugin: PLUGIN, path: "inbox/*.SUFFIX"}'
    write(tmp_path / "p.workflow.yaml", MANY_WORKFLOW.replace(entry, "{plugin: pages}"))
    run.ok("apply", "p.workflow.yaml")
    assert run.json("run", "--json")["sources"]["pages"]["ingested"] == 3
    assert json.loads(sql(run, "SELECT value FROM cursors WHERE name = 'source:pages'")[0][0]) == \
        {"p2": {"n": 1}, "p3": {"n": 1}}  # p1 set, then dropped by p3's part
    write(tmp_path / "p.workflow.yaml", MANY_WORKFLOW.replace(entry, "{plugin: pages, bad: true}"))
    run.ok("apply", "p.workflow.yaml")
    failed = run("run", "--json")
    assert failed.returncode != 0
    report = json.loads(failed.stdout)
    counts = report["sources"]["pages"]
    assert (counts["ingested"], counts["duplicates"]) == (0, 1)  # p1 again (its entry was dropped); p4 never in
    assert "part of p4: cursor['p4'] must be a JSON value" in report["failures"][0]["error"], report["failures"]
    assert sql(run, "SELECT count(*) FROM tasks WHERE external_id = 'p4-a'") == [(0,)]
    assert (tmp_path / "seen.log").read_text().splitlines() == ["[]", "['p2', 'p3']"]
    assert json.loads(sql(run, "SELECT value FROM cursors WHERE name = 'source:pages'")[0][0]) == \
        {"p1": {"n": 1}, "p2": {"n": 1}, "p3": {"n": 1}}  # what went in before the failure is stored


# -- validity: an image size given as text (a CSV cell) is read as the number it writes -----------------

def box_item(boxes, data) -> ReviewItem:
    return ReviewItem(1, "t", "q", data, None, [], {}, [{"worker": "w", "label": boxes}], boxes, 1.0)


def test_validity_reads_an_image_size_written_as_text_and_refuses_text_that_is_no_number(builtins):
    from router.plugin_api import PluginError

    review = builtins.get("reviewers", "validity").func
    run = PluginRun("validity", "v", {"approve_valid": True}, label_type="boxes", choices=("car",))
    outside = [{"x": 90, "y": 1, "width": 20, "height": 5, "label": "car"}]
    inside = [{"x": 10, "y": 1, "width": 20, "height": 5, "label": "car"}]
    for width in ("100", " 100 ", "1e2", "100,0", 100, 100.0):
        found = review(run, box_item(outside, {"width": width, "height": "50"}))
        assert found.verdict == "reject", width  # before: text made the bounds unchecked, "label is valid"
        assert found.reason == "consensus: box 1 (90, 1, 20×5) is outside the image (100×50)", found.reason
        assert review(run, box_item(inside, {"width": width, "height": "50"})).verdict == "approve"
    for unknown in ({}, {"width": "", "height": "  "}, {"width": None}):  # absent or an empty cell: unchecked
        assert review(run, box_item(outside, unknown)).verdict == "approve", unknown
    assert review(run, box_item(outside, {"height": "5"})).reason.endswith("outside the image (?×5)")  # not None×5
    for bad, shown in (("100px", '"100px"'), (True, "true"), ({"w": 1}, '{"w": 1}'), ("NaN", '"NaN"')):
        with pytest.raises(PluginError) as raised:
            review(run, box_item(inside, {"width": bad, "height": 50}))
        assert str(raised.value) == (f"data field `width` (width_field) is {shown}, not a number: the boxes cannot "
                                     "be checked against the image"), str(raised.value)


VALIDITY_WORKFLOW = """\
workflow: v
labels: {type: boxes, choices: [car]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create: [{name: default, do: {annotate: triage, overlap: 1}}]
on_quorum: [{name: check, do: {review: senior}}]
on_review:
  - {name: approved, when: review.verdict == "approve", do: accept}
  - {name: rejected, when: review.verdict == "reject", do: {hold: "invalid"}}
sources: [{plugin: csv, path: "inbox/*.csv"}]
reviewers: [{plugin: validity, approve_valid: true, width_field: w, height_field: h}]
"""


def test_boxes_of_csv_tasks_are_checked_against_the_image_size_in_their_cells(run, tmp_path):
    run.ok("init")
    write(tmp_path / "v.workflow.yaml", VALIDITY_WORKFLOW)
    run.ok("apply", "v.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    write(tmp_path / "inbox" / "a.csv", "id,w,h\nb1,100,100\nb2,100,100\nb3,100 px,100\n")
    run.ok("run")
    boxes = {"b1": [{"x": 10, "y": 10, "width": 20, "height": 20, "label": "car"}],
             "b2": [{"x": 90, "y": 10, "width": 20, "height": 20, "label": "car"}],
             "b3": [{"x": 10, "y": 10, "width": 20, "height": 20, "label": "car"}]}
    for _ in range(3):
        slot = run.json("claim", "--as", "ann", "--json")
        run.ok("submit", slot["assignment"], "--as", "ann", "--value", json.dumps(boxes[slot["external_id"]]))
    proc = run("run", "--json")
    report = json.loads(proc.stdout)
    assert report["reviewers"]["validity"] == {"approve": 1, "reject": 1, "failed": 1, "→ accept": 1, "→ hold": 1}
    status = {t: run.json("show", t, "--json")["task"]["status"] for t in boxes}
    assert status == {"b1": "done", "b2": "held", "b3": "open"}, status  # before: b2 approved as "label is valid"
    assert 'b3: data field `w` (width_field) is "100 px", not a number' in report["failures"][0]["error"]
    assert "outside the image (100×100)" in run.ok("explain", "b2").stdout


# -- folder: a file still being written is left for a later run (`finished_after`) ----------------------

FOLDER_WORKFLOW = """\
workflow: fo
labels: {type: choice, choices: [pos, neg]}
queues: {triage: {roles: [annotator]}}
on_create: [{name: default, do: {annotate: triage, overlap: 1}}]
sources: [{plugin: folder, path: inbox, pattern: "*.txt"SETTINGS}]
"""
NOW_S = 1740819600  # conftest.NOW, 2025-03-01T09:00:00Z


def folder_project(run, tmp_path, settings: str = ""):
    run.ok("init")
    write(tmp_path / "fo.workflow.yaml", FOLDER_WORKFLOW.replace("SETTINGS", settings))
    run.ok("apply", "fo.workflow.yaml")


def written(path: Path, text: str, seconds_ago: float) -> Path:
    write(path, text)
    os.utime(path, (NOW_S - seconds_ago, NOW_S - seconds_ago))
    return path


def texts(run) -> dict[str, str]:
    return {t: run.json("show", t, "--json")["task"]["data"]["text"] for t in ("old.txt", "new.txt")
            if run("show", t, "--json").returncode == 0}


def test_folder_leaves_a_file_modified_within_the_hour_for_a_later_run_and_reads_it_whole(run, tmp_path):
    folder_project(run, tmp_path)
    written(tmp_path / "inbox" / "old.txt", "whole", 2 * 3600)
    written(tmp_path / "inbox" / "new.txt", "half", 10)  # a copy still going on
    report = run.json("run", "--json")["sources"]["folder:inbox"]
    assert (report["ingested"], report["rejected"]) == (1, 0), report  # before: 2, "half" for good
    assert texts(run) == {"old.txt": "whole"}
    written(tmp_path / "inbox" / "new.txt", "half and the rest", 0)  # the copy ends now
    later = {"LABELYARD_NOW": "2025-03-01T09:59:00Z"}
    assert run.json("run", "--json", env=later)["sources"]["folder:inbox"]["ingested"] == 0
    hour_later = {"LABELYARD_NOW": "2025-03-01T10:00:00Z"}
    assert run.json("run", "--json", env=hour_later)["sources"]["folder:inbox"]["ingested"] == 1
    assert texts(run) == {"old.txt": "whole", "new.txt": "half and the rest"}


def test_folder_finished_after_is_a_setting_and_zero_or_ingest_reads_every_file_at_once(run, tmp_path):
    folder_project(run, tmp_path, ", finished_after: 30")
    written(tmp_path / "inbox" / "old.txt", "whole", 31)
    written(tmp_path / "inbox" / "new.txt", "half", 29)
    assert run.json("run", "--json")["sources"]["folder:inbox"]["ingested"] == 1
    assert texts(run) == {"old.txt": "whole"}
    assert run.json("ingest", "folder:inbox", "--json")["ingested"] == 1  # one shot: every file now
    assert texts(run) == {"old.txt": "whole", "new.txt": "half"}
    write(tmp_path / "fo.workflow.yaml", FOLDER_WORKFLOW.replace("SETTINGS", ", finished_after: 0"))
    run.ok("apply", "fo.workflow.yaml")
    write(tmp_path / "inbox" / "future.txt", "x")  # modified after LABELYARD_NOW: 0 waits for nothing
    assert run.json("run", "--json")["sources"]["folder:inbox"]["ingested"] == 1


def test_validate_refuses_a_negative_folder_finished_after_with_its_place(run, tmp_path):
    path = write(tmp_path / "fo.workflow.yaml", FOLDER_WORKFLOW.replace("SETTINGS", ", finished_after: -5"))
    proc = run("validate", path.name)
    assert proc.returncode != 0
    assert "fo.workflow.yaml:5:" in proc.stdout + proc.stderr and "finished_after" in proc.stdout + proc.stderr, \
        proc.stdout + proc.stderr


# -- webhook: `secret_env: ""` is refused, never "send unsigned" ----------------------------------------

from test_webhook import WORKFLOW as HOOK_WORKFLOW  # noqa: E402 - the webhook tests' receiver and project
from test_webhook import receiver, setup  # noqa: E402,F401 - `receiver` is a fixture


@pytest.mark.parametrize("value, said", [
    ('""', "must name the environment variable holding the signing secret (`secret_env: HOOK_SECRET`), not an "
           "empty text; leave `secret_env:` out to send unsigned notifications"),
    ('"  "', "must name the environment variable holding the signing secret (`secret_env: HOOK_SECRET`), not an "
             "empty text; leave `secret_env:` out to send unsigned notifications"),
    ('"HOOK SECRET"', "holds ' ', which no environment variable's name can: 'HOOK SECRET'"),
    ('"A=B"', "holds '=', which no environment variable's name can: 'A=B'"),
])
def test_validate_refuses_a_secret_env_that_names_no_variable(run, tmp_path, value, said):
    path = write(tmp_path / "w.workflow.yaml",
                 HOOK_WORKFLOW.replace("URL", "http://127.0.0.1:9/hook").replace("RETRIES", "0")
                 .replace("secret_env: HOOK_SECRET", f"secret_env: {value}"))
    run.ok("init")
    line, text = next((n, t) for n, t in enumerate(path.read_text().splitlines(), 1) if "secret_env" in t)
    column = text.index("secret_env: ") + len("secret_env: ") + 1  # the value's place
    for command in ("validate", "apply"):
        proc = run(command, path.name)
        assert proc.returncode == 1, command
        assert proc.stderr == \
            f"w.workflow.yaml:{line}:{column}: notify entry 1 (`webhook`): setting `secret_env:` {said}\n"


def test_a_stored_empty_secret_env_fails_its_entry_and_sends_nothing_unsigned(run, tmp_path, receiver):  # noqa: F811
    server = receiver()
    setup(run, tmp_path, server.port)
    conn = sqlite3.connect(run.db)  # as an older version, without the check, stored it
    with conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec["notify"][0]["secret_env"] = ""
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()
    proc = run("run")
    assert proc.returncode == 4
    assert "setting `secret_env:` must name the environment variable holding the signing secret" in proc.stderr
    assert server.requests == []  # before: two notifications POSTed without X-Labelyard-Signature


# -- notify: `events: []` is refused, never taken as the default [done] ---------------------------------

EMPTY_EVENTS = "is empty, which would send nothing: list the events to send (`events: [done]`, the default when " \
               "`events:` is left out), or remove the entry"


def test_validate_refuses_an_empty_events_list_at_its_place(run, tmp_path):
    run.ok("init")
    path = write(tmp_path / "w.workflow.yaml",
                 HOOK_WORKFLOW.replace("URL", "http://127.0.0.1:9/hook").replace("RETRIES", "0")
                 .replace("events: [done, escalated]", "events: []"))
    line, text = next((n, t) for n, t in enumerate(path.read_text().splitlines(), 1) if "events" in t)
    column = text.index("events: ") + len("events: ") + 1
    for command in ("validate", "apply"):
        proc = run(command, path.name)
        assert proc.returncode == 1, command
        assert proc.stderr == f"w.workflow.yaml:{line}:{column}: notify entry 1 (`webhook`): setting `events:` " \
                              f"{EMPTY_EVENTS}\n", proc.stderr


def test_a_stored_empty_events_list_fails_its_entry_and_sends_no_done_event(run, tmp_path, receiver):  # noqa: F811
    server = receiver()
    setup(run, tmp_path, server.port)
    conn = sqlite3.connect(run.db)  # as an older version, without the check, stored it
    with conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec["notify"][0]["events"] = []
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()
    proc = run("run")
    assert proc.returncode == 4
    assert f"setting `events:` {EMPTY_EVENTS}" in proc.stderr, proc.stderr
    assert server.requests == []  # before: the done event of d1 POSTed


# -- folder: `text_extensions` ignore case ---------------------------------------------------------------

def test_folder_text_extensions_match_whatever_the_case(run, tmp_path):
    folder_project(run, tmp_path)
    write(tmp_path / "fo.workflow.yaml", FOLDER_WORKFLOW.replace('pattern: "*.txt"', 'pattern: "*"').replace(
        "SETTINGS", ', text_extensions: [".TXT", ".Log"], finished_after: 0'))
    run.ok("apply", "fo.workflow.yaml")
    for name in ("B.TXT", "c.txt", "d.log", "e.LOG", "f.md"):
        write(tmp_path / "inbox" / name, name)
    assert run.json("run", "--json")["sources"]["folder:inbox"]["ingested"] == 5
    data = {t: run.json("show", t, "--json")["task"]["data"] for t in ("B.TXT", "c.txt", "d.log", "e.LOG", "f.md")}
    assert {t: d.get("text") for t, d in data.items()} == {  # before: only c.txt had its text
        "B.TXT": "B.TXT", "c.txt": "c.txt", "d.log": "d.log", "e.LOG": "e.LOG", "f.md": None}


# -- labelstudio source: `from_name` reads one control of the labeling config -----------------------------

TWO_CONTROLS = [{
    "id": 1, "data": {"text": "great match"},
    "predictions": [{"score": 0.8, "result": [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}},
        {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["sports"]}}]}],
    "annotations": [
        {"completed_by": {"email": "a@x"}, "result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["neg"]}},
            {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["sports"]}}]},
        {"completed_by": {"email": "b@x"}, "result": [
            {"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": ["news"]}}]}]}]
LS_WORKFLOW = """\
workflow: ls
labels: {type: choice, choices: [pos, neg]}
queues: {triage: {roles: [annotator]}}
on_create: [{name: default, do: {annotate: triage, overlap: 3}}]
sources: [{plugin: labelstudio, path: "in/*.json"SETTINGS}]
"""


def test_labelstudio_from_name_reads_one_control_of_an_export_with_two(run, tmp_path):
    run.ok("init")
    write(tmp_path / "ls.workflow.yaml", LS_WORKFLOW.replace("SETTINGS", ""))
    run.ok("apply", "ls.workflow.yaml")
    write(tmp_path / "in" / "e.json", json.dumps(TWO_CONTROLS))
    report = run.json("run", "--json")["sources"]["labelstudio:in/*.json"]
    assert (report["ingested"], report["rejected"]) == (0, 1)
    (reason,) = [r["reason"] for r in run.json("rejects", "--json")]
    assert reason == ('`predictions[1].result` holds 2 choices ("pos", "sports"); a choice label is one (they come '
                      "from the controls `sentiment`, `topic`: set the source's `from_name:` to one of them)"), reason
    write(tmp_path / "ls.workflow.yaml", LS_WORKFLOW.replace("SETTINGS", ", from_name: sentiment"))
    run.ok("apply", "ls.workflow.yaml")
    os.utime(tmp_path / "in" / "e.json", (NOW_S + 5, NOW_S + 5))  # changed: read again
    report = run.json("run", "--json")["sources"]["labelstudio:in/*.json"]
    assert (report["ingested"], report["prior_votes"]) == (1, 1), report  # before: every task a reject
    shown = run.json("show", "1", "--json")
    assert shown["task"]["pred_label"] == "pos"
    assert [(v["worker"], v["label"]) for v in shown["annotations"]] == [("labelstudio:a@x", "neg")]
    (reason,) = [r["reason"] for r in run.json("rejects", "--json")]  # b@x labelled the topic alone
    assert reason == ("task 1: votes left out (the task went in): annotation #2 by labelstudio:b@x: "
                      "its result holds no choice label of `sentiment` (from_name)"), reason


def test_labelstudio_an_id_of_the_wrong_type_is_said_as_such_not_as_missing(run, tmp_path):
    run.ok("init")
    write(tmp_path / "ls.workflow.yaml", LS_WORKFLOW.replace("SETTINGS", ""))
    run.ok("apply", "ls.workflow.yaml")
    tasks = [{"id": {"a": 1}, "data": {}}, {"id": [7], "data": {}}, {"id": True, "data": {}}, {"data": {}},
             {"id": 5, "data": {}}]
    write(tmp_path / "in" / "e.json", json.dumps(tasks))
    report = run.json("run", "--json")["sources"]["labelstudio:in/*.json"]
    assert (report["ingested"], report["rejected"]) == (1, 4)
    reasons = sorted((r["line"], r["reason"]) for r in run.json("rejects", "--json"))
    assert reasons == [(1, '`id` must be text or an integer, not {"a": 1}'),  # before: "task has no `id` …"
                       (2, "`id` must be text or an integer, not [7]"),
                       (3, "`id` must be text or an integer, not true"),
                       (4, "task has no `id` (nor `meta.labelyard.id`, as the labelstudio sink writes it)")], reasons


# -- validate: a non-finite setting of an entry is named as the other entry messages name it -------------

@pytest.mark.parametrize("value, shown", [(".inf", "inf"), (".nan", "nan"), ("-.inf", "-inf")])
def test_validate_names_an_entry_with_a_non_finite_setting_counting_from_1(run, tmp_path, value, shown):
    run.ok("init")
    text = MANY_WORKFLOW.replace("PLUGIN", "jsonl").replace("SUFFIX", "jsonl").replace(
        '"inbox/*.jsonl"}]', f'"inbox/*.jsonl"}}, {{plugin: csv, path: a.csv, finished_after: {value}}}]')
    path = write(tmp_path / "n.workflow.yaml", text)
    column = text.splitlines()[4].index(value) + 1
    proc = run("validate", path.name)
    assert proc.returncode == 1
    assert proc.stderr == (f"n.workflow.yaml:5:{column}: sources entry 2 (`csv`): setting `finished_after:` must be "
                           f"a finite number, not {shown}\n"), proc.stderr  # before: `sources.1.finished_after`
