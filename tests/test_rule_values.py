"""Values a rule or an input row can carry that no task may keep.

- An action's value that `validate` can see is wrong (`{accept: b}`, `{add_skill: [a, b]}`,
  `{pause: bob}`, `overlap: 2.5`, a constant priority of infinity) is a file:line:col error.
- An `overlap` or `priority` computed from task data that is not a usable number (NaN,
  infinity, a 30-digit integer, text) holds that task with the reason; the other rows of
  the same ingest go in.
- Floats that overflow in an expression are an evaluation error, not a silent infinity.
- Predictions are checked against the workflow's label type (boxes, spans, lists), and input
  numbers JSON cannot carry (NaN, 1e400) quarantine their row.
- Submitted labels must be finite numbers, boxes of non-negative size, spans in order.
"""

from __future__ import annotations

import json

import pytest

BASE = """\
workflow: f
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
"""


def strict_json(text: str):
    """JSON as other tools read it: NaN and Infinity are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def errors(stderr: str) -> list[tuple[int, int, str]]:
    out = []
    for line in stderr.splitlines():
        _, row, col, message = line.split(":", 3)
        out.append((int(row), int(col), message.strip()))
    return out


def test_validate_checks_every_action_value(run, write_workflow):
    path = write_workflow(BASE + """\
on_create: [{do: {accept: b}}]
on_worker:
  - {when: "true", do: {add_skill: [legal, tax]}}
  - {when: "true", do: {pause: bob}}
  - {when: "true", do: {flag: false}}
  - {when: "true", do: add_skill}
on_quorum:
  - {when: "true", do: {hold: {reason: x}}}
  - {when: "true", do: {return: experts}}
  - {when: "true", do: {annotate: q, overlap: 2.5, priority: "1e308 * 10"}}
  - {when: "true", do: {accept: {label: '"c"'}}}
  - {do: {reject: x, reason: 5}}
""")
    proc = run("validate", path.name)
    assert proc.returncode == 1
    found = [e for e in errors(proc.stderr) if not e[2].startswith("warning:")]  # `when: "true"` always matches
    assert found == [
        (5, 27, '`accept` takes no value, or {label: EXPR} to set the label '
                '(e.g. {accept: {label: \'"bug"\'}}), not "b"'),
        (7, 36, '`add_skill` needs a skill name, e.g. {add_skill: contracts}, not ["legal", "tax"]'),
        (8, 32, '`pause` pauses the worker who submitted: `pause: worker` (the only value), not "bob"'),
        (9, 31, "`flag` takes no value (write `flag` or {flag: true}), not false"),
        (10, 24, "`add_skill` needs a skill name, e.g. {add_skill: contracts}"),
        (12, 31, '`hold` takes the reason as text, e.g. {hold: "why"}, not {"reason": "x"}'),
        (13, 33, '`return` gives the task back to `annotators` (the only value), not "experts"'),
        (14, 47, "overlap must be a whole number from 1 to 1000, not 2.5"),
        (14, 63, "the result of multiply is too large in `1e308 * 10`"),
        (15, 41, '`accept` can never use this label: label "c" is not one of a, b'),
        (16, 30, "`reason` is text, not 5"),
    ]


def test_one_line_values_left_by_a_block_scalar_and_an_empty_number_range(run, write_workflow):
    path = write_workflow("""\
workflow: f
labels: {type: number, min: 10, max: 1}
queues:
  q:
    roles: [annotator]
    sla: |
      4h
on_create: [{do: {annotate: q}}]
""")
    proc = run("validate", path.name)
    assert proc.returncode == 1
    assert errors(proc.stderr) == [
        (2, 29, "labels: min (10) is above max (1); no label could be valid"),
        (6, 10, '"4h\\n" ends with a line break (a `|` block?); write it on one line'),
    ]


def test_an_unusable_computed_overlap_or_priority_holds_only_its_task(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(BASE + """\
on_create: [{name: r, do: {annotate: q, overlap: task.data.n, priority: task.data.p}}]
"""))
    rows = [
        '{"id": "ok", "data": {"n": 2, "p": 1}}',
        '{"id": "huge", "data": {"n": 100000000000000000000000000000}}',
        '{"id": "half", "data": {"n": 1.5}}',
        '{"id": "text", "data": {"n": "2"}}',
        '{"id": "wide", "data": {"p": 1' + "0" * 400 + "}}",
        '{"id": "none", "data": {}}',  # null: the defaults (overlap 1, priority 0)
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(rows) + "\n")
    report = run.json("ingest", "t.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (6, 0)
    tasks = {t: strict_json(run.ok("show", t, "--json").stdout)["task"] for t in ("ok", "huge", "half", "text", "wide", "none")}
    assert (tasks["ok"]["status"], tasks["ok"]["needed"], tasks["ok"]["priority"]) == ("open", 2, 1.0)
    assert (tasks["none"]["status"], tasks["none"]["needed"], tasks["none"]["priority"]) == ("open", 1, 0.0)
    assert tasks["huge"]["status"] == "held"
    assert tasks["huge"]["reason"] == ("rule `r` failed: overlap must be a whole number from 1 to 1000, "
                                       "not an integer of 30 digits")
    assert tasks["half"]["reason"] == "rule `r` failed: overlap must be a whole number from 1 to 1000, not 1.5"
    assert tasks["text"]["reason"] == 'rule `r` failed: overlap must be a whole number from 1 to 1000, not "2"'
    assert tasks["wide"]["reason"] == ("rule `r` failed: priority must be a number from -1e15 to 1e15, "
                                       "not an integer of 401 digits")


def test_an_overflowing_priority_in_on_quorum_holds_the_task_and_keeps_the_vote(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(BASE + """\
on_create: [{name: r, do: {annotate: q}}]
on_quorum: [{name: again, do: {annotate: q, overlap: 2, priority: task.data.w * 10}}]
"""))
    run.ok("workers", "add", "ann", "--role", "annotator")
    (tmp_path / "t.jsonl").write_text('{"id": "t", "data": {"w": 1e308}}\n')
    run.ok("ingest", "t.jsonl")
    claim = run.json("claim", "--as", "ann", "--json")
    run.ok("submit", claim["assignment"], "--as", "ann", "--label", "a")
    shown = strict_json(run.ok("show", "t", "--json").stdout)
    assert shown["task"]["status"] == "held"
    assert shown["task"]["reason"] == "rule `again` failed: the result of multiply is too large in `task.data.w * 10`"
    assert [a["label"] for a in shown["annotations"]] == ["a"]


def test_an_empty_object_is_false_in_a_bare_condition(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(BASE + """\
on_create:
  - {name: has meta, when: task.data.meta, do: {annotate: q}}
  - {name: no meta, do: {hold: "no meta"}}
"""))
    (tmp_path / "t.jsonl").write_text('{"id": "empty", "data": {"meta": {}}}\n{"id": "full", "data": {"meta": {"k": 1}}}\n')
    assert run.json("ingest", "t.jsonl", "--json")["routed"] == {"has meta": 1, "no meta": 1}
    assert run.json("show", "empty", "--json")["task"]["status"] == "held"


BOXES = """\
workflow: boxes
labels: {type: boxes, choices: [car, person]}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: model boxes, when: prediction.confidence >= 0.9, do: accept}
  - {name: draw, do: {annotate: q}}
on_quorum: [{name: take, do: accept}]
"""


def test_predictions_are_checked_by_the_label_type_and_unrepresentable_numbers_quarantined(run, write_workflow, tmp_path):
    run.ok("init")
    run.ok("apply", write_workflow(BOXES))
    box = {"x": 1, "y": 2, "width": 10, "height": 10, "label": "car"}
    rows = [
        json.dumps({"id": "good", "data": {}, "prediction": {"label": [box], "confidence": 0.95}}),
        json.dumps({"id": "negative", "data": {}, "prediction": {"label": [{**box, "width": -10}], "confidence": 0.95}}),
        json.dumps({"id": "choices", "data": {}, "prediction": {"label": ["car", "person"], "confidence": 0.95}}),
        '{"id": "nan", "data": {"w": NaN}}',
        '{"id": "inf", "data": {"w": 1e400}}',
        '{"id": "scores", "data": {}, "prediction": {"scores": {"car": 1' + "0" * 400 + "}}}",
        '{"id": "deep", "data": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"id": "plain", "data": {}}',
    ]
    (tmp_path / "t.jsonl").write_text("\n".join(rows) + "\n")
    report = run.json("ingest", "t.jsonl", "--json")
    assert (report["ingested"], report["rejected"]) == (2, 6)
    assert report["routed"] == {"model boxes": 1, "draw": 1}
    reasons = {r["line"]: r["reason"] for r in run.json("rejects", "--json")}
    assert reasons == {
        2: "`prediction.label`: a box has a negative size (-10 × 10)",
        3: "`prediction.label`: a boxes label is a list of objects with x, y, width, height",
        4: "the number `NaN` at column 29 is not finite, which JSON cannot carry",
        5: "the number `1e400` at column 29 is not finite, which JSON cannot carry",
        6: "`prediction.scores` must map labels to finite numbers",
        7: "JSON nested too deeply",
    }
    assert strict_json(run.ok("export", "--format", "jsonl").stdout.splitlines()[0])["label"] == [box]


@pytest.mark.parametrize(("labels", "value", "message"), [
    ("{type: number, min: 0, max: 10}", "NaN", "label nan is not a finite number"),
    ("{type: number}", "1e999", "label 1e999 is too large: a number label is at most about 1.8e308 in size"),
    ("{type: number}", "-Infinity", "label -inf is not a finite number"),
    ("{type: boxes, choices: [car]}", '[{"x": 1, "y": 2, "width": -10, "height": 10, "label": "car"}]',
     "a box has a negative size (-10 × 10)"),
    ("{type: spans, choices: [PER]}", '[{"start": 10, "end": 2, "label": "PER"}]',
     "a span must have 0 <= start <= end, not 10..2"),
])
def test_submitted_labels_must_be_finite_and_well_formed(run, write_workflow, tmp_path, labels, value, message):
    run.ok("init")
    run.ok("apply", write_workflow(f"""\
workflow: f
labels: {labels}
queues:
  q: {{roles: [annotator]}}
on_create: [{{name: r, do: {{annotate: q}}}}]
on_quorum: [{{name: take, do: accept}}]
"""))
    run.ok("workers", "add", "ann", "--role", "annotator")
    (tmp_path / "t.jsonl").write_text('{"id": "t", "data": {}}\n')
    run.ok("ingest", "t.jsonl")
    claim = run.json("claim", "--as", "ann", "--json")
    proc = run("submit", claim["assignment"], "--as", "ann", "--value", value)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert run.json("show", "t", "--json")["annotations"] == []


def test_infinite_or_nan_settings_are_validate_errors(run, write_workflow):
    path = write_workflow("""\
workflow: f
labels: {type: number, min: .nan, max: 0x10}
queues:
  q: {roles: [annotator]}
on_create: [{do: {annotate: q, priority: -1e15}}]
quality: {gold: {rate: .inf}}
""")
    proc = run("validate", path.name)
    assert proc.returncode == 1
    assert errors(proc.stderr) == [(2, 29, "`labels.min` must be a finite number, not nan"),
                                   (6, 24, "`quality.gold.rate` must be a finite number, not inf"),
                                   (6, 24, "`quality.gold.rate`: inf is greater than the maximum of 1")]
