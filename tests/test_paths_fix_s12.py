"""Paths a user or a hostile input may give: symlinked folders under a glob, glob characters in
a project's folder or a file's name, `--db` names SQLite would read as URIs, webhook URLs with a
bad port, and rows too large to hold.

Real subprocesses on real files and a real database (the ``run`` fixture of conftest).
"""

from __future__ import annotations

import json
import os
import sqlite3

import pytest

from conftest import Runner

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
    return json.dumps({"id": ident, "data": {}, "prediction": {"label": "a", "confidence": 0.95}}) + "\n"


def task_ids(run: Runner) -> list[str]:
    """Every task's external id, read from the database file itself."""
    with sqlite3.connect(run.db) as conn:
        return sorted(r[0] for r in conn.execute("SELECT external_id FROM tasks"))


# -- 1: `**` does not follow symlinks to folders ------------------------------------------------
def test_folder_double_star_reads_each_file_once_and_never_leaves_the_folder(run, tmp_path):
    inbox = tmp_path / "in"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "ok.txt").write_text("hello\n", encoding="utf-8")
    (inbox / "sub" / "deep.txt").write_text("deep\n", encoding="utf-8")
    os.symlink(".", inbox / "self")  # one link: every file again at each depth
    os.symlink(".", inbox / "b")  # two: an exponential walk (the run never ended)
    os.symlink("..", inbox / "loop")  # the project's folder: its database and workflow
    os.symlink("ok.txt", inbox / "alias.txt")  # a link to a file is a file
    use(run, 'sources: [{plugin: folder, path: in, pattern: "**/*", finished_after: 0}]\n')
    report = run.json("run", "--json")["sources"]["folder:in"]
    assert report["ingested"] == 3, report
    assert task_ids(run) == ["alias.txt", "ok.txt", "sub/deep.txt"]


def test_file_sources_double_star_does_not_follow_symlinked_folders(run, tmp_path):
    inbox = tmp_path / "in"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "a.jsonl").write_text(row("a1"), encoding="utf-8")
    (inbox / "sub" / "b.jsonl").write_text(row("b1"), encoding="utf-8")
    os.symlink(".", inbox / "self")
    os.symlink("..", inbox / "up")
    (tmp_path / "outside.jsonl").write_text(row("outside"), encoding="utf-8")
    use(run, 'sources: [{plugin: jsonl, path: "in/**/*.jsonl"}]\n')
    report = run.json("run", "--json")["sources"]["jsonl:in/**/*.jsonl"]
    assert (report["ingested"], report["duplicates"]) == (2, 0), report
    assert task_ids(run) == ["a1", "b1"]


def test_a_folder_pattern_that_leaves_the_folder_is_an_error_at_its_line(run, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "p.workflow.yaml").write_text(
        BASE + 'sources:\n  - {plugin: folder, path: in, pattern: "../*.txt"}\n'
        '  - {plugin: folder, name: abs, path: in, pattern: "/etc/*"}\n', encoding="utf-8")
    proc = run("validate", "p.workflow.yaml")
    assert proc.returncode == 1
    assert ("p.workflow.yaml:8:41: sources entry 1 (`folder`): setting `pattern:` '../*.txt' goes up a folder "
            "(`..`); a pattern matches files below its folder") in proc.stdout + proc.stderr
    assert ("p.workflow.yaml:9:52: sources entry 2 (`folder`): setting `pattern:` '/etc/*' is absolute; "
            "a pattern matches files below its folder") in proc.stdout + proc.stderr


# -- 2: glob characters in a path: only what the user wrote as a pattern is one ----------------
def test_a_project_in_a_folder_with_brackets_reads_its_sources_and_reports_a_missing_file(tmp_path):
    run = Runner(tmp_path / "proj[1]")
    inbox = run.folder / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "a.jsonl").write_text(row("a1"), encoding="utf-8")
    (inbox / "b.jsonl").write_text(row("b1"), encoding="utf-8")
    (inbox / "t.txt").write_text("hello\n", encoding="utf-8")
    use(run, 'sources:\n  - {plugin: jsonl, path: "inbox/a.jsonl"}\n'
             '  - {plugin: jsonl, path: "inbox/missing.jsonl"}\n'
             '  - {plugin: jsonl, name: glob, path: "inbox/b*.jsonl"}\n'
             '  - {plugin: folder, path: "inbox", pattern: "*.txt", finished_after: 0}\n')
    proc = run("run")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert f"{inbox / 'missing.jsonl'}: no such file" in proc.stderr
    assert task_ids(run) == ["a1", "b1", "t.txt"]


def test_a_file_name_with_brackets_is_read_as_written_else_as_a_glob(run, tmp_path):
    use(run)
    (tmp_path / "data[1].jsonl").write_text(row("literal"), encoding="utf-8")
    (tmp_path / "data1.jsonl").write_text(row("one"), encoding="utf-8")
    assert run.json("ingest", "jsonl:data[1].jsonl", "--json")["ingested"] == 1
    assert task_ids(run) == ["literal"]
    assert run.json("ingest", "jsonl:data[[]1].jsonl", "--json")["duplicates"] == 1  # glob.escape's form
    assert task_ids(run) == ["literal"]
    assert run.json("ingest", "jsonl:data[0-9].jsonl", "--json")["ingested"] == 1  # no such file: a glob
    assert task_ids(run) == ["literal", "one"]


def test_a_folder_pattern_writes_a_literal_bracket_as_glob_escape_does(run, tmp_path):
    inbox = tmp_path / "in[x]"
    inbox.mkdir()
    (inbox / "a[1].txt").write_text("literal\n", encoding="utf-8")
    (inbox / "a1.txt").write_text("one\n", encoding="utf-8")
    use(run, 'sources: [{plugin: folder, path: "in[x]", pattern: "a[[]1].txt", finished_after: 0}]\n')
    run.ok("run")
    assert task_ids(run) == ["a[1].txt"]


# -- 3: --db is a file name, never an SQLite URI or `:memory:` -----------------------------------
def test_db_named_like_a_sqlite_uri_is_that_file_and_an_export_cannot_overwrite_another_database(run, tmp_path):
    use(run)  # ./labelyard.db
    run.ok("init", "--db", "foo.db")
    run.ok("apply", "--db", "foo.db", "p.workflow.yaml")
    (tmp_path / "t.jsonl").write_text(row("kept"), encoding="utf-8")
    run.ok("ingest", "--db", "foo.db", "t.jsonl")
    before = (tmp_path / "foo.db").read_bytes()
    proc = run("export", "--db", "file:foo.db", "-o", "foo.db")  # no file:foo.db project: nothing written
    assert proc.returncode == 1 and "file:foo.db: no Labelyard database here" in proc.stderr, proc.stderr
    assert (tmp_path / "foo.db").read_bytes() == before
    run.ok("init", "--db", "file:foo.db")
    assert (tmp_path / "foo.db").read_bytes() == before  # SQLite read no URI: foo.db untouched
    with sqlite3.connect(tmp_path / "foo.db") as conn:
        assert [r[0] for r in conn.execute("SELECT external_id FROM tasks")] == ["kept"]
    made = tmp_path / "file:foo.db"
    assert made.stat().st_mode & 0o777 == 0o660 and made.stat().st_size > 0
    assert (tmp_path / "file:foo.db.lock").exists()
    proc = run("export", "--db", "file:foo.db", "-o", "file:foo.db")
    assert proc.returncode == 1 and "is the database itself" in proc.stderr, proc.stderr
    run.ok("backup", "--db", "file:foo.db", "file:copy.db")
    with sqlite3.connect(tmp_path / "file:copy.db") as conn:
        assert conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] > 0


def test_db_named_memory_is_a_file_that_keeps_the_project(run, tmp_path):
    run.ok("init", "--db", ":memory:")
    (tmp_path / "p.workflow.yaml").write_text(BASE, encoding="utf-8")
    run.ok("apply", "--db", ":memory:", "p.workflow.yaml")
    assert run.json("status", "--db", ":memory:", "--json")["workflow"]["name"] == "p"
    assert (tmp_path / ":memory:").stat().st_size > 0


# -- 4: a webhook url with a bad port, a space or a control character ---------------------------
@pytest.mark.parametrize("url, said", [
    ("http://127.0.0.1:99999/", "has the port '99999', which is not one (a whole number from 1 to 65535)"),
    ("http://127.0.0.1:abc/", "has the port 'abc', which is not one (a whole number from 1 to 65535)"),
    ("http://127.0.0.1:0/hook", "has the port '0', which is not one (a whole number from 1 to 65535)"),
    ("http://exa mple.com/", "holds a space, which a URL cannot (write it as %20)"),
    ("http://h/a\\tb", "holds the character '\\t', which a URL cannot (write it as %09)"),
    ("http://h/caf\\u00e9", "holds 'é', which a URL's path and query cannot (write it as %C3%A9)"),
])
def test_a_webhook_url_that_can_never_be_delivered_to_is_an_error_at_its_line(run, tmp_path, url, said):
    (tmp_path / "p.workflow.yaml").write_text(
        BASE + f'notify:\n  - {{plugin: webhook, events: [done], url: "{url}"}}\n', encoding="utf-8")
    proc = run("validate", "p.workflow.yaml")
    assert proc.returncode == 1, proc.stdout
    assert f"p.workflow.yaml:8:44: notify entry 1 (`webhook`): setting `url:` {said}" in proc.stderr, proc.stderr


def test_a_webhook_url_with_a_good_port_or_none_validates(run, tmp_path):
    (tmp_path / "p.workflow.yaml").write_text(BASE + "notify:\n"
                                              '  - {plugin: webhook, url: "http://127.0.0.1:65535/hook"}\n'
                                              '  - {plugin: webhook, url: "http://[::1]/hook?a=%20"}\n'
                                              '  - {plugin: webhook, url: "https://b\\u00fccher.example/"}\n',
                                              encoding="utf-8")
    run.ok("validate", "p.workflow.yaml")


# -- 5: a row's size is bounded, and so is what a reject keeps of it ----------------------------
def test_lines_within_gives_a_line_over_the_limit_as_its_size_without_holding_it():
    import io

    from router.ingest import LongLine, lines_within

    stream = io.BytesIO(b"0123456789\n" b"0123456789\r\n" b"0123456789A\n" b"ok\n" + b"x" * 25 + b"\r\n" + b"y" * 11)
    got = list(lines_within(stream, limit=10))
    assert got[:2] == [b"0123456789\n", b"0123456789\r\n"]
    assert got[2] == LongLine(11, b"0123456789A\n")
    assert got[3] == b"ok\n"
    assert got[4] == LongLine(25, b"x" * 12)  # the head kept is what the first read took
    assert got[5] == LongLine(11, b"y" * 11)  # a last line without its line break
    assert len(got) == 6


def test_a_jsonl_line_over_64_mib_is_one_reject_with_its_line_and_size_and_the_rest_goes_in(run, tmp_path):
    use(run)
    big = tmp_path / "big.jsonl"
    size = (64 << 20) + 1
    start = b'{"id": "huge", "data": {"t": "'
    with open(big, "wb") as handle:
        handle.write(row("before").encode())
        handle.write(start + b"x" * (size - len(start) - 3) + b'"}}\n')
        handle.write(row("after").encode())
    report = run.json("ingest", "big.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 1)
    [reject] = run.json("rejects", "--json")
    assert reject["line"] == 2
    assert reject["reason"] == f"line of {size} bytes: a row may be at most {64 << 20} bytes (64 MiB); not read"
    assert reject["raw"].startswith('{"id": "huge"') and len(reject["raw"]) <= 4097
    assert task_ids(run) == ["after", "before"]


def test_a_reject_keeps_the_start_of_a_long_raw_row_and_its_size(run, tmp_path):
    use(run)
    text = json.dumps({"id": "long", "data": "y" * 100_000})  # `data` must be an object
    (tmp_path / "long.jsonl").write_text(text + "\n", encoding="utf-8")
    run.ok("ingest", "long.jsonl")
    [reject] = run.json("rejects", "--json")
    assert reject["raw"] == text[:8192] + f"… [cut: {len(text)} characters in all]"
    with sqlite3.connect(run.db) as conn:  # kept so, not only listed so
        assert conn.execute("SELECT length(raw) FROM rejects").fetchone()[0] < 8300
        # a reject an older version kept whole is listed cut the same way
        conn.execute("UPDATE rejects SET raw = ?", (text,))
    [reject] = run.json("rejects", "--json")
    assert reject["raw"] == text[:8192] + f"… [cut: {len(text)} characters in all]"
