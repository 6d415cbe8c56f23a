"""Fixes from the twelfth session's docs tester, as real subprocesses on a real database file."""

from __future__ import annotations

import json
import sqlite3
import textwrap

LONG_SUBJECT = "The customer reports that the mobile app crashes every time they open the billing page " * 4
LONG_REASON = "waiting for the account team to confirm which contract applies to this customer " * 3
LONG_RULE = "hold tickets from customers whose contract is still being negotiated by the account team"
LONG_QUEUE = "tickets-waiting-for-a-second-opinion-from-the-billing-and-contracts-team-" * 2

WRAP_WORKFLOW = f"""\
workflow: tickets
labels: {{type: choice, choices: [billing, bug]}}
queues:
  {LONG_QUEUE}: {{roles: [annotator]}}
on_create:
  - name: {LONG_RULE}
    when: task.data.customer == "acme"
    do: {{hold: "{LONG_REASON.strip()}"}}
  - name: default
    do: {{annotate: {LONG_QUEUE}, overlap: 1}}
sinks: [{{plugin: broken}}]
"""

BROKEN_SINK = """
from router import hookimpl

@hookimpl
def register_sinks(register):
    register("broken", write)

def write(run, tasks):
    raise OSError("the export share is not mounted; " * 6 + "\\nmount it with: sudo mount /srv/export " + "x" * 120)
"""


# stdin a pipe and no COLUMNS: rich would fold at 80 columns (or at the width of a terminal on stdin)
NOT_A_TERMINAL = {"input": "", "env": {"COLUMNS": None}}


def test_show_and_status_print_one_line_per_line_off_a_terminal(run, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text(textwrap.dedent(BROKEN_SINK), encoding="utf-8")
    run.env["LABELYARD_PLUGINS_DIR"] = str(plugins)
    (tmp_path / "tickets.workflow.yaml").write_text(WRAP_WORKFLOW, encoding="utf-8")
    run.ok("init")
    run.ok("apply", "tickets.workflow.yaml")
    rows = [{"id": "x2", "data": {"subject": LONG_SUBJECT, "customer": "acme"}},
            {"id": "x3", "data": {"subject": LONG_SUBJECT, "customer": "globex"}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run.ok("ingest", "t.jsonl")

    shown = run.ok("show", "x2", **NOT_A_TERMINAL).stdout.splitlines()
    assert f"reason: {LONG_REASON.strip()}" in shown
    assert f"data: {json.dumps(rows[0]['data'])}" in shown
    assert any(line.endswith(f"created rule `{LONG_RULE}` → hold by labelyard") for line in shown), shown

    assert run("run", **NOT_A_TERMINAL).returncode == 4
    status = run.ok("status", **NOT_A_TERMINAL).stdout.splitlines()
    failure = [line for line in status if "broken: sinks failed" in line]
    assert failure == ["  broken: sinks failed: OSError: " + "the export share is not mounted; " * 6 + "(broken.py:9)"]
    below = status[status.index(failure[0]) + 1]  # the error's own second line, indented under the first
    assert below == "      mount it with: sudo mount /srv/export " + "x" * 120, status
    assert any(LONG_QUEUE in line and line.count("│") == 6 for line in status), status  # the row is whole


MISTAKES_WORKFLOW = """\
workflow: tickets
labels: {type: choice, choices: [billing, bug]}
queues:
  triage: {roles: [annotator]}
on_create:
  - name: default
    do: {annotate: triage, overlap: 1}
sinks:
  - {plugin: jsonl, path: labelyard.db-wal}
  - {plugin: jsonl, path: out.jsonl, batch: ten}
notify:
  - {plugin: webhook, url: "ftp://x", events: [dnoe]}
"""


def test_apply_lists_validates_mistakes_with_its_database_checks(run, tmp_path):
    (tmp_path / "tickets.workflow.yaml").write_text(MISTAKES_WORKFLOW, encoding="utf-8")
    run.ok("init")
    validated = json.loads(run("validate", "--json", "tickets.workflow.yaml").stdout)
    assert len(validated) == 3  # batch, url, events: validate knows no database

    proc = run("apply", "tickets.workflow.yaml")
    assert proc.returncode == 1 and proc.stdout == ""
    wal = ("tickets.workflow.yaml:9:27: sinks entry 1 (`jsonl`): `path: labelyard.db-wal` is the database's "
           f"write-ahead log ({run.db}): the sink would overwrite it; give the sink a file of its own")
    assert proc.stderr.splitlines() == [wal] + [f"tickets.workflow.yaml:{d['line']}:{d['col']}: {d['message']}"
                                                for d in validated]

    proc = run("apply", "--json", "tickets.workflow.yaml")
    assert proc.returncode == 1
    listed = json.loads(proc.stdout)
    assert listed["changed"] is False
    assert listed["diagnostics"][1:] == validated and "write-ahead log" in listed["diagnostics"][0]["message"]
    assert run.json("status", "--json")["workflow"] is None  # nothing was applied


def worker_events(run) -> list[str]:
    with sqlite3.connect(run.db) as db:
        return [kind for (kind,) in db.execute("SELECT kind FROM events WHERE kind LIKE 'worker_%' ORDER BY id")]


def test_adding_a_worker_again_unchanged_says_nothing_changed(run):
    run.ok("init")
    assert run.ok("workers", "add", "a1", "--role", "annotator", "--skill", "legal").stdout == "added a1\n"
    before = worker_events(run)
    assert run.ok("workers", "add", "a1", "--role", "annotator").stdout == "a1 unchanged; nothing changed\n"
    assert worker_events(run) == before  # no event, as the message says
    assert run.ok("workers", "add", "a1", "--role", "annotator", "--capacity", "2").stdout == "updated a1\n"
    assert worker_events(run) == before + ["worker_updated"]


def test_init_sets_up_an_empty_file_as_a_new_one_and_keeps_its_mode(run, tmp_path):
    empty, private = tmp_path / "empty.db", tmp_path / "private.db"
    empty.touch()
    empty.chmod(0o644)
    private.touch()
    private.chmod(0o600)

    proc = run.ok("init", "--db", "empty.db")
    assert proc.stderr == ("warning: empty.db: mode 0644 lets users outside its group open it (kept: the file is "
                           "yours); `chmod 660 empty.db` makes it 0660, as `init` makes a new one\n")
    assert run.ok("init", "--db", "private.db").stderr == ""  # owner and group only: nothing to say
    assert run.ok("init", "--db", "new.db").stderr == ""
    for path, mode in ((empty, 0o644), (private, 0o600), (tmp_path / "new.db", 0o660)):
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA page_size").fetchone()[0] == 2048, path  # as design.md promises
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert path.stat().st_mode & 0o777 == mode, path
    assert run.ok("init", "--db", "empty.db").stderr == ""  # a database now, not an empty file
