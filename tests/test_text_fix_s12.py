"""Hostile text, session 12: names from files never reach the terminal raw (4), JSON rows with a
repeated key are refused (6), imported voter names are checked as `workers add` checks them (7),
and messages say what is wrong (8)."""

from __future__ import annotations

import json

import pytest

ESC = "\x1b]0;PWNED\x07"  # retitles the terminal window when printed raw
SHOWN = "\\x1b]0;PWNED\\x07"


def _write_json_yaml(path, data) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML: any key, escapes and all


def _raw_free(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, text


# -- 4: escape sequences in workflow, test and database text -------------------------------------
BROKEN = {
    "workflow": "x",
    "labels": {"type": "choice", "choices": ["a"]},
    "queues": {"q": {"roles": ["a"], "bogus" + ESC: 1}},
    "top" + ESC: 1,
    "plugins": ["nomod" + ESC],
    "on_create": [{"name": "r" + ESC, "do": {"annotate": "q" + ESC}},
                  {"name": "r" + ESC, "do": {"annotate": "q", "par" + ESC: 1}},
                  {"name": "n\nforged.workflow.yaml:1:1: all good", "do": {"ann" + ESC + "otate": "q"}}],
}


def test_validate_and_apply_quote_names_of_the_file_escaped(run, tmp_path):
    _write_json_yaml(tmp_path / "h.workflow.yaml", BROKEN)
    proc = run("validate", "h.workflow.yaml")
    assert proc.returncode == 1
    _raw_free(proc.stderr)
    for said in (f"unknown key `bogus{SHOWN}` in `q`", f"unknown key `top{SHOWN}`",
                 f"plugin module `nomod{SHOWN}` does not load", f"undefined queue `q{SHOWN}`",
                 f"duplicate rule name `r{SHOWN}` in on_create", f"unknown parameter `par{SHOWN}` for `annotate`",
                 f"unknown action `ann{SHOWN}otate`; did you mean `annotate`?"):
        assert said in proc.stderr, said
    assert all(line.startswith("h.workflow.yaml:1:") for line in proc.stderr.splitlines())
    run.ok("init")
    proc = run("apply", "--json", "h.workflow.yaml")
    assert proc.returncode == 1
    _raw_free(proc.stderr)
    assert f"unknown action `ann{SHOWN}otate`" in proc.stderr
    messages = [d["message"] for d in json.loads(proc.stdout)["diagnostics"]]
    assert f"unknown action `ann{SHOWN}otate`; did you mean `annotate`?" in messages  # the same words in JSON


def test_a_key_with_a_line_break_stays_on_its_line(run, tmp_path):
    _write_json_yaml(tmp_path / "h.workflow.yaml", {**BROKEN, "on_create": [
        {"do": {"ann\nh.workflow.yaml:9:9: forged": "q"}}]})
    proc = run("validate", "h.workflow.yaml")
    assert "unknown action `ann\\x0ah.workflow.yaml:9:9: forged`" in proc.stderr
    assert "\nh.workflow.yaml:9:9" not in proc.stderr


def test_plugin_entries_are_named_escaped(run, tmp_path):
    _write_json_yaml(tmp_path / "g.workflow.yaml", {
        "workflow": "x", "labels": {"type": "choice", "choices": ["a"]}, "queues": {"q": {"roles": ["a"]}},
        "sources": [{"plugin": "nosuch" + ESC}],
        "sinks": [{"plugin": "jsonl", "path": "o.jsonl", "setting" + ESC: 1}],
        "on_create": [{"do": {"annotate": "q"}}]})
    proc = run.ok("validate", "g.workflow.yaml")
    _raw_free(proc.stderr)
    assert f"no sources plugin `nosuch{SHOWN}` is loaded here" in proc.stderr
    assert f"`jsonl` has no setting `setting{SHOWN}:`" in proc.stderr


def test_rule_tests_print_case_names_rules_and_values_escaped(run, tmp_path):
    _write_json_yaml(tmp_path / "g.workflow.yaml", {
        "workflow": "x", "labels": {"type": "choice", "choices": ["a"]}, "queues": {"q": {"roles": ["a"]}},
        "on_create": [{"name": "r" + ESC, "do": {"annotate": "q"}}]})
    _write_json_yaml(tmp_path / "g.test.yaml", {"cases": [
        {"name": "c" + ESC + "\nPASS  forged", "event": "on_create", "facts": {"task": {"data": {}}},
         "expect": {"rule": "no" + ESC}},
        {"name": "u", "event": "on_create", "facts": {"task": {"data": {}, "odd" + ESC: 1}},
         "expect": {"rule": "r" + ESC}},
        {"name": "d" + ESC, "event": "on_create", "facts": {"task": {"data": {}}},
         "expect": {"rule": "r" + ESC, "values": {"overlap": "x" + ESC}}}]})
    proc = run("test", "-v", "g.workflow.yaml")
    assert proc.returncode == 1
    _raw_free(proc.stdout + proc.stderr)
    out = proc.stdout
    assert f"ERROR g.test.yaml:1: c{SHOWN}\\x0aPASS  forged\n" in out
    assert "\nPASS" not in out
    assert f"no rule `no{SHOWN}` in on_create of x; did you mean `r{SHOWN}`?" in out
    assert f"unknown fact `task.odd{SHOWN}`" in out
    assert f"FAIL  g.test.yaml:1: d{SHOWN}\n" in out
    assert "values.overlap" in out


def _accepting_project(run, tmp_path, name: str, sink_path: str):
    workflow = {"workflow": "x", "labels": {"type": "choice", "choices": ["a"]}, "queues": {"q": {"roles": ["a"]}},
                "sinks": [{"plugin": "jsonl", "path": sink_path}],
                "on_create": [{"name": name, "do": "accept"}]}
    _write_json_yaml(tmp_path / "s.workflow.yaml", workflow)
    (tmp_path / "rows.jsonl").write_text(json.dumps({"id": "t1", "data": {}, "prediction": {"label": "a"}}) + "\n")
    run.ok("init")
    run.ok("apply", "s.workflow.yaml")
    run.ok("ingest", "rows.jsonl")
    return workflow


def test_run_prints_a_sink_identity_escaped(run, tmp_path):
    (tmp_path / f"nodir{ESC}").mkdir()
    _accepting_project(run, tmp_path, "ok", f"nodir{ESC}/out.jsonl")
    out = run.ok("run").stdout
    _raw_free(out)
    assert f"sink jsonl:nodir{SHOWN}/out.jsonl: delivered 1\n" in out


def test_replay_prints_rule_names_escaped(run, tmp_path):
    workflow = _accepting_project(run, tmp_path, "r" + ESC, "out.jsonl")
    workflow["on_create"] = [{"name": "z" + ESC + "\nforged", "do": {"annotate": "q"}}]
    _write_json_yaml(tmp_path / "s2.workflow.yaml", workflow)
    out = run.ok("replay", "s2.workflow.yaml").stdout
    _raw_free(out)
    assert f"rule `z{SHOWN}\\x0aforged` would have sent 1 more task to q" in out
    assert f"by `r{SHOWN}`" in out


# -- 6: a JSON object that gives a key twice -----------------------------------------------------
ROUTING = """\
workflow: x
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create: [{do: {annotate: q}}]
"""
TWICE = "is given twice in one object: one of the two values would be lost"


@pytest.fixture
def routing(run, tmp_path):
    run.ok("init")
    (tmp_path / "x.workflow.yaml").write_text(ROUTING, encoding="utf-8")
    run.ok("apply", "x.workflow.yaml")
    return run


def _reasons(run) -> dict[int, str]:
    return {r["line"]: r["reason"] for r in run.json("rejects", "--json")}


def test_a_json_lines_row_with_a_key_given_twice_is_quarantined(routing, tmp_path):
    (tmp_path / "dup.jsonl").write_text(
        '{"id":"T-1","data":{"amount":10,"amount":99},"id":"T-2"}\n'
        '{"id":"T-3","data":{},"prediction":{"label":"a","label":"b"}}\n'
        '{"id":"T-4","data":{"k":1,"\\u006b":2}}\n'  # the same key, one of them escaped
        '{"id":"T-5","data":{"label":"x","list":[{"label":1},{"label":2}]},"prediction":{"label":"a"}}\n',
        encoding="utf-8")
    report = routing.json("ingest", "dup.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 3)
    assert _reasons(routing) == {1: f"the key `amount` at column 33 {TWICE}",
                                 2: f"the key `label` at column 49 {TWICE}",
                                 3: f"the key `k` at column 27 {TWICE}"}
    assert routing("show", "T-2").returncode != 0 and routing("show", "T-1").returncode != 0
    assert routing.json("show", "T-5", "--json")["task"]["data"]["label"] == "x"  # one key per object is fine


def test_an_array_element_with_a_key_given_twice_is_quarantined_alone(routing, tmp_path):
    (tmp_path / "rows.json").write_text(
        '[\n {"id": "C", "data": {}},\n {"id": "D",\n  "data": {"x": [1, {"y": 1, "y": 2}]}},\n'
        ' {"id": "E", "data": {"e\\u001b": 1, "e\\u001b": 2}},\n {"id": "F", "data": {}}\n]\n', encoding="utf-8")
    report = routing.json("ingest", "rows.json", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 2)
    assert _reasons(routing) == {3: f"the key `y` at line 4, column 30 {TWICE}",
                                 5: f"the key `e\\x1b` at line 5, column 37 {TWICE}"}


def test_a_broken_row_with_a_key_given_twice_is_reported_as_broken(routing, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"id":"T-1","data":{"a":1,"a":2}} trailing\n', encoding="utf-8")
    routing.ok("ingest", "bad.jsonl")
    assert _reasons(routing)[1].startswith("invalid JSON at column 35")


def test_gold_add_refuses_a_key_given_twice(routing, tmp_path):
    (tmp_path / "g.jsonl").write_text('{"id":"G1","data":{},"answer":"a","answer":"b"}\n'
                                      '{"id":"G2","data":{},"answer":"a"}\n', encoding="utf-8")
    assert routing.ok("gold", "add", "g.jsonl").stdout == "gold: added 1, updated 0, rejected 1\n"
    assert _reasons(routing) == {1: f"the key `answer` at column 35 {TWICE}"}


def test_a_csv_label_cell_with_a_key_given_twice_is_quarantined(run, tmp_path):
    run.ok("init")
    (tmp_path / "s.workflow.yaml").write_text(
        ROUTING.replace("{type: choice, choices: [a, b]}", "{type: spans, choices: [car]}"), encoding="utf-8")
    run.ok("apply", "s.workflow.yaml")
    cell = '"[{""start"": 0, ""end"": 3, ""start"": 1, ""label"": ""car""}]"'
    (tmp_path / "p.csv").write_text(f"id,prediction_label\nS1,{cell}\n", encoding="utf-8")
    report = run.json("ingest", "p.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (0, 1)
    assert _reasons(run) == {2: f"`prediction_label`: the key `start` at column 25 of the cell {TWICE}"}


def test_a_label_studio_export_with_a_key_given_twice_is_refused_where_it_is(routing, tmp_path):
    text = ('[{"id": 1, "data": {"text": "x"},\n'
            '  "annotations": [{"id": 11, "completed_by": {"id": 7, "email": "a@x", "email": "b@x"},\n'
            '                   "result": []}]}]\n')
    (tmp_path / "ls.json").write_text(text, encoding="utf-8")
    report = routing.json("ingest", "labelstudio:ls.json", "--json")
    assert (report["ingested"], report["rejected"]) == (0, 1)
    assert _reasons(routing) == {2: f"the key `email` at line 2, column 72 {TWICE}"}


def test_submit_refuses_a_value_giving_a_key_twice(run, tmp_path):
    run.ok("init")
    (tmp_path / "s.workflow.yaml").write_text(
        ROUTING.replace("{type: choice, choices: [a, b]}", "{type: spans, choices: [car]}"), encoding="utf-8")
    run.ok("apply", "s.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    (tmp_path / "t.jsonl").write_text('{"id": "t1", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    slot = run.json("claim", "--as", "ann", "--json")["assignment"]
    proc = run("submit", slot, "--as", "ann", "--value", '[{"start": 0, "end": 3, "end": 9, "label": "car"}]')
    assert proc.returncode == 1
    assert proc.stderr == f"labelyard: --value: the key `end` at column 25 {TWICE}\n"


# -- 7: imported voter names ------------------------------------------------------------------------
FORGED = "evil\n  2026-01-01T00:00:00+00:00 final rule `ok` by lead"
VOTING = """\
workflow: t
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create: [{name: default, do: {annotate: q, overlap: 3}}]
on_quorum: [{name: acc, do: accept}]
"""


@pytest.fixture
def voting(run, tmp_path):
    run.ok("init")
    (tmp_path / "t.workflow.yaml").write_text(VOTING, encoding="utf-8")
    run.ok("apply", "t.workflow.yaml")
    return run


def _no_forged_lines(run, task: str) -> None:
    for args in (("show", task), ("workers", "list")):
        out = run.ok(*args).stdout
        assert "2026-01-01" not in out and "\t" not in out and "x" * 513 not in out, out


def test_a_source_s_votes_by_names_workers_add_refuses_are_left_out_saying_why(voting, tmp_path, monkeypatch):
    from router.engine import Engine
    from router.plugin_api import SourcePart
    from router.runner import ingest_parts

    (tmp_path / "t.jsonl").write_text('{"id": "T1", "data": {}}\n', encoding="utf-8")
    voting.ok("ingest", "t.jsonl")
    monkeypatch.setenv("LABELYARD_NOW", "2025-03-01T09:00:00Z")
    engine = Engine.open(str(voting.db))
    try:
        result = ingest_parts(engine, iter([SourcePart("feed", [], cursor=1, votes={"T1": [
            {"worker": FORGED, "label": "a"}, {"worker": "x" * 5000, "label": "a"},
            {"worker": "tab\there", "label": "a"}, {"worker": " padded", "label": "a"},
            {"worker": "x" * 512, "label": "b"}]})]))
    finally:
        engine.close()
    assert result["prior_votes"] == 1  # the name of 512 characters is one
    assert result["prior_votes_left_out"] == {
        "`worker` refused as a worker's name: it holds a control character (first: task T1)": 2,
        "`worker` refused as a worker's name: it is longer than 512 characters (first: task T1)": 1,
        "`worker` refused as a worker's name: it starts or ends with a space (first: task T1)": 1}
    _no_forged_lines(voting, "T1")


def test_label_studio_voters_whose_names_workers_add_refuses_are_quarantined(voting, tmp_path):
    def annotation(ident: int, who, choice: str) -> dict:
        return {"id": ident, "completed_by": who,
                "result": [{"from_name": "l", "to_name": "t", "type": "choices", "value": {"choices": [choice]}}]}

    tasks = [{"id": 1, "data": {"text": "x"}, "annotations": [
        annotation(11, {"id": 7, "email": FORGED}, "a"), annotation(12, {"email": "x" * 5000}, "a"),
        annotation(13, {"id": "tab\there"}, "b"), annotation(14, {"id": 8, "email": "ok@x"}, "a")]}]
    (tmp_path / "ls.json").write_text(json.dumps(tasks), encoding="utf-8")
    report = voting.json("ingest", "labelstudio:ls.json", "--json")
    assert (report["ingested"], report["rejected"], report["prior_votes"]) == (1, 1, 1)
    [reject] = voting.json("rejects", "--json")
    refused = "refused as a worker's name"
    assert reject["reason"] == (
        "task 1: votes left out (the task went in): "
        "annotation 11 by labelstudio:evil\\n  2026-01-01T00:00:00+00:00 final rule `...: "
        f"`completed_by.email` {refused}: it holds a control character; "
        f"annotation 12 by labelstudio:{'x' * 45}...: `completed_by.email` {refused}: it is longer than 512 "
        "characters; "
        f"annotation 13 by labelstudio:tab\\there: `completed_by.id` {refused}: it holds a control character")
    _no_forged_lines(voting, "1")
    assert "labelstudio:ok@x" in voting.ok("workers", "list").stdout


# -- 8: messages that say what is wrong ----------------------------------------------------------
def _one_task(run, tmp_path, labels: str, claim: bool = True) -> int | None:
    run.ok("init")
    (tmp_path / "w.workflow.yaml").write_text(
        f"workflow: w\nlabels: {labels}\nqueues: {{q: {{roles: [annotator]}}}}\non_create: [{{do: {{annotate: q}}}}]\n",
        encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    (tmp_path / "t.jsonl").write_text('{"id": "t1", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    return run.json("claim", "--as", "ann", "--json")["assignment"] if claim else None


def test_a_number_label_too_large_is_said_to_be_too_large(run, tmp_path):
    slot = _one_task(run, tmp_path, "{type: number}")
    for value in ("9" * 4000, "-" + "9" * 400):
        proc = run("submit", slot, "--as", "ann", "--value", value)
        assert proc.returncode == 1
        digits = len(value.lstrip("-"))
        assert proc.stderr == (f"labelyard: label an integer of {digits} digits is too large: "
                               "a number label is at most about 1.8e308 in size (the largest float)\n")
    proc = run("submit", slot, "--as", "ann", "--value", "1e400")  # JSON's number, read as infinity
    assert proc.stderr == ("labelyard: label 1e400 is too large: "
                           "a number label is at most about 1.8e308 in size (the largest float)\n")


def test_a_csv_confidence_past_float_is_named_as_the_cell_not_as_inf(routing, tmp_path):
    (tmp_path / "c.csv").write_text("id,prediction_confidence\nc1,1e400\nc2,-1e400\nc3,0.5\n", encoding="utf-8")
    report = routing.json("ingest", "c.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 2)
    assert _reasons(routing) == {2: '`prediction_confidence` "1e400" is not a finite number',
                                 3: '`prediction_confidence` "-1e400" is not a finite number'}


def test_claim_prints_its_choices_on_one_line(run, tmp_path):
    _one_task(run, tmp_path, '{type: choice, choices: ["a\\nchoices: forged", "b\\tc", "d\\u001b[2J"]}', claim=False)
    out = run.ok("claim", "--as", "ann").stdout
    assert out.endswith("choices: a\\x0achoices: forged, b\\x09c, d\\x1b[2J\n")
    assert out.count("choices:") == 2


@pytest.mark.parametrize("now", ["1_700_000_000", "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",
                                 "1.7e\u0669", "\uff11700000000"])
def test_labelyard_now_takes_epoch_seconds_in_ascii_digits_only(run, now):
    run.ok("init")
    proc = run("workers", "add", "bob", "--role", "annotator", env={"LABELYARD_NOW": now})
    assert proc.returncode == 1
    assert proc.stderr == (f"labelyard: LABELYARD_NOW={now!r} is not epoch seconds as Labelyard reads them: "
                           "ASCII digits without `_` (1700000000, 1.7e9), or an ISO 8601 time\n")
    for fine in ("1700000000", " 1.7e9 ", "-1e3", "2025-03-01T09:00:00Z"):
        run.ok("workers", "add", "bob", "--role", "annotator", env={"LABELYARD_NOW": fine})


def test_a_rule_test_s_now_is_read_as_labelyard_now_is(run, tmp_path):
    (tmp_path / "g.workflow.yaml").write_text(ROUTING, encoding="utf-8")
    _write_json_yaml(tmp_path / "g.test.yaml", {"cases": [
        {"name": "n", "event": "on_create", "facts": {"now": "1_700_000_000", "task": {"data": {}}},
         "expect": {"action": "annotate"}}]})
    proc = run("test", "g.workflow.yaml")
    assert proc.returncode == 1
    assert "`now` is '1_700_000_000': not epoch seconds as Labelyard reads them" in proc.stdout
