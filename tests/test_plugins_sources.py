"""Built-in file sources and sinks on awkward input: rewritten files, torn lines, malformed exports.

Real subprocesses (``labelyard run`` / ``ingest``) on real files and a real database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap

import pytest

BASE = """\
workflow: r
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
on_quorum: [{name: acc, do: accept}]
"""


def row(ident: str) -> str:
    return json.dumps({"id": ident, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}})


@pytest.fixture
def project(run, tmp_path):
    """``init`` done; ``use(extra)`` applies BASE plus ``extra``."""
    (tmp_path / "r").mkdir()
    run.ok("init")

    def use(extra: str = "") -> None:
        (tmp_path / "r.workflow.yaml").write_text(BASE + extra, encoding="utf-8")
        run.ok("apply", "r.workflow.yaml")

    run.use = use
    return run


def ids(run) -> list[str]:
    """The final tasks' ids (every row here is accepted at ingest)."""
    return sorted(json.loads(line)["id"] for line in run.ok("export").stdout.splitlines())


# -- 5: a file rewritten in place --------------------------------------------------------------
def test_a_jsonl_file_rewritten_in_place_is_read_again_from_the_start(project, tmp_path):
    project.use('sources: [{plugin: jsonl, path: r/in.jsonl}]\n')
    inbox = tmp_path / "r" / "in.jsonl"
    inbox.write_text(row("t1") + "\n" + row("t2") + "\n", encoding="utf-8")
    project.ok("run")
    inode = inbox.stat().st_ino
    with open(inbox, "w", encoding="utf-8") as handle:  # what the shell's `>` does: same inode, new bytes
        handle.write(row("n1") + "\n" + row("n2") + "\n" + row("n3") + "\n")
    assert inbox.stat().st_ino == inode
    report = project.json("run", "--json")["sources"]["jsonl:r/in.jsonl"]
    assert (report["ingested"], report["rejected"]) == (3, 0)
    assert ids(project) == ["n1", "n2", "n3", "t1", "t2"]


def test_a_growing_jsonl_file_is_not_read_twice(project, tmp_path):
    project.use('sources: [{plugin: jsonl, path: r/in.jsonl}]\n')
    inbox = tmp_path / "r" / "in.jsonl"
    inbox.write_text(row("g1") + "\n", encoding="utf-8")
    project.ok("run")
    with open(inbox, "a", encoding="utf-8") as handle:
        handle.write(row("g2") + "\n")
    report = project.json("run", "--json")["sources"]["jsonl:r/in.jsonl"]
    assert (report["ingested"], report["duplicates"]) == (1, 0)


# -- a: a last line without its newline ---------------------------------------------------------
def test_rejects_after_a_line_read_without_its_newline_keep_their_line(project, tmp_path):
    project.use('sources: [{plugin: jsonl, path: r/in.jsonl}]\n')
    inbox = tmp_path / "r" / "in.jsonl"
    inbox.write_text(row("t1"), encoding="utf-8")  # a complete object, no newline yet
    assert project.json("run", "--json")["sources"]["jsonl:r/in.jsonl"]["ingested"] == 1
    with open(inbox, "a", encoding="utf-8") as handle:
        handle.write("\nBAD\n" + row("t3") + "\n")
    report = project.json("run", "--json")["sources"]["jsonl:r/in.jsonl"]
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert [r["line"] for r in project.json("rejects", "--json")] == [2]


def test_a_half_written_last_line_waits_for_its_newline(project, tmp_path):
    project.use('sources: [{plugin: jsonl, path: r/in.jsonl}]\n')
    inbox = tmp_path / "r" / "in.jsonl"
    inbox.write_text(row("h1") + "\n" + '{"id": "h2", "data": {}, "predic', encoding="utf-8")
    report = project.json("run", "--json")["sources"]["jsonl:r/in.jsonl"]
    assert (report["ingested"], report["rejected"]) == (1, 0)
    with open(inbox, "a", encoding="utf-8") as handle:
        handle.write('tion": {"label": "bug", "confidence": 0.95}}\nBAD\n')
    report = project.json("run", "--json")["sources"]["jsonl:r/in.jsonl"]
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert [r["line"] for r in project.json("rejects", "--json")] == [3]


# -- 4: a malformed task in a Label Studio export --------------------------------------------
def test_a_malformed_labelstudio_task_is_quarantined_and_the_rest_ingested(project, tmp_path):
    project.use('sources: [{plugin: labelstudio, path: "r/*.json"}]\n')
    tasks = [
        {"id": 1, "data": {"text": "a"}},
        {"id": 2, "data": {"text": "b"}, "annotations": 5},
        {"id": 3, "data": {"text": "c"}, "predictions": 0.9},
        {"id": 4, "data": {"text": "d"}, "predictions": [{"result": [{"value": {"choices": 7}}], "score": 0.5}]},
        {"id": 5, "data": {"text": "e"}},
    ]
    (tmp_path / "r" / "a.json").write_text(json.dumps(tasks), encoding="utf-8")
    (tmp_path / "r" / "b.json").write_text(json.dumps([{"id": 6, "data": {"text": "f"}}]), encoding="utf-8")
    (tmp_path / "r" / "c.json").write_text("[{not json", encoding="utf-8")
    proc = project("run", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["sources"]["labelstudio:r/*.json"]
    assert (report["ingested"], report["rejected"]) == (3, 4)
    rejects = sorted((os.path.basename(r["source"]), r["line"], r["reason"]) for r in project.json("rejects", "--json"))
    assert rejects == [
        ("a.json", 2, "`annotations` must be a list, not 5"),
        ("a.json", 3, "`predictions` must be a list, not 0.9"),
        ("a.json", 4, "`predictions[1].result[1].value.choices` must be a list, not 7"),
        ("c.json", 1, "not JSON (column 3): Expecting property name enclosed in double quotes"),
    ]
    assert project.json("run", "--json")["sources"]["labelstudio:r/*.json"]["rejected"] == 0  # unchanged files


def test_ingest_of_a_malformed_labelstudio_export_exits_0_with_its_rejects(project, tmp_path):
    project.use()
    (tmp_path / "ls.json").write_text(json.dumps([{"id": 1, "data": {}, "annotations": 5}, {"id": 2, "data": {}}]),
                                      encoding="utf-8")
    result = project.json("ingest", "labelstudio:ls.json", "--json")
    assert (result["ingested"], result["rejected"]) == (1, 1)


# -- c: the Label Studio sink killed while writing ------------------------------------------
def test_a_labelstudio_sink_killed_mid_write_leaves_no_temporary_behind(project, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "killer.py").write_text(textwrap.dedent("""
        import json, os, signal
        from router import hookimpl
        from plugins import labelstudio

        @hookimpl
        def register_sinks(register):
            register("killer", labelstudio.write, finish=finish)

        def finish(run):  # the output is rewritten at the end of the run's sink step
            if os.path.exists(run.path("kill")):
                os.remove(run.path("kill"))
                real_dumps = json.dumps
                def dumps_and_die(*args, **kwargs):  # a task written into the temp file: killed there
                    real_dumps(*args, **kwargs)
                    os.kill(os.getpid(), signal.SIGKILL)
                json.dumps = dumps_and_die
            return labelstudio.finish(run)
    """), encoding="utf-8")
    project.env["LABELYARD_PLUGINS_DIR"] = str(plugins)
    project.use("sinks: [{plugin: killer, path: out/ls.json}]\n")
    (tmp_path / "in.jsonl").write_text(row("k1") + "\n", encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    (tmp_path / "kill").write_text("")
    assert project("run").returncode == -signal.SIGKILL
    for older in ("ls.json.tmp-99999999", "ls.json.labelyard-tmp"):  # as earlier versions named it
        (tmp_path / "out" / older).write_text("[]", encoding="utf-8")
    left = sorted(os.listdir(tmp_path / "out"))
    assert left[2:] == ["ls.json.labelyard-tmp", "ls.json.tmp-99999999"]  # no ls.json yet: killed writing it
    temp, journal = sorted(left[:2], key=lambda name: name.endswith(".labelyard-journal"))
    assert re.fullmatch(r"\.ly-[0-9a-f]{12}\.[0-9a-f]{8}\.labelyard-tmp", temp), left  # the killed write's
    assert re.fullmatch(r"\.ly-[0-9a-f]{40}\.labelyard-journal", journal), left  # the batch recorded delivered
    project.ok("run")
    assert os.listdir(tmp_path / "out") == ["ls.json"]
    assert [t["meta"]["labelyard"]["id"] for t in json.loads((tmp_path / "out" / "ls.json").read_text())] == ["k1"]

