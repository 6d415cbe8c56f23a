"""Rule authors' commands: `validate`, `apply`, `schema`, and the committed workflows and schema.

Every mistake is reported as ``file:line:col: message`` on standard error,
all of a file's mistakes in one run, exit 1, never a traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import SMALL_WORKFLOW

ROOT = Path(__file__).resolve().parent.parent
MODELINE = "# yaml-language-server: $schema="

MANY_MISTAKES = """\
workflow: pets
labels:
  type: choice
  choices: [cat, dog]
queus:
  triage: {roles: [annotator]}
queues:
  triage: {roles: [annotator]}
on_create:
  - name: sure
    when: prediction.confidance >= 0.9
    do: accept
  - name: sure
    when: prediction.confidence >=
    do: {annotate: triag, overlap: 0}
  - name: last
    do: {annotate: triage, overlpa: 2}
on_quorum:
  - when: votes.count > 1 and
    do: acept
"""

# (line, col, message) of every error in MANY_MISTAKES, in the order they are reported
EXPECTED_ERRORS = [
    (5, 1, "unknown key `queus`; did you mean `queues`?"),
    (11, 11, "unknown name `prediction.confidance`; did you mean `prediction.confidence`?"),
    (13, 11, "duplicate rule name `sure` in on_create (first at rule 1)"),
    (14, 35, "expected an expression, but the expression ends here"),
    (15, 20, "undefined queue `triag`; did you mean `triage`?"),
    (15, 36, "overlap must be a whole number from 1 to 1000, not 0"),
    (17, 28, "unknown parameter `overlpa` for `annotate`; did you mean `overlap`?"),
    (19, 30, "expected an expression, but the expression ends here"),
    (20, 9, "unknown action `acept`; did you mean `accept`?"),
]

DIAGNOSTIC = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<message>.+)$")


def _errors(stderr: str) -> list[tuple[str, int, int, str]]:
    """Parse ``file:line:col: message`` lines, leaving warnings out; every line must have that shape."""
    out = []
    for text in stderr.splitlines():
        match = DIAGNOSTIC.match(text)
        assert match, f"not file:line:col: message: {text!r}"
        if not match["message"].startswith("warning: "):
            out.append((match["file"], int(match["line"]), int(match["col"]), match["message"]))
    return out


def test_validate_reports_every_mistake_of_a_file_in_one_run(run, write_workflow):
    path = write_workflow(MANY_MISTAKES, "many.workflow.yaml")
    proc = run("validate", path.name)
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert _errors(proc.stderr) == [(path.name, line, col, msg) for line, col, msg in EXPECTED_ERRORS]

    as_json = run("validate", "--json", path.name)
    assert as_json.returncode == 1
    diagnostics = json.loads(as_json.stdout)
    errors = [(d["line"], d["col"], d["message"]) for d in diagnostics if d["severity"] == "error"]
    assert errors == EXPECTED_ERRORS
    assert {d["file"] for d in diagnostics} == {path.name}


def test_yaml_syntax_error_has_its_position(run, write_workflow):
    text = "workflow: pets\nlabels: {type: choice, choices: [cat, dog]\nqueues: {}\n"  # the `{` is never closed
    path = write_workflow(text, "broken.workflow.yaml")
    proc = run("validate", path)
    assert proc.returncode == 1
    (error,) = _errors(proc.stderr)
    assert error == (str(path), 3, 1, "YAML syntax: expected ',' or '}', but got '<scalar>' "
                                      "(in the flow mapping that starts at 2:9)")


def test_validate_several_files_reports_each_and_fails_if_one_does(run, write_workflow):
    good = write_workflow()
    bad = write_workflow(MANY_MISTAKES, "many.workflow.yaml")
    proc = run("validate", good.name, bad.name)
    assert proc.returncode == 1
    assert proc.stdout.strip() == f"{good.name}: ok (pets)"
    assert len(_errors(proc.stderr)) == len(EXPECTED_ERRORS)

    missing = run("validate", "nowhere.workflow.yaml")
    assert missing.returncode == 1
    assert "nowhere.workflow.yaml" in missing.stderr


def test_warnings_pass_unless_strict(run, write_workflow):
    path = write_workflow("""\
        workflow: pets
        labels: {type: choice, choices: [cat, dog]}
        queues:
          triage: {roles: [annotator]}
        on_create:
          - name: everything
            do: {annotate: triage}
          - name: never reached
            when: task.category == "x"
            do: accept
        """, "warn.workflow.yaml")
    relaxed = run("validate", path.name)
    assert relaxed.returncode == 0
    assert relaxed.stdout.strip() == f"{path.name}: ok (pets)"
    assert f"{path.name}:8:5: warning: this rule can never match" in relaxed.stderr
    strict = run("validate", "--strict", path.name)
    assert strict.returncode == 1
    assert strict.stdout == ""


def test_apply_refuses_a_broken_workflow_with_the_same_diagnostics(run, write_workflow):
    run.ok("init")
    path = write_workflow(MANY_MISTAKES, "many.workflow.yaml")
    proc = run("apply", path.name)
    assert proc.returncode == 1
    assert _errors(proc.stderr) == [(path.name, line, col, msg) for line, col, msg in EXPECTED_ERRORS]
    assert run.json("status", "--json")["workflow"] is None


def test_apply_stores_versions_and_tasks_keep_the_version_that_routed_them(run, write_workflow, tmp_path):
    run.ok("init")
    path = write_workflow()
    first = run.json("apply", path, "--json")
    assert (first["workflow"], first["version"], first["changed"]) == ("pets", 1, True)
    (tmp_path / "one.jsonl").write_text('{"id": "one", "data": {"n": 1}}\n')
    assert run.json("ingest", "one.jsonl", "--json")["routed"] == {"default": 1}

    path.write_text(SMALL_WORKFLOW.replace("overlap: 1}", "overlap: 1, priority: 0.5}"))
    second = run("apply", path)
    assert second.returncode == 0
    assert second.stdout.strip() == "applied pets version 2"
    (tmp_path / "two.jsonl").write_text('{"id": "two", "data": {"n": 2}}\n')
    run.json("ingest", "two.jsonl", "--json")

    again = run.json("apply", path, "--json")
    assert (again["version"], again["changed"]) == (2, False)
    assert "unchanged" in run.ok("apply", path).stdout
    assert run.json("status", "--json")["workflow"] == {"name": "pets", "version": 2}

    one, two = run.json("show", "one", "--json")["task"], run.json("show", "two", "--json")["task"]
    assert (one["workflow_version"], one["priority"]) == (1, 0.0)
    assert (two["workflow_version"], two["priority"]) == (2, 0.5)


def test_apply_of_another_workflow_needs_replace(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow())
    other = write_workflow(SMALL_WORKFLOW.replace("workflow: pets", "workflow: birds"), "birds.workflow.yaml")
    refused = run("apply", other)
    assert refused.returncode == 1
    assert "--replace" in refused.stderr and "pets" in refused.stderr
    assert run.json("status", "--json")["workflow"] == {"name": "pets", "version": 1}
    replaced = run.json("apply", other, "--replace", "--json")
    assert (replaced["workflow"], replaced["changed"]) == ("birds", True)
    assert run.json("status", "--json")["workflow"]["name"] == "birds"


def test_committed_schema_equals_labelyard_schema(run):
    generated = run.ok("schema").stdout
    json.loads(generated)
    committed = (ROOT / "rules" / "workflow.schema.json").read_text(encoding="utf-8")
    assert committed == generated, (
        "rules/workflow.schema.json is out of date; regenerate it with "
        "`labelyard schema > rules/workflow.schema.json`"
    )


def test_example_workflows_validate_and_carry_the_schema_modeline(run):
    files = sorted((ROOT / "workflows").glob("*.workflow.yaml"))
    assert files, "no example workflows in workflows/"
    for path in files:
        first = path.read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith(MODELINE), f"{path.name} does not start with `{MODELINE}…`"
        schema = (path.parent / first[len(MODELINE):].strip()).resolve()
        assert schema == ROOT / "rules" / "workflow.schema.json", f"{path.name}'s modeline points to {schema}"
    proc = run("validate", "--strict", *files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.count(": ok (") == len(files)


POSITIONS = r'''workflow: f
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: block
    when: |
      prediction.confidence > 0.5
      and task.catgory == "x"
    do: accept
  - name: folded
    when: >-
      prediction.confidence > 0.5 and
      task.catgory == "x"
    do: accept
  - name: plain
    when: prediction.confidence > 0.5 and
      task.catgory == "x"
    do: accept
  - name: quoted
    when: "\"x\" in task.tags and task.catgory == 'y'"
    do: accept
  - name: unicode escape
    when: "task.source == '\u00e9' and task.catgory == 'y'"
    do: accept
  - {name: last, do: hold}
'''


def test_mistakes_inside_multi_line_and_escaped_conditions_are_placed_exactly(run, write_workflow):
    path = write_workflow(POSITIONS, "pos.workflow.yaml")
    proc = run("validate", path.name)
    assert proc.returncode == 1
    assert [(line, col) for _, line, col, _ in _errors(proc.stderr)] == [(9, 11), (14, 7), (18, 7), (21, 35), (24, 40)]


def test_mistakes_at_the_start_of_a_text_and_after_an_escaped_line_break(run, write_workflow):
    path = write_workflow(r'''workflow: f
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create:
  - when: |
      tesk.d == 1
    do: accept
  - when: 'tesk.s == 1'
    do: accept
  - when: "task.data.x == 1 and \
      tesk.e"
    do: accept
  - do: {annotate: q, overlap: "tesk.o", priority: false}
''', "start.workflow.yaml")
    proc = run("validate", path.name)
    assert [(line, col, message.split(";")[0]) for _, line, col, message in _errors(proc.stderr)] == [
        (6, 7, "unknown name `tesk.d`"), (8, 12, "unknown name `tesk.s`"), (11, 7, "unknown name `tesk.e`"),
        (13, 33, "unknown name `tesk.o`"), (13, 52, "priority must be a number from -1e15 to 1e15, not false")]
