"""Input files as people's tools write them.

- A UTF-8 byte-order mark (Excel's "CSV UTF-8", Windows editors) is accepted; bytes
  that are not UTF-8 quarantine their row with its line and where in it, or stop a
  workflow file at file:line:col: never a traceback, never a silent U+FFFD in stored data.
- CSV separated by `;` with decimal commas (Excel where the decimal mark is a comma)
  reads as its author meant.
- A `.json` file holding one array of rows (pretty-printed or not) is read element by
  element, each row at the line where its element starts.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import LEAD, SMALL_WORKFLOW
from rules.source import NotUtf8, decode_text

BOM = b"\xef\xbb\xbf"


def test_decode_text_drops_a_bom_and_points_at_the_first_bad_byte():
    assert decode_text(BOM + "caf\u00e9\n".encode()) == "caf\u00e9\n"
    with pytest.raises(NotUtf8) as err:
        decode_text(b"line one\n\xc3\xa9t\xe9 x\n")
    assert (err.value.line, err.value.col, err.value.byte) == (2, 3, 0xE9)  # columns count characters


@pytest.fixture
def pets(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow())
    return run


def rejects_by_line(run) -> dict[int, dict]:
    return {r["line"]: r for r in run.json("rejects", "--json")}


def test_jsonl_with_a_bom_crlf_and_a_bad_byte_keeps_the_good_rows(pets):
    lines = [
        BOM + b'{"id": "A", "data": {"note": "caf\xc3\xa9"}}\r\n',  # BOM on the first line, CRLF endings
        b'{"id": "B", "data": {"note": "caf\xe9"}}\r\n',  # Latin-1, not UTF-8
        b'{"id": "C", "data": {}}\r\n',
        BOM + b'{"id": "D", "data": {}}\n',  # a second file appended with cat
    ]
    (pets.folder / "t.jsonl").write_bytes(b"".join(lines))
    report = pets.json("ingest", "t.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (3, 1)
    assert pets.json("show", "A", "--json")["task"]["data"] == {"note": "caf\u00e9"}
    bad = rejects_by_line(pets)[2]
    assert bad["reason"] == "not valid UTF-8 at column 34 (byte 0xe9)"
    assert bad["raw"] == '{"id": "B", "data": {"note": "caf\ufffd"}}'  # kept for the lead to see


def test_a_jsonl_line_of_a_byte_order_mark_alone_is_blank(pets):
    (pets.folder / "b.jsonl").write_bytes(BOM + b"\r\n" + b'{"id": "A", "data": {}}\n' + BOM + b"\n")
    report = pets.json("ingest", "b.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 0)  # before: line 1 "invalid JSON at column 1"


def test_excel_csv_with_a_bom_and_a_bad_cell(pets):
    (pets.folder / "t.csv").write_bytes(
        BOM + b"id,caption,prediction_label,prediction_confidence\r\n"
        b"c1,caf\xc3\xa9 cat,cat,0.5\r\n"
        b"c2,caf\xe9 dog,dog,0.5\r\n"
        b'c3,"two\r\nlines",dog,0.5\r\n'
        b"c4,extra,dog,0.5,\xff\r\n")
    report = pets.json("ingest", "t.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 2)
    assert pets.json("show", "c1", "--json")["task"]["data"] == {"caption": "caf\u00e9 cat"}
    assert pets.json("show", "c3", "--json")["task"]["data"] == {"caption": "two\r\nlines"}
    reasons = {line: r["reason"] for line, r in rejects_by_line(pets).items()}
    assert reasons == {3: "`caption`: not valid UTF-8 (byte 0xe9)",
                       6: "a cell past the header: not valid UTF-8 (byte 0xff)"}


def test_a_csv_header_that_is_not_utf8_is_one_reject(pets):
    (pets.folder / "t.csv").write_bytes(b"id,l\xe9gende\nc1,x\n")
    report = pets.json("ingest", "t.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (0, 1)
    assert rejects_by_line(pets)[1]["reason"] == "CSV header: `l\ufffdgende`: not valid UTF-8 (byte 0xe9)"


def test_gold_rows_with_a_bom_and_a_bad_byte(pets):
    (pets.folder / "gold.jsonl").write_bytes(
        BOM + b'{"id": "G1", "answer": "cat"}\n{"id": "G2", "answer": "dog", "data": {"n": "\xff"}}\n')
    assert pets.json("gold", "add", "gold.jsonl", "--json") == {"added": 1, "updated": 0, "unchanged": 0, "rejected": 1,
        "source": str(pets.folder / "gold.jsonl")}
    assert rejects_by_line(pets)[2]["reason"] == "not valid UTF-8 at column 46 (byte 0xff)"


def test_workflow_files_not_in_utf8_are_reported_at_file_line_col(run, tmp_path):
    good = SMALL_WORKFLOW.encode("utf-8")
    (tmp_path / "bom.workflow.yaml").write_bytes(BOM + good)
    (tmp_path / "latin.workflow.yaml").write_bytes(good + b"# r\xe9sum\xe9\n")
    line = good.count(b"\n") + 1

    proc = run("validate", "bom.workflow.yaml", "latin.workflow.yaml")
    assert proc.returncode == 1
    assert "bom.workflow.yaml: ok (pets)" in proc.stdout
    expected = f"latin.workflow.yaml:{line}:4: not valid UTF-8 (byte 0xe9); save the file as UTF-8"
    assert proc.stderr.strip() == expected
    as_json = run("validate", "latin.workflow.yaml", "--json")
    assert json.loads(as_json.stdout)[0]["line"] == line and as_json.returncode == 1

    run.ok("init")
    applied = run("apply", "latin.workflow.yaml")
    assert (applied.returncode, applied.stderr.strip()) == (1, expected)
    assert run.json("apply", "bom.workflow.yaml", "--json")["version"] == 1
    replayed = run("replay", "latin.workflow.yaml")
    assert (replayed.returncode, replayed.stderr.strip()) == (1, expected)


def test_rule_tests_not_in_utf8_are_an_error_not_a_traceback(run, tmp_path):
    (tmp_path / "pets.workflow.yaml").write_text(SMALL_WORKFLOW, encoding="utf-8")
    (tmp_path / "pets.test.yaml").write_bytes(b"cases:\n  - name: caf\xe9\n")
    proc = run("test", "pets.test.yaml")
    assert proc.returncode == 1
    assert "pets.test.yaml:2:14: not valid UTF-8 (byte 0xe9)" in proc.stdout
    assert "6 of 6 rules not exercised" in proc.stdout  # not "all rules exercised" by no case


def test_folder_text_files_not_in_utf8_are_quarantined(pets):
    inbox = pets.folder / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_bytes(BOM + "d\u00e9j\u00e0 vu".encode("utf-8"))
    (inbox / "b.txt").write_bytes(b"first line\nd\xe9j\xe0 vu\n")
    report = pets.json("ingest", "folder:inbox/", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert pets.json("show", "a.txt", "--json")["task"]["data"]["text"] == "d\u00e9j\u00e0 vu"
    reasons = [r["reason"] for r in pets.json("rejects", "--json")]
    assert reasons == ["b.txt: not valid UTF-8 at line 2, column 2 (byte 0xe9)"]


def test_label_studio_export_with_a_bom(pets):
    export = [{"id": 1, "data": {"text": "caf\u00e9"}}]
    (pets.folder / "export.json").write_bytes(BOM + json.dumps(export).encode("utf-8"))
    assert pets.json("ingest", "labelstudio:export.json", "--json")["ingested"] == 1
    (pets.folder / "latin.json").write_bytes(b'[{"id": 2, "data": {"text": "caf\xe9"}}]')
    report = pets.json("ingest", "labelstudio:latin.json", "--json")  # one reject, like any bad input
    assert (report["ingested"], report["rejected"]) == (0, 1)
    [reject] = [r for r in pets.json("rejects", "--json") if r["source"].endswith("latin.json")]
    assert reject["reason"].endswith("not valid UTF-8 at line 1, column 33 (byte 0xe9)")


def test_semicolon_csv_with_decimal_commas_as_european_excel_saves_it(pets):
    (pets.folder / "t.csv").write_bytes(
        BOM + "id;caption;prediction_label;prediction_confidence\r\n"
              's1;"cat; asleep";cat;0,97\r\n'
              "s2;a dog;dog;0,5\r\n"
              "s3;odd;dog;1,2,3\r\n".encode("utf-8"))
    report = pets.json("ingest", "t.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 1)
    s1 = pets.json("show", "s1", "--json")
    assert (s1["task"]["data"], s1["prediction"]["confidence"], s1["task"]["status"]) == (
        {"caption": "cat; asleep"}, 0.97, "done")
    assert pets.json("show", "s2", "--json")["prediction"]["confidence"] == 0.5
    assert rejects_by_line(pets)[4]["reason"] == '`prediction_confidence` "1,2,3" is not a number'


def test_the_csv_separator_is_the_first_one_in_the_header():
    from router.ingest import csv_delimiter

    assert [csv_delimiter(h) for h in ("id,a;b\n", "id;a,b\n", "id\ta;b\n", "id\n")] == [",", ";", "\t", ","]


def test_json_array_elements_stream_across_chunk_boundaries_with_their_lines(monkeypatch):
    import io

    from router import json_array

    rows = [{"id": f"r{i}", "data": {"n": 10 ** i, "text": "two\nlines", "nested": [1, {"a": None}]}}
            for i in range(12)] + [12345678901234567890, "x", [1, 2]]
    text = json.dumps(rows, indent=2)
    starts = [n for n, line in enumerate(text.split("\n"), 1)
              if line.startswith("  ") and line[2] not in " }]"]  # indent 2: where an element opens
    monkeypatch.setattr(json_array, "CHUNK_CHARS", 7)  # elements, numbers and strings all cut by chunk ends
    got = list(json_array.iter_json_array(io.StringIO(text)))
    assert [value for _, _, value in got] == rows
    assert [line for line, _, _ in got] == starts
    assert [json.loads(raw) for _, raw, _ in got] == rows
    assert list(json_array.iter_json_array(io.StringIO(" [ ] "))) == []


@pytest.mark.parametrize("text, where, message", [
    ('[{"id": 1},\n {"id": 2}\n {"id": 3}]', (3, 2), "expected `,` or `]` after an element"),
    ('[{"id": 1},\n', (2, 1), "Expecting value"),
    ('[{"id": 1}', (1, 11), "the array is not closed with `]`"),
    ('[{"id": 1},]', (1, 12), "Expecting value"),
    ('[{"id": 1}] x', (1, 13), "text after the end of the array"),
    ('{"id": 1}', (1, 1), "expected `[` to open the array"),
])
def test_json_array_syntax_errors_say_where(monkeypatch, text, where, message):
    import io

    from router import json_array

    monkeypatch.setattr(json_array, "CHUNK_CHARS", 4)
    with pytest.raises(json_array.ArraySyntaxError) as err:
        list(json_array.iter_json_array(io.StringIO(text)))
    assert (err.value.line, err.value.col) == where
    assert message in str(err.value)


def test_ingest_a_pretty_printed_json_array(pets):
    rows = [{"id": "j1", "data": {"caption": "caf\u00e9"}, "prediction": {"label": "cat", "confidence": 0.97}},
            {"id": "j2", "data": {}}, {"data": {}}, 5, {"id": "j3", "data": {}}]
    text = json.dumps(rows, indent=2, ensure_ascii=False).encode("utf-8")
    (pets.folder / "tasks.json").write_bytes(BOM + text[:-1] + b"\n  {\"id\": \"j4\"}\n  {\"id\": \"j5\"}\n]")
    report = pets.json("ingest", "tasks.json", "--json")
    assert (report["ingested"], report["rejected"]) == (3, 3)
    assert pets.json("show", "j1", "--json")["task"]["status"] == "done"
    reasons = {line: r["reason"] for line, r in rejects_by_line(pets).items()}
    last = text.count(b"\n") + 2
    assert reasons == {
        16: "missing `id`", 19: "a row must be a JSON object",
        last: f"invalid JSON at line {last}, column 3: expected `,` or `]` after an element; "
              "the rest of the file was not read"}
    assert pets.json("ingest", "tasks.json", "--json")["duplicates"] == 3
    (pets.folder / "lines.json").write_text('{"id": "l1", "data": {}}\n', encoding="utf-8")
    assert pets.json("ingest", "lines.json", "--json")["ingested"] == 1  # no `[`: JSON Lines


def test_a_file_that_cannot_be_read_is_named_with_the_reason(pets, monkeypatch):
    from router import ingest

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    (pets.folder / "t.jsonl").write_text('{"id": "a"}\n', encoding="utf-8")
    monkeypatch.setattr(ingest, "open", refuse, raising=False)  # root reads any file: refuse here instead
    with pytest.raises(ingest.LabelyardError) as err:
        list(ingest.read_file(str(pets.folder / "t.jsonl")))
    assert str(err.value) == f"{pets.folder / 't.jsonl'}: Permission denied"
    assert pets("ingest", "nowhere.csv").stderr.strip() == "labelyard: nowhere.csv: no such file"
    (pets.folder / "t.txt").write_text("id\n", encoding="utf-8")
    assert pets("ingest", "t.txt").stderr.strip().endswith("unknown file type; expected .jsonl, .json or .csv (or give --format)")


def test_csv_header_names_are_trimmed_and_a_repeated_one_is_refused(pets):
    (pets.folder / "typed.csv").write_text("id, caption , prediction_label, prediction_confidence\n"
                                           "h1,a cat,cat, 0.97\n", encoding="utf-8")
    assert pets.json("ingest", "typed.csv", "--json")["ingested"] == 1
    h1 = pets.json("show", "h1", "--json")
    assert (h1["task"]["data"], h1["prediction"]["label"], h1["task"]["status"]) == ({"caption": "a cat"}, "cat", "done")
    (pets.folder / "twice.csv").write_text("id,note,score,note\nr1,a,1,b\n", encoding="utf-8")
    report = pets.json("ingest", "twice.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (0, 1)
    rejects = [r for r in pets.json("rejects", "--json") if r["source"].endswith("twice.csv")]
    assert [(r["line"], r["reason"], r["raw"]) for r in rejects] == [(1, "CSV header repeats `note`", "id,note,score,note")]


def test_ingest_from_standard_input_and_with_an_explicit_format(pets):
    lines = '{"id": "p1", "data": {}, "prediction": {"label": "cat", "confidence": 0.97}}\n{"id": "p2", "data": {}}\n{oops\n'
    report = pets.json("ingest", "-", "--format", "jsonl", "--json", input=lines)
    assert (report["ingested"], report["rejected"], report["routed"]) == (2, 1, {"confident": 1, "default": 1})
    assert pets.json("ingest", "-", "--format", "jsonl", "--json", input=lines)["duplicates"] == 2
    stdin_rejects = [(r["source"], r["line"]) for r in pets.json("rejects", "--json")]
    # each read of standard input keeps its own rejects: the same pipe twice, the bad line twice
    assert stdin_rejects == [("<stdin 2025-03-01T09:00:00Z #2>", 3), ("<stdin 2025-03-01T09:00:00Z>", 3)]
    assert pets.json("ingest", "-", "--format", "csv", "--json", input="id;caption\nc1;x\n")["ingested"] == 1
    assert pets.json("ingest", "-", "--format", "json", "--json", input='\n [{"id": "a1"}, {"id": "a2"}]')["ingested"] == 2
    (pets.folder / "export.txt").write_text('{"id": "t1"}\n', encoding="utf-8")
    assert pets.json("ingest", "export.txt", "--format", "jsonl", "--json")["ingested"] == 1

    missing = pets("ingest", "-", input=lines)
    assert (missing.returncode, missing.stderr) == (
        1, "labelyard: reading standard input (`-`) needs --format jsonl, json or csv\n")
    plugin = pets("ingest", "folder:inbox", "--format", "csv")
    assert plugin.returncode == 1 and "a source plugin reads its own format" in plugin.stderr


def test_rejects_list_what_is_still_wrong_after_the_same_input_is_read_again(pets, write_workflow):
    rows = ['{"id": "r1", "data": {}, "prediction": {"label": "cow", "confidence": 0.5}}',
            '{"id": "r2", "data": {}}', "{broken", '{"id": "r4", "data": {}}']
    (pets.folder / "t.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert pets.json("ingest", "t.jsonl", "--json")["rejected"] == 2
    assert sorted(rejects_by_line(pets)) == [1, 3]
    # the lead adds the missing choice and reads the file again: r1 goes in, line 3 is still bad
    pets.ok("apply", write_workflow(SMALL_WORKFLOW.replace("[cat, dog, bird]", "[cat, dog, bird, cow]")))
    again = pets.json("ingest", "t.jsonl", "--json")
    assert (again["ingested"], again["duplicates"], again["rejected"]) == (1, 2, 1)
    assert sorted(rejects_by_line(pets)) == [3]
    assert pets.json("status", "--json")["rejects"] == 1
    assert pets.json("show", "r1", "--json")["task"]["status"] in ("open", "done")


def test_a_source_read_from_its_cursor_keeps_the_rejects_of_lines_it_did_not_read_again(run, tmp_path):
    workflow = SMALL_WORKFLOW + 'sources: [{plugin: jsonl, path: "inbox/*.jsonl"}]\n'
    (tmp_path / "pets.workflow.yaml").write_text(workflow, encoding="utf-8")
    run.ok("init")
    run.ok("apply", "pets.workflow.yaml")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    feed = inbox / "feed.jsonl"
    feed.write_text('{"id": "a1", "data": {}}\n{broken\n', encoding="utf-8")
    run.ok("run")
    with open(feed, "a", encoding="utf-8") as handle:  # the feed grows; the run reads only the new lines
        handle.write('{"id": "a3", "data": {}}\n{"id": "a4", "data": {}, "prediction": {"label": "cow"}}\n')
    run.ok("run")
    assert {r["line"]: r["reason"] for r in run.json("rejects", "--json")} == {
        2: "invalid JSON at column 2: Expecting property name enclosed in double quotes",
        4: '`prediction.label` "cow" is not one of cat, dog, bird'}


def test_gold_rows_fixed_and_added_again_are_no_longer_rejects(pets):
    gold = pets.folder / "gold.jsonl"
    gold.write_text('{"id": "G1", "answer": "cow"}\n{"id": "G2", "answer": "dog"}\n', encoding="utf-8")
    assert pets.json("gold", "add", "gold.jsonl", "--json")["rejected"] == 1
    gold.write_text('{"id": "G1", "answer": "cat"}\n{"id": "G2", "answer": "dog"}\n', encoding="utf-8")
    assert pets.json("gold", "add", "gold.jsonl", "--json") == {"added": 1, "updated": 0, "unchanged": 1, "rejected": 0,
        "source": str(gold)}
    assert pets.json("rejects", "--json") == []


def test_a_lead_clears_rejects_of_one_source_with_an_audit_event(pets):
    (pets.folder / "a.jsonl").write_text('{broken\n{"id": "a2"}\n', encoding="utf-8")
    (pets.folder / "b.jsonl").write_text('{"data": {}}\n', encoding="utf-8")
    pets.ok("ingest", "a.jsonl")
    pets.ok("ingest", "b.jsonl")
    assert len(pets.json("rejects", "--json")) == 2
    assert [r["line"] for r in pets.json("rejects", "--source", "a.jsonl", "--json")] == [1]

    refused = pets("rejects", "--source", "a.jsonl", "--clear", "--as", "ann")
    assert refused.returncode == 1 and "needs the lead role" in refused.stderr
    assert pets.json("rejects", "--source", "a.jsonl", "--clear", "--json") == {"cleared": 1}
    assert [r["source"] for r in pets.json("rejects", "--json")] == [str((pets.folder / "b.jsonl").resolve())]
    db = sqlite3.connect(pets.db)
    events = db.execute("SELECT kind, actor, detail FROM events WHERE kind = 'rejects_cleared'").fetchall()
    db.close()
    assert [(kind, actor, json.loads(detail)) for kind, actor, detail in events] == [
        ("rejects_cleared", LEAD, {"source": str((pets.folder / "a.jsonl").resolve()), "rows": 1})]
    assert pets.json("rejects", "--clear", "--json") == {"cleared": 1}
    assert pets.json("status", "--json")["rejects"] == 0


def test_csv_long_cells_go_in_and_broken_quoting_quarantines_only_its_record(pets):
    long_text = "word " * 60_000  # 300 kB: past the csv module's default 128 KiB cell limit
    (pets.folder / "t.csv").write_text(
        "id,caption\n"
        f"long,{long_text}\n"
        "\n"
        'two,"first line\nsecond line"\n'
        'bad,"quoted"tail\n'
        "after,still read\n"
        'open,"never closed\n'
        "swallowed,by the open quote\n", encoding="utf-8")
    report = pets.json("ingest", "t.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (3, 2)
    assert pets.json("show", "long", "--json")["task"]["data"]["caption"] == long_text
    assert pets.json("show", "two", "--json")["task"]["data"]["caption"] == "first line\nsecond line"
    assert pets.json("show", "after", "--json")["task"]["status"] == "open"
    reasons = {line: r["reason"] for line, r in rejects_by_line(pets).items()}
    assert reasons == {6: "bad CSV: ',' expected after '\"'",
                       8: "bad CSV: unexpected end of data (the record runs to line 9)"}


def test_two_reads_of_standard_input_at_the_same_moment_keep_their_own_rejects(pets):
    """Both pipes name their read before either has a reject stored: the name is reserved, not guessed."""
    import subprocess
    import time

    procs = [subprocess.Popen([*pets.command, "ingest", "-", "--format", "jsonl", "--json"], cwd=pets.folder,
                              env=pets.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        proc.stdin.write("{bad\n")
        proc.stdin.flush()
    deadline = time.monotonic() + 60  # both have named their read once both names are reserved
    while time.monotonic() < deadline:
        with sqlite3.connect(pets.db) as conn:
            if conn.execute("SELECT count(*) FROM cursors WHERE name LIKE 'stream:%'").fetchone()[0] == 2:
                break
        time.sleep(0.05)
    outputs = [proc.communicate('{"id": "s1", "data": {}}\n', timeout=60) for proc in procs]
    assert [json.loads(out)["rejected"] for out, _ in outputs] == [1, 1]
    sources = sorted(r["source"] for r in pets.json("rejects", "--json"))
    assert sources == ["<stdin 2025-03-01T09:00:00Z #2>", "<stdin 2025-03-01T09:00:00Z>"]
