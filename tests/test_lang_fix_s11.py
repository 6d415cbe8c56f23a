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


# ---------------------------------------------------------------- 3. label keys that do not apply to the type

def test_a_label_key_that_has_no_effect_on_the_type_is_refused_at_the_key(run, tmp_path):
    path = write(tmp_path, "t.workflow.yaml", """\
        workflow: t
        labels: {type: text, choices: [yes, no], min: 3, iou: 0.9}
        queues:
          q: {roles: [annotator]}
        on_create:
          - do: {annotate: q}
        """)
    proc = run("validate", path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{path}:2:22: `choices` has no effect on text labels; it applies to choice, multi_choice, spans and boxes "
        "labels",
        f"{path}:2:42: `min` has no effect on text labels; it applies to number labels",
        f"{path}:2:50: `iou` has no effect on text labels; it applies to boxes labels",
    ]
    run.ok("init")
    assert run("apply", path).returncode == 1


@pytest.mark.parametrize("labels", [
    "{type: choice, choices: [a]}", "{type: multi_choice, choices: [a]}", "{type: spans, choices: [a]}",
    "{type: boxes, choices: [a], iou: 0.7}", "{type: boxes}", "{type: number, min: 0, max: 10}", "{type: text}",
])
def test_the_keys_each_type_takes_still_validate(run, tmp_path, labels):
    path = write(tmp_path, "t.workflow.yaml", f"workflow: t\nlabels: {labels}\nqueues: {{q: {{roles: [a]}}}}\n"
                                              "on_create: [{do: {annotate: q}}]\n")
    run.ok("validate", "--strict", path)


@pytest.mark.parametrize("labels, key", [("{type: number, choices: [a]}", "choices"), ("{type: choice, choices: [a], "
                                         "max: 3}", "max"), ("{type: spans, iou: 0.5}", "iou")])
def test_the_schema_refuses_what_validate_refuses(labels, key):
    import jsonschema
    import yaml

    from rules.schema import build_schema

    spec = yaml.safe_load(f"workflow: t\nlabels: {labels}\nqueues: {{q: {{roles: [a]}}}}\n")
    errors = list(jsonschema.Draft202012Validator(build_schema()).iter_errors(spec))
    assert [tuple(e.absolute_path) for e in errors] == [("labels", key)]
    assert errors[0].schema["description"].startswith(f"`{key}` has no effect on ")


def test_a_stored_text_version_with_choices_still_loads_and_takes_work(run, tmp_path):
    """Applied by an older Labelyard: refusing it now would stop every command on that database."""
    import sqlite3

    path = write(tmp_path, "t.workflow.yaml", "workflow: t\nlabels: {type: text}\nqueues: {q: {roles: [annotator]}}\n"
                                              "on_create: [{do: {annotate: q}}]\n")
    run.ok("init")
    run.ok("apply", path)
    with sqlite3.connect(run.db) as db:
        spec = json.loads(db.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec["labels"].update(choices=["yes", "no"], min=3)
        db.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    db.close()
    (tmp_path / "t.jsonl").write_text('{"id": "t1", "data": {"text": "hi"}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    run.ok("workers", "add", "ann", "--role", "annotator")
    claim = run.json("claim", "--as", "ann", "--json")
    run.ok("submit", claim["assignment"], "--as", "ann", "--label", "any text at all")


# ---------------------------------------------------------------- 4, 5. whole YAML messages

YAML_HEAD = "workflow: y\nlabels: {type: choice, choices: [a]}\nqueues:\n"


@pytest.mark.parametrize("name, text, message", [
    ("multi", YAML_HEAD + "  q: {roles: [annotator]}\non_create:\n  - do: {annotate: q}\n---\nworkflow: z\n",
     "7:1: YAML syntax: a workflow or rule-test file is one YAML document; another starts here"),
    ("anchor", YAML_HEAD + "  q: &r {roles: [annotator]}\n  q2: &r {roles: [annotator]}\non_create:\n"
               "  - do: {annotate: q}\n",
     "5:7: YAML syntax: anchor `r` defined twice (first at 4:6)"),
    ("tab", YAML_HEAD + "  q: {roles: [annotator]}\non_create:\n  - when: task.data.n >\t1\n    do: {annotate: q}\n",
     "6:24: YAML syntax: a tab here is not allowed by the YAML reader; use spaces (or quote the value that holds it)"),
    ("quote", YAML_HEAD + '  q: {roles: [annotator]}\ndescription: "never closed\n',
     "6:1: YAML syntax: found unexpected end of stream (in the quoted scalar that starts at 5:14)"),
])
def test_a_yaml_error_is_one_whole_sentence_in_validate_and_in_rule_tests(run, tmp_path, name, text, message):
    path = write(tmp_path, f"{name}.workflow.yaml", text)
    proc = run("validate", path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"{path}:{message}"]
    # a rule-test file is read by the same loader
    (tmp_path / f"{name}.workflow.yaml").write_text(RULES, encoding="utf-8")
    cases = write(tmp_path, f"{name}.test.yaml", text)
    assert f"ERROR {cases}:{message}" in run("test", cases).stdout


def test_a_tab_quoted_in_a_condition_is_fine(run, tmp_path):
    path = write(tmp_path, "tab.workflow.yaml", YAML_HEAD + "  q: {roles: [annotator]}\non_create:\n"
                                                            "  - when: 'task.data.n >\t1'\n    do: {annotate: q}\n"
                                                            "  - do: {annotate: q}\n")
    run.ok("validate", "--strict", path)


# ---------------------------------------------------------------- 6. bare actions in the schema

def test_the_schema_lists_as_bare_names_exactly_the_actions_validate_takes_bare(run):
    from rules.actions import ACTIONS, SECTIONS
    from rules.workflow import compile_workflow

    schema = json.loads(run.ok("schema").stdout)
    for section in SECTIONS:
        do = schema["properties"][section]["items"]["properties"]["do"]["anyOf"]
        bare = {name for name in do[0]["enum"]}
        for name, spec in ACTIONS.items():
            if section not in spec.sections:
                continue
            text = (f"workflow: b\nlabels: {{type: choice, choices: [a]}}\nqueues: {{q: {{roles: [a]}}}}\n"
                    f"{section}:\n  - {{name: r, do: {name}}}\n")
            workflow, diagnostics = compile_workflow(text, "b.workflow.yaml")
            assert (name in bare) == (workflow is not None), (section, name, [str(d) for d in diagnostics])
    assert {"annotate", "review", "escalate"}.isdisjoint(
        schema["properties"]["on_create"]["items"]["properties"]["do"]["anyOf"][0]["enum"])


# ---------------------------------------------------------------- 7. the counts of labelyard test

def test_a_duplicate_case_name_is_an_error_case_and_the_counts_add_up(run, tmp_path):
    write(tmp_path, "f.workflow.yaml", RULES)
    path = write(tmp_path, "f.test.yaml", """\
        cases:
          - name: same
            event: on_create
            expect: {rule: no customer}
          - name: same
            event: on_create
            expect: {rule: default}
        """)
    proc = run("test", path)
    assert proc.returncode == 1
    assert (f"ERROR {path}:5: same\n"
            f"      {path}:5:11: duplicate case name `same` (first at line 2)") in proc.stdout
    assert proc.stdout.splitlines()[-1] == "1 passed, 0 failed, 1 errors (2 cases, 2 rules not exercised)"
    summary = json.loads(run("test", "--json", path).stdout)["summary"]
    assert summary == {"cases": 2, "pass": 1, "fail": 0, "error": 1, "file_errors": 0, "uncovered_rules": 2}


def test_errors_outside_any_case_are_counted_apart(run, tmp_path):
    write(tmp_path, "f.workflow.yaml", RULES)
    path = write(tmp_path, "f.test.yaml", "cases:\n  - name: no event\n    expect: {rule: default}\n")
    proc = run("test", path, "nowhere")
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == ("0 passed, 0 failed, 0 errors (0 cases, 3 rules not exercised); "
                                            "2 errors outside the cases")
    summary = json.loads(run("test", "--json", path).stdout)["summary"]
    assert summary["cases"] == summary["pass"] + summary["fail"] + summary["error"] == 0
    assert summary["file_errors"] == 1


# ---------------------------------------------------------------- 8. replay: a section that would do nothing

def test_replay_says_plainly_that_no_rule_would_have_acted():
    from router.replay import sentence

    assert sentence(None, "none", None, 3, noun="worker") == "no rule would have acted: 3 workers left alone"
    assert sentence(None, "none", None, 1) == "no rule would have acted: 1 task left alone"
    assert sentence(None, "none", None, 2, decisions=3) == "no rule would have acted: 2 tasks left alone (3 decisions)"
    assert sentence(None, "hold", None, 2) == "no rule matching would have held 2 more tasks"  # on_create etc.


# ---------------------------------------------------------------- 9. submit --label where --value is needed

def one_claim(run, tmp_path, labels: str) -> int:
    path = write(tmp_path, "n.workflow.yaml", f"workflow: n\nlabels: {labels}\nqueues: {{q: {{roles: [annotator]}}}}\n"
                                              "on_create: [{do: {annotate: q}}]\n")
    run.ok("init")
    run.ok("apply", path)
    (tmp_path / "t.jsonl").write_text('{"id": "T1"}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    run.ok("workers", "add", "ann", "--role", "annotator")
    return run.json("claim", "--as", "ann", "--json")["assignment"]


@pytest.mark.parametrize("labels, text, hint", [
    ("{type: number, min: 0, max: 10}", "5", "number labels are given as JSON with --value 5"),
    ("{type: number, min: 2}", "many", "number labels are given as JSON with --value 2"),
    ("{type: multi_choice, choices: [bug, other]}", "bug", """multi_choice labels are given as JSON with --value '["bug"]'"""),
    ("{type: spans}", "[{\"start\": 0, \"end\": 3}]",
     """spans labels are given as JSON with --value '[{"start": 0, "end": 3}]'"""),
    ("{type: boxes}", "car", """boxes labels are given as JSON with --value '[{"x": 10, "y": 20, "width": 40, """
                             """"height": 80}]'"""),
])
def test_submit_label_on_a_json_type_says_to_give_it_with_value(run, tmp_path, labels, text, hint):
    assignment = one_claim(run, tmp_path, labels)
    proc = run("submit", assignment, "--as", "ann", "--label", text)
    assert proc.returncode == 1
    assert proc.stderr.startswith("labelyard: ") and "(--label gives text); " in proc.stderr
    assert proc.stderr.rstrip("\n").endswith(hint)


def test_the_value_the_hint_gives_is_taken(run, tmp_path):
    assignment = one_claim(run, tmp_path, "{type: number, min: 0, max: 10}")
    assert run("submit", assignment, "--as", "ann", "--label", "5").returncode == 1
    run.ok("submit", assignment, "--as", "ann", "--value", "5")
    assert run.json("show", "T1", "--json")["task"]["final_label"] == 5


def test_text_and_choice_labels_still_go_with_label(run, tmp_path):
    assignment = one_claim(run, tmp_path, "{type: text}")
    run.ok("submit", assignment, "--as", "ann", "--label", "5")
