"""Rule files and task data as untrusted input: huge numbers, control characters, odd YAML.

Each of these ended in a Python traceback (or aborted a whole ingest, or lost a
submission) before: an integer condition past 4,300 digits in a trace, a product
of such integers (unbounded, so one rule could stall every evaluation), model
scores whose sum overflows, a control character in a workflow file, a 5,000-digit
integer literal in YAML, a huge ``now`` in a rule test. A parenthesised plugin call
was frozen at compile time; an anchor or tag moved every column of its value.
"""

from __future__ import annotations

import itertools
import json

import pytest

from rules.diagnostics import WorkflowInvalid
from rules.expr import EvaluationError, compile_expression
from rules.loader import load_document
from rules.workflow import compile_workflow

HEAD = """workflow: h
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
"""
BIG = int("9" * 4300)  # the most digits a JSON row may carry


@pytest.fixture
def project(run, tmp_path):
    def setup(rules: str):
        path = tmp_path / "h.workflow.yaml"
        path.write_text(HEAD + rules, encoding="utf-8")
        run.ok("init")
        run.ok("apply", path)
        run.ok("workers", "add", "alice", "--role", "annotator")
        return run
    return setup


def test_a_condition_that_is_a_huge_integer_decides_and_explains(project, tmp_path):
    run = project("on_create: [{name: default, do: {annotate: q}}]\n"
                  "on_quorum:\n  - {name: big, when: task.data.n, do: accept}\n  - {name: other, do: {hold: x}}\n")
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "T1", "data": {"n": BIG}}) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    claim = run.json("claim", "--as", "alice", "--json")
    run.ok("submit", claim["assignment"], "--as", "alice", "--label", "a")
    shown = run.json("show", "T1", "--json")
    assert (shown["task"]["status"], shown["task"]["final_rule"]) == ("done", "big")
    explained = run.ok("explain", "T1").stdout
    assert "task.data.n → an integer of 4300 digits" in explained


def test_arithmetic_past_4300_digits_fails_the_rule_and_holds_the_task(project, tmp_path):
    run = project("on_create: [{name: default, do: {annotate: q}}]\n"
                  "on_quorum:\n  - {name: big, when: task.data.n * 10, do: accept}\n  - {name: other, do: {hold: x}}\n")
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "T1", "data": {"n": BIG}}) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    claim = run.json("claim", "--as", "alice", "--json")
    proc = run.ok("submit", claim["assignment"], "--as", "alice", "--label", "a")
    shown = run.json("show", "T1", "--json")
    assert shown["task"]["status"] == "held"
    assert "rule `big` failed: the result of multiply is too large" in shown["task"]["reason"], proc.stdout
    assert [a["worker"] for a in shown["annotations"]] == ["alice"]  # the submission is kept


def test_a_product_of_many_huge_integers_stops_at_the_first_too_large_result():
    source = " * ".join(["task.data.n"] * 700) + " > 0"
    with pytest.raises(EvaluationError, match="the result of multiply is too large"):  # at the second factor
        compile_expression(source).evaluate({"task": {"data": {"n": BIG}}})
    assert compile_expression("task.data.n * 1").evaluate({"task": {"data": {"n": BIG}}}) == BIG  # 4,300 digits fit


def test_scores_whose_sum_overflows_keep_their_row_and_the_rest_of_the_file(project, tmp_path):
    run = project("on_create:\n  - {name: spread, when: prediction.entropy == 1, do: {annotate: q, priority: 5}}\n"
                  "  - {name: default, do: {annotate: q}}\n")
    rows = [{"id": "S1", "prediction": {"label": "a", "confidence": 0.5, "scores": {"a": 1e308, "b": 1e308}}},
            {"id": "S2", "prediction": {"label": "a", "confidence": 0.5, "scores": {"a": 0.5, "b": 0.5}}},
            {"id": "S3", "prediction": {"label": "a", "confidence": 0.5, "scores": {"a": 1e308, "b": -1e308}}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = run.json("ingest", "t.jsonl", "--json")
    assert (report["ingested"], report["rejected"], report["routed"]) == (3, 0, {"spread": 2, "default": 1})


def test_a_control_character_in_a_workflow_file_is_a_positioned_mistake(run, tmp_path):
    (tmp_path / "ctl.yaml").write_bytes(b"workflow: t\x01\n")
    (tmp_path / "ff.yaml").write_bytes(HEAD.encode() + b"# page\x0cbreak\n")
    for name, where in (("ctl.yaml", "1:12"), ("ff.yaml", "5:7")):
        proc = run("validate", name)
        assert proc.returncode == 1
        assert proc.stderr == f"{name}:{where}: YAML: character U+{'0001' if name == 'ctl.yaml' else '000C'} is not " \
                              "allowed in YAML (a control character)\n"


def test_an_integer_literal_past_4300_digits_is_a_positioned_mistake():
    text = HEAD.replace("choices: [a, b]", "choices: [a, b], min: " + "9" * 5000)
    with pytest.raises(WorkflowInvalid) as err:
        load_document(text, "big.yaml")
    assert [str(d) for d in err.value.diagnostics] == ["big.yaml:2:46: YAML: an integer of more than 4,300 digits"]
    with pytest.raises(WorkflowInvalid) as err:
        load_document("x:\n  ? " + "9" * 5000 + "\n  : 1\n", "key.yaml")  # as a key
    assert str(err.value) == "key.yaml:2:5: YAML: an integer of more than 4,300 digits"


def test_a_huge_now_in_a_rule_test_is_that_case_error(run, tmp_path):
    (tmp_path / "t.workflow.yaml").write_text(HEAD + "on_create: [{name: default, do: {annotate: q}}]\n",
                                              encoding="utf-8")
    (tmp_path / "t.test.yaml").write_text(
        "workflow: t.workflow.yaml\ncases:\n  - name: bignow\n    event: on_create\n"
        f"    facts:\n      now: 1{'0' * 400}\n    expect: {{rule: default}}\n", encoding="utf-8")
    proc = run("test", "t.test.yaml")
    assert proc.returncode == 1
    assert "`now` is an integer too long to show: outside 0001-01-02T00:00:00Z to 9999-12-30T00:00:00Z" in proc.stdout


def test_a_parenthesised_plugin_call_runs_at_each_decision():
    ticks = itertools.count(1)
    text = HEAD + ("on_create:\n  - {name: r, when: task.data.p, do: {annotate: q, priority: (tick())}}\n"
                   "  - {name: default, do: {annotate: q, priority: 0 + tick()}}\n")
    workflow, diagnostics = compile_workflow(text, "p.yaml", functions={"tick": lambda: next(ticks)})
    assert workflow is not None, diagnostics
    ctx = {"task": {"data": {"p": True}}}
    first, second = (workflow.decide("on_create", ctx).values["priority"] for _ in range(2))
    assert second == first + 1
    third, fourth = (workflow.decide("on_create", {"task": {"data": {}}}).values["priority"] for _ in range(2))
    assert fourth == third + 1


def test_an_anchor_or_a_tag_does_not_move_the_column_of_a_mistake(run, tmp_path):
    lines = ["on_create:",
             "  - name: r1",
             "    when: &cond task.data.x > 1 and bogus1",
             "    do: {annotate: q}",
             "  - name: r2",
             '    when: !!str "task.data.x > 1 and bogus2"',
             "    do: {annotate: q}",
             "  - name: default",
             "    do: {annotate: q, priority: &p 2 + bogus3}"]
    (tmp_path / "al.yaml").write_text(HEAD + "\n".join(lines) + "\n", encoding="utf-8")
    got = run("validate", "al.yaml").stderr.splitlines()
    want = []
    for n, line in enumerate(lines, start=HEAD.count("\n") + 1):
        for name in ("bogus1", "bogus2", "bogus3"):
            if name in line:
                want.append(f"al.yaml:{n}:{line.index(name) + 1}: unknown name `{name}`")
    assert got == want


def test_validate_checks_every_file_when_one_cannot_be_read(run, tmp_path):
    (tmp_path / "good.yaml").write_text(HEAD, encoding="utf-8")
    (tmp_path / "bad.yaml").write_text(HEAD + "on_create: [{name: r, when: nope, do: {annotate: q}}, "
                                             "{name: default, do: {annotate: q}}]\n",
                                       encoding="utf-8")
    proc = run("validate", "good.yaml", "missing.yaml", "bad.yaml")
    assert proc.returncode == 1
    assert proc.stdout == "good.yaml: ok (h)\n"
    assert proc.stderr.splitlines() == ["missing.yaml:1:1: cannot read the file: No such file or directory",
                                        "bad.yaml:5:29: unknown name `nope`"]
    listed = json.loads(run("validate", "--json", "missing.yaml", "bad.yaml").stdout)
    assert [(d["file"], d["message"]) for d in listed] == [
        ("missing.yaml", "cannot read the file: No such file or directory"), ("bad.yaml", "unknown name `nope`")]
