"""The thirteenth session's scale fixes: the labelstudio sink streams its earlier output (memory
bounded by the run's tasks and one earlier task, not the size of the file).

Real SQLite files and ``labelyard`` subprocesses through ``conftest.Runner``; the sink's memory is
counted with ``tracemalloc`` in process, never timed.
"""

from __future__ import annotations

import json
import os
import textwrap
import tracemalloc
from pathlib import Path

import pytest

# -- 1: the labelstudio sink reads its earlier output one task at a time --------------------------------------
SINK = """\
workflow: ls
labels: {type: choice, choices: [pos, neg]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: model
    do: accept
sinks:
  - {plugin: labelstudio, path: out/ls.json}
"""


def _final(number: int, ident: str, label: str = "pos"):
    from router.plugin_api import FinalTask

    return FinalTask(number, ident, label, "model", "model", "2025-03-01T09:00:00Z", None, [], {"text": ident},
                     {}, [], None)


def _earlier_task(n: int) -> dict:
    return {"data": {"text": f"t{n}", "body": "x" * 2000}, "annotations": [],
            "meta": {"labelyard": {"id": f"T{n}", "final_by": "model"}}}


def test_the_sink_holds_the_new_tasks_and_one_earlier_task_not_the_earlier_output(tmp_path):
    from plugins._labelstudio_sink import finish, write
    from router.plugin_api import PluginRun

    earlier = [_earlier_task(n) for n in range(5000)]
    out = tmp_path / "ls.json"
    out.write_text(json.dumps(earlier, ensure_ascii=False, indent=1), encoding="utf-8")
    size = out.stat().st_size
    assert size > 10_000_000
    run = PluginRun("labelstudio", "ls", {"path": "ls.json"}, base_dir=str(tmp_path), label_type="choice")
    run.state = write(run, [_final(1, "T7", "neg"), _final(2, "NEW")])  # one delivered again, one new
    tracemalloc.start()
    try:
        state = finish(run)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state == {"tasks": 5001, "pending": 0}
    assert peak < size / 20, f"peak {peak} bytes for an output of {size}"  # before: several times its size
    written = json.loads(out.read_text(encoding="utf-8"))
    ids = [task["meta"]["labelyard"]["id"] for task in written]
    assert ids == [f"T{n}" for n in range(5000)] + ["NEW"]  # the one delivered again keeps its place
    assert written[7]["annotations"][0]["result"][0]["value"] == {"choices": ["neg"]}
    assert written[:7] == earlier[:7] and written[8:5000] == earlier[8:]
    # written as before, as json.dump(..., indent=1) writes the whole list
    assert out.read_text(encoding="utf-8") == json.dumps(written, ensure_ascii=False, indent=1)


def test_the_sink_writes_a_task_once_when_the_earlier_output_has_it_twice(tmp_path):
    from plugins._labelstudio_sink import finish, write
    from router.plugin_api import PluginRun

    out = tmp_path / "ls.json"
    out.write_text(json.dumps([_earlier_task(1), _earlier_task(2), _earlier_task(1)]), encoding="utf-8")
    run = PluginRun("labelstudio", "ls", {"path": "ls.json"}, base_dir=str(tmp_path), label_type="choice")
    run.state = write(run, [_final(1, "T1", "neg"), _final(2, "T1", "pos")])  # the later one counts
    assert finish(run)["tasks"] == 2
    written = json.loads(out.read_text(encoding="utf-8"))
    assert [t["meta"]["labelyard"]["id"] for t in written] == ["T1", "T2"]
    assert written[0]["annotations"][0]["result"][0]["value"] == {"choices": ["pos"]}


@pytest.fixture
def project(run, tmp_path):
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(SINK), encoding="utf-8")
    run.ok("init")
    run.ok("apply", "wf.yaml")

    def deliver(*ids: str):
        rows = "".join(json.dumps({"id": i, "data": {"text": i}, "prediction": {"label": "pos"}}) + "\n" for i in ids)
        (tmp_path / "in.jsonl").write_text(rows, encoding="utf-8")
        run.ok("ingest", "-q", "in.jsonl")
        return run("run")

    run.deliver = deliver
    (tmp_path / "out").mkdir()
    return run


def _ids(path: Path) -> list:
    return [(t.get("meta") or {}).get("labelyard", {}).get("id") for t in json.loads(path.read_text("utf-8"))]


def test_an_earlier_list_of_tasks_written_by_another_tool_is_copied_through_as_written(project, tmp_path):
    out = tmp_path / "out" / "ls.json"
    theirs = '\ufeff[{"data": {"text": "mine"}, "n": 1e400},\r\n{"data":{"text":"p\\ud800"},"id":7}]'
    out.write_text(theirs, encoding="utf-8")
    assert project.deliver("A").returncode == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith('[\n {"data": {"text": "mine"}, "n": 1e400},\n {"data":{"text":"p\\ud800"},"id":7},\n {')
    assert _ids(out) == [None, None, "A"]
    assert project.deliver("B").returncode == 0
    assert _ids(out) == [None, None, "A", "B"]


@pytest.mark.parametrize("earlier, reason", [
    ('[{"meta": {}},\n {"data": "cut', "invalid JSON at line 2, column 11: Unterminated string starting at"),
    ('[{"meta": {}},\n {"data": 1}', "invalid JSON at line 2, column 13: the array is not closed with `]`"),
    ('[{"meta": {}},\n {"data": 1}] x', "invalid JSON at line 2, column 15: text after the end of the array"),
    ("", "invalid JSON at line 1, column 1: Expecting value"),
    ('[{"meta": {}},\n {"data": "\xe9\udcff"}]', "not valid UTF-8 at line 2, column 13 (byte 0xff)"),
])
def test_a_damaged_earlier_output_is_refused_saying_where_and_left_alone(project, tmp_path, earlier, reason):
    out = tmp_path / "out" / "ls.json"
    raw = earlier.encode("utf-8", "surrogateescape")  # \udcff: the byte 0xff
    out.write_bytes(raw)
    proc = project.deliver("A")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        f"labelyard run: labelstudio (labelstudio:out/ls.json): sinks failed: {out}: cannot read the earlier "
        f"output: {reason}"]
    assert out.read_bytes() == raw
    assert [name for name in os.listdir(out.parent) if name.endswith(".labelyard-tmp")] == []


@pytest.mark.parametrize("earlier, found", [('{"a": 1}\n{"a": 2}\n', "invalid JSON at line 2, column 1: Extra data"),
                                            ("  null ", None), ('"text"', None), ("12", None)])
def test_an_earlier_output_of_another_json_value_is_named(project, tmp_path, earlier, found):
    out = tmp_path / "out" / "ls.json"
    out.write_text(earlier, encoding="utf-8")
    proc = project.deliver("A")
    assert proc.returncode == 4
    kind = {"  null ": "null", '"text"': "a string", "12": "a number"}.get(earlier)
    said = (f"cannot read the earlier output: {found}" if found else
            f"the earlier output is not a JSON list of tasks (found {kind}); the sink rewrites this file: "
            "point `path:` at a file of its own, or move this one away")
    assert proc.stderr.splitlines() == [
        f"labelyard run: labelstudio (labelstudio:out/ls.json): sinks failed: {out}: {said}"]
    assert out.read_text(encoding="utf-8") == earlier


def test_a_run_of_many_tasks_holds_their_ids_not_the_tasks(tmp_path):
    from plugins._labelstudio_sink import finish, write
    from router.plugin_api import FinalTask, PluginRun

    run = PluginRun("labelstudio", "ls", {"path": "ls.json"}, base_dir=str(tmp_path), label_type="choice")
    run.state = write(run, [])
    for first in range(0, 3000, 500):  # batches of 500, as a run delivers them, into the journal
        run.state = write(run, [FinalTask(n, f"T{n}", "pos", "model", "model", None, None, [],
                                          {"body": "x" * 2000}, {}, [], None) for n in range(first, first + 500)])
    journal = run.state["pending"]
    tracemalloc.start()
    try:
        assert finish(run) == {"tasks": 3000, "pending": 0}
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < journal / 5, f"peak {peak} bytes for a journal of {journal}"  # before: the 3000 tasks held
    assert _ids(tmp_path / "ls.json") == [f"T{n}" for n in range(3000)]


# -- 2: a --where on task.queue reads that queue alone, and says how far it is on a terminal ------------------
WHERE_ROOTS = ["task", "prediction", "now"]


@pytest.mark.parametrize("text, requires", [
    ('task.queue == "triage"', {"task.queue": {"triage"}}),
    ('"triage" == task.queue and task.age > 2h', {"task.queue": {"triage"}}),
    ('task.age > 2h and (task.queue == "a" or task.queue in ["b", null])', {"task.queue": {"a", "b", None}}),
    ('task.status == "held" and task.queue == "a"', {"task.status": {"held"}, "task.queue": {"a"}}),
    ('task.queue == "a" and task.queue == "b"', {"task.queue": set()}),
    ('task.queue in ["a", "b"] and task.queue in ["b", "c"]', {"task.queue": {"b"}}),
    ('task.queue == "a" or task.age > 2h', {}),
    ('not (task.queue != "a")', {}),
    ('task.queue != "a"', {}),
    ('task.queue in "triage"', {}),  # text: a part of it, not an equality
    ('task.queue == true', {}),  # `true` equals no number, but a set would hold it as 1
    ('task.queue == task.stage', {}),
])
def test_what_a_where_filter_requires_of_a_fact_is_read_from_its_parse(text, requires):
    from rules.expr import compile_expression

    assert compile_expression(text, roots=WHERE_ROOTS).requires == {k: frozenset(v) for k, v in requires.items()}


WHERE_WORKFLOW = """\
workflow: w
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
  vets: {roles: [annotator]}
on_create:
  - {name: park, when: task.category == "park", do: {hold: "parked"}}
  - {name: medical, when: task.category == "medical", do: {annotate: vets}}
  - {name: default, do: {annotate: triage}}
"""


@pytest.fixture
def queues(tmp_path):
    from lead_support import Project

    p = Project(tmp_path / "p", WHERE_WORKFLOW)
    kinds = ["medical", "plain", "park", "plain", "medical"]
    p.ingest([{"id": f"T{n:02d}", "category": kinds[n % 5], "data": {"n": n}} for n in range(40)])
    p.run_ok("hold", "T01", "T06", "T00")  # held in triage (two) and vets (one)
    return p


EQUIVALENT = [  # each filter, and one of the same meaning from which no queue or status can be read
    ('task.queue == "vets"', 'not (task.queue != "vets")'),
    ('task.data.n > 10 and task.queue == "triage"', 'task.data.n > 10 and not (task.queue != "triage")'),
    ('task.queue in ["vets", null]', 'not (task.queue != "vets" and task.queue != null)'),
    ('task.queue == null', 'not (task.queue != null)'),
    ('task.status == "held" and task.queue == "triage"', 'not (task.status != "held" or task.queue != "triage")'),
    ('task.queue == "nowhere"', 'not (task.queue != "nowhere")'),
    ('task.queue == 1', 'not (task.queue != 1)'),
]


@pytest.mark.parametrize("narrowed, walked", EQUIVALENT)
def test_a_where_narrowed_to_a_queue_finds_the_tasks_the_whole_walk_finds(queues, narrowed, walked):
    def found(expr):
        report = queues.json("priority", "--where", expr, "7", "--dry-run")
        return report["matched"], [d["external_id"] for d in report["done"]], report["skipped"]

    assert found(narrowed) == found(walked)


def test_a_where_on_a_queue_reads_that_queues_tasks_alone(queues, monkeypatch):
    from lead_support import LEAD, engine_at
    from router.lead import Lead

    engine = engine_at(queues.db, monkeypatch, 1)
    read: list[str] = []
    for name in ("tasks_after", "queue_tasks_after", "queueless_tasks"):
        method = getattr(engine.store, name)

        def counted(*args, _method=method):
            rows = _method(*args)
            read.extend(row["external_id"] for row in rows)
            return rows

        monkeypatch.setattr(engine.store, name, counted)
    seen: list[tuple] = []
    report = Lead(engine, LEAD).run("priority", [], 'task.queue == "vets" and task.data.n < 30', value=7,
                                    dry_run=True, progress=lambda *args: seen.append(args))
    vets = sorted(f"T{n:02d}" for n in range(40) if n % 5 in (0, 4))
    assert sorted(read) == vets  # before: every open and held task, 40
    assert report.matched == len([t for t in vets if int(t[1:]) < 30])
    assert seen[-1] == (len(vets), len(vets), report.matched)  # after each page: read, of how many, matching
    assert len(seen) == 2  # a page of open tasks, one of held ones
    read.clear()
    Lead(engine, LEAD).run("priority", [], 'task.queue == null', value=7, dry_run=True)
    assert sorted(read) == sorted(f"T{n:02d}" for n in range(40) if n % 5 == 2)
    read.clear()
    Lead(engine, LEAD).run("unhold", [], 'task.status == "open" and task.queue == "vets"', dry_run=True)
    assert read == []  # unhold applies to held tasks: none is read
    engine.close()


def test_a_where_search_shows_its_progress_on_a_terminal_and_nothing_elsewhere(queues):
    from test_ingest_fix_s11 import run_with_terminal_stderr

    out, err = run_with_terminal_stderr(queues, "priority", "--where", 'task.queue == "vets"', "7")
    assert "searching" in err and "16/16" in err and "tasks read, 16 matching" in err, repr(err)
    assert out.count("priority of ") == 16 and "\x1b" not in out
    proc = queues.run_ok("priority", "--where", 'task.queue == "vets"', "8")  # standard error not a terminal
    assert proc.stderr == "priority: 16 done, 0 skipped of 16 matching\n"
