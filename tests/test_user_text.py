"""Text from task data, rules and file names is printed as it is, never read as rich markup."""

from __future__ import annotations

import json

from router.progress import line_progress

WORKFLOW = """\
workflow: f
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: "[/]", when: 'task.data.kind == "odd"', do: {hold: "needs [legal] review"}}
  - {name: plain, do: {annotate: q}}
"""


def test_show_prints_brackets_in_data_reasons_and_rule_names(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(WORKFLOW))
    rows = [{"id": "t", "data": {"kind": "odd", "note": "[bold]important[/bold] [legal] see [/] below"}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run.ok("ingest", "t.jsonl")
    out = run.ok("show", "t").stdout
    assert "reason: needs [legal] review" in out
    assert '"note": "[bold]important[/bold] [legal] see [/] below"' in out
    assert "rule `[/]` → hold" in out


def test_a_progress_label_with_brackets_is_shown_as_written(tmp_path):
    (tmp_path / "a[" / "]b[").mkdir(parents=True)
    path = tmp_path / "a[" / "]b[" / "]c.jsonl"  # `a[/]b[/]c.jsonl`: the second closing tag has nothing to close
    path.write_text("{}\n{}\n")
    with line_progress(str(path), f"ingest {path}") as update:
        update(2)


def test_control_characters_never_reach_the_terminal(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(WORKFLOW))
    rows = [{"id": "E2-\u001b]0;PWNED\u0007", "data": {}},  # retitles the window if printed raw
            {"id": "t", "data": {"kind": "plain"}, "tags": ["a\u001b[2Jb"]},
            {"id": "u", "data": {"kind": "plain", "note": "\u001b[31mred"}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run.json("ingest", "t.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 2)
    reasons = {r["line"]: r["reason"] for r in run.json("rejects", "--json")}
    assert reasons == {1: "`id` contains a control character (U+001B)",
                       2: "`tags` contains a control character (U+001B)"}
    run.ok("hold", "u", "--reason", "wait\u001b[2Jhere")
    out = run.ok("show", "u").stdout
    assert "\u001b" not in out
    assert "reason: wait\\x1b[2Jhere" in out
    assert '"note": "\\u001b[31mred"' in out  # data is JSON: escaped already


def test_text_that_is_not_unicode_is_refused_where_it_comes_in(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(WORKFLOW.replace("type: choice, choices: [a, b]", "type: text")))
    lines = ['{"id": "ok", "data": {"kind": "plain"}}',
             '{"id": "half", "data": {"kind": "plain", "s": "\\ud83d"}}',  # valid JSON, not text
             '{"id": "\\udc00", "data": {}}']
    (tmp_path / "t.jsonl").write_text("\n".join(lines) + "\n")
    report = run.json("ingest", "t.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 2)
    reasons = {r["line"]: r["reason"] for r in run.json("rejects", "--json")}
    lone = "the lone UTF-16 surrogate escape `{}` at column {} is not text (a surrogate escape needs its pair)"
    assert reasons == {2: lone.format("\\ud83d", 48), 3: lone.format("\\udc00", 9)}  # named where it is written

    bad_name = run("workers", "add", "w\u001bz", "--role", "annotator")
    assert bad_name.returncode == 1 and "it holds a control character" in bad_name.stderr
    run.ok("workers", "add", "ann", "--role", "annotator")
    claim = run.json("claim", "--as", "ann", "--json")
    refused = run("submit", claim["assignment"], "--as", "ann", "--value", '"x\\ud83d"')
    assert refused.returncode == 1
    assert "--value: the lone UTF-16 surrogate escape `\\ud83d` at column 3 is not text" in refused.stderr
    run.ok("submit", claim["assignment"], "--as", "ann", "--label", "fine")
