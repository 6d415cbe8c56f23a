"""rules.loader: safe YAML with positions; hostile documents are refused with a position."""

from __future__ import annotations

import pytest

from rules.diagnostics import WorkflowInvalid
from rules.loader import MAX_NODES, load_document
from rules.workflow import compile_workflow


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def diagnostics_of(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as info:
        load_document(text, "w.workflow.yaml")
    return [str(d) for d in info.value.diagnostics]


def test_positions_of_keys_and_values_are_one_based():
    doc = load_document('workflow: x\nqueues:\n  triage: {roles: [annotator]}\n', "w.yaml")
    assert doc.data == {"workflow": "x", "queues": {"triage": {"roles": ["annotator"]}}}
    assert (doc.keys[("queues", "triage")].line, doc.keys[("queues", "triage")].col) == (3, 3)
    assert (doc.values[("queues", "triage", "roles", 0)].line, doc.values[("queues", "triage", "roles", 0)].col) == (3, 20)
    assert doc.where(("queues", "nope", "deeper")).line == 3  # nearest ancestor


def test_a_yaml_bomb_is_refused_with_a_clear_message():
    [message] = diagnostics_of(billion_laughs())
    assert message.startswith("w.workflow.yaml:")
    assert f"more than {MAX_NODES:,} nodes" in message and "YAML bomb" in message


def test_a_python_tag_never_builds_an_object():
    [message] = diagnostics_of("workflow: !!python/object/apply:os.system ['echo pwned']\n")
    assert message == "w.workflow.yaml:1:11: YAML: tag `tag:yaml.org,2002:python/object/apply:os.system` is not allowed"
    [message] = diagnostics_of("workflow: !!python/name:os.system ''\n")
    assert message == "w.workflow.yaml:1:11: YAML: tag `tag:yaml.org,2002:python/name:os.system` is not allowed"


def test_duplicate_keys_and_merge_keys_are_reported_where_they_are():
    messages = diagnostics_of("workflow: a\nworkflow: b\nbase: &b {x: 1}\nother:\n  <<: *b\n")
    assert "w.workflow.yaml:2:1: duplicate key `workflow`" in messages
    assert "w.workflow.yaml:5:3: merge keys (`<<`) are not supported" in messages


def test_deep_nesting_is_refused_not_a_recursion_error():
    text = "a: " + "[" * 500 + "]" * 500 + "\n"
    messages = diagnostics_of(text)
    assert any("YAML bomb" in m or "nested" in m for m in messages)


def test_compile_workflow_turns_a_bomb_into_a_diagnostic_not_an_exception():
    workflow, diagnostics = compile_workflow(billion_laughs(), "bomb.workflow.yaml")
    assert workflow is None
    assert [d.line for d in diagnostics] == [1]
    assert all(d.file == "bomb.workflow.yaml" and d.severity == "error" for d in diagnostics)


def test_plain_scalars_follow_the_yaml_1_2_core_schema():
    """YAML 1.1 would turn `on` and `yes` into booleans, a date into a date, 010 into 8 and 1:30 into 90."""
    doc = load_document("on: {roles: [a]}\nchoices: [yes, no, off, true, False]\nsince: 2024-01-01\n"
                        "at: 2024-01-01T09:00:00Z\nn: 010\nt: 1:30\nm: -7\n", "w.yaml")
    assert doc.data == {"on": {"roles": ["a"]}, "choices": ["yes", "no", "off", True, False],
                        "since": "2024-01-01", "at": "2024-01-01T09:00:00Z", "n": 10, "t": "1:30", "m": -7}


def test_nesting_past_the_depth_limit_says_so_where_it_happens():
    text = "workflow: p\nx: " + "[" * 150 + "]" * 150 + "\n"
    assert diagnostics_of(text) == ["w.workflow.yaml:2:104: YAML nested more than 100 levels deep"]


def test_a_queue_named_on_and_dates_in_plugin_settings_apply(run, write_workflow):
    run.ok("init")
    path = write_workflow("""\
workflow: f
labels: {type: choice, choices: [yes, no]}
queues:
  on: {roles: [annotator]}
on_create: [{name: all, do: {annotate: on}}]
sinks: [{plugin: jsonl, path: out.jsonl, since: 2024-01-01}]
""")
    run.ok("apply", path)
    assert run.json("status", "--json")["workflow"]["name"] == "f"


def test_numbers_follow_the_yaml_1_2_core_schema_too():
    doc = load_document("a: [0x10, 0o20, 1e3, +1.5e3, 5e-2, 1.0e+2, .5, 2., 7, -3]\n"
                        "text: [1:30.5, 1_000.5, 0b11, 08x]\n", "w.yaml")
    assert doc.data == {"a": [16, 16, 1000.0, 1500.0, 0.05, 100.0, 0.5, 2.0, 7, -3],
                        "text": ["1:30.5", "1_000.5", "0b11", "08x"]}
