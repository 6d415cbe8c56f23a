"""Fixes of the eleventh session in the workflow language.

Misspelt facts in rule tests, empty sections, label keys that do not apply to the type, whole YAML
messages, bare actions in the schema, duplicate case names in the counts, replay's sentence for a
section that would do nothing, and ``submit --label`` where ``--value`` is needed.

The CLI runs as a real ``labelyard`` subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

HEAD = """\
workflow: f
labels: {type: choice, choices: [bug, other]}
queues:
  triage: {roles: [annotator]}
"""

RULES = HEAD + """\
on_create:
  - name: confident model
    when: prediction.confidence >= 0.95
    do: accept
  - name: no customer
    when: task.data.customer == null
    do: {hold: "no customer"}
  - name: default
    do: {annotate: triage}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------- 1. misspelt facts in rule tests

def test_a_misspelt_fact_below_a_root_is_a_case_error_with_a_suggestion(run, tmp_path):
    write(tmp_path, "f.workflow.yaml", RULES)
    path = write(tmp_path, "f.test.yaml", """\
        cases:
          - name: typo in a prediction fact
            event: on_create
            facts:
              task: {data: {customer: acme}}
              prediction: {label: bug, confidense: 0.99}
            expect: {rule: default}
          - name: typo in a task fact
            event: on_create
            facts:
              task: {dta: {customer: acme}}
            expect: {rule: no customer}
          - name: no such field at all
            event: on_create
            facts:
              task: {data: {customer: acme}, zzzz: 1}
            expect: {rule: default}
          - name: the right spelling still runs
            event: on_create
            facts:
              task: {data: {customer: acme, anything: {goes: here}}}
              prediction: {label: bug, confidence: 0.99, scores: {bug: 0.99, whatever: 0.01}}
            expect: {rule: confident model}
        """)
    proc = run("test", path)
    assert proc.returncode == 1, proc.stdout
    out = proc.stdout
    assert (f"ERROR {path}:2: typo in a prediction fact\n"
            f"      {path}:6:32: unknown fact `prediction.confidense`; did you mean `prediction.confidence`?") in out
    assert (f"ERROR {path}:8: typo in a task fact\n"
            f"      {path}:11:14: unknown fact `task.dta`; did you mean `task.data`?") in out
    assert f"{path}:16:38: unknown fact `task.zzzz` (task has: id, external_id," in out
    assert f"PASS  {path}:18: the right spelling still runs" in out


def test_votes_workers_is_a_fact_a_case_may_give(run, tmp_path):
    write(tmp_path, "f.workflow.yaml", HEAD + "on_quorum:\n  - name: all\n    when: votes.unanimous\n"
                                              "    do: accept\n  - name: else\n    do: {hold: split}\n")
    path = write(tmp_path, "f.test.yaml", """\
        cases:
          - name: two voters agree
            event: on_quorum
            facts: {votes: {labels: [bug, bug], workers: [ann, bob]}}
            expect: {rule: all}
          - name: one misspelt
            event: on_quorum
            facts: {votes: {labels: [bug, other], worker: [ann, bob]}}
            expect: {rule: else}
        """)
    proc = run("test", path)
    assert f"PASS  {path}:2: two voters agree" in proc.stdout
    assert "unknown fact `votes.worker`; did you mean `votes.workers`?" in proc.stdout


# ---------------------------------------------------------------- 2. empty sections

def test_an_empty_task_section_is_a_warning_and_fails_strict_validate(run, tmp_path):
    path = write(tmp_path, "e.workflow.yaml", HEAD + "on_create: []\non_quorum: []\non_review: []\non_worker: []\n")
    plain = run("validate", path)
    assert plain.returncode == 0, plain.stderr
    warnings = [line for line in plain.stderr.splitlines() if ": warning: " in line]
    assert warnings == [
        f"{path}:5:1: warning: on_create is an empty list: every new task is held, as no rule routes it",
        f"{path}:6:1: warning: on_quorum is an empty list: every task that reaches its quorum is held; leave the "
        "section out for the default (accept a strict majority, else hold)",
        f"{path}:7:1: warning: on_review is an empty list: every reviewed task is held; leave the section out for "
        "the default (a rejection returns the task to its annotators, else accept)",
    ]
    assert run("validate", "--strict", path).returncode == 1
    left_out = write(tmp_path, "l.workflow.yaml", HEAD + "on_create: [{do: {annotate: triage}}]\n")
    assert run("validate", "--strict", left_out).returncode == 0
