"""The ``gold`` reviewer reads a known answer given as text (a CSV column) as JSON where labels are no text.

It compared the text ``'["a", "b"]'`` with the list ``["a", "b"]`` and approved only because both
had the same canonical JSON spelling: ``'["a","b"]'`` (no space, as most tools write JSON) was
rejected. Now that a list is never the text spelling it, the field is read as the list it holds.
"""

from __future__ import annotations

import json

import pytest

from router.plugin_api import PluginRun, ReviewItem
from router.plugins import load_plugins


@pytest.fixture
def gold(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    return load_plugins().get("reviewers", "gold").func


def item(consensus, known) -> ReviewItem:
    return ReviewItem(1, "t1", "senior", {"gold": known}, None, [], {}, [{"worker": "ann", "label": consensus}],
                      consensus, 1.0)


def verdict(gold, run, consensus, known) -> str | None:
    found = gold(run, item(consensus, known))
    return found and found.verdict


def test_a_text_field_is_read_as_json_whatever_its_spacing(gold):
    multi = PluginRun("gold", "gold", label_type="multi_choice", choices=("a", "b", "c"))
    for known in ('["a", "b"]', '["a","b"]', ' [ "b" ,"a" ] ', ["b", "a"]):
        assert verdict(gold, multi, ["a", "b"], known) == "approve", known
    for known in ('["a"]', "a", '["a", "b"', '"a, b"'):
        assert verdict(gold, multi, ["a", "b"], known) == "reject", known
    number = PluginRun("gold", "gold", label_type="number")
    assert verdict(gold, number, 4.0, "4") == "approve"
    assert verdict(gold, number, 4.0, "NaN") == "reject"  # JSON has no NaN: the text stays text
    boxes = PluginRun("gold", "gold", label_type="boxes")
    car = [{"x": 0, "y": 0, "width": 10, "height": 10, "label": "car"}]
    assert verdict(gold, boxes, car, json.dumps(car, separators=(",", ":"))) == "approve"


def test_text_labels_are_never_read_as_json(gold):
    choice = PluginRun("gold", "gold", label_type="choice", choices=("1", "[1]"))
    assert verdict(gold, choice, "1", "1") == "approve"
    assert verdict(gold, choice, "[1]", "[1]") == "approve"
    text = PluginRun("gold", "gold", label_type="text")
    assert verdict(gold, text, '["a"]', '["a"]') == "approve"
    assert verdict(gold, text, ["a"], '["a"]') == "reject"  # a vote that is no text is not its spelling


def test_a_csv_gold_column_through_run(run, tmp_path):
    """End to end: a CSV column (text) holds the known multi_choice answer, written without spaces."""
    run.ok("init")
    (tmp_path / "f.workflow.yaml").write_text("""\
workflow: f
labels: {type: multi_choice, choices: [a, b, c]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create: [{name: default, do: {annotate: triage, overlap: 1}}]
on_quorum: [{name: check, do: {review: senior}}]
on_review:
  - {name: approved, when: review.verdict == "approve", do: accept}
  - {name: rejected, do: {hold: "rejected"}}
reviewers: [{plugin: gold}]
""", encoding="utf-8")
    run.ok("apply", "f.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    (tmp_path / "t.csv").write_text('id,gold\nt1,"[""b"",""a""]"\nt2,"[""a""]"\n', encoding="utf-8")
    run.ok("ingest", "t.csv")
    for _ in range(2):
        slot = run.json("claim", "--as", "ann", "--json")
        run.ok("submit", slot["assignment"], "--as", "ann", "--value", '["a", "b"]')
    report = run.json("run", "--json")
    assert (report["reviewers"]["gold"]["approve"], report["reviewers"]["gold"]["reject"]) == (1, 1), report
    assert run.json("show", "t1", "--json")["task"]["status"] == "done"
    assert run.json("show", "t2", "--json")["task"]["status"] == "held"
