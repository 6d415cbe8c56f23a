"""Helpers for the lead, timer, gold and agreement tests (not a conftest: plain imports).

:class:`Project` runs the real ``labelyard`` command in a subprocess on a real
SQLite file, with ``LABELYARD_NOW`` set from hours after :data:`T0`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

T0 = 1767225600  # 2026-01-01T00:00:00Z
LEAD = "lena"

WORKFLOW = """\
workflow: qa
labels: {type: choice, choices: [cat, dog, bird]}
queues:
  triage:  {roles: [annotator]}
  vets:    {roles: [annotator], skills: [vet]}
  senior:  {roles: [senior]}
  experts: {roles: [expert], sla: 4h}
on_create:
  - name: medical
    when: task.category == "medical"
    do: {annotate: vets, overlap: 1}
  - name: default
    do: {annotate: triage, overlap: 2}
on_quorum:
  - name: unanimous
    when: votes.unanimous
    do: accept
  - name: split
    do: {review: senior}
on_timer:
  - name: stale assignment
    when: assignment.age > 2h
    do: release
  - name: sla breach
    when: task.age > 48h
    do: {escalate: experts, reason: "SLA breach"}
"""


def at(hours: float) -> str:
    """``LABELYARD_NOW`` for ``hours`` after :data:`T0`."""
    return str(T0 + hours * 3600)


def _command() -> list[str]:
    beside = Path(sys.executable).with_name("labelyard")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("labelyard")
    return [found] if found else [sys.executable, "-m", "router.cli"]


class Project:
    """A project folder with a database, driven through the CLI."""

    def __init__(self, folder: Path, workflow: str = WORKFLOW):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.db = folder / "labelyard.db"
        self.command = _command()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LABELYARD_")}
        self.env.update(LABELYARD_DB=str(self.db), LABELYARD_NOW=at(0), LABELYARD_WORKER=LEAD)
        self.run_ok("init")
        (folder / "wf.workflow.yaml").write_text(workflow)
        self.run_ok("apply", str(folder / "wf.workflow.yaml"))

    def run(self, *args: Any, hours: float | None = None, input: str | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if hours is not None:
            env["LABELYARD_NOW"] = at(hours)
        proc = subprocess.run([*self.command, *map(str, args)], env=env, cwd=self.folder, capture_output=True,
                              text=True, input=input, timeout=120)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def run_ok(self, *args: Any, **kw: Any) -> subprocess.CompletedProcess:
        proc = self.run(*args, **kw)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    def json(self, *args: Any, **kw: Any) -> Any:
        return json.loads(self.run_ok(*args, "--json", **kw).stdout)

    def ingest(self, rows: list[dict[str, Any]], name: str = "tasks.jsonl") -> dict[str, Any]:
        path = self.folder / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return self.json("ingest", path)

    def worker(self, name: str, *roles: str, skills: tuple[str, ...] = ()) -> None:
        args = ["workers", "add", name]
        for role in roles:
            args += ["--role", role]
        for skill in skills:
            args += ["--skill", skill]
        self.run_ok(*args)

    def claim(self, worker: str, **kw: Any) -> dict[str, Any]:
        return self.json("claim", "--as", worker, **kw)

    def submit(self, assignment: int, worker: str, *args: Any, **kw: Any) -> dict[str, Any]:
        return self.json("submit", assignment, "--as", worker, *args, **kw)

    def show(self, task: str) -> dict[str, Any]:
        return self.json("show", task)


def engine_at(db: Path, monkeypatch, hours: float):
    """An in-process engine over ``db`` with the clock at ``hours`` after T0."""
    from router.engine import Engine

    monkeypatch.setenv("LABELYARD_NOW", at(hours))
    return Engine.open(str(db))
