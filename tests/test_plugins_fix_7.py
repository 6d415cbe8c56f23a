"""Plugin fixes: locks through symlinks, webhook redirects and deadlines, sinks sharing a file,
file names that are not UTF-8, label comparison in reviewers, modules loaded twice, broken
exceptions, bounded settings, the version in `labelyard plugins`.

Real subprocesses of ``labelyard`` on real SQLite files, a real HTTP server on 127.0.0.1,
time through ``LABELYARD_NOW``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from router.plugin_api import PluginRun, ReviewItem
from router.plugins import describe_error, get_plugin_manager, load_plugins

BASE = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
on_quorum: [{name: check, do: {review: senior}}]
"""


def confident(ident: str) -> str:
    return json.dumps({"id": ident, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def project(run, tmp_path):
    """``init`` done; ``apply(text)`` writes and applies a workflow version."""
    run.ok("init")

    def apply(text: str, expect_ok: bool = True):
        path = tmp_path / "f.workflow.yaml"
        path.write_text(text, encoding="utf-8")
        return run.ok("apply", path.name) if expect_ok else run("apply", path.name)

    run.apply = apply
    return run


def store_spec(run, changes: dict) -> None:
    """Change the stored active workflow as an older Labelyard (without today's checks) would have applied it."""
    with sqlite3.connect(run.db) as conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec.update(changes)
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()


# -- 1: lock files are named from the database's real path -----------------------------------
def test_a_run_through_a_symlink_takes_the_real_databases_run_lock(project, tmp_path):
    from router.writer_lock import lock_path

    project.apply(BASE)
    other = tmp_path / "other"
    other.mkdir()
    (other / "lab.db").symlink_to(project.db)
    assert lock_path(str(other / "lab.db"), ".run-lock") == lock_path(str(project.db), ".run-lock") \
        == os.path.realpath(project.db) + ".run-lock"
    fd = os.open(f"{os.path.realpath(project.db)}.run-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        proc = project("run", "--db", other / "lab.db")
        assert proc.returncode == 0
        assert proc.stdout == "another labelyard run is in progress (pid 4242); nothing done\n"
    finally:
        os.close(fd)
    project.ok("run", "--db", other / "lab.db")
    # the writer queue too: one DB.lock beside the real file, none beside the symlink
    assert (tmp_path / "labelyard.db.lock").exists()
    assert not (other / "lab.db.lock").exists() and not (other / "lab.db.run-lock").exists()
