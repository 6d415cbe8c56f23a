"""Fixes of the seventh session: `init` checks before it writes, worker names, roles, skills and
capacity are checked, reassign keeps a worker to one vote per task, lead dry runs run the real
checks, gold slots are no lead's, and an unchanged pause writes nothing.

Every test runs the real ``labelyard`` command in a subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import LEAD as RUN_LEAD
from lead_support import LEAD, WORKFLOW, Project


def events(db, kind: str | None = None) -> list[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT kind, detail FROM events ORDER BY id").fetchall()
    finally:
        conn.close()
    return [r for r in rows if kind is None or r[0] == kind]


def task(p, ref):
    return p.show(ref)["task"]


def statuses(p, ref):
    return [(a["worker"], a["status"]) for a in p.show(ref)["assignments"]]


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    for name in ("ann1", "ann2", "ann3"):
        p.worker(name, "annotator")
    p.ingest([{"id": f"T{i}", "data": {"n": i}} for i in range(1, 5)])
    return p


# -- 1. `init` on a database a newer Labelyard migrated --------------------------------------


def test_init_refuses_a_newer_schema_like_every_command_and_writes_nothing(run):
    run.ok("init")
    conn = sqlite3.connect(run.db)
    with conn:
        conn.execute("UPDATE schema_version SET version = 99")
        conn.execute("DELETE FROM workers")  # a project without a lead: init would register one
    conn.close()
    before = events(run.db)
    status = run("status")
    assert status.returncode == 1
    assert "database schema 99 is newer than this Labelyard (7); upgrade labelyard" in status.stderr

    proc = run("init", "--json", env={"LABELYARD_WORKER": "newlead"})
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout == ""
    assert proc.stderr == f"labelyard: {run.db}: database schema 99 is newer than this Labelyard (7); upgrade labelyard\n"
    assert "already up to date" not in proc.stdout + proc.stderr
    conn = sqlite3.connect(run.db)
    assert conn.execute("SELECT count(*) FROM workers").fetchone()[0] == 0
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(99,)]
    conn.close()
    assert events(run.db) == before
