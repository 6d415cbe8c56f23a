"""CSV files as people and tools write them: rows still being written, headers the csv module
cannot read, blank lines and stray carriage returns, columns that are data.

Real ``labelyard`` subprocesses on real files and a real database. The workflow is the
tester's: choices a and b, predictions of at least 0.9 accepted, the rest annotated in q.
"""

from __future__ import annotations

import json

import pytest

WORKFLOW = """\
workflow: t
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q}}
on_quorum: [{name: acc, do: accept}]
"""


@pytest.fixture
def project(run, tmp_path):
    """``init`` done and WORKFLOW applied, with ``extra`` lines (``sources:``) after it."""
    run.ok("init")

    def use(extra: str = "") -> None:
        (tmp_path / "t.workflow.yaml").write_text(WORKFLOW + extra, encoding="utf-8")
        run.ok("apply", "t.workflow.yaml")

    run.use = use
    use()
    return run


def task(run, ident: str) -> dict:
    return run.json("show", ident, "--json")["task"]


def rejects(run) -> list[tuple[int, str, str | None]]:
    return sorted((r["line"], r["reason"], r["raw"]) for r in run.json("rejects", "--json"))


# -- 1: the csv source and a last row still being written ---------------------------------------
def test_the_csv_source_waits_for_a_half_written_last_row(project, tmp_path):
    project.use('sources: [{plugin: csv, path: "inbox/*.csv"}]\n')
    (tmp_path / "inbox").mkdir()
    feed = tmp_path / "inbox" / "feed.csv"
    feed.write_bytes(b"id,text,prediction_label,prediction_confidence\nc1,full,a,0.95\nc2,second text that is be")
    first = project.json("run", "--json")["sources"]["csv:inbox/*.csv"]
    assert (first["ingested"], first["rejected"]) == (1, 0)
    assert project("show", "c2").returncode == 1  # not a task yet: the row waits for its line break
    with open(feed, "ab") as handle:
        handle.write(b"ing written slowly,b,0.97\n")
    second = project.json("run", "--json")["sources"]["csv:inbox/*.csv"]
    assert (second["ingested"], second["duplicates"], second["rejected"]) == (1, 1, 0)
    c2 = task(project, "c2")
    assert c2["data"] == {"text": "second text that is being written slowly"}
    assert (c2["pred_label"], c2["pred_confidence"], c2["final_label"]) == ("b", 0.97, "b")


def test_the_csv_source_waits_for_a_quoted_cell_cut_mid_record(project, tmp_path):
    project.use('sources: [{plugin: csv, path: "inbox/*.csv"}]\n')
    (tmp_path / "inbox").mkdir()
    feed = tmp_path / "inbox" / "feed.csv"
    feed.write_bytes(b'id,text\nc1,one\nc2,"two lines:\nthe sec')
    first = project.json("run", "--json")["sources"]["csv:inbox/*.csv"]
    assert (first["ingested"], first["rejected"]) == (1, 0)  # no "bad CSV" reject for a record not yet written
    with open(feed, "ab") as handle:
        handle.write(b'ond"\nc3,three\n')
    second = project.json("run", "--json")["sources"]["csv:inbox/*.csv"]
    assert (second["ingested"], second["rejected"]) == (2, 0)
    assert task(project, "c2")["data"] == {"text": "two lines:\nthe second"}
    assert rejects(project) == []


def test_ingest_reads_the_last_row_of_a_file_without_a_final_line_break(project, tmp_path):
    (tmp_path / "t.csv").write_bytes(b"id,text\nn1,one\nn2,two")
    assert project.json("ingest", "t.csv", "--json")["ingested"] == 2
    assert task(project, "n2")["data"] == {"text": "two"}


# -- 3: columns named label, model, confidence are data -----------------------------------------
def test_label_model_and_confidence_columns_are_data(project, tmp_path):
    (tmp_path / "t.csv").write_text(
        "id,text,model,prediction_label,label,confidence\n"
        "m1,hello,resnet,a,b,high\n"
        "m2,bye,,,a,0.99\n", encoding="utf-8")
    report = project.json("ingest", "t.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 0)
    m1, m2 = task(project, "m1"), task(project, "m2")
    assert m1["data"] == {"text": "hello", "model": "resnet", "label": "b", "confidence": "high"}
    assert (m1["pred_label"], m1["pred_model"], m1["pred_confidence"]) == ("a", None, None)
    assert m2["data"] == {"text": "bye", "model": "", "label": "a", "confidence": "0.99"}
    assert (m2["pred_label"], m2["pred_confidence"], m2["status"]) == (None, None, "open")  # not accepted


# -- 4: a header the csv module cannot read ------------------------------------------------------
def test_a_header_with_a_quote_left_open_is_one_reject_at_line_1(project, tmp_path):
    (tmp_path / "badhdr.csv").write_bytes(b'id,"text\nq1,hello\n')
    proc = project("ingest", "badhdr.csv", "--json")
    assert proc.returncode == 0, proc.stderr
    assert (json.loads(proc.stdout)["ingested"], json.loads(proc.stdout)["rejected"]) == (0, 1)
    assert rejects(project) == [(1, "bad CSV header: unexpected end of data", 'id,"text')]


def test_a_separator_quoted_in_the_header_does_not_pick_the_separator(project, tmp_path):
    (tmp_path / "h.csv").write_bytes(b'"a;b",id,text\nx,q1,hello\n')
    report = project.json("ingest", "h.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 0)
    assert task(project, "q1")["data"] == {"a;b": "x", "text": "hello"}
    (tmp_path / "s.csv").write_bytes(b'"a,b";id;text\nx;q2;hello\n')  # and the other way round
    assert project.json("ingest", "s.csv", "--json")["ingested"] == 1
    assert task(project, "q2")["data"] == {"a,b": "x", "text": "hello"}


# -- 5: line numbers -----------------------------------------------------------------------------
def test_a_lone_carriage_return_in_a_quoted_cell_does_not_shift_line_numbers(project, tmp_path):
    (tmp_path / "cr.csv").write_bytes(b'id,text,prediction_label\nk1,"a\rb",a\nk2,x,nope\nk3,"c\r\rd",zz\n')
    report = project.json("ingest", "cr.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 2)
    assert [line for line, _, _ in rejects(project)] == [3, 4]
    assert task(project, "k1")["data"] == {"text": "a\rb"}


def test_a_file_with_carriage_returns_for_line_breaks_is_numbered_by_them(project, tmp_path):
    (tmp_path / "mac.csv").write_bytes(b"id,prediction_label\rr1,a\rr2,nope\r")
    report = project.json("ingest", "mac.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert [line for line, _, _ in rejects(project)] == [3]


@pytest.mark.parametrize("head", [b"\n", b"\r\n\n", b"\xef\xbb\xbf\n", b"\xef\xbb\xbf \t\n"])
def test_blank_lines_before_the_header_are_skipped_and_counted(project, tmp_path, head):
    lines = head.count(b"\n")
    (tmp_path / "b.csv").write_bytes(head + b"id;text;prediction_label\nb1;a;a\nb2;b;nope\n")
    report = project.json("ingest", "b.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert task(project, "b1")["data"] == {"text": "a"}
    assert [line for line, _, _ in rejects(project)] == [lines + 3]


def test_a_bad_header_after_blank_lines_is_reported_at_its_line(project, tmp_path):
    (tmp_path / "b.csv").write_bytes(b"\n\nident,text\nb1,a\n")
    assert project.json("ingest", "b.csv", "--json")["rejected"] == 1
    assert rejects(project) == [(3, "CSV header has no `id` column", "ident,text")]


# -- 6: a rejected row is kept as written ----------------------------------------------------------
def test_a_rejected_semicolon_row_is_kept_as_written(project, tmp_path):
    (tmp_path / "x.csv").write_bytes(
        b"id;category;kind;prediction_confidence;text;prediction_label\r\n"
        b"C-1;support;bug;0,5;hello;a\r\n"
        b'C-2;support;bug;1,5;"two\r\nlines";a\r\n')
    report = project.json("ingest", "x.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    assert rejects(project) == [(3, "`prediction.confidence` 1.5 is outside 0..1", 'C-2;support;bug;1,5;"two\r\nlines";a')]
