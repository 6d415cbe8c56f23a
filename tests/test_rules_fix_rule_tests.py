"""``labelyard test``: a rule that failed at run time does not pass; an unknown event spoils only its case.

Real files in ``tmp_path``, ``labelyard test`` as a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

WORKFLOW = """\
workflow: tickets
labels: {type: choice, choices: [bug, billing]}
queues:
  triage: {roles: [annotator]}
on_create:
  - name: close
    when: max(prediction.scores) - prediction.label < 0.2
    do: {annotate: triage, overlap: 3}
  - name: default
    do: {annotate: triage}
"""
"""``close`` fails on any row with scores: a number minus a text is a type error."""

FACTS = "{prediction: {label: bug, confidence: 0.5, scores: {bug: 0.5, billing: 0.45}}}"
ERROR = "rule `close` failed: cannot subtract number and text in `max(prediction.scores) - prediction.label`"


def labelyard(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "LABELYARD_NOW": "2025-01-06T09:00:00Z"}, cwd=cwd, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def write(folder: Path, cases: str) -> Path:
    (folder / "tickets.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    path = folder / "tickets.test.yaml"
    path.write_text(textwrap.dedent(cases), encoding="utf-8")
    return path


def cases_of(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    (suite,) = json.loads(proc.stdout)["suites"]
    return {case["name"]: case for case in suite["cases"]}


def test_a_case_expecting_a_rule_that_failed_at_run_time_fails_with_the_error(tmp_path):
    path = write(tmp_path, f"""\
        cases:
          - name: close call
            event: on_create
            facts: {FACTS}
            expect: {{rule: close}}
        """)
    proc = labelyard("test", str(path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout
    assert f"FAIL  {path}:2: close call" in proc.stdout
    assert f"({ERROR})" in proc.stdout
    assert "0 passed, 1 failed, 0 errors" in proc.stdout

    data = labelyard("test", "--json", str(path), cwd=tmp_path)
    assert data.returncode == 1
    case = cases_of(data)["close call"]
    assert case["status"] == "FAIL"
    assert case["message"] == ERROR
    assert case["diff"] == ['- rule: "close"', '+ rule: "close" failed: the task is held']
    assert (case["got"]["rule"], case["got"]["action"]) == ("close", "hold")


def test_a_case_that_expects_the_hold_of_a_failing_rule_passes(tmp_path):
    path = write(tmp_path, f"""\
        cases:
          - name: the hold itself
            event: on_create
            facts: {FACTS}
            expect: {{rule: close, action: hold}}
          - name: the reason itself
            event: on_create
            facts: {FACTS}
            expect: {{rule: close, reason: "{ERROR}"}}
          - name: the rule when it does not fail
            event: on_create
            expect: {{rule: default, action: annotate, target: triage}}
        """)
    proc = labelyard("test", "--json", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    assert {name: case["status"] for name, case in cases_of(proc).items()} == {
        "the hold itself": "PASS", "the reason itself": "PASS", "the rule when it does not fail": "PASS"}


def test_a_case_with_an_unknown_event_is_an_error_and_the_others_still_run(tmp_path):
    path = write(tmp_path, """\
        cases:
          - name: no scores
            event: on_create
            expect: {rule: default}
          - name: misspelt event
            event: on_creat
            expect: {rule: default}
          - name: no scores again
            event: on_create
            facts: {task: {category: x}}
            expect: {rule: default, action: annotate}
        """)
    proc = labelyard("test", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"PASS  {path}:2: no scores" in out
    assert (f"ERROR {path}:5: misspelt event\n"
            f"      {path}:6:12: unknown event `on_creat`; did you mean `on_create`?") in out
    assert f"PASS  {path}:8: no scores again" in out
    assert "2 passed, 0 failed, 1 errors (3 cases, 1 rules not exercised)" in out

    data = json.loads(labelyard("test", "--json", str(path), cwd=tmp_path).stdout)
    assert data["summary"] == {"cases": 3, "pass": 2, "fail": 0, "error": 1, "file_errors": 0,
                               "uncovered_rules": 1}
    assert data["suites"][0]["errors"] == []


def test_an_event_that_is_no_text_is_a_case_error_listing_the_events(tmp_path):
    path = write(tmp_path, """\
        cases:
          - name: a list for an event
            event: [on_create]
            expect: {rule: default}
          - name: fine
            event: on_create
            expect: {rule: default}
        """)
    proc = labelyard("test", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert (f"{path}:3:12: unknown event `[\"on_create\"]` "
            "(events: on_create, on_quorum, on_review, on_worker, on_timer)") in proc.stdout
    assert f"PASS  {path}:5: fine" in proc.stdout


def test_a_file_of_the_wrong_shape_still_runs_no_case_and_lists_the_event_too(tmp_path):
    path = write(tmp_path, """\
        cases:
          - name: no expect
            event: on_create
          - name: misspelt event
            event: on_creat
            expect: {rule: default}
        """)
    proc = labelyard("test", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert f"ERROR {path}:2:5: cases.0: 'expect' is required" in proc.stdout
    assert f"ERROR {path}:5:12: `cases.1.event` is \"on_creat\"" in proc.stdout
    assert "(0 cases," in proc.stdout


def test_a_case_expecting_a_later_rule_is_told_an_earlier_one_failed(tmp_path):
    path = write(tmp_path, f"""\
        cases:
          - name: expects the fallback
            event: on_create
            facts: {FACTS}
            expect: {{rule: default}}
        """)
    proc = labelyard("test", str(path), cwd=tmp_path)
    assert proc.returncode == 1
    assert '- rule: "default"\n      + rule: "close"' in proc.stdout
    assert "why not `default`: the earlier rule `close` failed, which holds the task" in proc.stdout
    assert "an earlier rule matched first" not in proc.stdout
