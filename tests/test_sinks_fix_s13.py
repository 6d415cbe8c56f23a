"""The thirteenth session's sink fixes: a name added to an entry keeps its progress (a sink
delivers nothing again), the labelstudio sink writes through a symlink and keeps the file's mode,
and its output read back by the labelstudio source brings each recorded vote with its worker.

Real subprocesses of ``labelyard`` on real SQLite files; time through ``LABELYARD_NOW``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import textwrap
from pathlib import Path

import pytest
from conftest import Runner

BASE = """\
workflow: s
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
"""

COLLECTOR = """
    import json
    from router import hookimpl

    @hookimpl
    def register_notifiers(register):
        register("collector", send)

    def send(run, note):
        with open(run.path(run.config["file"]), "a") as handle:
            handle.write(json.dumps({"event": note.event, "task": (note.payload["task"] or {}).get("id")}) + "\\n")
"""


@pytest.fixture
def project(run, tmp_path):
    """``init`` done, a ``collector`` notifier in LABELYARD_PLUGINS_DIR; ``apply(tail)`` applies BASE
    and ``tail``, returning the process; ``final(*ids)`` ingests tasks the model's confidence accepts."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "collector.py").write_text(textwrap.dedent(COLLECTOR), encoding="utf-8")
    run.env["LABELYARD_PLUGINS_DIR"] = str(plugins)
    run.ok("init")

    def apply(tail: str, *options: str):
        (tmp_path / "s.workflow.yaml").write_text(BASE + tail, encoding="utf-8")
        return run.ok("apply", *options, "s.workflow.yaml")

    def final(*ids: str) -> None:
        rows = "".join(json.dumps({"id": i, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"
                       for i in ids)
        (tmp_path / "in.jsonl").write_text(rows, encoding="utf-8")
        run.ok("ingest", "in.jsonl")

    run.apply, run.final = apply, final
    return run


def sink_ids(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return [task["meta"]["labelyard"]["id"] for task in json.loads(text)]
    return [json.loads(line)["id"] for line in text.splitlines()]


def applied_details(run) -> list[dict]:
    conn = sqlite3.connect(run.db)
    try:
        return [json.loads(d) for (d,) in conn.execute("SELECT detail FROM events WHERE kind = 'workflow_applied' "
                                                       "ORDER BY id")]
    finally:
        conn.close()


# -- 1: a name added to an entry keeps its progress ---------------------------------------------------------------
@pytest.mark.parametrize("plugin, path", [("jsonl", "out/final.jsonl"), ("labelstudio", "out/ls.json")])
def test_a_name_added_to_a_sink_keeps_what_it_delivered(project, tmp_path, plugin, path):
    project.apply(f"sinks: [{{plugin: {plugin}, path: {path}}}]\n")
    project.final("A", "B")
    project.ok("run")
    out = tmp_path / path
    assert sink_ids(out) == ["A", "B"]
    proc = project.apply(f"sinks: [{{name: final, plugin: {plugin}, path: {path}}}]\n")
    assert proc.stdout.splitlines()[1:] == [
        f"sink `{plugin}:{path}` is now `final` (same plugin and target): its 2 delivered task(s) and state carry "
        "over: nothing is delivered again"]
    assert project.json("run", "--json")["sinks"]["final"] == {"delivered": 0}  # before: 2, each task twice
    assert sink_ids(out) == ["A", "B"]
    project.final("C")
    assert project.json("run", "--json")["sinks"]["final"] == {"delivered": 1}
    assert sink_ids(out) == ["A", "B", "C"]
    # and back: the name dropped again gives the progress back to the unnamed identity
    applied = json.loads(project.apply(f"sinks: [{{plugin: {plugin}, path: ./{path}}}]\n", "--json").stdout)
    assert applied["carried"] == [{"section": "sinks", "from": "final", "to": f"{plugin}:{path}", "cursor": 1,
                                   "deliveries": 3}]
    assert project.json("run", "--json")["sinks"][f"{plugin}:{path}"] == {"delivered": 0}
    assert sink_ids(out) == ["A", "B", "C"]
    # the audit trail: each workflow_applied event says what it carried over
    details = applied_details(project)
    assert [d.get("carried", []) for d in details] == [
        [], [{"section": "sinks", "from": f"{plugin}:{path}", "to": "final", "cursor": 1, "deliveries": 2}],
        applied["carried"]]


def test_a_sink_named_with_another_path_is_another_sink_and_starts_afresh(project, tmp_path):
    project.apply("sinks: [{plugin: jsonl, path: out/a.jsonl}]\n")
    project.final("A")
    project.ok("run")
    proc = project.apply("sinks: [{name: final, plugin: jsonl, path: out/b.jsonl}]\n")
    assert "carr" not in proc.stdout
    assert project.json("run", "--json")["sinks"]["final"] == {"delivered": 1}
    assert sink_ids(tmp_path / "out" / "b.jsonl") == ["A"]


def test_a_notify_entry_named_keeps_its_cursor_so_nothing_is_lost_or_sent_twice(project, tmp_path):
    project.apply("notify: [{plugin: collector, file: notes.jsonl}]\n")
    project.final("t1")
    project.ok("run")
    project.final("t2")  # made final before the name is added: its event is behind the new version
    proc = project.apply("notify: [{name: hook, plugin: collector, file: notes.jsonl}]\n")
    assert "notify entry `collector` is now `hook` (same plugin and target): its cursor and 0 waiting " \
           "notification(s) carry over" in proc.stdout
    assert project.json("run", "--json")["notify"]["hook"] == {"queued": 1, "delivered": 1, "pending": 0}
    notes = [json.loads(line) for line in (tmp_path / "notes.jsonl").read_text(encoding="utf-8").splitlines()]
    assert notes == [{"event": "done", "task": "t1"}, {"event": "done", "task": "t2"}]  # before: t2 never sent


def test_a_source_named_does_not_read_its_files_again(project, tmp_path):
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "a.jsonl").write_text('{"id": "x1", "data": {}}\n{"id": "x2", "data": {}}\n',
                                                encoding="utf-8")
    project.apply("sources: [{plugin: jsonl, path: inbox/*.jsonl}]\n")
    assert project.json("run", "--json")["sources"]["jsonl:inbox/*.jsonl"]["ingested"] == 2
    proc = project.apply("sources: [{plugin: jsonl, path: inbox/*.jsonl, name: inbox}]\n")
    assert "source `jsonl:inbox/*.jsonl` is now `inbox` (same plugin and target): its cursor carries over" \
           in proc.stdout
    counts = project.json("run", "--json")["sources"]["inbox"]
    assert (counts["ingested"], counts["duplicates"]) == (0, 0)  # before: the file read again, 2 duplicates


# -- 2: the labelstudio sink writes through a symlink and keeps the file's mode ----------------------------------
def test_the_labelstudio_sink_writes_through_a_symlink_and_keeps_the_files_mode(project, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (elsewhere / "real.json").write_text("[]", encoding="utf-8")
    os.symlink("../elsewhere/real.json", out / "linked.json")
    os.symlink("../elsewhere/new.json", out / "dangling.json")  # its file is made where it points
    (out / "private.json").write_text("[]", encoding="utf-8")
    os.chmod(out / "private.json", 0o600)
    os.chmod(elsewhere / "real.json", 0o640)
    project.apply("sinks: [{plugin: labelstudio, path: out/linked.json}, {plugin: labelstudio, path: "
                  "out/dangling.json}, {plugin: labelstudio, path: out/private.json}]\n")
    for ids in (["A"], ["A", "B"]):  # the first write and a rewrite of an earlier output
        project.final(ids[-1])
        project.ok("run")
        for name, target in (("linked", "real"), ("dangling", "new")):
            link = out / f"{name}.json"
            assert link.is_symlink() and os.readlink(link) == f"../elsewhere/{target}.json"  # before: a new file
            assert sink_ids(elsewhere / f"{target}.json") == ids
        assert sink_ids(out / "private.json") == ids
        assert stat.S_IMODE((out / "private.json").stat().st_mode) == 0o600  # before: 0644
        assert stat.S_IMODE((elsewhere / "real.json").stat().st_mode) == 0o640
    leftovers = sorted(p.name for p in (*out.iterdir(), *elsewhere.iterdir()) if p.name.startswith(".ly-"))
    assert leftovers == []


# -- 3: the round trip brings back each recorded vote with its worker ---------------------------------------------
TWO_VOTES = """\
workflow: {name}
labels: {{type: choice, choices: [pos, neg]}}
queues:
  q: {{roles: [annotator]}}
on_create:
  - {{name: take model, when: prediction.confidence >= 0.9, do: accept}}
  - {{name: ask, do: {{annotate: q, overlap: 2}}}}
on_quorum:
  - {{name: agree, do: accept}}
"""


def _second_project(folder: Path) -> Runner:
    folder.mkdir()
    two = Runner(folder)
    two.ok("init")
    (folder / "wf.yaml").write_text(TWO_VOTES.format(name="back"), encoding="utf-8")
    two.ok("apply", "wf.yaml")
    return two


def test_the_sink_output_goes_back_in_with_each_vote_and_its_worker(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    one = Runner(first)
    one.ok("init")
    (first / "wf.yaml").write_text(TWO_VOTES.format(name="out") + "sinks: [{plugin: labelstudio, path: out/ls.json}]\n",
                                   encoding="utf-8")
    one.ok("apply", "wf.yaml")
    (first / "in.jsonl").write_text('{"id":"A","data":{"text":"hi"},"prediction":{"label":"pos","confidence":0.95}}\n'
                                    '{"id":"B","data":{"text":"ho"}}\n', encoding="utf-8")
    one.ok("ingest", "-q", "in.jsonl")
    for worker in ("ann", "bob"):
        one.ok("workers", "add", worker, "--role", "annotator")
        slot = one.json("claim", "--as", worker, "--json")
        one.ok("submit", slot["assignment"], "--as", worker, "--label", "neg")
    one.ok("run")
    two = _second_project(tmp_path / "second")
    proc = two.ok("ingest", f"labelstudio:{first / 'out' / 'ls.json'}")
    assert proc.stdout.splitlines()[0] == "ingested 2, duplicates 0, rejected 0, prior votes 3"
    votes = {ident: [(a["worker"], a["label"]) for a in two.json("show", f"ext:{ident}", "--json")["annotations"]]
             for ident in ("A", "B")}
    # before: B came back with the one vote of labelstudio:consensus
    assert votes == {"A": [("labelstudio:model", "pos")], "B": [("ann", "neg"), ("bob", "neg")]}
    assert two.json("show", "ext:B", "--json")["task"]["final_label"] == "neg"  # two votes: the quorum of `ask`


def test_recorded_votes_a_worker_name_or_label_refused_are_left_out_with_their_reason(tmp_path):
    two = _second_project(tmp_path / "second")
    meta = {"id": "T", "final_by": "consensus", "rule": "agree", "votes": [
        {"worker": "ann", "label": "neg"}, {"worker": "ev\u001b[31mil", "label": "neg"},
        {"worker": "cid", "label": "maybe"}, "bob:neg"]}
    annotations = [{"completed_by": {"email": "consensus"}, "result": [{"value": {"choices": ["neg"]}}]},
                   {"completed_by": {"email": "carol@x"}, "result": [{"value": {"choices": ["pos"]}}]}]
    (tmp_path / "ls.json").write_text(json.dumps([{"data": {"text": "t"}, "annotations": annotations,
                                                   "meta": {"labelyard": meta}}]), encoding="utf-8")
    result = two.json("ingest", f"labelstudio:{tmp_path / 'ls.json'}", "--json")
    assert (result["ingested"], result["rejected"], result["prior_votes"]) == (1, 1, 2)
    shown = two.json("show", "ext:T", "--json")
    # ann's recorded vote, and carol's annotation added in Label Studio; the sink's own final annotation
    # stands for the recorded votes and is not a vote of its own
    assert [(a["worker"], a["label"]) for a in shown["annotations"]] == [("ann", "neg"), ("labelstudio:carol@x", "pos")]
    assert not any("\u001b" in w["id"] or w["id"] in ("cid", "labelstudio:consensus")
                   for w in two.json("workers", "list", "--json"))
    [reject] = two.json("rejects", "--json")
    reason = reject["reason"]
    assert reason.startswith("task T: votes left out (the task went in): ")
    assert "vote 2 of `meta.labelyard.votes` by ev\\x1b[31mil: `meta.labelyard.votes[2].worker` refused as a " \
           "worker's name: it holds a control character" in reason
    assert "vote 3 of `meta.labelyard.votes` by cid: " in reason and "maybe" in reason
    assert '`meta.labelyard.votes[4]` must be a {worker, label} object with the worker\'s name as text, not ' \
           '"bob:neg"' in reason
    assert "\u001b" not in reason
