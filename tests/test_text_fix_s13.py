"""Text and numbers, session 13: a number label is refused past the float range and only there (1),
`init --db` names a file that cannot hold a database (2), worker names stored raw by an older
version are printed escaped (3) and whole (4), plugin traces are escaped (5), and the TUI writes
text as the CLI does (6)."""

from __future__ import annotations

import re

import json
import os
import sqlite3
import stat
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from conftest import LEAD, NOW
from test_tui import anyio_backend, settle  # noqa: F401
from tui.app import LabelyardApp

TOO_LARGE = "is too large: a number label is at most about 1.8e308 in size (the largest float)"
LARGEST = int(sys.float_info.max)  # 309 digits: the largest integer whose float is finite
PAST = LARGEST + 2**971  # rounds to infinity as a float
FITS = 10**305  # 306 digits: refused before (past 1e300), a float's size


# -- 1: a number label is a float's size at most, an integer or a float -------------------------
NUMBERS = """\
workflow: w
labels: {type: number}
queues: {q: {roles: [annotator]}}
on_create: [{do: {annotate: q}}]
"""


@pytest.fixture
def numbers(run, tmp_path):
    run.ok("init")
    (tmp_path / "w.workflow.yaml").write_text(NUMBERS, encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    return run


def _reasons(run, source: str) -> dict[int, str]:
    return {r["line"]: r["reason"] for r in run.json("rejects", "--json") if r["source"].endswith(source)}


def _slot(run) -> int:
    return run.json("claim", "--as", "ann", "--json")["assignment"]


def test_submit_takes_an_integer_a_float_can_hold_and_refuses_past_it_as_a_float(numbers, tmp_path):
    (tmp_path / "t.jsonl").write_text('{"id": "t1", "data": {}}\n{"id": "t2", "data": {}}\n', encoding="utf-8")
    numbers.ok("ingest", "t.jsonl")
    slot = _slot(numbers)
    for value, shown in ((PAST, "an integer of 309 digits"), (-(10**400), "an integer of 401 digits"),
                         ("1e400", "1e400"), ("-1.8e308", "-1.8e308")):
        proc = numbers("submit", slot, "--as", "ann", "--value", value)
        assert proc.returncode == 1
        assert proc.stderr == f"labelyard: label {shown} {TOO_LARGE}\n"
    assert numbers("submit", slot, "--as", "ann", "--value", "Infinity").stderr == \
        "labelyard: label inf is not a finite number\n"  # written as infinity: no number too large
    numbers.ok("submit", slot, "--as", "ann", "--value", LARGEST)
    numbers.ok("submit", _slot(numbers), "--as", "ann", "--value", -FITS)
    exported = numbers.ok("export", "--format", "jsonl").stdout.splitlines()
    finals = {r["id"]: r["label"] for r in map(json.loads, exported)}
    assert finals == {"t1": LARGEST, "t2": -FITS}  # kept exact, as JSON integers


def test_ingest_and_gold_add_draw_the_line_where_submit_does(numbers, tmp_path):
    rows = [{"id": "a", "data": {}, "prediction": {"label": FITS}},
            {"id": "b", "data": {}, "prediction": {"label": PAST}},
            {"id": "c", "data": {}, "prediction": {"label": -LARGEST}},
            {"id": "d", "data": {}, "prediction": {"label": 1.7e308}}]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = numbers.json("ingest", "p.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (3, 1)
    assert _reasons(numbers, "p.jsonl") == {2: f"`prediction.label`: label an integer of 309 digits {TOO_LARGE}"}

    (tmp_path / "p.csv").write_text(f"id,prediction_label\ne,{FITS}\nf,{PAST}\ng,1e400\nh,-1.7e308\n",
                                    encoding="utf-8")
    report = numbers.json("ingest", "p.csv", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 2)
    assert _reasons(numbers, "p.csv") == {3: f'`prediction_label` "{str(PAST)[:37]}..." {TOO_LARGE}',
                                          4: f'`prediction_label` "1e400" {TOO_LARGE}'}
    labels = {t["external_id"]: t["pred_label"] for t in
              (numbers.json("show", ref, "--json")["task"] for ref in "acdeh")}
    assert labels == {"a": FITS, "c": -LARGEST, "d": 1.7e308, "e": FITS, "h": -1.7e308}

    gold = [{"id": "g1", "data": {}, "answer": LARGEST}, {"id": "g2", "data": {}, "answer": -PAST}]
    (tmp_path / "g.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gold), encoding="utf-8")
    assert numbers.json("gold", "add", "g.jsonl", "--json")["added"] == 1
    assert _reasons(numbers, "g.jsonl") == {2: f"`answer`: label an integer of 309 digits {TOO_LARGE}"}


# -- 2: a path that is no file cannot hold a database --------------------------------------------
NO_FILE = "not a file: it cannot hold a database (give --db or LABELYARD_DB a file's path)"


def _beside(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir() if p.name.startswith(path.name) and p != path}


def test_init_names_a_device_it_cannot_use_and_makes_nothing_beside_it(run):
    null = Path(os.devnull)
    before = _beside(null)
    try:
        proc = run("init", "--db", null)
        assert proc.returncode == 1
        assert proc.stderr == f"labelyard: {null}: is a character device, {NO_FILE}; nothing changed\n"
        assert _beside(null) == before  # no /dev/null.lock, -wal or -journal
        proc = run("status", "--db", null)  # not sent to `labelyard init`, which cannot use it
        assert proc.stderr == f"labelyard: {null}: is a character device, {NO_FILE}\n"
    finally:  # what a failing run made in /dev (a regular file beside the device) goes again
        for name in _beside(null) - before:
            if (null.parent / name).is_file():
                (null.parent / name).unlink()


def test_init_names_a_fifo_or_a_link_to_a_device(run):
    fifo = run.folder / "lab.db"
    os.mkfifo(fifo)
    link = run.folder / "link.db"
    link.symlink_to(os.devnull)
    for path, kind in ((fifo, "a pipe (a fifo)"), (link, "a character device")):
        proc = run("init", "--db", path)
        assert proc.returncode == 1
        assert proc.stderr == f"labelyard: {path}: is {kind}, {NO_FILE}; nothing changed\n"
        assert run("workers", "list", "--db", path).stderr == f"labelyard: {path}: is {kind}, {NO_FILE}\n"
    assert sorted(p.name for p in run.folder.iterdir()) == ["lab.db", "link.db"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# -- 3: a worker name an older version stored with a control character ---------------------------
ESC_NAME = "ev\x1b]0;PWNED\x07il"  # retitles the terminal window when printed raw
NL_NAME = "nl\nforged: line\x85"
CHOICES = NUMBERS.replace("{type: number}", "{type: choice, choices: [a, b]}")


def _raw_free(*texts: str) -> None:
    for text in texts:
        assert not any(c in text for c in "\x1b\x07\x85"), text


@pytest.fixture
def old_names(run, tmp_path):
    """A project whose workers table holds names `workers add` refuses now, as an older version kept them."""
    run.ok("init")
    (tmp_path / "w.workflow.yaml").write_text(CHOICES, encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    connection = sqlite3.connect(run.db)
    with connection:
        for name in (ESC_NAME, NL_NAME):
            connection.execute("INSERT INTO workers (id, roles, skills, created_at) VALUES (?, ?, ?, 0)",
                               (name, json.dumps(["annotator", "r\x1bX"]), json.dumps(["s\u2028k"])))
    connection.close()
    (tmp_path / "t.jsonl").write_text('{"id": "t1", "data": {}}\n{"id": "t2", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    for name in (ESC_NAME, NL_NAME):
        slot = run.json("claim", "--as", name, "--json")["assignment"]
        run.ok("submit", slot, "--as", name, "--label", "a")
    return run


def test_workers_list_writes_stored_names_escaped(old_names):
    out = old_names.ok("workers", "list").stdout
    _raw_free(out)
    assert out.splitlines() == [
        "ann              roles=annotator skills=- capacity=- active=0",
        '"ev\\u001b]0;PWNED\\u0007il" roles=annotator,"r\\u001bX" skills="s\\u2028k" capacity=- active=0',
        "lead-lucy        roles=lead skills=- capacity=- active=0",
        '"nl\\nforged: line\\u0085" roles=annotator,"r\\u001bX" skills="s\\u2028k" capacity=- active=0']
    quoted = out.splitlines()[1].split(" ")[0]
    assert json.loads(quoted) == ESC_NAME  # still JSON, for a script
    for name, shown in ((ESC_NAME, '"ev\\u001b]0;PWNED\\u0007il"'), (NL_NAME, '"nl\\nforged: line\\u0085"')):
        assert old_names.ok("workers", "pause", name).stdout == f"paused {shown}\n"
        assert old_names.ok("workers", "resume", name).stdout == f"resumed {shown}\n"


def test_show_status_and_agreement_write_stored_names_escaped(old_names):
    show = old_names.ok("show", "t1").stdout + old_names.ok("show", "t2").stdout
    _raw_free(show)
    assert "  annotate  ev\\x1b]0;PWNED\\x07il \"a\"\n" in show
    assert "claimed by nl\\x0aforged: line\\x85\n" in show
    assert "\nforged" not in show
    agreement = old_names.ok("agreement").stdout
    _raw_free(agreement)
    assert re.search(r'\n"ev\\u001b\]0;PWNED\\u0007il" +1 ', agreement), agreement
    (old_names.folder / "more.jsonl").write_text('{"id": "t3", "data": {}}\n', encoding="utf-8")
    old_names.ok("ingest", "more.jsonl")
    for name in ("ann", ESC_NAME, NL_NAME):
        old_names.ok("workers", "pause", name, "--reason", "away\x1b[2J")
    status = old_names.ok("status").stdout
    _raw_free(status)
    assert ('warning: 1 task waits in `q`, and every worker who may take it is paused '
            '(ann, "ev\\u001b]0;PWNED\\u0007il", "nl\\nforged: line\\u0085")\n') in status
    proc = old_names("claim", "--as", ESC_NAME)
    assert proc.returncode != 0
    assert proc.stderr == "labelyard: ev\\x1b]0;PWNED\\x07il is paused: away\\x1b[2J\n"


# -- 4: the TUI's holders column keeps a name holding a comma whole -----------------------------
TWO_VOTES = CHOICES.replace("{annotate: q}", "{annotate: q, overlap: 2}")


def _cells(table, key: str) -> list[str]:
    return [str(cell) for cell in table.get_row(key)]


@pytest.mark.anyio
async def test_the_task_list_writes_holders_as_workers_list_does(run, tmp_path, monkeypatch):
    run.ok("init")
    (tmp_path / "w.workflow.yaml").write_text(TWO_VOTES, encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    (tmp_path / "t.jsonl").write_text('{"id": "t1", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    for name in ("a,b", "c"):
        run.ok("workers", "add", name, "--role", "annotator")
        run.ok("claim", "--as", name)
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    app = LabelyardApp(str(run.db), LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        table = app.screen.query_one(DataTable)
        holders = _cells(table, "id:1")[11]
        assert holders in ('"a,b",c', 'c,"a,b"'), holders  # before: a,b,c, three workers


# -- 5: LABELYARD_TRACE_PLUGINS lines are escaped ------------------------------------------------
def test_plugin_trace_lines_write_names_escaped(run, tmp_path):
    source, sink = "in\x1b]0;PWNED\x07.jsonl", "out\x1b[2J\n.jsonl"
    (tmp_path / "w.workflow.yaml").write_text(json.dumps({
        "workflow": "x", "labels": {"type": "choice", "choices": ["a"]}, "queues": {"q": {"roles": ["a"]}},
        "sources": [{"plugin": "jsonl", "path": source}], "sinks": [{"plugin": "jsonl", "path": sink}],
        "on_create": [{"name": "r", "do": "accept"}]}), encoding="utf-8")
    (tmp_path / source).write_text(json.dumps({"id": "t1", "data": {}, "prediction": {"label": "a"}}) + "\n",
                                   encoding="utf-8")
    (tmp_path / "pd").mkdir()
    (tmp_path / "pd" / "ev\x1b]0;X\x07il.py").write_text(
        "from router import hookimpl\n\n\n@hookimpl\ndef register_sources(register):\n    pass\n", encoding="utf-8")
    run.ok("init")
    run.ok("apply", "w.workflow.yaml")
    proc = run.ok("run", "--plugins-dir", "pd", env={"LABELYARD_TRACE_PLUGINS": "1"})
    _raw_free(proc.stderr)
    traced = [line for line in proc.stderr.splitlines() if line.startswith("labelyard trace: ")]
    assert "labelyard trace: ev\\x1b]0;X\\x07il.register_sources()" in traced
    assert "labelyard trace: source jsonl:in\\x1b]0;PWNED\\x07.jsonl" in traced
    assert "labelyard trace: sink jsonl:out\\x1b[2J\\x0a.jsonl: 1 task(s)" in traced
    assert len(traced) == len(proc.stderr.splitlines())  # no line of a name's own


# -- 6 (and 3 in the TUI): the TUI writes text as the CLI does -----------------------------------
SEP_NAME = "sep\u2028ar\x1b[2J"  # a LINE SEPARATOR: the TUI wrote it raw, the CLI as \u2028


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"])
def test_the_tui_escapes_a_character_as_the_cli_does(char):
    from rules.visible_text import one_line, visible
    from tui.widgets import format as fmt

    assert fmt.clean(f"a{char}b") == one_line(f"a{char}b") != f"a{char}b"
    assert fmt.clean(f"a{char}b", lines=True) == visible(f"a{char}b")


@pytest.mark.anyio
async def test_a_stored_name_reads_the_same_in_the_tui_and_the_cli(run, tmp_path, monkeypatch):
    run.ok("init")
    (tmp_path / "w.workflow.yaml").write_text(CHOICES, encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    connection = sqlite3.connect(run.db)
    with connection:
        connection.execute("INSERT INTO workers (id, roles, skills, created_at) VALUES (?, ?, '[]', 0)",
                           (SEP_NAME, json.dumps(["annotator"])))
    connection.close()
    (tmp_path / "t.jsonl").write_text('{"id": "t1", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    slot = run.json("claim", "--as", SEP_NAME, "--json")["assignment"]
    run.ok("submit", slot, "--as", SEP_NAME, "--label", "a")
    shown = "sep\\u2028ar\\x1b[2J"
    show = run.ok("show", "t1").stdout
    assert f"  annotate  {shown} \"a\"\n" in show and f"submitted by {shown}\n" in show
    explain = run.ok("explain", "t1").stdout
    assert f"submitted by {shown}" in explain and "\u2028" not in explain
    listed = next(line.split(" ")[0] for line in run.ok("workers", "list").stdout.splitlines() if "sep" in line)
    assert listed == '"sep\\u2028ar\\u001b[2J"'

    monkeypatch.setenv("LABELYARD_NOW", NOW)
    app = LabelyardApp(str(run.db), LEAD, poll_interval=None, clock_interval=None)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        await pilot.press("enter")
        await settle(app, pilot)
        body = str(app.screen.query_one("#detail-body", Static).render())
        history = str(app.screen.query_one("#detail-history", Static).render())
        assert f"  {shown}: a" in body and f" {shown} annotate round " in body, body
        assert f"submitted by {shown}" in history, history
        assert "\u2028" not in body + history
        await pilot.press("escape")
        await pilot.press("w")
        await settle(app, pilot)
        roster = app.screen.query_one(DataTable)
        assert str(roster.get_row(SEP_NAME)[0]) == listed  # the roster's name as `workers list` writes it
