"""Built-in plugins, as a user configures them (session 14 findings).

- ``gold``: an empty (or white-space only) known answer, an empty CSV cell, is no known answer: the
  reviewer abstains instead of rejecting every label as differing from ``""``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from router.plugin_api import PluginRun, ReviewItem
from router.plugins import load_plugins


@pytest.fixture
def builtins(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)
    return load_plugins()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# -- gold: an empty cell is no known answer ------------------------------------------------------------

def gold_item(consensus, known) -> ReviewItem:
    return ReviewItem(1, "t1", "senior", {"gold": known}, None, [], {}, [{"worker": "ann", "label": consensus}],
                      consensus, 1.0)


@pytest.mark.parametrize("label_type", ["choice", "text", "number", "multi_choice", "boxes", "spans"])
def test_gold_abstains_on_an_empty_or_blank_known_answer_of_any_label_type(builtins, label_type):
    review = builtins.get("reviewers", "gold").func
    run = PluginRun("gold", "gold", label_type=label_type, choices=("pos", "neg"))
    consensus = {"number": 1, "multi_choice": ["pos"], "boxes": [], "spans": []}.get(label_type, "pos")
    for known in ("", " ", "\t", " \r\n"):
        assert review(run, gold_item(consensus, known)) is None, (label_type, repr(known))


def test_gold_says_when_the_known_answer_is_no_label_of_the_workflow(builtins):
    review = builtins.get("reviewers", "gold").func
    run = PluginRun("gold", "gold", label_type="choice", choices=("pos", "neg"))
    found = review(run, gold_item("pos", " pos "))  # compared as written, as ingest takes a label
    assert found.verdict == "reject"
    assert found.reason == ('label "pos" differs from the known answer " pos ", which is no label of this '
                            'workflow (label " pos " is not one of pos, neg)'), found.reason
    assert review(run, gold_item("pos", "neg")).reason == 'label "pos" differs from the known answer "neg"'


GOLD_WORKFLOW = """\
workflow: g
labels: {type: choice, choices: [pos, neg]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create: [{name: default, do: {annotate: triage, overlap: 1}}]
on_quorum: [{name: check, do: {review: senior}}]
on_review:
  - {name: approved, when: review.verdict == "approve", do: accept}
  - {name: rejected, when: review.verdict == "reject", do: {hold: "rejected"}}
sources: [{plugin: csv, path: "inbox/*.csv"}]
reviewers: [{plugin: gold}]
"""


def test_csv_tasks_with_an_empty_gold_cell_wait_for_a_person_and_the_others_are_judged(run, tmp_path):
    run.ok("init")
    write(tmp_path / "g.workflow.yaml", GOLD_WORKFLOW)
    run.ok("apply", "g.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    write(tmp_path / "inbox" / "a.csv", "id,text,gold\nt1,a,pos\nt2,b,neg\nt3,c,\nt4,d,  \n")
    run.ok("run")
    for _ in range(4):
        slot = run.json("claim", "--as", "ann", "--json")
        run.ok("submit", slot["assignment"], "--as", "ann", "--label", "pos")
    report = run.json("run", "--json")
    assert report["reviewers"]["gold"] == {"approve": 1, "reject": 1, "abstain": 2, "→ accept": 1, "→ hold": 1}
    status = {t: run.json("show", t, "--json")["task"]["status"] for t in ("t1", "t2", "t3", "t4")}
    assert status == {"t1": "done", "t2": "held", "t3": "open", "t4": "open"}, status
