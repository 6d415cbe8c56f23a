"""Fixes from the twelfth session's docs tester, as real subprocesses on a real database file."""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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


def plugin_functions_section() -> str:
    docs = (ROOT / "docs" / "workflow-language.md").read_text(encoding="utf-8")
    return docs[docs.index("### Plugin functions"):docs.index("### Examples, checked by the tests")]


def test_the_plugin_functions_example_works_as_written(run, tmp_path):
    section = plugin_functions_section()
    module = re.search(r"```python\n# (\S+)\n(.*?)```", section, re.S)
    workflow = re.search(r"```yaml\n# (\S+)\n(.*?)```", section, re.S)
    console = re.search(r"```console\n\$ PYTHONPATH=\. labelyard (.*?)\n(.*?)```", section, re.S)
    assert module and workflow and console, "the section lacks its module, workflow or command"
    (tmp_path / module[1]).parent.mkdir(parents=True)
    (tmp_path / module[1]).write_text(f"# {module[1]}\n{module[2]}", encoding="utf-8")
    (tmp_path / workflow[1]).write_text(workflow[2], encoding="utf-8")
    here = "." + os.pathsep + os.environ.get("PYTHONPATH", "")  # PYTHONPATH=. (this checkout stays first after it)

    assert run.ok(*console[1].split(), env={"PYTHONPATH": here}).stdout == console[2]
    without = run(*console[1].split())
    assert without.returncode == 1
    said = re.search(r"``(plugin module\s.*?)``", section, re.S)[1].replace("\n", " ")
    assert said in without.stderr

    # and the rule does what it says: a task older than 2 days is escalated on a Saturday, not on a Friday
    run.env["PYTHONPATH"] = here
    run.ok("init")
    run.ok("apply", workflow[1])
    (tmp_path / "t.jsonl").write_text('{"id": "t1", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl", env={"LABELYARD_NOW": "2025-03-05T09:00:00Z"})
    run.ok("tick", env={"LABELYARD_NOW": "2025-03-07T10:00:00Z"})  # a Friday
    assert run.json("show", "t1", "--json")["task"]["stage"] != "escalated"
    run.ok("tick", env={"LABELYARD_NOW": "2025-03-08T10:00:00Z"})  # a Saturday
    assert run.json("show", "t1", "--json")["task"]["stage"] == "escalated"


def test_the_plugin_functions_example_works_from_a_plugins_dir(run, tmp_path):
    section = plugin_functions_section()
    module = re.search(r"```python\n# \S+\n(.*?)```", section, re.S)[1]
    workflow = re.search(r"```yaml\n# \S+\n(.*?)```", section, re.S)[1]
    assert "LABELYARD_PLUGINS_DIR" in section
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "weekend_functions.py").write_text(module, encoding="utf-8")
    single = re.sub(r"plugins: \[.*\]\n", "", workflow)
    (tmp_path / "single.workflow.yaml").write_text(single, encoding="utf-8")
    assert "is_weekend(now)" in single and "plugins:" not in single
    proc = run.ok("validate", "single.workflow.yaml", env={"LABELYARD_PLUGINS_DIR": str(tmp_path / "plugins")})
    assert proc.stdout == "single.workflow.yaml: ok (weekend)\n"


def test_workers_list_quotes_a_name_holding_a_space_as_it_quotes_a_skill(run):
    run.ok("init")
    run.ok("workers", "add", "mary ann", "--role", "annotator", "--skill", "legal docs")
    run.ok("workers", "add", 'say"x', "--role", "annotator")
    lines = run.ok("workers", "list").stdout.splitlines()
    assert lines[1].startswith('"mary ann"       roles=annotator skills="legal docs" capacity=-')
    assert lines[2].startswith('"say\\"x"         roles=annotator')
    assert lines[0].startswith("lead-lucy        roles=lead")  # a plain name stays plain
    # a script that splits fields as a shell does reads each name as one field
    assert [shlex.split(line)[:2] for line in lines] == [
        ["lead-lucy", "roles=lead"], ["mary ann", "roles=annotator"], ['say"x', "roles=annotator"]]
    assert run.ok("workers", "set", "mary ann", "--capacity", "2").stdout == \
        '"mary ann": roles=annotator skills="legal docs" capacity=2\n'
    assert {w["id"] for w in run.json("workers", "list", "--json")} == {"lead-lucy", "mary ann", 'say"x'}
