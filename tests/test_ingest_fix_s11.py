"""`ingest` on a terminal: the progress bar is drawn on standard error, where the messages go and
whose being a terminal decides that a bar is shown. It was drawn on standard output, so `labelyard
ingest FILE > report.txt` (or `| head -1`) began with an empty line left by the bar, and its cursor
controls went into whatever standard output was. A real subprocess, standard error on a
pseudo-terminal, standard output a pipe."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from conftest import SMALL_WORKFLOW

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal")


def run_with_terminal_stderr(run, *args: str) -> tuple[str, str]:
    """``labelyard ARGS`` with standard error on a pseudo-terminal and standard output a pipe."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([*run.command, *args], stdout=subprocess.PIPE, stderr=slave, env=run.env,
                            cwd=run.folder)
    os.close(slave)
    err = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed: the command ended
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    out = proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0, err
    return out.decode(), err.decode(errors="replace")


def test_ingest_draws_its_progress_on_standard_error_and_reports_alone_on_standard_output(run, write_workflow,
                                                                                         tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(SMALL_WORKFLOW))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "data": {"x": 1}, "prediction": {"label": "cat", "confidence": 0.95}}\n'
                    'not json\n{"id": "b", "data": "\n', encoding="utf-8")
    out, err = run_with_terminal_stderr(run, "ingest", str(rows))
    assert out.startswith("ingested 1, duplicates 0, rejected 2\n"), repr(out)  # before: "\ningested …"
    assert "\x1b" not in out and "\r" not in out
    assert "ingest" in err and "3/3" in err  # the bar, where the messages are
    assert "rejected rows are kept with their reasons: labelyard rejects --db" in err
