"""Shared fixtures: the ``labelyard`` command run as a real subprocess on a real database file.

``run("claim", "--as", "ann", "--json")`` runs the command with ``LABELYARD_DB``
pointing into ``tmp_path``, a fixed ``LABELYARD_NOW`` and ``LABELYARD_WORKER``,
and returns the ``CompletedProcess``; ``run.json(...)`` also checks exit 0 and
decodes standard output. No run may print a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

NOW = "2025-03-01T09:00:00Z"
LEAD = "lead-lucy"

SMALL_WORKFLOW = """\
# yaml-language-server: $schema=workflow.schema.json
workflow: pets
description: Pet photos, routed by model confidence and category
labels:
  type: choice
  choices: [cat, dog, bird]
queues:
  triage: {roles: [annotator]}
  vets:   {roles: [annotator], skills: [vet]}
  senior: {roles: [senior]}
on_create:
  - name: confident
    when: prediction.confidence >= 0.9
    do: accept
  - name: medical
    when: task.category == "medical"
    do: {annotate: vets, overlap: 1}
  - name: uncertain
    when: prediction.confidence < 0.5
    do: {annotate: triage, overlap: 2, priority: 1 - prediction.confidence}
  - name: default
    do: {annotate: triage, overlap: 1}
on_quorum:
  - name: unanimous
    when: votes.unanimous
    do: accept
  - name: split
    do: {review: senior}
"""


def labelyard_command() -> list[str]:
    """This interpreter's ``labelyard`` script, else the one on PATH, else ``python -m router.cli``."""
    beside = Path(sys.executable).with_name("labelyard")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("labelyard")
    return [found] if found else [sys.executable, "-m", "router.cli"]


class Runner:
    """Runs ``labelyard`` in a subprocess against one project folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.db = folder / "labelyard.db"
        self.command = labelyard_command()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LABELYARD_")}
        self.env.update(LABELYARD_DB=str(self.db), LABELYARD_NOW=NOW, LABELYARD_WORKER=LEAD)

    def __call__(self, *args: Any, env: dict[str, str | None] | None = None, cwd: Path | None = None,
                 input: str | None = None) -> subprocess.CompletedProcess:
        """Run ``labelyard ARGS``; ``env`` entries override the defaults (``None`` removes one)."""
        environ = dict(self.env)
        for key, value in (env or {}).items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        proc = subprocess.run([*self.command, *map(str, args)], capture_output=True, text=True, env=environ,
                              cwd=cwd or self.folder, input=input, timeout=120)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def ok(self, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run and check exit 0."""
        proc = self(*args, **kwargs)
        assert proc.returncode == 0, f"labelyard {' '.join(map(str, args))} exited {proc.returncode}: {proc.stderr}"
        return proc

    def json(self, *args: Any, **kwargs: Any) -> Any:
        """Run with exit 0 and decode standard output (one JSON document)."""
        return json.loads(self.ok(*args, **kwargs).stdout)


@pytest.fixture
def run(tmp_path: Path) -> Runner:
    """``labelyard`` as a subprocess on ``tmp_path/labelyard.db`` (not yet initialised)."""
    return Runner(tmp_path)


@pytest.fixture
def write_workflow(tmp_path: Path):
    """Write a workflow file into ``tmp_path``: ``write_workflow(text=SMALL_WORKFLOW, name=...) -> Path``."""

    def write(text: str = SMALL_WORKFLOW, name: str = "pets.workflow.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
