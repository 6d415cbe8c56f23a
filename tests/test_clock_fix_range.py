"""One reading of an instant for ``LABELYARD_NOW`` and a rule test's ``now`` (``rules.instants``),
and messages that name the range Labelyard keeps: 0001-01-02 to 9999-12-30 UTC. Before, both said
"the years 1 to 9999", ``LABELYARD_NOW=9999-12-31`` was refused with it, and a rule test refused
``1.7e9`` (which ``LABELYARD_NOW`` takes) and took ``9999-12-31`` (which it refuses).

The real ``labelyard`` command on a real SQLite file.
"""

from __future__ import annotations

import pytest

from router.clock import parse_instant
from router.errors import LabelyardError

KEPT = "outside 0001-01-02T00:00:00Z to 9999-12-30T00:00:00Z, the times Labelyard keeps"
WORKFLOW = """\
workflow: t
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create: [{name: all, do: {annotate: q}}]
on_timer:
  - {name: late, when: now >= 1700000000, do: {hold: "late"}}
"""
VALUES = ["1.7e9", "1699999999.5", "9999-12-31", "9999-12-30T00:00:00Z", "9999-12-30T00:00:01Z", "0001-01-02",
          "0001-01-01T23:59:59Z", "1e20", "nan", "yesterday"]


def test_labelyard_now_names_the_range_it_keeps(run, tmp_path):
    (tmp_path / "t.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("init")
    run.ok("apply", "t.workflow.yaml")
    proc = run("tick", env={"LABELYARD_NOW": "9999-12-31"})
    assert (proc.returncode, proc.stderr) == (1, f"labelyard: LABELYARD_NOW='9999-12-31' is {KEPT}\n")
    assert run("tick", env={"LABELYARD_NOW": "9999-12-30T00:00:00Z"}).returncode == 0  # the last instant kept


def test_a_rule_test_takes_now_as_labelyard_now_takes_it(run, tmp_path):
    (tmp_path / "t.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    cases = "".join(f"  - {{name: '{v}', event: on_timer, facts: {{now: '{v}'}}, expect: {{rule: late}}}}\n"
                    for v in VALUES)
    (tmp_path / "t.test.yaml").write_text("workflow: t.workflow.yaml\ncases:\n" + cases, encoding="utf-8")
    out = run("test", "t.test.yaml").stdout
    for line, value in enumerate(VALUES, start=3):
        try:
            instant = parse_instant(value)
        except LabelyardError as exc:
            problem = str(exc).split(" is ", 1)[1]
            assert f"ERROR t.test.yaml:{line}: {value}" in out and f"`now` is '{value}': {problem}" in out, value
        else:
            verdict = "PASS" if instant >= 1700000000 else "FAIL"
            assert f"{verdict}  t.test.yaml:{line}: {value}" in out, (value, out)


@pytest.mark.parametrize("now", ["1.7e9", "1700000000", 1.7e9])
def test_a_yaml_number_or_its_text_in_any_notation_is_epoch_seconds(run, tmp_path, now):
    (tmp_path / "t.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    shown = f"'{now}'" if isinstance(now, str) else now
    (tmp_path / "t.test.yaml").write_text(
        f"workflow: t.workflow.yaml\ncases:\n  - {{name: n, event: on_timer, facts: {{now: {shown}}}, "
        "expect: {rule: late}}\n", encoding="utf-8")
    assert "PASS  t.test.yaml:3: n" in run.ok("test", "t.test.yaml").stdout
