"""``labelyard run`` over workflow entries: identities, setting checks, one failure per entry or task.

Real subprocesses on a real database file; plugins under test are ``.py`` files
in a plugins folder (``LABELYARD_PLUGINS_DIR``), as a user would write them.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

BASE = """\
workflow: r
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
on_quorum: [{name: acc, do: accept}]
"""

REVIEWED = BASE.replace("on_quorum: [{name: acc, do: accept}]", "on_quorum: [{name: check, do: {review: senior}}]")

PLUGINS = {
    "collector": """
        import json
        from router import hookimpl

        @hookimpl
        def register_notifiers(register):
            register("collector", send)

        def send(run, note):
            with open(run.path(run.config["file"]), "a") as handle:
                handle.write(json.dumps({"event": note.event, "task": (note.payload["task"] or {}).get("id")}) + "\\n")
    """,
    "picky": """
        from router import hookimpl
        from router.plugin_api import approve

        @hookimpl
        def register_reviewers(register):
            register("picky", review)

        def review(run, item):
            if item.data.get("poison"):
                raise ValueError("cannot read this one")
            return approve("fine")
    """,
    "handmade": """
        from router import hookimpl
        from router.plugin_api import SourcePart, TaskInput

        @hookimpl
        def register_sources(register):
            register("handmade", read)

        def read(run):
            yield SourcePart("handmade", [
                TaskInput(1, "h1", {"text": "ok"}, label="bug", confidence=0.95),
                TaskInput(2, "h2", {"text": "too sure"}, label="bug", confidence=7.0),
                TaskInput(3, "h3", "not an object"),
                TaskInput(4, "h4", {"text": "bad tags"}, tags="a;b"),
            ], cursor=1)
    """,
}


def confident(ident: str) -> str:
    return json.dumps({"id": ident, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"


def unsure(ident: str, **data) -> str:
    return json.dumps({"id": ident, "data": data}) + "\n"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@pytest.fixture
def project(run, tmp_path):
    """``init`` done, the test plugins in LABELYARD_PLUGINS_DIR, ``apply(text)`` to apply a workflow version."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, body in PLUGINS.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    run.env["LABELYARD_PLUGINS_DIR"] = str(folder)
    (tmp_path / "r").mkdir()
    run.ok("init")

    def apply(text: str, expect_ok: bool = True):
        path = tmp_path / "r.workflow.yaml"
        path.write_text(text, encoding="utf-8")
        return run.ok("apply", path.name) if expect_ok else run("apply", path.name)

    run.apply = apply
    return run


# -- 1: a notify entry added by an earlier version, before the first run ---------------------
def test_a_notify_entry_hears_events_from_the_version_that_added_it(project, tmp_path):
    project.apply(BASE + 'notify: [{plugin: collector, file: notes.jsonl}]\n')
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    project.apply(BASE + 'notify: [{plugin: collector, file: notes.jsonl}]\ndescription: v2\n')
    project.ok("run")
    assert lines(tmp_path / "notes.jsonl") == [{"event": "done", "task": "t1"}]


def test_a_notify_entry_left_out_by_a_version_hears_nothing_meanwhile(project, tmp_path):
    notify = 'notify: [{plugin: collector, file: notes.jsonl}]\n'
    project.apply(BASE + notify)
    project.ok("run")
    project.apply(BASE)  # the entry is removed...
    (tmp_path / "r" / "a.jsonl").write_text(confident("gap"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "a.jsonl")
    project.apply(BASE + notify + "description: back\n")  # ...and added again before any run
    (tmp_path / "r" / "b.jsonl").write_text(confident("after"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "b.jsonl")
    project.ok("run")
    assert lines(tmp_path / "notes.jsonl") == [{"event": "done", "task": "after"}]


# -- 2 and 9: setting types, one failing entry at a time -----------------------------------
def test_a_bad_sink_setting_fails_that_entry_only(project, tmp_path):
    project.apply(BASE + "sinks: [{plugin: jsonl, path: r/a.jsonl}, {plugin: csv, path: r/b.csv}]\n")
    _store_spec(project, {"sinks": [{"plugin": "jsonl", "path": "r/a.jsonl", "batch": "ten"},
                                    {"plugin": "csv", "path": "r/b.csv"}]})
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        "labelyard run: jsonl (jsonl:r/a.jsonl): sinks failed: setting `batch:` must be a whole number, not 'ten'"]
    assert (tmp_path / "r" / "b.csv").read_text(encoding="utf-8").splitlines()[1].startswith("t1,bug,model")


def test_a_bad_notify_setting_fails_that_entry_only(project, tmp_path):
    project.apply(BASE)
    _store_spec(project, {"notify": [{"plugin": "collector", "file": "a.jsonl", "events": 5},
                                     {"plugin": "collector", "name": "second", "file": "b.jsonl"}]})
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        "labelyard run: collector: notify failed: setting `events:` must be a text or a list of texts, not 5"]
    assert lines(tmp_path / "b.jsonl") == [{"event": "done", "task": "t1"}]


def test_apply_and_validate_refuse_settings_of_the_wrong_type(project, tmp_path):
    text = BASE + textwrap.dedent("""\
        sources: [{plugin: jsonl, path: [r/a.jsonl]}]
        sinks: [{plugin: jsonl, path: r/a.jsonl, batch: ten}]
        notify: [{plugin: collector, events: 5}]
        """)
    proc = project.apply(text, expect_ok=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "r.workflow.yaml:8:33: sources entry 1 (`jsonl`): setting `path:` must be text, not ['r/a.jsonl']",
        "r.workflow.yaml:9:49: sinks entry 1 (`jsonl`): setting `batch:` must be a whole number, not 'ten'",
        "r.workflow.yaml:10:38: notify entry 1 (`collector`): setting `events:` must be a text or a list of texts, "
        "not 5",
    ]
    validated = project("validate", tmp_path / "r.workflow.yaml")
    assert validated.returncode == 1 and len(validated.stderr.splitlines()) == 3
    assert "sinks entry 1 (`jsonl`): setting `batch:` must be a whole number, not 'ten'" in validated.stderr


def test_a_source_path_that_is_a_list_fails_clearly_at_run(project, tmp_path):
    project.apply(BASE)
    _store_spec(project, {"sources": [{"plugin": "jsonl", "path": ["r/in.jsonl"]}]})
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1"), encoding="utf-8")
    proc = project("run")
    assert proc.returncode == 4
    assert "sources failed: setting `path:` must be text, not ['r/in.jsonl']" in proc.stderr


def test_reviewer_queues_may_be_one_text(project, tmp_path):
    project.apply(REVIEWED + "reviewers: [{plugin: picky, queues: senior}]\n")
    project.ok("workers", "add", "ann", "--role", "annotator")
    (tmp_path / "r" / "in.jsonl").write_text(unsure("u1"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    slot = project.json("claim", "--as", "ann", "--json")
    project.ok("submit", slot["assignment"], "--as", "ann", "--label", "bug")
    report = project.json("run", "--json")
    assert report["reviewers"]["picky"] == {"approve": 1, "→ accept": 1}


def test_a_plugin_setting_of_the_wrong_type_names_the_setting(project, tmp_path, monkeypatch):
    refused = project.apply(BASE + 'notify: [{plugin: webhook, url: "http://127.0.0.1:9/x", timeout: soon}]\n',
                            expect_ok=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("r.workflow.yaml:8:66: notify entry 1 (`webhook`): "
                                      "setting `timeout:` must be a number, not 'soon'")
    project.apply(BASE)  # as an older Labelyard, which did not check plugin settings, would have stored it:
    _store_spec(project, {"notify": [{"plugin": "webhook", "url": "http://127.0.0.1:9/x", "timeout": "soon"}]})
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert "notify failed: setting `timeout:` must be a number, not 'soon'" in proc.stderr


def test_settings_a_plugin_declares_are_checked_before_it_runs(project, tmp_path):
    text = BASE + textwrap.dedent("""\
        sources: [{plugin: jsonl, pth: in.jsonl}]
        notify: [{plugin: webhook, url: "http://127.0.0.1:9/x", retrys: 3}]
        """)
    (tmp_path / "r.workflow.yaml").write_text(text, encoding="utf-8")
    checked = project("validate", tmp_path / "r.workflow.yaml")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert checked.stderr.splitlines() == [
        f"{tmp_path / 'r.workflow.yaml'}:8:11: sources entry 1 (`jsonl`): `jsonl` needs `path:`",
        f"{tmp_path / 'r.workflow.yaml'}:8:27: warning: sources entry 1 (`jsonl`): `jsonl` has no setting "
        "`pth:` (did you mean `path:`?); it is ignored",
        f"{tmp_path / 'r.workflow.yaml'}:9:57: warning: notify entry 1 (`webhook`): `webhook` has no setting "
        "`retrys:` (did you mean `retries:`?); it is ignored"]
    assert project.apply(text, expect_ok=False).returncode == 1
    fixed = project.apply(text.replace("pth:", "path:"))
    assert "has no setting `retrys:` (did you mean `retries:`?)" in fixed.stderr  # a warning only
    project.apply(BASE)
    _store_spec(project, {"sources": [{"plugin": "jsonl", "pth": "in.jsonl"}]})
    proc = project("run")
    assert proc.returncode == 4 and "`jsonl` needs `path:`" in proc.stderr


# -- 3: a reviewer failing on one task ------------------------------------------------------
def test_a_reviewer_failing_on_one_task_names_it_and_judges_the_others(project, tmp_path):
    project.apply(REVIEWED + "reviewers: [{plugin: picky}]\n")
    project.ok("workers", "add", "ann", "--role", "annotator")
    rows = unsure("p1", poison=True) + unsure("ok1") + unsure("ok2")
    (tmp_path / "r" / "in.jsonl").write_text(rows, encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    for _ in range(3):
        slot = project.json("claim", "--as", "ann", "--json")
        project.ok("submit", slot["assignment"], "--as", "ann", "--label", "bug")
    proc = project("run", "--json")
    assert proc.returncode == 4
    assert json.loads(proc.stdout)["reviewers"]["picky"] == {"approve": 2, "→ accept": 2, "failed": 1}
    assert proc.stderr.splitlines() == [
        "labelyard run: picky: reviewers failed: task p1: ValueError: cannot read this one (picky.py:11)"
        " (asked again next run)"]
    assert project.json("show", "ok2", "--json")["task"]["status"] == "done"
    again = project("run")  # the failing task is asked again, and still blocks nothing
    assert again.returncode == 4 and "task p1:" in again.stderr
    assert project.json("show", "p1", "--json")["task"]["stage"] == "review"


# -- 6: identity is the name, else plugin + path/url, else the plugin ------------------------
def test_editing_a_setting_of_an_entry_without_path_keeps_its_progress(project, tmp_path):
    (tmp_path / "plugins" / "counter.py").write_text(textwrap.dedent("""
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            register("counter", write)

        def write(run, tasks):
            with open(run.path("sent.txt"), "a") as handle:
                handle.writelines(t.id + "\\n" for t in tasks)
            return None
    """), encoding="utf-8")
    project.apply(BASE + "sinks: [{plugin: counter}]\n")
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1") + confident("t2"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    assert project.json("run", "--json")["sinks"] == {"counter": {"delivered": 2}}
    project.apply(BASE + "sinks: [{plugin: counter, batch: 100}]\n")
    assert project.json("run", "--json")["sinks"] == {"counter": {"delivered": 0}}
    assert (tmp_path / "sent.txt").read_text().split() == ["t1", "t2"]


def test_a_path_spelled_another_way_is_the_same_entry(project, tmp_path):
    project.apply(BASE + "sinks: [{plugin: jsonl, path: ./out/final.jsonl}]\n")
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1") + confident("t2"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    assert project.json("run", "--json")["sinks"] == {"jsonl:out/final.jsonl": {"delivered": 2}}
    project.apply(BASE + "sinks: [{plugin: jsonl, path: out//x/../final.jsonl}]\n")
    assert project.json("run", "--json")["sinks"] == {"jsonl:out/final.jsonl": {"delivered": 0}}
    assert [row["id"] for row in lines(tmp_path / "out" / "final.jsonl")] == ["t1", "t2"]
    both = project.apply(BASE + "sinks: [{plugin: jsonl, path: out/final.jsonl}, "
                                "{plugin: jsonl, path: ./out/final.jsonl}]\n", expect_ok=False)
    # one identity, and one file: refused as two sinks writing one file (a `name:` would not cure it)
    assert both.returncode == 1 and "sinks entry 2 (`jsonl`) writes the same file as sinks entry 1" in both.stderr


# -- 8: two entries with one identity ---------------------------------------------------------
def test_two_notify_entries_with_one_url_are_refused(project, tmp_path):
    text = BASE + textwrap.dedent("""\
        notify:
          - {plugin: webhook, url: "http://127.0.0.1:9/hook", events: [done]}
          - {plugin: webhook, url: "http://127.0.0.1:9/hook", events: [escalated]}
        """)
    proc = project.apply(text, expect_ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "r.workflow.yaml:10:5: notify entry 2 has the same identity `webhook:http://127.0.0.1:9/hook` as entry 1, "
        "so they would share their progress: give one of them its own `name:`")
    assert project("validate", tmp_path / "r.workflow.yaml").returncode == 1
    named = text.replace("events: [escalated]", "events: [escalated], name: escalations")
    project.apply(named)


def test_a_duplicate_entry_already_applied_fails_at_run_and_the_first_works(project, tmp_path):
    project.apply(BASE)
    _store_spec(project, {"notify": [{"plugin": "collector", "file": "a.jsonl"},
                                     {"plugin": "collector", "file": "b.jsonl", "events": "*"}]})
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert "notify entry 2 has the same identity `collector` as entry 1" in proc.stderr
    assert lines(tmp_path / "a.jsonl") == [{"event": "done", "task": "t1"}]


# -- b: notifications of an entry that left the workflow --------------------------------------
def test_waiting_notifications_of_a_removed_entry_are_dropped_with_an_event(project, tmp_path):
    project.apply(BASE + 'notify: [{plugin: webhook, url: "http://127.0.0.1:9/old", retries: 0}]\n')
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1") + confident("t2"), encoding="utf-8")
    project.ok("ingest", tmp_path / "r" / "in.jsonl")
    assert project("run").returncode == 4  # nobody listens: both wait in the outbox
    assert project.json("status", "--json")["outbox_pending"] == 2
    project.apply(BASE + 'notify: [{plugin: collector, file: notes.jsonl}]\n')
    proc = project("run")
    assert proc.returncode == 0, proc.stderr
    assert ("notify webhook:http://127.0.0.1:9/old: dropped 2 waiting notification(s): the entry is no longer "
            "in the workflow") in proc.stdout
    assert project.json("status", "--json")["outbox_pending"] == 0
    assert "outbox" not in project.ok("status").stdout


# -- d: rows a plugin builds by hand get the checks of ingest --------------------------------
def test_task_inputs_from_a_plugin_source_are_checked_like_ingested_rows(project, tmp_path):
    project.apply(BASE + "sources: [{plugin: handmade}]\n")
    report = project.json("run", "--json")
    assert report["sources"]["handmade"]["ingested"] == 1 and report["sources"]["handmade"]["rejected"] == 3
    rejects = {r["line"]: r["reason"] for r in project.json("rejects", "--json")}
    assert rejects == {2: "`prediction.confidence` 7.0 is outside 0..1", 3: "`data` must be an object",
                       4: "`tags` must be a list of text"}
    assert project("show", "h2").returncode == 1


# -- e: a line per entry that did something ---------------------------------------------------
def test_a_source_that_read_nothing_prints_nothing(project, tmp_path):
    project.apply(BASE + 'sources: [{plugin: jsonl, path: "r/*.jsonl"}]\n')
    (tmp_path / "r" / "in.jsonl").write_text(confident("t1"), encoding="utf-8")
    assert "source jsonl:r/*.jsonl: ingested 1, duplicates 0, rejected 0" in project.ok("run").stdout
    assert project.ok("run").stdout == "run 2: ok\n"


def _store_spec(run, changes: dict) -> None:
    """Change the stored active workflow as an older Labelyard (without today's checks) would have applied it."""
    import sqlite3

    with sqlite3.connect(run.db) as conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec.update(changes)
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
