"""``min``/``max`` of an object choose among its values: the documented ``prediction.scores`` rule works.

The example rule is read from docs/workflow-language.md (its functions section)
and run through ``labelyard ingest`` on a real database, as a user would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rules.expr import EvaluationError, compile_expression

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "workflow-language.md"
CTX = {
    "prediction": {"label": "bug", "confidence": 0.5, "scores": {"bug": 0.5, "billing": 0.45, "spam": None}},
    "task": {"data": {"names": {"a": "ann", "z": "zoe"}, "empty": {}}},
}


def documented_scores_rule() -> str:
    """The ``when:`` of the functions section's example that reads ``prediction.scores``."""
    section = DOCS.read_text(encoding="utf-8").split("### Functions", 1)[1].split("\n### ", 1)[0]
    (line,) = [ln for ln in section.splitlines() if ln.startswith("when:") and "prediction.scores" in ln]
    return line[len("when:"):].split("#", 1)[0].strip()


@pytest.mark.parametrize(("source", "expected"), [
    ("max(prediction.scores)", 0.5),
    ("min(prediction.scores)", 0.45),  # the null score is ignored
    ("max(prediction.scores) - min(prediction.scores) < 0.2", True),
    ("max(task.data.names)", "zoe"),  # texts compare as texts
    ("min(task.data.empty)", None),  # an empty object leaves nothing
])
def test_min_and_max_of_one_object_choose_among_its_values(source, expected):
    assert compile_expression(source).evaluate(CTX) == expected


def test_mixed_values_and_objects_among_several_arguments_are_still_refused():
    mixed = {"prediction": {"scores": {"bug": 0.5, "note": "x"}}}
    with pytest.raises(EvaluationError, match=r"max\(\) needs all numbers or all texts, not number and text"):
        compile_expression("max(prediction.scores)").evaluate(mixed)
    with pytest.raises(EvaluationError, match="not number and object"):
        compile_expression("max(prediction.scores, 1)").evaluate(CTX)
    with pytest.raises(EvaluationError, match="not object"):  # a list holding an object is not the object
        compile_expression("max([prediction.scores])").evaluate(CTX)


WORKFLOW = """\
workflow: tickets
labels: {type: choice, choices: [bug, billing]}
queues:
  triage: {roles: [annotator]}
on_create:
  - name: close
    when: RULE
    do: {annotate: triage, overlap: 3}
  - name: default
    do: {annotate: triage}
"""


def test_the_documented_scores_rule_routes_ingested_rows_instead_of_holding_them(run, write_workflow):
    rule = documented_scores_rule()
    assert rule == "max(prediction.scores) - min(prediction.scores) < 0.2"
    path = write_workflow(WORKFLOW.replace("RULE", rule), name="tickets.workflow.yaml")
    assert run.json("validate", "--json", path) == []
    run.ok("init")
    run.ok("apply", path)
    rows = [
        {"id": "T-1", "data": {"subject": "close call"},
         "prediction": {"label": "bug", "confidence": 0.5, "scores": {"bug": 0.5, "billing": 0.45}}},
        {"id": "T-2", "data": {"subject": "clear"},
         "prediction": {"label": "bug", "confidence": 0.9, "scores": {"bug": 0.9, "billing": 0.1}}},
    ]
    (run.folder / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    report = run.json("ingest", "rows.jsonl", "--json")
    assert report["routed"] == {"close": 1, "default": 1}
    close, clear = run.json("show", "T-1", "--json"), run.json("show", "T-2", "--json")
    assert (close["task"]["status"], close["task"]["queue"], close["task"]["needed"]) == ("open", "triage", 3)
    assert close["task"]["reason"] is None
    assert (clear["task"]["status"], clear["task"]["needed"]) == ("open", 1)


def test_the_function_table_and_the_docs_say_objects_are_accepted():
    from rules.expr import BUILTIN_FUNCTIONS

    for name in ("min", "max"):
        assert f"{name}(object)" in BUILTIN_FUNCTIONS[name].summary
        assert re.search(rf"`{name}\(object\)` \| the \w+", DOCS.read_text(encoding="utf-8"))
