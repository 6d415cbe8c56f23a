"""Input that a tester found lost, misread or silently dropped (the interop session).

- Every rejected row is listed: a one-line `.json` array and a CSV whose records end with a
  lone CR keep one reject per bad row, however the rows fall into batches.
- Top-level keys a row with `data` leaves out are warned about and counted.
- A number cut by a 64K chunk's end after its `.` or `e` is read whole.
- A NaN or an infinity is named where it is, and the row kept as read.
- `rejects` says how many more there are past --limit; --limit 0 lists all.

Real `labelyard` subprocesses on real files and a real database.
"""

from __future__ import annotations

import json

import pytest

WORKFLOW = """\
workflow: t
labels: {type: text}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: acc, when: prediction.label != null, do: accept}
  - {name: ann, do: {annotate: q, overlap: 1}}
"""


@pytest.fixture
def project(run, tmp_path):
    """``init`` done and WORKFLOW applied."""
    run.ok("init")
    (tmp_path / "t.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("apply", "t.workflow.yaml")
    return run


def listed(run, *args: str) -> list[tuple[int, str]]:
    """``(line, reason)`` of each reject ``labelyard rejects ARGS --json`` lists, oldest first."""
    return [(r["line"], r["reason"]) for r in reversed(run.json("rejects", *args, "--json"))]


# -- 1: every rejected row is listed --------------------------------------------------------------
def test_every_bad_element_of_a_one_line_json_array_is_listed(project, tmp_path):
    (tmp_path / "arr.json").write_text('[{"id":"a","data":5},{"id":"b","prediction":{"confidence":2}},'
                                       '{"data":{}},{"id":"ok","data":{}}]\n', encoding="utf-8")
    report = project.json("ingest", "arr.json", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 3)
    expected = [(1, "`data` must be an object"), (1, "`prediction.confidence` 2 is outside 0..1"),
                (1, "missing `id`")]
    assert listed(project, "--source", "arr.json") == expected
    project.json("ingest", "arr.json", "--json")  # read again: the same rejects, not twice as many
    assert listed(project, "--source", "arr.json") == expected
    assert project.json("status", "--json")["rejects"] == 3


def test_csv_records_ended_by_lone_crs_in_a_newline_file_are_each_listed(project, tmp_path):
    (tmp_path / "cr.csv").write_bytes(b"id,text\n,1\r,2\rgood,3\n")
    report = project.json("ingest", "cr.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 2)
    assert listed(project, "--source", "cr.csv") == [(2, "missing `id`"), (2, "missing `id`")]
    project.json("ingest", "cr.csv", "--json")
    assert len(listed(project, "--source", "cr.csv")) == 2


def test_rejects_on_one_line_split_across_batches_are_all_kept(project, tmp_path):
    # 2,000 rows a batch: 4,500 elements on one line are three batches starting on line 1,
    # and each used to delete the rejects the one before had stored on that line
    rows = [{"id": f"r{n}", "data": {}} if n % 3 else {"id": f"r{n}", "data": n} for n in range(4500)]
    (tmp_path / "big.json").write_text(json.dumps(rows) + "\n", encoding="utf-8")
    report = project.json("ingest", "big.json", "--json")
    assert (report["ingested"], report["rejected"]) == (3000, 1500)
    assert project.json("status", "--json")["rejects"] == 1500
    assert len(project.json("rejects", "--source", "big.json", "--limit", "5000", "--json")) == 1500
    (tmp_path / "big.json").write_text(json.dumps([r for r in rows if isinstance(r["data"], dict)]) + "\n",
                                       encoding="utf-8")
    project.json("ingest", "big.json", "--json")  # fixed: no reject left
    assert project.json("status", "--json")["rejects"] == 0


# -- 5: a number cut after its `.` or `e` by the end of a 64K chunk reads on --------------------------
@pytest.mark.parametrize(("number", "cut"), [("1.5", 2), ("1e5", 2), ("-2.5e-3", 6), ("1E+2", 3), ("7", 1)])
def test_a_number_cut_by_a_chunk_boundary_inside_it_is_read_whole(project, tmp_path, number, cut):
    from router.json_array import CHUNK_CHARS

    head = '[{"id": "a", "data": {"pad": "'
    tail = '"}},'
    # `1.`, `1e`, `-2.5e-`, `1E+`: decoded alone, each is a shorter number followed by text
    pad = CHUNK_CHARS - len(head) - len(tail) - cut
    text = head + "x" * pad + tail + number + ',{"id": "b", "data": {}}]\n'
    assert text[:CHUNK_CHARS].endswith(number[:cut])
    (tmp_path / "cut.json").write_text(text, encoding="utf-8")
    report = project.json("ingest", "cut.json", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 1)
    assert listed(project, "--source", "cut.json") == [(1, "a row must be a JSON object")]


@pytest.mark.parametrize("shift", [0, 1])
def test_a_long_fraction_cut_after_its_dot_reads_as_it_does_uncut(project, tmp_path, shift):
    # cut after the dot, its 5,000 digits were decoded alone as an integer too long to read
    from router.json_array import CHUNK_CHARS

    head, tail = '[{"id": "p", "data": {"pad": "', '"}},'
    number = "1" * 5000 + ".5"  # a float: Python reads it (as infinity), whatever its digits
    pad = CHUNK_CHARS - len(head) - len(tail) - 5001 + shift
    text = head + "x" * pad + tail + number + ',{"id": "b", "data": {}}]\n'
    assert text[:CHUNK_CHARS].endswith("1." if shift == 0 else "11")
    (tmp_path / "long.json").write_text(text, encoding="utf-8")
    report = project.json("ingest", "long.json", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 1)
    assert listed(project, "--source", "long.json") == [(1, "a row must be a JSON object")]


# -- 6: a number JSON cannot carry is named where it is, and the row is kept as read ------------------
def test_non_finite_numbers_are_named_where_they_are_and_the_row_kept(project, tmp_path):
    lines = ['{"id":"n1","data":{"x":NaN}}', '{"id": "n2", "data": {"s": "NaN 1e400", "y": -Infinity}}',
             '{"id": "n3", "data": {"z": [1.5, 1e400]}}', '{"id": "n4", "data": {}, "prediction": {"label": NaN}}',
             '{"id": "ok", "data": {"s": "Infinity"}}']
    (tmp_path / "n.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = project.json("ingest", "n.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 4)
    rejects = {r["line"]: (r["reason"], r["raw"]) for r in project.json("rejects", "--json")}
    assert rejects == {
        1: ("the number `NaN` at column 24 is not finite, which JSON cannot carry", lines[0]),
        2: ("the number `-Infinity` at column 46 is not finite, which JSON cannot carry", lines[1]),
        3: ("the number `1e400` at column 34 is not finite, which JSON cannot carry", lines[2]),
        4: ("the number `NaN` at column 50 is not finite, which JSON cannot carry", lines[3]),
    }


def test_non_finite_numbers_in_a_json_array_name_line_and_column(project, tmp_path):
    text = '[{"id": "a", "data": {}}, {"id": "b", "data": {"x": NaN}},\n  {"id": "c",\n   "data": {"y": 1e999}}]\n'
    (tmp_path / "n.json").write_text(text, encoding="utf-8")
    report = project.json("ingest", "n.json", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 2)
    rejects = [(r["line"], r["reason"], r["raw"]) for r in reversed(project.json("rejects", "--json"))]
    assert rejects == [
        (1, "the number `NaN` at line 1, column 53 is not finite, which JSON cannot carry",
         '{"id": "b", "data": {"x": NaN}}'),
        (2, "the number `1e999` at line 3, column 18 is not finite, which JSON cannot carry",
         '{"id": "c",\n   "data": {"y": 1e999}}'),
    ]


def test_a_gold_row_with_nan_names_its_column(project, tmp_path):
    (tmp_path / "g.jsonl").write_text('{"id": "G1", "data": {"v": NaN}, "answer": "a"}\n', encoding="utf-8")
    project.ok("gold", "add", "g.jsonl")
    assert [(r["reason"], r["raw"]) for r in project.json("rejects", "--json")] == [
        ("the number `NaN` at column 28 is not finite, which JSON cannot carry",
         '{"id": "G1", "data": {"v": NaN}, "answer": "a"}')]


# -- 7: `rejects` says when it stops at --limit; --limit 0 lists them all ------------------------------
def test_rejects_says_how_many_more_there_are_and_limit_0_lists_all(project, tmp_path):
    (tmp_path / "bad.jsonl").write_text("".join(f'{{"id": "r{n}", "data": 5}}\n' for n in range(60)), encoding="utf-8")
    (tmp_path / "other.jsonl").write_text('{"data": {}}\n', encoding="utf-8")
    assert project.json("ingest", "bad.jsonl", "--json")["rejected"] == 60
    project.json("ingest", "other.jsonl", "--json")

    listed_ = project.ok("rejects")
    assert len(listed_.stdout.splitlines()) == 50
    assert listed_.stderr.strip() == "… 11 more; --limit to see them (--limit 0: all)"
    as_json = project.ok("rejects", "--json")
    assert len(json.loads(as_json.stdout)) == 50 and as_json.stderr.strip() == listed_.stderr.strip()
    by_source = project.ok("rejects", "--source", "bad.jsonl", "--limit", "55")
    assert len(by_source.stdout.splitlines()) == 55
    assert by_source.stderr.strip() == "… 5 more; --limit to see them (--limit 0: all)"

    every = project.ok("rejects", "--limit", "0", "--json")
    assert len(json.loads(every.stdout)) == 61 and every.stderr == ""
    exact = project.ok("rejects", "--source", "bad.jsonl", "--limit", "60")
    assert len(exact.stdout.splitlines()) == 60 and exact.stderr == ""
    assert "--limit 0" in project.ok("rejects", "--help").stdout


# -- 4: top-level keys that a row with `data` leaves out are told, not dropped without a word --------
def test_ignored_top_level_keys_are_warned_about_and_counted(project, tmp_path):
    rows = [{"id": "e1", "label": "x", "final_by": "model", "data": {"t": 1}},
            {"id": "e2", "data": {}},
            {"id": "e3", "label": "y", "data": {}, "predictions": {"label": "y"}},
            {"id": "e4", "text": "no data: its keys are its data"}]
    (tmp_path / "export.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    proc = project.ok("ingest", "export.jsonl", "--json")
    report = json.loads(proc.stdout)
    assert report["ingested"] == 4
    assert report["ignored_keys"] == {"label": 2, "final_by": 1, "predictions": 1}
    where = tmp_path / "export.jsonl"
    assert proc.stderr.splitlines() == [
        "warning: rows with `data` keep only their id, data, category, tags and prediction; other top-level keys "
        "were ignored:",
        f"  `label`: 2 rows, first at {where}:1 (a model's label goes in `prediction.label`)",
        f"  `final_by`: 1 row, first at {where}:1",
        f"  `predictions`: 1 row, first at {where}:3 (did you mean `prediction`?)",
    ]
    assert project.json("show", "e4", "--json")["task"]["data"] == {"text": "no data: its keys are its data"}

    text = project.ok("ingest", "export.jsonl")  # the same warning without --json; nothing new went in
    assert "`label`: 2 rows" in text.stderr
    (tmp_path / "clean.jsonl").write_text('{"id": "c1", "data": {}}\n', encoding="utf-8")
    clean = project.ok("ingest", "clean.jsonl", "--json")
    assert "ignored_keys" not in json.loads(clean.stdout) and clean.stderr == ""


def test_ignored_keys_of_a_json_array_and_a_source_plugin_are_told_too(project, tmp_path):
    (tmp_path / "a.json").write_text('[{"id": "a1", "data": {}},\n {"id": "a2", "data": {}, "Predictions": 1}]',
                                     encoding="utf-8")
    proc = project.ok("ingest", "a.json", "--json")
    assert json.loads(proc.stdout)["ignored_keys"] == {"Predictions": 1}
    assert f"  `Predictions`: 1 row, first at {tmp_path / 'a.json'}:2 (did you mean `prediction`?)" in proc.stderr
    (tmp_path / "s.jsonl").write_text('{"id": "s1", "data": {}, "tag": "x"}\n', encoding="utf-8")
    via = project.ok("ingest", "jsonl:s.jsonl", "--json")
    assert json.loads(via.stdout)["ignored_keys"] == {"tag": 1}
    assert f"  `tag`: 1 row, first at {tmp_path / 's.jsonl'}:1 (did you mean `tags`?)" in via.stderr


def test_rejects_writes_control_characters_of_a_source_name_as_escapes(project, tmp_path):
    """A file name with a line break and an escape sequence: `rejects` printed it raw, so the
    line break made a fake second reject line and a terminal ran the escape."""
    name = "n\x1b[31mred\nl.jsonl"
    (project.folder / name).write_text('{"id": "a"}\nbad\n', encoding="utf-8")
    project.ok("ingest", name)
    lines = project.ok("rejects").stdout.splitlines()
    assert len(lines) == 1, lines
    assert "n\\x1b[31mred\\x0al.jsonl:2: " in lines[0], lines
