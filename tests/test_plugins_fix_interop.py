"""Source plugin fixes (the interop session): `ingest NAME:ARG` reads a file to its end, a Label
Studio export (or a CSV label cell) with an integer too long to read is one reject, malformed
`choices` are refused, a directory is named as one, a NaN is named where it is, and ignored
top-level keys are counted in `run`.

Real `labelyard` subprocesses on real files and a real SQLite database.
"""

from __future__ import annotations

import json

import pytest

from test_input_fix_interop import WORKFLOW, listed as reasons  # the same project: WORKFLOW applied
from test_input_fix_interop import project  # noqa: F401 - a fixture


# -- 2: `ingest NAME:ARG` reads to the end: there is no later run to wait for -----------------------
def test_ingest_csv_plugin_reads_a_last_row_without_its_line_break(project, tmp_path):
    (tmp_path / "sheet.csv").write_bytes(b"id,text\nx,1\ny,2")
    report = project.json("ingest", "csv:sheet.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 0)
    assert project.json("show", "y", "--json")["task"]["data"] == {"text": "2"}
    # as the plain path reads it
    (tmp_path / "other.csv").write_bytes(b"id,text\nz,1\nw,2")
    assert project.json("ingest", "other.csv", "--json")["ingested"] == 2


def test_ingest_jsonl_plugin_quarantines_a_cut_off_last_line_as_plain_ingest_does(project, tmp_path):
    (tmp_path / "cut.jsonl").write_bytes(b'{"id": "a", "data": {}}\n{"id":"c","data":{')
    report = project.json("ingest", "jsonl:cut.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    via_plugin = reasons(project, "--source", "cut.jsonl")
    assert [line for line, _ in via_plugin] == [2]
    (tmp_path / "cut2.jsonl").write_bytes(b'{"id": "b", "data": {}}\n{"id":"c","data":{')
    assert project.json("ingest", "cut2.jsonl", "--json")["rejected"] == 1
    assert reasons(project, "--source", "cut2.jsonl") == via_plugin


# -- 3: an export with an integer too long for Python is one reject; the other files go in ----------
def test_a_labelstudio_export_with_a_too_long_integer_is_one_reject(project, tmp_path):
    (tmp_path / "ls").mkdir()
    (tmp_path / "ls" / "a.json").write_text('[{"id": 1,\n  "data": {"n": 1' + "0" * 5000 + "}}]", encoding="utf-8")
    (tmp_path / "ls" / "b.json").write_text('[{"id": 2, "data": {"t": "x"}}]', encoding="utf-8")
    report = project.json("ingest", "labelstudio:ls/*.json", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert reasons(project, "--source", "ls/a.json") == [
        (2, "not a Label Studio export: a number with more than 4300 digits at line 2, column 17 is too long "
            "to read (give it as text)")]


def test_a_csv_json_label_cell_with_a_too_long_integer_is_one_reject(run, tmp_path):
    run.ok("init")
    (tmp_path / "m.workflow.yaml").write_text(WORKFLOW.replace("{type: text}", "{type: multi_choice, choices: [a]}"),
                                              encoding="utf-8")
    run.ok("apply", "m.workflow.yaml")
    (tmp_path / "m.csv").write_text('id,prediction_label\nm1,[1' + "0" * 5000 + ']\nm2,"[""a""]"\n',
                                    encoding="utf-8")
    report = run.json("ingest", "m.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert reasons(run) == [(2, "`prediction_label`: a number with more than 4300 digits at column 2 of the cell "
                                "is too long to read (give it as text)")]
    report = run.json("ingest", "csv:m.csv", "--json")  # the csv source reads it the same way
    assert (report["duplicates"], report["rejected"]) == (1, 1)


# -- 6 (through a source): the jsonl source's row with NaN is named and kept as `ingest` keeps it -----
def test_the_jsonl_source_names_a_nan_and_keeps_the_row(project, tmp_path):
    line = '{"id": "n1", "data": {"x": NaN}}'
    (tmp_path / "n.jsonl").write_text(line + "\n", encoding="utf-8")
    assert project.json("ingest", "jsonl:n.jsonl", "--json")["rejected"] == 1
    assert [(r["reason"], r["raw"]) for r in project.json("rejects", "--json")] == [
        ("the number `NaN` at column 28 is not finite, which JSON cannot carry", line)]


# -- 8: a malformed Label Studio result is a reject naming the field; a directory is named as one -----
@pytest.mark.parametrize(("labels", "value", "field"), [
    ("{type: choice, choices: [pos, p]}", '{"choices": "pos"}', "choices"),  # read as a list: the label "p"
    ("{type: text}", '{"text": "pos"}', "text"),
    ("{type: spans, choices: [PER, P]}", '{"start": 0, "end": 1, "labels": "PER"}', "labels"),
])
def test_a_labelstudio_result_field_that_is_not_a_list_is_a_reject(run, tmp_path, labels, value, field):
    run.ok("init")
    (tmp_path / "c.workflow.yaml").write_text(WORKFLOW.replace("{type: text}", labels), encoding="utf-8")
    run.ok("apply", "c.workflow.yaml")
    project = run
    task = '{"id": 7, "data": {"t": "x"}, "predictions": [{"score": 0.9, "result": [{"value": %s}]}]}' % value
    (tmp_path / "ls.json").write_text(f"[{task}, " + '{"id": 8, "data": {}}]', encoding="utf-8")
    report = project.json("ingest", "labelstudio:ls.json", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    [(line, reason)] = reasons(project)
    shown = json.dumps(json.loads(value)[field])
    assert (line, reason) == (1, f"`predictions[1].result[1].value.{field}` must be a list, not {shown}")


def test_a_labelstudio_annotation_with_a_malformed_result_is_left_out_saying_why(run, tmp_path):
    run.ok("init")
    (tmp_path / "c.workflow.yaml").write_text(WORKFLOW.replace("{type: text}", "{type: choice, choices: [pos, p]}"),
                                              encoding="utf-8")
    run.ok("apply", "c.workflow.yaml")
    task = ('{"id": 9, "data": {}, "annotations": [{"id": 31, "completed_by": {"email": "a@x"}, '
            '"result": [{"value": {"choices": "pos"}}]}]}')
    (tmp_path / "ls.json").write_text(f"[{task}]", encoding="utf-8")
    report = run.json("ingest", "labelstudio:ls.json", "--json")
    assert (report["ingested"], report["rejected"], report.get("prior_votes", 0)) == (1, 1, 0)
    [(line, reason)] = reasons(run)
    assert line == 1 and 'annotation 31 by labelstudio:a@x: `result[1].value.choices` must be a list' in reason


@pytest.mark.parametrize("plugin", ["jsonl", "csv", "labelstudio"])
def test_a_source_given_a_directory_says_it_is_one(project, tmp_path, plugin):
    (tmp_path / "adir").mkdir()
    failed = project("ingest", f"{plugin}:adir")
    assert failed.returncode == 1
    ext = {"labelstudio": "json"}.get(plugin, plugin)
    assert failed.stderr.strip().endswith(f"adir: is a directory, not a file (a glob such as adir/*.{ext} "
                                          "reads the files in it)"), failed.stderr


# -- 4 (through `run`): a source's counts name the top-level keys its rows left out ------------------
def test_run_counts_the_ignored_keys_of_a_source(run, tmp_path):
    run.ok("init")
    (tmp_path / "s.workflow.yaml").write_text(WORKFLOW + 'sources: [{plugin: jsonl, path: "in.jsonl"}]\n',
                                              encoding="utf-8")
    run.ok("apply", "s.workflow.yaml")
    (tmp_path / "in.jsonl").write_text('{"id": "a", "data": {}, "label": "x"}\n{"id": "b", "data": {}}\n',
                                       encoding="utf-8")
    counts = run.json("run", "--json")["sources"]["jsonl:in.jsonl"]
    assert (counts["ingested"], counts["ignored_keys"]) == (2, {"label": 1})
