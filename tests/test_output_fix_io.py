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
