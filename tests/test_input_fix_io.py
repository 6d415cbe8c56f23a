"""Input that a tester found misread, kept or thrown away.

- A file fixed and ingested again leaves no reject behind on lines no row starts on: a CSV
  header, bad lines after the last good row, text after a JSON array's `]`, a file left
  with no rows at all.
- A `.json` array element nested too deeply to read is one reject; the rest is read.
- One large element of a `.json` array is decoded a few times, not once per chunk.
- `ingest --json` names the source its rejects are kept under.
- A CSV `prediction_confidence` is an ASCII number, as a `number` label cell is.

Real `labelyard` subprocesses on real files and a real database.
"""

from __future__ import annotations

import io
import json

import pytest

WORKFLOW = """\
workflow: t
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: default, do: {annotate: q}}
"""
STAMP = "2025-03-01T09:00:00Z"  # conftest's LABELYARD_NOW


@pytest.fixture
def project(run, tmp_path):
    """``init`` done and WORKFLOW applied."""
    run.ok("init")
    (tmp_path / "t.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("apply", "t.workflow.yaml")
    return run


def reasons(run, *args: str) -> dict[int, str]:
    """``line -> reason`` of the rejects ``labelyard rejects ARGS`` lists."""
    return {r["line"]: r["reason"] for r in run.json("rejects", *args, "--json")}


def counts(report: dict) -> tuple[int, int]:
    return report["ingested"], report["rejected"]


# -- 1: a fixed file leaves no reject on lines no row starts on ------------------------------------
def test_a_fixed_csv_header_leaves_rejects_with_or_without_rows(project, tmp_path):
    (tmp_path / "t.csv").write_text("ID,text\nr1,x\nr2,y\n", encoding="utf-8")
    assert counts(project.json("ingest", "t.csv", "--json")) == (0, 1)
    assert reasons(project, "--source", "t.csv") == {1: "CSV header has no `id` column"}
    (tmp_path / "t.csv").write_text("id,text\nr1,x\nr2,y\n", encoding="utf-8")
    assert counts(project.json("ingest", "t.csv", "--json")) == (2, 0)
    assert reasons(project) == {}
    assert project.json("status", "--json")["rejects"] == 0

    (tmp_path / "empty.csv").write_text("ID,text\n", encoding="utf-8")  # a header and no rows
    assert counts(project.json("ingest", "empty.csv", "--json")) == (0, 1)
    (tmp_path / "empty.csv").write_text("id,text\n", encoding="utf-8")
    assert counts(project.json("ingest", "empty.csv", "--json")) == (0, 0)
    assert reasons(project) == {}
    assert project.json("status", "--json")["rejects"] == 0


def test_bad_lines_removed_from_the_end_of_a_jsonl_file_leave_rejects(project, tmp_path):
    (tmp_path / "t.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n{bad\n\n{"id": "c", "prediction": 5}\n',
                                      encoding="utf-8")
    assert counts(project.json("ingest", "t.jsonl", "--json")) == (2, 2)
    assert sorted(reasons(project)) == [3, 5]
    (tmp_path / "t.jsonl").write_text('{"id": "a"}\n{"id": "b"}\n', encoding="utf-8")
    assert project.json("ingest", "t.jsonl", "--json")["duplicates"] == 2
    assert reasons(project) == {}

    # every row bad, then the file emptied: nothing is read, and nothing stays rejected
    (tmp_path / "bad.jsonl").write_text("{bad\n{worse\n", encoding="utf-8")
    assert counts(project.json("ingest", "bad.jsonl", "--json")) == (0, 2)
    (tmp_path / "bad.jsonl").write_text("\n", encoding="utf-8")
    assert counts(project.json("ingest", "bad.jsonl", "--json")) == (0, 0)
    assert reasons(project) == {}
    assert project.json("status", "--json")["rejects"] == 0


def test_text_after_a_json_array_removed_leaves_its_reject(project, tmp_path):
    (tmp_path / "t.json").write_text('[\n  {"id": "j1"},\n  {"id": "j2"}\n]\ntrailing\n', encoding="utf-8")
    assert counts(project.json("ingest", "t.json", "--json")) == (2, 1)
    assert reasons(project) == {5: "invalid JSON at line 5, column 1: text after the end of the array; "
                                   "the rest of the file was not read"}
    (tmp_path / "t.json").write_text('[\n  {"id": "j1"},\n  {"id": "j2"}\n]\n', encoding="utf-8")
    assert project.json("ingest", "t.json", "--json")["duplicates"] == 2
    assert reasons(project) == {}


def test_a_file_ending_with_a_full_batch_clears_the_lines_after_it(project, tmp_path):
    from router.engine import INGEST_FIRST_BATCH_ROWS as FULL  # the first batch's size

    good = "".join(json.dumps({"id": f"r{i}"}) + "\n" for i in range(FULL))
    (tmp_path / "t.jsonl").write_text(good + "{bad\n{worse\n", encoding="utf-8")
    assert counts(project.json("ingest", "t.jsonl", "--json")) == (FULL, 2)
    (tmp_path / "t.jsonl").write_text(good, encoding="utf-8")  # its last batch is full: nothing follows it
    assert project.json("ingest", "t.jsonl", "--json")["duplicates"] == FULL
    assert reasons(project) == {}


def test_rejects_of_another_file_and_of_lines_still_bad_stay(project, tmp_path):
    (tmp_path / "other.jsonl").write_text("{bad\n", encoding="utf-8")
    (tmp_path / "t.jsonl").write_text('{bad\n{"id": "a"}\n{worse\n', encoding="utf-8")
    project.ok("ingest", "other.jsonl")
    project.ok("ingest", "t.jsonl")
    (tmp_path / "t.jsonl").write_text('{bad\n{"id": "a"}\n', encoding="utf-8")
    project.ok("ingest", "t.jsonl")
    assert sorted(r["source"].rsplit("/", 1)[1] + f":{r['line']}" for r in project.json("rejects", "--json")) == [
        "other.jsonl:1", "t.jsonl:1"]


# -- 2: an element nested too deeply is one reject; the rest of the array is read --------------------
DEEP = "[" * 2000 + "]" * 2000  # valid JSON, nested past Python's recursion limit


def test_an_element_nested_too_deeply_is_one_reject_in_a_json_array_as_in_json_lines(project, tmp_path):
    (tmp_path / "t.json").write_text('[\n  {"id": "j1"},\n  ' + DEEP + ',\n  {"id": "j3", "data": {"s": "]]}"}}\n]\n',
                                     encoding="utf-8")
    assert counts(project.json("ingest", "t.json", "--json")) == (2, 1)
    assert reasons(project, "--source", "t.json") == {3: "an element at line 3, column 3 is nested too deeply to read"}
    assert project.json("show", "j3", "--json")["task"]["data"] == {"s": "]]}"}

    (tmp_path / "t.jsonl").write_text('{"id": "l1"}\n' + DEEP + '\n{"id": "l3"}\n', encoding="utf-8")
    assert counts(project.json("ingest", "t.jsonl", "--json")) == (2, 1)
    assert reasons(project, "--source", "t.jsonl") == {2: "JSON nested too deeply"}


def test_the_end_of_an_element_nested_too_deeply_is_found_across_chunks(monkeypatch):
    from router import json_array

    inner = '{"s": "a \\" ] } [ string", "t": "\\\\"}'  # brackets and an escaped quote inside strings
    deep = "[" * 1500 + inner + "]" * 1500
    monkeypatch.setattr(json_array, "CHUNK_CHARS", 5)
    got = list(json_array.iter_json_array(io.StringIO(f'[{deep},\n{{"id": "after"}}, {deep}]')))
    assert [line for line, _, _ in got] == [1, 2, 2]
    assert [raw for _, raw, _ in got] == [deep, '{"id": "after"}', deep]
    assert [str(value) for _, _, value in got[::2]] == [
        "an element at line 1, column 2 is nested too deeply to read",
        "an element at line 2, column 18 is nested too deeply to read"]
    assert got[1][2] == {"id": "after"}

    for text, where, message in [("[" + "[" * 1500 + "}", (1, 1502), "expected `]`, not `}`"),
                                 ("[" + "[" * 1500, (1, 1502), "the array is not closed with `]`"),
                                 ("[" + "[" * 1500 + '"open', (1, 1502), "Unterminated string")]:
        with pytest.raises(json_array.ArraySyntaxError) as err:
            list(json_array.iter_json_array(io.StringIO(text)))
        assert ((err.value.line, err.value.col), message in str(err.value)) == (where, True), str(err.value)


# -- 3: a large element is decoded a few times, not once per chunk -----------------------------------
class CountingReads(io.StringIO):
    """A text file that counts the reads asked of it."""

    reads = 0

    def read(self, size=-1):
        self.reads += 1
        return super().read(size)


@pytest.mark.parametrize("element", [
    '{"id": "big", "data": {"text": "' + "x" * 200_000 + '"}}',
    '{"id": "big", "data": {"items": [' + ", ".join(['{"k": "v"}'] * 20_000) + "]}}",
    "1" + "0" * 4000,  # a number, cut by every chunk
], ids=["string", "objects", "number"])
def test_a_large_element_is_decoded_a_few_times_not_once_per_chunk(monkeypatch, element):
    from router import json_array

    decoded: list[int] = []

    class Decoder(json.JSONDecoder):
        def raw_decode(self, s, idx=0):
            decoded.append(len(s) - idx)
            return super().raw_decode(s, idx)

    monkeypatch.setattr(json_array, "CHUNK_CHARS", 64)
    monkeypatch.setattr(json_array, "json", type("json", (), {"JSONDecoder": Decoder,
                                                              "JSONDecodeError": json.JSONDecodeError}))
    handle = CountingReads(f'[{{"id": "a"}}, {element}, {{"id": "b"}}]')
    got = list(json_array.iter_json_array(handle))
    assert [raw for _, raw, _ in got] == ['{"id": "a"}', element, '{"id": "b"}']
    assert got[1][2] == json.loads(element)
    # each attempt reads as much again as it had: about log2(size / chunk) attempts and reads,
    # and all of them together decode a few times the element (once per chunk: thousands, quadratic)
    assert len(decoded) <= 20 and handle.reads <= 20, (len(decoded), handle.reads)
    assert sum(decoded) <= 4 * len(element) + 1000


# -- 4: `ingest --json` names the source its rejects are kept under ---------------------------------
def test_ingest_json_names_its_source_so_a_script_can_list_that_reads_rejects(project, tmp_path):
    first = project.json("ingest", "-", "--format", "jsonl", "--json", input='{"id": "i1"}\n{bad\n')
    second = project.json("ingest", "-", "--format", "jsonl", "--json", input='{"id": "i2"}\n{worse\n')
    assert (first["source"], second["source"]) == (f"<stdin {STAMP}>", f"<stdin {STAMP} #2>")
    assert {k: v for k, v in first.items() if k != "source"} == {
        "ingested": 1, "duplicates": 0, "rejected": 1, "routed": {"default": 1}}
    assert [r["raw"] for r in project.json("rejects", "--source", second["source"], "--json")] == ["{worse"]
    assert project.json("rejects", "--source", first["source"], "--clear", "--json") == {"cleared": 1}

    (tmp_path / "t.jsonl").write_text('{"id": "f1"}\n', encoding="utf-8")
    assert project.json("ingest", "t.jsonl", "--json")["source"] == str(tmp_path / "t.jsonl")  # no rejects: still named


def test_the_rejects_hint_quotes_the_database_path(run, tmp_path):
    folder = tmp_path / "my project"
    folder.mkdir()
    env = {"LABELYARD_DB": str(folder / "l.db")}
    run.ok("init", env=env)
    (tmp_path / "t.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("apply", "t.workflow.yaml", env=env)
    proc = run.ok("ingest", "-", "--format", "jsonl", input='{bad\n', env=env)
    assert proc.stderr == (f"rejected rows are kept with their reasons: labelyard rejects --db '{folder / 'l.db'}' "
                           f"--source '<stdin {STAMP}>'\n")


# -- 6: a CSV confidence is a number as a spreadsheet writes one -----------------------------------
def test_a_csv_confidence_is_ascii_digits_without_underscores(project, tmp_path):
    (tmp_path / "c.csv").write_text(
        "id;prediction_label;prediction_confidence\n"
        "ok1;a;0.95\n"
        "ok2;a; 0,85 \n"  # a decimal comma, spaces around
        "ok3;a;1e-1\n"
        "u1;a;0.9_5\n"  # float() takes underscores: 0.95
        "u2;a;0_5\n"  # 5.0, then 'outside 0..1'
        "ar;a;\u0660.\u0665\n"  # Arabic-Indic digits: float() reads 0.5
        "nn;a;nan\n"
        "hi;a;1.5\n", encoding="utf-8")
    assert counts(project.json("ingest", "c.csv", "--json")) == (3, 5)
    confidences = {ident: project.json("show", ident, "--json")["prediction"]["confidence"]
                   for ident in ("ok1", "ok2", "ok3")}
    assert confidences == {"ok1": 0.95, "ok2": 0.85, "ok3": 0.1}
    assert reasons(project, "--source", "c.csv") == {
        5: '`prediction_confidence` "0.9_5" is not a number',
        6: '`prediction_confidence` "0_5" is not a number',
        7: '`prediction_confidence` "\u0660.\u0665" is not a number',
        8: '`prediction_confidence` "nan" is not a number',
        9: "`prediction.confidence` 1.5 is outside 0..1"}

    rows = [{"id": "j1", "prediction": {"label": "a", "confidence": 0.95}},
            {"id": "j2", "prediction": {"label": "a", "confidence": 0}},
            {"id": "j3", "prediction": {"label": "a", "confidence": 1e-1}}]
    (tmp_path / "j.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert counts(project.json("ingest", "j.jsonl", "--json")) == (3, 0)  # JSON numbers as before
    assert [project.json("show", r["id"], "--json")["prediction"]["confidence"] for r in rows] == [0.95, 0, 0.1]


def test_a_csv_number_label_is_ascii_digits_too(run, tmp_path):
    run.ok("init")
    (tmp_path / "n.workflow.yaml").write_text(WORKFLOW.replace("{type: choice, choices: [a, b]}", "{type: number}"),
                                              encoding="utf-8")
    run.ok("apply", "n.workflow.yaml")
    (tmp_path / "n.csv").write_text("id,prediction_label\nn1,5\nn2,\u0665\nn3,1_0\n", encoding="utf-8")
    assert counts(run.json("ingest", "n.csv", "--json")) == (1, 2)
    assert reasons(run) == {3: '`prediction_label` "\u0665" is not a finite number',
                            4: '`prediction_label` "1_0" is not a finite number'}


# -- a stream that pauses ------------------------------------------------------------------------
def test_rows_a_stream_gave_before_it_paused_are_committed_while_it_waits(project, tmp_path):
    """`tail -f … | labelyard ingest -`: what came before a pause was kept until the next row
    came, so a kill meanwhile lost rows a stream cannot give again."""
    import sqlite3
    import subprocess
    import time

    from process_support import HANG_GUARD_S

    ingest = subprocess.Popen([*project.command, "ingest", "-", "--format", "jsonl", "--json"], cwd=project.folder,
                              env=project.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        ingest.stdin.write("".join(json.dumps({"id": f"T{n}", "data": {}}) + "\n" for n in range(100)))
        ingest.stdin.flush()  # and the stream stays open: no row more, no end
        deadline = time.monotonic() + HANG_GUARD_S  # a guard against a hang, not a timing assertion
        stored = 0
        while stored < 100:
            assert ingest.poll() is None and time.monotonic() < deadline, "the 100 rows were never committed"
            conn = sqlite3.connect(project.db)
            stored = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
            conn.close()
        ingest.stdin.write(json.dumps({"id": "T100", "data": {}}) + "\n")
        out, err = ingest.communicate(timeout=HANG_GUARD_S)
    finally:
        if ingest.poll() is None:
            ingest.kill()
            ingest.wait()
    assert ingest.returncode == 0, err
    assert json.loads(out)["ingested"] == 101
