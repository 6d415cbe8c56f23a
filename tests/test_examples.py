"""The example workflows: each validates, each has passing rule tests, together they use every action.

Also keeps ``docs/workflow-language.md`` honest: its expression examples are evaluated.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rules.actions import ACTIONS
from rules.expr import compile_expression
from rules.workflow import load_workflow

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "workflows").glob("*.workflow.yaml"))
MODELINE = "# yaml-language-server: $schema=../rules/workflow.schema.json"


def labelyard(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "router.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "LABELYARD_NOW": "2025-01-06T09:00:00Z"}, cwd=ROOT, timeout=120)


def test_there_are_at_least_four_examples_each_with_a_test_file():
    names = {p.name[: -len(".workflow.yaml")] for p in EXAMPLES}
    assert {"ticket-triage", "street-boxes", "contract-escalation", "active-learning"} <= names
    for path in EXAMPLES:
        assert path.with_name(path.name.replace(".workflow.yaml", ".test.yaml")).is_file(), path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_starts_with_the_modeline_and_validates_strictly(path):
    assert path.read_text(encoding="utf-8").splitlines()[0] == MODELINE
    proc = labelyard("validate", "--strict", "--json", str(path.relative_to(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == []  # not even a warning


def test_labelyard_test_passes_every_example_and_exercises_every_rule():
    proc = labelyard("test", "--json", "--strict")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True
    tested = {Path(s["workflow_file"]).name for s in report["suites"]}
    assert tested == {p.name for p in EXAMPLES}
    for suite in report["suites"]:
        assert suite["cases"], suite["workflow_file"]
        assert all(c["status"] == "PASS" for c in suite["cases"]), suite["workflow_file"]
        assert suite["coverage"]["uncovered"] == [], suite["workflow_file"]
    assert report["summary"]["fail"] == report["summary"]["error"] == report["summary"]["file_errors"] == 0


def test_a_broken_expectation_in_an_example_fails(tmp_path):
    source = ROOT / "workflows" / "contract-escalation.test.yaml"
    broken = tmp_path / "contract-escalation.test.yaml"
    broken.write_text(source.read_text(encoding="utf-8").replace("target: partners", "target: experts", 1),
                      encoding="utf-8")
    (tmp_path / "contract-escalation.workflow.yaml").write_text(
        (ROOT / "workflows" / "contract-escalation.workflow.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    proc = labelyard("test", str(broken))
    assert proc.returncode == 1
    assert '- target: "experts"\n      + target: "partners"' in proc.stdout


def test_together_the_examples_use_every_action_every_section_and_label_types():
    actions, sections, label_types = set(), set(), set()
    for path in EXAMPLES:
        workflow = load_workflow(path.read_text(encoding="utf-8"), str(path))
        label_types.add(workflow.labels.type)
        for section, rules in workflow.rules.items():
            for rule in rules:
                if not rule.builtin:
                    actions.add(rule.action.kind)
                    sections.add(section)
    assert actions == set(ACTIONS)
    assert sections == {"on_create", "on_quorum", "on_review", "on_worker", "on_timer"}
    assert {"choice", "multi_choice", "boxes"} <= label_types


def test_the_expression_examples_in_the_docs_hold():
    docs = (ROOT / "docs" / "workflow-language.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- expression-examples -->\n```text\n(.*?)\n```", docs, re.S)
    assert block, "docs/workflow-language.md lacks its expression examples"
    ctx = {
        "task": {"category": "legal", "tags": ["urgent"], "data": {"subject": "Refund request", "customer": None},
                 "age": 7300},
        "prediction": {"label": "bug", "confidence": 0.62, "scores": {"bug": 0.62, "billing": 0.3}},
        "votes": {"count": 3, "top_count": 2, "labels": ["bug", "bug", "feature"]},
    }
    lines = block.group(1).splitlines()
    assert len(lines) >= 30
    for line in lines:
        source, _, expected = (part.strip() for part in line.partition("⇒"))
        value = compile_expression(source).evaluate(ctx)
        assert json.dumps(value) == json.dumps(json.loads(expected)), line


def test_the_docs_name_every_action_and_every_section():
    docs = (ROOT / "docs" / "workflow-language.md").read_text(encoding="utf-8")
    for action in ACTIONS:
        assert f"`{action}`" in docs, action
    for section in ("on_create", "on_quorum", "on_review", "on_worker", "on_timer", "quality", "sources",
                    "sinks", "notify", "plugins"):
        assert f"`{section}`" in docs, section
