"""Ticks that overlap (two `labelyard tick`, or `run` and `tick`) act on ``queue.*`` as one tick does:
each page's write transaction reads the queue counters again when another process committed since.

Real SQLite files and real ``labelyard`` processes. The two processes are made to overlap without
sleeping: a rule function blocks each one on a FIFO at its first decision (after it has read
``queue.waiting``) until the test has seen both arrive.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import threading
from pathlib import Path

import pytest

from lead_support import Project, at
from process_support import HANG_GUARD_S

BASE = """\
workflow: overlap
labels: {type: choice, choices: [cat, dog]}
queues:
  triage:   {roles: [annotator]}
  overflow: {roles: [annotator]}
on_create: [{name: start, do: {annotate: triage}}]
"""
GATED = BASE + """\
on_timer:
  - name: overflow
    when: 'task.queue == "triage" and queue.waiting > 600 and gate(queue.waiting)'
    do: {escalate: overflow}
"""
GATE_PLUGIN = '''\
import os

from router import hookimpl

_passed = []


def gate(value):
    """True; the first call waits on the FIFO named by TICK_GATE until the test opens and closes it."""
    if not _passed and os.environ.get("TICK_GATE"):
        with open(os.environ["TICK_GATE"]) as fifo:
            fifo.read()
    _passed.append(value)
    return True


@hookimpl
def register_functions(register):
    register("gate", gate)
'''


def gated_project(tmp_path: Path) -> Project:
    p = Project(tmp_path, workflow=BASE)
    (tmp_path / "pl").mkdir()
    (tmp_path / "pl" / "gate_fn.py").write_text(textwrap.dedent(GATE_PLUGIN))
    p.env["LABELYARD_PLUGINS_DIR"] = str(tmp_path / "pl")
    (tmp_path / "gated.workflow.yaml").write_text(GATED)
    p.run_ok("apply", tmp_path / "gated.workflow.yaml")
    return p


def open_when_reached(gate: Path):
    """Open the gate for writing: returns once its process waits there (the hang guard opens the
    reading end itself, so a process that never arrives fails the test instead of hanging it)."""
    guard = threading.Timer(HANG_GUARD_S, lambda: os.close(os.open(gate, os.O_RDONLY | os.O_NONBLOCK)))
    guard.start()
    try:
        return open(gate, "w")
    finally:
        guard.cancel()


def moved(report: dict) -> int:
    timers = report.get("timers", report)  # `run --json` has the tick's report under "timers"
    return timers["actions"].get("escalate", 0)


@pytest.mark.parametrize("commands", [("tick", "tick"), ("run", "tick")], ids=["tick+tick", "run+tick"])
def test_overlapping_ticks_move_what_one_tick_moves(tmp_path, commands):
    p = gated_project(tmp_path)
    p.ingest([{"id": f"T{i}"} for i in range(1200)])
    gates = [tmp_path / f"gate{i}" for i in range(2)]
    procs = []
    for command, gate in zip(commands, gates):
        os.mkfifo(gate)
        env = {**p.env, "LABELYARD_NOW": at(1), "TICK_GATE": str(gate)}
        procs.append(subprocess.Popen([*p.command, command, "--json"], env=env, cwd=p.folder, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    writers = [open_when_reached(gate) for gate in gates]  # both have read queue.waiting = 1200
    for writer in writers:
        writer.close()  # let both go on together
    outputs = [proc.communicate(timeout=HANG_GUARD_S) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0 and "Traceback" not in err, err
    reports = [json.loads(out) for out, _ in outputs]
    assert sum(moved(r) for r in reports) == 600, reports
    queues = p.json("status")["queues"]
    assert (queues["triage"]["waiting"], queues["overflow"]["waiting"]) == (600, 600)
    assert p.json("tick", hours=2)["actions"] == {}  # 600 waiting is not > 600


def test_a_tick_counts_tasks_ingested_while_it_runs(tmp_path):
    p = gated_project(tmp_path)
    p.ingest([{"id": f"T{i}"} for i in range(1200)])
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    env = {**p.env, "LABELYARD_NOW": at(1), "TICK_GATE": str(gate)}
    proc = subprocess.Popen([*p.command, "tick", "--json"], env=env, cwd=p.folder, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    writer = open_when_reached(gate)  # the tick has read queue.waiting = 1200
    p.ingest([{"id": f"U{i}"} for i in range(300)], name="more.jsonl")
    writer.close()
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    assert proc.returncode == 0, err
    assert moved(json.loads(out)) == 900  # down to 600 from the 1500 waiting when it wrote
    assert p.json("status")["queues"]["triage"]["waiting"] == 600
