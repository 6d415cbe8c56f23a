"""Worker processes for the real-process concurrency tests.

Each worker script prints ``ready``, waits for ``go`` on its standard input
(so all start together without the test sleeping), works, and writes its
record as JSON and its actions as JSON lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HANG_GUARD_S = 300  # only so that a deadlock fails the test instead of hanging it; not a timing assertion


def child_env() -> dict[str, str]:
    """The test's environment without Labelyard's own variables, unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELYARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """One worker script run as a process: ``script --db DB --worker NAME --out … --log …`` plus ``extra``."""

    def __init__(self, script: Path, tmp_path: Path, db: Path, name: str, extra: list[str]):
        self.name = name
        self.out = tmp_path / f"{name}.json"
        self.log = tmp_path / f"{name}.log.jsonl"
        self.err_path = tmp_path / f"{name}.stderr"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "--db", str(db), "--worker", name, "--out", str(self.out),
             "--log", str(self.log), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, text=True,
            env=child_env(), cwd=str(tmp_path),
        )

    def wait_ready(self) -> None:
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", f"{self.name} did not start: {self.stderr()}"

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.close()

    def wait(self) -> int:
        code = self.proc.wait(timeout=HANG_GUARD_S)
        self._err.close()
        self.proc.stdout.close()
        return code

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self.err_path.read_text()

    def record(self) -> dict:
        return json.loads(self.out.read_text())

    def logged(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
