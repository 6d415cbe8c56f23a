"""The twelfth session's Label Studio fixes: lone surrogate escapes quarantined, labels written by their
own shape, boxes converted between pixels and percentages, several values for one refused, the sink's
output read back, and the sink's file keeping its mode and symlink."""

from __future__ import annotations

import json
import os
import textwrap

CHOICE_SOURCE = """\
workflow: lsin
labels: {type: choice, choices: [pos, neg]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: one
    do: {annotate: q}
sources:
  - {plugin: labelstudio, path: inbox/*.json}
"""


def _project(run, tmp_path, text):
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    run.ok("init")
    run.ok("apply", "wf.yaml")


# -- F3 / F4: a lone surrogate escape quarantines its task, the others go in ----------------------------------
def test_a_lone_surrogate_in_a_prediction_quarantines_that_task_and_the_rest_goes_in(run, tmp_path):
    _project(run, tmp_path, CHOICE_SOURCE)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "export.json").write_text(
        '[{"id": 1, "data": {"text": "fine"}},\n'
        ' {"id": 2, "data": {"text": "ok"}, "predictions": [{"result": [{"value": {"choices": ["p\\ud800"]}}]}]},\n'
        ' {"id": "4\\udc805", "data": {"text": "bad id"}},\n'
        ' {"id": 6, "data": {"text": "x"}, "annotations": [{"completed_by": 1, "result": [{"value": {"choices": ["p\\udfff"]}}]}]},\n'
        ' {"id": 3, "data": {"text": "fine too"}}]', encoding="ascii")
    (tmp_path / "inbox" / "z.json").write_text('[{"id": 9, "data": {"t": 1}}]', encoding="ascii")
    assert run("run").returncode == 0
    assert run("run").returncode == 0
    status = run.json("status", "--json")
    assert status["total"] == 3, status
    for ident in ("1", "3", "9"):
        run.ok("explain", f"ext:{ident}")
    rejects = run.json("rejects", "--json")
    reasons = {r["line"]: r["reason"] for r in rejects}
    assert reasons[2] == ("the lone UTF-16 surrogate escape `\\ud800` in `predictions[1].result[1].value.choices[1]` "
                          "is not text (a surrogate escape needs its pair)")
    assert "`\\udc80` in `id`" in reasons[3]
    assert "`\\udfff` in `annotations[1].result[1].value.choices[1]`" in reasons[4]
    assert all("\\ud800" in r["raw"] for r in rejects if r["line"] == 2)


def test_a_lone_low_surrogate_in_data_is_said_as_an_escape_at_its_field_not_a_byte(run, tmp_path):
    _project(run, tmp_path, CHOICE_SOURCE.split("sources:")[0])
    (tmp_path / "one.json").write_text('[{"id": 101, "data": {"text": "fine"}},\n'
                                       ' {"id": 102, "data": {"text": "bad \\udc80 here"}}]', encoding="ascii")
    run.ok("ingest", "labelstudio:one.json")
    (reject,) = run.json("rejects", "--json")
    assert "byte 0x80" not in reject["reason"]
    assert reject["reason"].startswith("the lone UTF-16 surrogate escape `\\udc80` in `data.text`")
    assert reject["line"] == 2
