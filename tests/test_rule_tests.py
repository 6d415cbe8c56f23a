"""``labelyard test``: NAME.test.yaml cases beside NAME.workflow.yaml, PASS/FAIL/ERROR, coverage."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router.context import votes_facts
from rules.testing import TEST_SCHEMA, build_context, votes_from_labels

ROOT = Path(__file__).resolve().parent.parent

WORKFLOW = """\
# yaml-language-server: $schema=../rules/workflow.schema.json
workflow: pets
labels: {type: choice, choices: [cat, dog, bird]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - name: confident
    when: prediction.confidence >= 0.9
    do: accept
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
on_timer:
  - name: stale
    when: assignment.age > 2h
    do: release
"""

PASSING = """\
cases:
  - name: confident model
    event: on_create
    facts: {prediction: {label: cat, confidence: 0.95}}
    expect: {rule: confident, action: accept}
  - name: unsure model
    event: on_create
    facts: {prediction: {label: cat, confidence: 0.3}}
    expect: {rule: uncertain, action: annotate, target: triage, values: {overlap: 2, priority: 0.7}}
  - name: agreeing votes
    event: on_quorum
    facts: {votes: {labels: [dog, dog]}}
    expect: {rule: unanimous, action: accept}
  - name: split votes
    event: on_quorum
    facts: {votes: {labels: [dog, cat]}}
    expect: {rule: split, action: review, target: senior}
  - name: default
    event: on_create
    facts: {prediction: {confidence: 0.6}}
    expect: {rule: default, action: annotate}
  - name: stale after two hours
    event: on_timer
    facts: {assignment: {age: 121m}}
    expect: {rule: stale, action: release}
  - name: nothing due
    event: on_timer
    facts: {assignment: {age: 1h}}
    expect: {rule: null, action: none}
"""


def labelyard(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "LABELYARD_NOW": "2025-01-06T09:00:00Z"}, cwd=cwd, timeout=120)


@pytest.fixture()
def project(tmp_path) -> Path:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "pets.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    return tmp_path


def write_tests(project: Path, text: str, name: str = "pets") -> Path:
    path = project / "workflows" / f"{name}.test.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if needle in text)


def test_passing_cases_print_pass_cover_every_rule_and_exit_0(project):
    write_tests(project, PASSING)
    proc = labelyard("test", cwd=project)  # default folder: workflows/
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "workflows/pets.test.yaml  [pets]"
    assert lines[1] == "PASS  workflows/pets.test.yaml:2: confident model"
    assert sum(line.startswith("PASS ") for line in lines) == 7
    assert "coverage: all 6 rules exercised" in lines
    assert lines[-1] == "7 passed, 0 failed, 0 errors (7 cases, 0 rules not exercised)"


def test_a_failing_case_shows_a_diff_and_why_the_expected_rule_did_not_match(project):
    path = write_tests(project, """\
        cases:
          - name: wrong threshold
            event: on_create
            facts: {prediction: {label: cat, confidence: 0.55}}
            expect: {rule: uncertain, action: annotate, values: {overlap: 2}}
          - name: right
            event: on_quorum
            facts: {votes: {labels: [cat]}}
            expect: {rule: unanimous, action: accept}
        """)
    proc = labelyard("test", str(path), cwd=project)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"FAIL  {path}:2: wrong threshold" in out
    assert '- rule: "uncertain"\n      + rule: "default"' in out
    assert "- values.overlap: 2\n      + values.overlap: 1" in out
    assert "why not `uncertain`: prediction.confidence < 0.5 → false" in out
    assert "prediction.confidence = 0.55 < 0.5 → false" in out
    assert f"PASS  {path}:6: right" in out
    assert "1 passed, 1 failed, 0 errors" in out


def test_json_report_has_every_case_the_diff_and_the_coverage(project):
    path = write_tests(project, """\
        cases:
          - name: wrong action
            event: on_create
            facts: {prediction: {confidence: 0.95}}
            expect: {rule: confident, action: reject}
        """)
    proc = labelyard("test", "--json", str(project / "workflows"), cwd=project)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["ok"] is False
    assert data["summary"] == {"cases": 1, "pass": 0, "fail": 1, "error": 0, "file_errors": 0,
                               "uncovered_rules": 5}
    (suite,) = data["suites"]
    assert suite["test_file"] == str(path)
    (case,) = suite["cases"]
    assert case["status"] == "FAIL"
    assert case["diff"] == ['- action: "reject"', '+ action: "accept"']
    assert case["got"]["rule"] == "confident"
    assert case["trace"] == ["prediction.confidence = 0.95 >= 0.9 → true"]
    assert suite["coverage"]["covered"] == 1
    assert [(u["section"], u["rule"]) for u in suite["coverage"]["uncovered"]] == [
        ("on_create", "uncertain"), ("on_create", "default"), ("on_quorum", "unanimous"),
        ("on_quorum", "split"), ("on_timer", "stale")]


def test_uncovered_rules_are_listed_with_their_line_and_fail_only_with_strict(project):
    write_tests(project, """\
        cases:
          - name: confident
            event: on_create
            facts: {prediction: {confidence: 0.99}}
            expect: {rule: confident, action: accept}
        """)
    workflow = project / "workflows" / "pets.workflow.yaml"
    proc = labelyard("test", cwd=project)
    assert proc.returncode == 0, proc.stdout
    assert "note: 5 of 6 rules not exercised by any case:" in proc.stdout
    assert f"workflows/pets.workflow.yaml:{line_of(workflow, 'name: stale')}: on_timer `stale`" in proc.stdout
    strict = labelyard("test", "--strict", cwd=project)
    assert strict.returncode == 1
    assert "FAIL: 5 of 6 rules not exercised" in strict.stdout


def test_case_errors_point_at_the_file_line_and_column_with_a_suggestion(project):
    path = write_tests(project, """\
        cases:
          - name: misspelt rule
            event: on_create
            expect: {rule: uncertian, action: annotate}
          - name: a fact the section cannot see
            event: on_create
            facts: {votes: {labels: [cat]}}
            expect: {action: accept}
          - name: action of another section
            event: on_create
            expect: {action: release}
          - name: bad duration
            event: on_timer
            facts: {assignment: {age: two hours}}
            expect: {action: release}
        """)
    proc = labelyard("test", str(path), cwd=project)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"ERROR {path}:2: misspelt rule\n      {path}:4:20: no rule `uncertian` in on_create of pets; did you mean `uncertain`?" in out
    assert f"{path}:7:13: on_create does not see `votes` (it sees task, prediction, queue, now)" in out
    assert f"{path}:11:22: `release` cannot happen in on_create" in out
    assert "`assignment.age` is 'two hours': a number of seconds or a duration like 30s, 15m, 2h, 7d" in out
    assert "0 passed, 0 failed, 4 errors" in out


def test_structural_mistakes_in_the_test_file_are_all_reported(project):
    path = write_tests(project, """\
        cases:
          - name: one
            evnt: on_create
            expect: {rule: confident}
          - name: two
            event: on_created
            expect: {action: accept}
        """)
    proc = labelyard("test", str(path), cwd=project)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"ERROR {path}:2:5: cases.0: 'event' is required" in out
    assert f"ERROR {path}:3:5: unknown key `evnt`; did you mean `event`?" in out
    assert f"ERROR {path}:6:12: `cases.1.event` is \"on_created\"; expected one of" in out
    assert "(did you mean `on_create`?)" in out


def test_yaml_syntax_errors_and_an_invalid_workflow_are_errors(project):
    bad_yaml = write_tests(project, "cases:\n  - name: [unclosed\n")
    proc = labelyard("test", str(bad_yaml), cwd=project)
    assert proc.returncode == 1
    assert re.search(rf"ERROR {re.escape(str(bad_yaml))}:\d+:\d+: YAML syntax", proc.stdout)
    write_tests(project, PASSING)
    workflow = project / "workflows" / "pets.workflow.yaml"
    workflow.write_text(WORKFLOW.replace("do: accept", "do: acept", 1), encoding="utf-8")
    proc = labelyard("test", cwd=project)
    assert proc.returncode == 1
    assert f"ERROR workflows/pets.workflow.yaml:{line_of(workflow, 'acept')}:" in proc.stdout
    assert "unknown action `acept`; did you mean `accept`?" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_paths_may_be_a_test_file_a_workflow_file_or_missing(project):
    write_tests(project, PASSING)
    by_workflow = labelyard("test", "workflows/pets.workflow.yaml", cwd=project)
    assert by_workflow.returncode == 0
    assert "7 passed" in by_workflow.stdout
    missing = labelyard("test", "nowhere", cwd=project)
    assert missing.returncode == 1
    assert "labelyard: nowhere: no such file or folder" in missing.stderr
    other = project / "named.test.yaml"
    other.write_text("workflow: workflows/pets.workflow.yaml\n" + PASSING, encoding="utf-8")
    named = labelyard("test", str(other), cwd=project)
    assert named.returncode == 0, named.stdout
    assert "7 passed" in named.stdout


def test_a_duplicate_case_name_is_an_error(project):
    first = PASSING.split("  - name: unsure model")[0]
    path = write_tests(project, first + first.split("cases:\n", 1)[1])
    proc = labelyard("test", str(path), cwd=project)
    assert proc.returncode == 1
    assert "duplicate case name `confident model` (first at line 2)" in proc.stdout


@pytest.mark.parametrize("labels", [[], ["a"], ["a", "a", "b"], ["a", "b"], ["a", "b", "c", "c"],
                                    [["x", "y"], ["x", "y"], ["y"]], [{"x": 1}, {"x": 1}]])
def test_votes_derived_in_tests_equal_the_engines(labels):
    rows = [{"worker": f"w{i}", "label": json.dumps(label), "flagged": 0, "queue": "q"} for i, label in enumerate(labels)]
    engine = votes_facts(rows, {})
    derived = votes_from_labels(labels)
    for key, value in derived.items():
        assert engine[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_facts_read_durations_times_and_given_values_win():
    ctx = build_context({"task": {"age": "1.5h"}, "queue": {"oldest_age": "2d"}, "now": "2025-01-06T09:00:00Z",
                         "votes": {"labels": ["a", "b"], "agreement": 0.9},
                         "prediction": {"scores": {"a": 0.6, "b": 0.4}}})
    assert ctx["task"]["age"] == 5400
    assert ctx["queue"]["oldest_age"] == 172800
    assert ctx["now"] == 1736154000
    assert ctx["votes"]["count"] == 2 and ctx["votes"]["tie"] is True
    assert ctx["votes"]["agreement"] == 0.9
    assert ctx["prediction"]["margin"] == pytest.approx(0.2)


def test_the_documented_test_file_schema_is_the_one_in_use():
    docs = (ROOT / "docs" / "workflow-language.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- test-schema -->\n```json\n(.*?)\n```", docs, re.S)
    assert block, "docs/workflow-language.md lacks the test file schema block"
    assert json.loads(block.group(1)) == TEST_SCHEMA, (
        "the schema in docs/workflow-language.md drifted: paste "
        "`python -c 'import json, rules.testing as t; print(json.dumps(t.TEST_SCHEMA, indent=2))'`")


@pytest.mark.parametrize("key_line", ["\ufeffworkflow: real.workflow.yaml", '"workflow": real.workflow.yaml'])
def test_the_workflow_a_test_file_names_is_found_with_a_bom_or_a_quoted_key(project, key_line):
    real = WORKFLOW.replace("workflow: pets", "workflow: real")
    (project / "workflows" / "real.workflow.yaml").write_text(real, encoding="utf-8")
    path = write_tests(project, "", name="other")
    path.write_text(key_line + "\n" + textwrap.dedent(PASSING), encoding="utf-8")
    proc = labelyard("test", str(path.relative_to(project)), cwd=project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == "workflows/other.test.yaml  [real]"


def test_odd_facts_are_case_errors_or_ignored_never_a_traceback(project):
    write_tests(project, """\
    cases:
      - name: huge score
        event: on_create
        facts: {prediction: {confidence: 0.95, scores: {dog: 1""" + "0" * 400 + """, cat: 1}}}
        expect: {rule: confident, action: accept}
      - name: dates in labels
        event: on_quorum
        facts: {votes: {labels: [{d: 2024-01-01}, {d: 2024-01-01}]}}
        expect: {rule: unanimous, action: accept}
    """)
    proc = labelyard("test", cwd=project)
    assert "Traceback" not in proc.stderr
    assert "PASS  workflows/pets.test.yaml:2: huge score" in proc.stdout
    # a date is no label of a choice workflow: the case says so, as `submit` would refuse it
    assert "ERROR workflows/pets.test.yaml:6: dates in labels" in proc.stdout
    assert "`votes.labels[0]`: label" in proc.stdout


def test_stage_age_counts_from_the_current_stage():
    ctx = build_context({"task": {"age": "3d", "stage_age": "5m"}})
    assert (ctx["task"]["age"], ctx["task"]["stage_age"]) == (3 * 86400, 300)


def test_expected_values_may_be_written_with_an_exponent(project):
    write_tests(project, """\
    cases:
      - name: uncertain with an exponent
        event: on_create
        facts: {prediction: {confidence: 0.4}}
        expect: {rule: uncertain, action: annotate, values: {priority: 6e-1}}
    """)
    proc = labelyard("test", cwd=project)
    assert "PASS  workflows/pets.test.yaml:2: uncertain with an exponent" in proc.stdout, proc.stdout
