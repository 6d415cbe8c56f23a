"""JSON and JSON Lines input that used to stop an ingest, lose rejects or be misread.

- An integer longer than Python converts (4300 digits) quarantines its row alone, in
  `ingest` (.jsonl, .json), the `jsonl` source under `run`, and `gold add`.
- Each read of standard input or a pipe keeps its rejects under a name of its own.
- A `.json` stream's leading whitespace is skipped however it arrives before `[` decides.
- Columns of JSON Lines errors point at the problem, not past the line's end; a lone
  surrogate escape is named as such.
- Lines ended by a lone CR: `ingest` and the `jsonl` source quarantine them alike, saying so.
- A pipe (`<(cmd)`, `/dev/fd/N`, a fifo) is read as a stream; a directory is named as one.
- `rejects --source FILE` finds a file's rejects after the file was deleted.

Real `labelyard` subprocesses on real files and a real database.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import threading

import pytest

from conftest import LEAD

WORKFLOW = """\
workflow: t
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q}}
"""
STAMP = "2025-03-01T09:00:00Z"  # conftest's LABELYARD_NOW
LONG = "1" * 4301  # one digit more than Python converts to an integer
TOO_LONG = "a number with more than 4300 digits at {where} is too long to read (give it as text)"


@pytest.fixture
def project(run, tmp_path):
    """``init`` done and WORKFLOW applied, plus ``sources`` when given to ``run.use(sources)``."""
    run.ok("init")

    def use(extra: str = "") -> None:
        (tmp_path / "t.workflow.yaml").write_text(WORKFLOW + extra, encoding="utf-8")
        run.ok("apply", "t.workflow.yaml")

    use()
    run.use = use
    return run


def reasons(run, *args: str) -> dict[tuple[str, int], str]:
    """``(source, line) -> reason`` of the rejects ``labelyard rejects ARGS`` lists."""
    return {(r["source"], r["line"]): r["reason"] for r in run.json("rejects", *args, "--json")}


def counts(report: dict) -> tuple[int, int]:
    return report["ingested"], report["rejected"]


# -- 1: an integer longer than Python converts ---------------------------------------------------
def test_a_too_long_integer_quarantines_its_row_alone_in_jsonl_and_json_files(project, tmp_path):
    (tmp_path / "t.jsonl").write_text('{"id": "g1"}\n{"id": "g2", "data": {"n": ' + LONG + '}}\n{"id": "g3"}\n',
                                      encoding="utf-8")
    assert counts(project.json("ingest", "t.jsonl", "--json")) == (2, 1)
    assert reasons(project) == {(str(tmp_path / "t.jsonl"), 2): TOO_LONG.format(where="column 28")}

    (tmp_path / "t.json").write_text('[\n  {"id": "j1"},\n  {"id": "j2",\n   "data": {"n": -' + LONG + '}},\n'
                                     '  {"id": "j3", "data": {"text": "' + LONG + '", "x": 1.' + LONG + '}}\n]\n',
                                     encoding="utf-8")
    assert counts(project.json("ingest", "t.json", "--json")) == (2, 1)  # a long string or fraction is fine
    assert reasons(project, "--source", "t.json") == {
        (str(tmp_path / "t.json"), 3): TOO_LONG.format(where="line 4, column 18")}  # its minus sign
    assert project.json("show", "j3", "--json")["task"]["data"]["text"] == LONG


def test_a_prediction_confidence_too_large_for_a_float_is_outside_0_to_1(project, tmp_path):
    huge = "1" + "0" * 400  # an integer math.isnan could not take
    (tmp_path / "t.jsonl").write_text('{"id": "c1", "prediction": {"label": "a", "confidence": ' + huge + '}}\n'
                                      '{"id": "c2"}\n', encoding="utf-8")
    assert counts(project.json("ingest", "t.jsonl", "--json")) == (1, 1)
    assert list(reasons(project).values()) == [f"`prediction.confidence` {huge} is outside 0..1"]


def test_the_jsonl_source_quarantines_a_too_long_integer_and_reads_on(project, tmp_path):
    project.use('sources: [{plugin: jsonl, path: "inbox/*.jsonl"}]\n')
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.jsonl").write_text('{"id": "s1", "data": {"n": ' + LONG + '}}\n{"id": "s2"}\n', encoding="utf-8")
    (inbox / "b.jsonl").write_text('{"id": "s3"}\n{"id": "s4", "n": ' + LONG + '}', encoding="utf-8")  # no newline
    report = project.json("run", "--json")
    assert report["failures"] == []
    assert counts(report["sources"]["jsonl:inbox/*.jsonl"]) == (2, 2)
    assert reasons(project) == {(str(inbox / "a.jsonl"), 1): TOO_LONG.format(where="column 28"),
                                (str(inbox / "b.jsonl"), 2): TOO_LONG.format(where="column 19")}
    assert counts(project.json("run", "--json")["sources"]["jsonl:inbox/*.jsonl"]) == (0, 0)  # nothing left


def test_gold_add_quarantines_a_too_long_integer_and_a_queue_that_is_not_text(project, tmp_path):
    (tmp_path / "gold.jsonl").write_text('{"id": "G1", "answer": "a"}\n'
                                         '{"id": "G2", "answer": "b", "data": {"n": ' + LONG + '}}\n'
                                         '{"id": "G3", "answer": "b", "queue": ["q"]}\n', encoding="utf-8")
    assert project.json("gold", "add", "gold.jsonl", "--json") == {
        "added": 1, "updated": 0, "unchanged": 0, "rejected": 2,
        "source": str(tmp_path / "gold.jsonl")}
    source = str(tmp_path / "gold.jsonl")
    assert reasons(project) == {(source, 2): TOO_LONG.format(where="column 43"),
                                (source, 3): "`queue` must be text, the name of a queue"}


# -- 2: reads of standard input keep their own rejects -----------------------------------------
def test_each_read_of_standard_input_keeps_its_rejects_under_its_own_name(project):
    first = project.json("ingest", "-", "--format", "jsonl", "--json", input='{"id": "i1"}\n{bad one\n')
    second = project("ingest", "-", "--format", "jsonl", input='{"id": "i2"}\n{bad two\n{"id": "i3"}\n')
    third = project.json("ingest", "-", "--format", "jsonl", "--json", input='{"id": "i4"}\n{"id": "i5"}\n')
    assert (counts(first), second.returncode, counts(third)) == ((1, 1), 0, (2, 0))
    one, two = f"<stdin {STAMP}>", f"<stdin {STAMP} #2>"  # the same second (LABELYARD_NOW): numbered
    assert set(reasons(project)) == {(one, 2), (two, 2)}  # the second read replaced nothing of the first's
    assert f"labelyard rejects --db {project.db} --source '{two}'" in second.stderr
    assert [r["raw"] for r in project.json("rejects", "--source", one, "--json")] == ["{bad one"]

    assert project.json("rejects", "--source", two, "--clear", "--json") == {"cleared": 1}
    assert list(reasons(project)) == [(one, 2)]
    db = sqlite3.connect(project.db)
    cleared = db.execute("SELECT actor, detail FROM events WHERE kind = 'rejects_cleared'").fetchall()
    db.close()
    assert [(actor, json.loads(detail)) for actor, detail in cleared] == [(LEAD, {"source": two, "rows": 1})]


# -- 3: leading whitespace before the `[` of a .json stream ---------------------------------------
class Trickle(io.RawIOBase):
    """A pipe's reading end: each read returns at most ``size`` bytes, whatever was asked."""

    def __init__(self, data: bytes, size: int):
        self.data, self.size = data, size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(self.size, len(buffer), len(self.data))
        buffer[:n], self.data = self.data[:n], self.data[n:]
        return n


@pytest.mark.parametrize("size", [1, 2, 5, 1 << 20])
def test_a_json_stream_is_an_array_when_its_first_text_is_a_bracket_however_it_arrives(size):
    from router.ingest import read_stream

    def read(data: bytes) -> list[tuple[int, str]]:
        rows = read_stream(io.BufferedReader(Trickle(data, size)), "json", ("a", "b"))
        return [(r.line, getattr(r, "external_id", None) or r.reason) for r in rows]

    assert read(b'\n[\n{"id":"slow1"},\n{"id":"slow2"}\n]\n') == [(3, "slow1"), (4, "slow2")]
    assert read(b"\xef\xbb\xbf \r\n\t[{\"id\": 1},\n {\"id\": 2}]") == [(2, "1"), (3, "2")]
    assert read(b'\n\n{"id": "l1"}\n  {oops\n') == [(3, "l1"), (4, "invalid JSON at column 4: Expecting "
                                                              "property name enclosed in double quotes")]
    assert read(b" \n ") == [] and read(b"") == []


def test_a_json_array_after_more_than_a_buffer_of_whitespace_on_standard_input(project):
    report = project.json("ingest", "-", "--format", "json", "--json",
                          input="\n" * 5000 + " " * 5000 + '[{"id": "w1"},\n {"id": "w2"}]\n')
    assert counts(report) == (2, 0)
    assert project.json("show", "w2", "--json")["task"]["external_id"] == "w2"


# -- 4: columns of JSON Lines errors --------------------------------------------------------------
def test_jsonl_errors_name_the_column_of_the_problem(project, tmp_path):
    lines = ['{"id":"v1",\n', '{"id":"v2",\r\n', '{"id":"x","data":{"t":"\\udc80"}}\n',
             '{"id":"y","data":{"t":"ok \\ud83d\\ude00 \\\\udc80"}}\n', '{"id":"z","data":{"t":"\\ud83d!"}}\n']
    (tmp_path / "t.jsonl").write_bytes("".join(lines).encode("ascii"))
    assert counts(project.json("ingest", "t.jsonl", "--json")) == (1, 4)
    expected = "invalid JSON at column 12: Expecting property name enclosed in double quotes"
    lone = "the lone UTF-16 surrogate escape `{}` at {} is not text (a surrogate escape needs its pair)"
    assert {line: reason for (_, line), reason in reasons(project).items()} == {
        1: expected, 2: expected, 3: lone.format("\\udc80", "column 24"), 5: lone.format("\\ud83d", "column 24")}
    assert project.json("show", "y", "--json")["task"]["data"] == {"t": "ok \U0001F600 \\udc80"}

    (tmp_path / "t.json").write_text('[{"id": "j1"},\n {"id": "j2", "data": {"t": "\\udfff"}}]', encoding="ascii")
    assert counts(project.json("ingest", "t.json", "--json")) == (1, 1)
    assert reasons(project, "--source", "t.json") == {
        (str(tmp_path / "t.json"), 2): lone.format("\\udfff", "line 2, column 30")}


# -- 5: lines ended by a lone CR -----------------------------------------------------------------
def test_lone_cr_line_ends_are_quarantined_alike_by_ingest_and_the_jsonl_source(project, tmp_path):
    project.use('sources: [{plugin: jsonl, path: "inbox/*.jsonl"}]\n')
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "cr.jsonl").write_bytes(b'{"id":"cr1"}\r{"id":"cr2"}\r')
    (inbox / "one.jsonl").write_bytes(b'{"id":"cr3"}\r')  # one whole object: read, as before
    report = project.json("run", "--json")["sources"]["jsonl:inbox/*.jsonl"]
    assert counts(report) == (1, 1)  # not left waiting for a newline that never comes
    reason = ("invalid JSON at column 14: Extra data after a lone carriage return (CR): are the lines ended "
              "by CR alone? JSON Lines end each line with \\n or \\r\\n")
    assert reasons(project) == {(str(inbox / "cr.jsonl"), 1): reason}

    (tmp_path / "cr.jsonl").write_bytes(b'{"id":"cr1"}\r{"id":"cr2"}\r')
    assert counts(project.json("ingest", "cr.jsonl", "--json")) == (0, 1)
    assert reasons(project, "--source", "cr.jsonl") == {(str(tmp_path / "cr.jsonl"), 1): reason}


# -- 6: pipes and directories given as files ------------------------------------------------------
def test_a_pipe_given_as_a_path_is_read_as_a_stream(project, tmp_path):
    reading, writing = os.pipe()
    os.write(writing, b'{"id": "p1"}\n{bad\n')  # what `<(printf ...)` hands over: /dev/fd/N
    os.close(writing)
    try:
        proc = subprocess.run([*project.command, "ingest", f"/dev/fd/{reading}", "--format", "jsonl", "--json"],
                              pass_fds=(reading,), capture_output=True, text=True, env=project.env,
                              cwd=tmp_path, timeout=120)
    finally:
        os.close(reading)
    assert "Traceback" not in proc.stderr and proc.returncode == 0, proc.stderr
    assert counts(json.loads(proc.stdout)) == (1, 1)
    assert list(reasons(project)) == [(f"</dev/fd/{reading} {STAMP}>", 2)]

    fifo = tmp_path / "feed.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(b'{"id": "f1"}\n',), daemon=True)
    writer.start()  # opening a fifo waits for the other end: the ingest below
    assert counts(project.json("ingest", "feed.fifo", "--format", "jsonl", "--json")) == (1, 0)
    writer.join()

    (tmp_path / "inbox.jsonl").mkdir()
    refused = project("ingest", "inbox.jsonl")
    assert (refused.returncode, refused.stderr) == (1, "labelyard: inbox.jsonl: is a directory, not a file of rows\n")


# -- 7: rejects of a file deleted since ------------------------------------------------------------
def test_rejects_of_a_deleted_file_are_found_and_cleared_by_its_name(project, tmp_path):
    (tmp_path / "gone.jsonl").write_text('{broken\n{"id": "k1"}\n', encoding="utf-8")
    (tmp_path / "kept.jsonl").write_text("{also broken\n", encoding="utf-8")
    project.ok("ingest", "gone.jsonl")
    project.ok("ingest", "kept.jsonl")
    (tmp_path / "gone.jsonl").unlink()
    gone = str(tmp_path / "gone.jsonl")
    assert list(reasons(project, "--source", "gone.jsonl")) == [(gone, 1)]
    assert project.json("rejects", "--source", "gone.jsonl", "--clear", "--json") == {"cleared": 1}
    assert list(reasons(project)) == [(str(tmp_path / "kept.jsonl"), 1)]
