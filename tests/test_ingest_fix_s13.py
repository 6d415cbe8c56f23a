"""The thirteenth session's ingest fixes.

1. A CSV record and an element of a `.json` array have the JSON Lines line's cap: one of more
   than 64 MiB is one reject with its line and size, read through in pieces, never held; the
   good rows around it go in.
2. The `jsonl` source of `labelyard run` reads a line as `labelyard ingest` does, through the
   shared reader (`lines_within`): a line over 64 MiB is one reject with its size.
3. A database made at 4e95bb0 (`m003` named the outbox's index `outbox_due`) gets the index a new
   one has, `outbox_pending` (migration `m016`).
4. A rule function's subprocess writes to standard error under a plain `labelyard run` and the bulk
   lead commands too, as it does under the other commands: never into their output.

Real subprocesses on real files and a real database (the ``run`` fixture of conftest), except
where a reader is checked with a limit made small (in-process, ``monkeypatch``).
"""

from __future__ import annotations

import io
import json
import sqlite3

import pytest

from conftest import Runner
from lead_support import Project
from router import migrations

MIB = 1 << 20
LIMIT = 64 << 20

BASE = """\
workflow: p
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q, overlap: 1}}
"""


def use(run: Runner, extra: str = "") -> Runner:
    """``init`` and ``apply`` BASE plus ``extra`` in the runner's folder."""
    run.ok("init")
    (run.folder / "p.workflow.yaml").write_text(BASE + extra, encoding="utf-8")
    run.ok("apply", "p.workflow.yaml")
    return run


def row(ident: str) -> str:
    return json.dumps({"id": ident, "data": {}, "prediction": {"label": "a", "confidence": 0.95}})


def task_ids(run: Runner) -> list[str]:
    """Every task's external id, read from the database file itself."""
    with sqlite3.connect(run.db) as conn:
        return sorted(r[0] for r in conn.execute("SELECT external_id FROM tasks"))


def write_big(handle, size: int, byte: bytes = b"y") -> None:
    """``size`` bytes of ``byte`` written a mebibyte at a time."""
    piece = byte * MIB
    for _ in range(size // MIB):
        handle.write(piece)
    handle.write(byte * (size % MIB))


def too_long(what: str, size: int, limit: int = LIMIT) -> str:
    return f"{what} of {size} bytes: a row may be at most {limit} bytes ({limit >> 20} MiB); not read"


# -- 1: a CSV record and a .json element over 64 MiB are one reject each -------------------------------
def test_a_csv_record_over_64_mib_is_one_reject_with_its_line_and_size_and_the_rest_goes_in(run, tmp_path):
    use(run)
    start, end = b'huge,"start\n', b'\nend",a,0.95'
    with open(tmp_path / "big.csv", "wb") as handle:
        handle.write(b"id,text,prediction_label,prediction_confidence\nbefore,one,a,0.95\n" + start)
        write_big(handle, LIMIT)  # a quoted cell of more than 64 MiB, over three lines
        handle.write(end + b"\nafter,two,a,0.95\n")
    report = run.json("ingest", "big.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 1)
    [reject] = run.json("rejects", "--json")
    assert reject["line"] == 3
    # before: `bad CSV: field larger than field limit (67108864)`, the cell read to its limit first
    assert reject["reason"] == too_long("record", len(start) + LIMIT + len(end)) + " (the record runs to line 5)"
    assert reject["raw"].startswith('huge,"start\nyyy') and len(reject["raw"]) <= 4097
    assert task_ids(run) == ["after", "before"]


def test_a_csv_record_over_64_mib_without_a_line_break_to_the_end_of_the_file_is_one_reject(run, tmp_path):
    use(run)
    with open(tmp_path / "flat.csv", "wb") as handle:
        handle.write(b"id,text,prediction_label,prediction_confidence\nbefore,one,a,0.95\nhuge,")
        write_big(handle, LIMIT)  # and no line break after it: the file ends
    report = run.json("ingest", "flat.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (1, 1)
    [reject] = run.json("rejects", "--json")
    assert (reject["line"], reject["reason"]) == (3, too_long("record", 5 + LIMIT))
    assert task_ids(run) == ["before"]


def test_an_element_of_a_json_array_over_64_mib_is_one_reject_with_its_line_and_size(run, tmp_path):
    use(run)
    start, end = b'{"id": "huge", "data": {"t": "', b'"}}'
    with open(tmp_path / "big.json", "wb") as handle:
        handle.write(b"[" + row("before").encode() + b",\n  " + start)
        write_big(handle, LIMIT)
        handle.write(end + b",\n  " + row("after").encode() + b"\n]\n")
    report = run.json("ingest", "big.json", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 1)  # before: the element went in as a task
    [reject] = run.json("rejects", "--json")
    assert (reject["line"], reject["reason"]) == (2, too_long("element", len(start) + LIMIT + len(end)))
    assert reject["raw"].startswith('{"id": "huge"') and len(reject["raw"]) <= 4097
    assert task_ids(run) == ["after", "before"]


@pytest.fixture
def small(monkeypatch):
    """The readers with a limit of 64 bytes, read 8 characters at a time."""
    from router import csv_lines, ingest, json_array

    monkeypatch.setattr(ingest, "MAX_ROW_BYTES", 64)
    monkeypatch.setattr(csv_lines, "PIECE_CHARS", 8)
    monkeypatch.setattr(json_array, "CHUNK_CHARS", 8)
    monkeypatch.setattr(json_array, "SKIP_CHARS", 8)
    return ingest


def read(ingest, fmt: str, data: bytes, **options) -> list[tuple]:
    """Each row read: ``(line, id, data)``, or ``(line, reason, raw)`` for a reject."""
    got = []
    for item in ingest.read_stream(io.BytesIO(data), fmt, **options):
        if isinstance(item, ingest.RowProblem):
            got.append((item.line, item.reason, item.raw))
        else:
            got.append((item.line, item.external_id, item.data))
    return got


# (the file up to the record, the record, its line break and what follows, the line the record runs to)
CSV_CASES = {
    "a quoted cell": (b"id,t\na,1\n", b'b,"' + b"x" * 70 + b'"', b"\nc,3\n", 3),
    "over lines, CR LF": (b"id,t\r\na,1\r\n", b'b,"x\r\n' + b"yyyy\r\n" * 12 + b'z"', b'\r\nc,"two\r\nlines"\r\nd,3\r\n',
                          16),
    "quotes inside": (b"id,t\na,1\n", b'b,"say ""' + b"x" * 60 + b'"" then"', b"\nc,3\n", 3),
    "an unquoted cell": (b"id,t\na,1\n", b"b," + b"x" * 70, b"\nc,3\n", 3),
    "text after a quote": (b"id,t\na,1\n", b'b,"x"' + b"y" * 70, b"\nc,3\n", 3),
    "lone CR lines": (b"id,t\ra,1\r", b"b," + b"x" * 70, b"\rc,3\r", 3),
    "semicolons": (b"id;t\na;1\n", b"b;" + b"x;" * 35, b"\nc;3\n", 3),
    "two bytes a character": (b"id,t\na,1\n", b'b,"' + "é".encode() * 31 + b'"', b"\nc,3\n", 3),
    "a quote in an unquoted cell": (b"id,t\na,1\n", b'b,x"' + b"y" * 70, b"\nc,3\n", 3),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_a_csv_record_over_the_limit_is_one_reject_and_the_records_around_it_are_read(small, case):
    before, record, after, last = CSV_CASES[case]
    got = read(small, "csv", before + record + after)
    through = f" (the record runs to line {last})" if last > 3 else ""
    assert got[0] == (2, "a", {"t": "1"})
    assert got[1][:2] == (3, too_long("record", len(record), 64) + through)
    raw = got[1][2]  # the start of the record, as far as it was read when it went past the limit
    assert raw.endswith("…") and len(raw) > 10 and record.decode().startswith(raw[:-1])
    if last > 3:  # a record of two lines after it
        assert got[2:] == [(last + 1, "c", {"t": "two\r\nlines"}), (last + 3, "d", {"t": "3"})]
    else:
        assert got[2:] == [(4, "c", {"t": "3"})]


def test_where_the_pieces_of_a_csv_line_are_cut_changes_nothing(small, monkeypatch):
    from router import csv_lines

    for before, record, after, _ in CSV_CASES.values():
        data = before + record + after
        monkeypatch.setattr(csv_lines, "PIECE_CHARS", 1 << 20)
        whole = [got[:2] for got in read(small, "csv", data)]
        for piece in (3, 4, 5, 7, 16):  # a CR LF cut in two, a piece ending at the limit...
            monkeypatch.setattr(csv_lines, "PIECE_CHARS", piece)
            assert [got[:2] for got in read(small, "csv", data)] == whole, (piece, data)


def test_a_csv_record_at_the_limit_goes_in_and_one_byte_more_does_not(small):
    at_limit = b'b,"' + "é".encode() * 30 + b'"'  # 64 bytes, 34 characters
    assert len(at_limit) == 64
    assert read(small, "csv", b"id,t\n" + at_limit + b"\r\nc,3\n")[0] == (2, "b", {"t": "é" * 30})
    over = b'b,"' + "é".encode() * 30 + b'x"'
    assert read(small, "csv", b"id,t\n" + over + b"\nc,3\n")[0][:2] == (2, too_long("record", 65, 64))


def test_a_csv_header_over_the_limit_is_one_reject_for_the_file(small):
    got = read(small, "csv", b"id," + b"h" * 70 + b"\na,1\n")
    assert [(line, reason) for line, reason, _ in got] == [
        (1, "CSV header of 73 bytes: a header may be at most 64 bytes (0 MiB); the file was not read")]
    # a file without any line break is its header alone
    assert read(small, "csv", b"id,t" + b",x" * 40)[0][1].startswith("CSV header of 84 bytes")


def test_a_long_last_csv_record_without_its_line_break_waits_for_it_when_the_file_may_grow(small):
    data = b'id,t\na,1\nb,"' + b"x" * 70
    assert read(small, "csv", data, wait_for_newline=True) == [(2, "a", {"t": "1"})]
    assert read(small, "csv", data + b'"\n', wait_for_newline=True)[1][:2] == (3, too_long("record", 74, 64))
    assert read(small, "csv", b"id," + b"h" * 70, wait_for_newline=True) == []  # a header too


JSON_CASES = {
    "a string": '"' + "x" * 70 + '"',
    "a number": "1" * 70,
    "an object": '{"id": "big", "data": {"s": "a \\" ] } [", "t": [' + "[1], " * 10 + "[2]]}}",
    "over lines": "{\n" + "".join(f'"k{n}": "v\\\\",\n' for n in range(8)) + '"z": {}\n}',
    "two bytes a character": '"' + "é" * 40 + '"',
}


@pytest.mark.parametrize("case", JSON_CASES)
def test_an_element_over_the_limit_is_one_reject_and_the_elements_after_it_are_read(small, case):
    element = JSON_CASES[case]
    data = f'[{{"id": "a"}},\n {element}, {{"id": "b"}},\n {{"id": "c"}}]'.encode()
    got = read(small, "json", data)
    lines_in = element.count("\n")
    assert got[0][:2] == (1, "a")
    assert got[1][:2] == (2, too_long("element", len(element.encode()), 64))
    raw = got[1][2]  # the start of the element, as far as it was read when it went past the limit
    assert raw.endswith("…") and len(raw) > 10 and element.startswith(raw[:-1])
    assert [(line, ident) for line, ident, _ in got[2:]] == [(2 + lines_in, "b"), (3 + lines_in, "c")]


def test_an_element_at_the_limit_goes_in_and_a_syntax_error_in_a_long_array_is_still_one(small):
    element = '{"id": "b", "data": {"t": "' + "x" * 34 + '"}}'
    assert len(element) == 64
    got = read(small, "json", f'[{element}, {{"id": "c"}}, {element[:-3]}y"}}}}]'.encode())
    assert got[:2] == [(1, "b", {"t": "x" * 34}), (1, "c", {})]
    assert got[2][1] == too_long("element", 65, 64)
    broken = read(small, "json", b'[{"id": "a"}, {"id": "b", oops' + b" " * 200 + b"}]")
    assert broken[1][:2] == (1, "invalid JSON at line 1, column 27: Expecting property name enclosed in double "
                                "quotes; the rest of the file was not read")


# -- 2: the jsonl source reads a long line through the shared reader -----------------------------------
def test_run_quarantines_a_jsonl_line_over_64_mib_with_its_size_and_reads_on_after_it(run, tmp_path):
    use(run, "sources: [{plugin: jsonl, path: inbox.jsonl}]\n")
    start = b'{"id": "huge", "data": {"t": "'
    size = LIMIT + 1
    with open(tmp_path / "inbox.jsonl", "wb") as handle:
        handle.write(row("before").encode() + b"\n" + start)
        write_big(handle, size - len(start) - 3, b"x")
        handle.write(b'"}}\n' + row("after").encode() + b"\n")
    report = run.json("run", "--json")["sources"]["jsonl:inbox.jsonl"]
    assert (report["ingested"], report["rejected"]) == (2, 1)  # before: the line went in as a task
    [reject] = run.json("rejects", "--json")
    assert (reject["line"], reject["reason"]) == (2, too_long("line", size))
    assert reject["raw"].startswith('{"id": "huge"') and len(reject["raw"]) <= 4097
    with open(tmp_path / "inbox.jsonl", "ab") as handle:
        handle.write(row("later").encode() + b"\n")
    report = run.json("run", "--json")["sources"]["jsonl:inbox.jsonl"]
    assert (report["ingested"], report["rejected"]) == (1, 0)  # read on from after the long line
    assert task_ids(run) == ["after", "before", "later"]
    assert len(run.json("rejects", "--json")) == 1


class Reads(io.BufferedReader):
    """A file that keeps the longest line or piece it gave."""

    longest = 0

    def _seen(self, data: bytes) -> bytes:
        Reads.longest = max(Reads.longest, len(data))
        return data

    def readline(self, size=-1):
        return self._seen(super().readline(size))

    def read(self, size=-1):
        return self._seen(super().read(size))

    def __next__(self):
        return self._seen(super().__next__())


def test_the_jsonl_source_never_holds_a_line_longer_than_the_limit(small, tmp_path, monkeypatch):
    from plugins import jsonl
    from router import ingest
    from router.plugin_api import PluginRun

    monkeypatch.setattr(ingest, "LONG_LINE_PIECE", 16)
    monkeypatch.setattr(jsonl, "open", lambda path, mode: Reads(io.FileIO(path, mode.replace("b", ""))),
                        raising=False)
    inbox = tmp_path / "in.jsonl"
    long = '{"id": "big", "data": {"t": "' + "x" * 200 + '"}}'
    inbox.write_text('{"id": "a"}\n' + long + '\n{"id": "b"}\n' + long, encoding="utf-8")
    Reads.longest = 0

    def parts(state=None):
        source = PluginRun("jsonl", "jsonl:in.jsonl", {"path": "in.jsonl"}, state=state, base_dir=str(tmp_path))
        got = list(jsonl.read(source))
        whole = dict(state or {})  # the parts' cursors are entries to fold in, as the run keeps them
        for part in got:
            whole.update(part.cursor.entries)
            for key in part.cursor.drop:
                whole.pop(key, None)
        return [r for p in got for r in p.rows], whole

    rows, state = parts()
    assert [(r.line, getattr(r, "external_id", None) or r.reason) for r in rows] == [
        (1, "a"), (2, too_long("line", len(long), 64)), (3, "b")]  # the last line waits for its line break
    assert rows[1].raw.startswith('{"id": "big"') and rows[1].raw.endswith("…")
    assert Reads.longest <= 64 + 2  # before: the whole line, 232 bytes
    with open(inbox, "a", encoding="utf-8") as handle:
        handle.write('\n{"id": "c"}\n')
    rows, state = parts(state)
    assert [(r.line, getattr(r, "external_id", None) or r.reason) for r in rows] == [
        (4, too_long("line", len(long), 64)), (5, "c")]
    assert state[str(tmp_path / "in.jsonl")]["offset"] == inbox.stat().st_size


# -- 3: a database made at 4e95bb0 gets the outbox index a new one has ---------------------------------
def outbox_indexes(db) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return {name: sql for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'outbox' AND sql IS NOT NULL")}


def test_a_database_made_at_4e95bb0_trades_outbox_due_for_outbox_pending(tmp_path):
    p = Project(tmp_path)
    new = outbox_indexes(p.db)
    assert list(new) == ["outbox_pending"]
    # as m003 made the outbox at 4e95bb0, and no m016 yet
    conn = sqlite3.connect(p.db, isolation_level=None)
    conn.execute("DROP INDEX outbox_pending")
    conn.execute("CREATE INDEX outbox_due ON outbox (target, next_at) WHERE status = 'pending'")
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm016_outbox_pending_index'")
    conn.execute("UPDATE schema_version SET version = 15")
    conn.close()
    assert p.json("init")["migrations_applied"] == ["m016_outbox_pending_index"]
    assert outbox_indexes(p.db) == new  # before: `outbox_due` kept, `outbox_pending` never made
    with sqlite3.connect(p.db) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM outbox WHERE target = 'x' AND status = 'pending' "
                            "ORDER BY id LIMIT 10").fetchall()
        assert "outbox_pending" in " ".join(r[3] for r in plan)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(migrations.SCHEMA_VERSION,)]
    assert p.json("init")["migrations_applied"] == []
    assert p.run("status").returncode == 0


def test_m016_leaves_a_database_that_has_outbox_pending_as_it_is(tmp_path):
    p = Project(tmp_path)
    new = outbox_indexes(p.db)
    conn = sqlite3.connect(p.db, isolation_level=None)
    conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm016_outbox_pending_index'")
    conn.execute("UPDATE schema_version SET version = 15")
    conn.close()
    assert p.json("init")["migrations_applied"] == ["m016_outbox_pending_index"]
    assert outbox_indexes(p.db) == new
    assert migrations.SCHEMA_VERSION >= 16 and migrations.RELEASED["m016_outbox_pending_index"] == \
        "m016_outbox_pending_index"


# -- 4: a rule function's subprocess stays off a plain run's and a bulk lead command's output ---------
SHELLED = """\
import os
import subprocess
import sys

from router import hookimpl


@hookimpl
def register_functions(register):
    register("shelled", shelled)


def shelled(text):
    os.system("echo from-os-system")
    subprocess.run([sys.executable, "-c", "print('from-a-child')"], check=True)
    print("from-print")
    return len(str(text))
"""

SHELLED_WORKFLOW = """\
workflow: f
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - {name: long, when: shelled(task.data.text) > 100, do: accept}
  - {name: three, do: {annotate: triage, overlap: 3}}
on_quorum:
  - {name: checked, when: shelled(task.id) > 100, do: accept}
  - {name: split, when: votes.count == 3 and votes.top_count == 2, do: {review: senior}}
  - {name: ok, do: accept}
on_review:
  - {name: rejected, when: review.verdict == "reject", do: {return: annotators}}
  - {name: approved, do: accept}
sources: [{plugin: jsonl, path: r/in.jsonl}]
"""

SAID = ("from-os-system", "from-a-child", "from-print")


@pytest.fixture
def shelled(run, tmp_path):
    """A workflow whose rules call ``shelled()``, which prints, runs ``os.system`` and a child process."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "shelled.py").write_text(SHELLED, encoding="utf-8")
    (tmp_path / "r").mkdir()
    run.env["LABELYARD_PLUGINS_DIR"] = str(tmp_path / "plugins")
    (tmp_path / "f.workflow.yaml").write_text(SHELLED_WORKFLOW, encoding="utf-8")
    run.ok("init")
    run.ok("apply", "f.workflow.yaml")
    return run


def said_on_stderr_only(proc) -> str:
    assert proc.returncode == 0, proc.stderr
    for said in SAID:
        assert said not in proc.stdout and said in proc.stderr, (said, proc.stdout)
    return proc.stdout


def test_a_plain_run_keeps_a_rule_functions_subprocess_off_standard_output(shelled, tmp_path):
    (tmp_path / "r" / "in.jsonl").write_text('{"id": "a1", "data": {"text": "x"}}\n', encoding="utf-8")
    out = said_on_stderr_only(shelled("run"))
    assert out.splitlines()[-1] == "run 1: ok"
    assert "jsonl:r/in.jsonl" in out  # what the run did, said as it went, still on standard output


def test_a_bulk_lead_release_keeps_a_rule_functions_subprocess_off_standard_output(shelled, tmp_path):
    """T1 voted a, b, a; the senior returns it; a1 and a2 correct, a3 holds the last correction and
    no longer works triage: releasing it drops it, and on_quorum decides on the votes kept."""
    from test_flows_claims import claim, submit

    (tmp_path / "t.jsonl").write_text('{"id": "T1", "data": {"text": "x"}}\n', encoding="utf-8")
    for name in ("a1", "a2", "a3"):
        shelled.ok("workers", "add", name, "--role", "annotator")
    shelled.ok("workers", "add", "s1", "--role", "senior")
    shelled.ok("ingest", "t.jsonl")
    for name, label in (("a1", "a"), ("a2", "b"), ("a3", "a")):
        submit(shelled, claim(shelled, name)["assignment"], name, "--label", label)
    review = claim(shelled, "s1")
    submit(shelled, review["assignment"], "s1", "--reject", "--comment", "again")
    for name in ("a1", "a2"):
        submit(shelled, claim(shelled, name)["assignment"], name, "--label", "b")
    assert claim(shelled, "a3")["kind"] == "correct"
    shelled.ok("workers", "set", "a3", "--role", "senior")
    out = said_on_stderr_only(shelled("release", "T1"))
    assert out.startswith("released T1 (id:1): assignment(s) ")
    shown = shelled.json("show", "T1", "--json")
    # on_quorum ran on the votes kept (a3's first vote and two corrections), the rule function with it
    assert shown["events"][-1]["kind"] == "routed" and shown["events"][-1]["detail"]["section"] == "on_quorum"
    assert (shown["task"]["stage"], shown["task"]["queue"]) == ("review", "senior")

