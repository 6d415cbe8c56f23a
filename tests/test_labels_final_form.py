"""A final ``multi_choice`` label is a set in choice order, whichever way it became final: a model
prediction accepted in ``on_create``, a senior's correction, an expert's label, a rule's
``{accept: {label: …}}`` — as the consensus label always was. Through the CLI on a real database."""

from __future__ import annotations

import json

from lead_support import Project
from rules.workflow import LabelSpec

MULTI = LabelSpec(type="multi_choice", choices=("a", "b", "c"))


def test_final_form_is_a_set_in_choice_order():
    from router.consensus import final_form, in_choice_order

    assert final_form(["c", "b", "b"], MULTI) == ["b", "c"]
    assert final_form(["a", "a"], MULTI) == ["a"] and final_form([], MULTI) == []
    assert final_form(["c", "b", "b"], LabelSpec(type="text")) == ["c", "b", "b"]  # other types as given
    assert final_form("c", MULTI) == "c"  # not a multi_choice label: as given
    assert in_choice_order(["z", "c", "y", "a"], ("a", "b", "c")) == ["a", "c", "y", "z"]


WORKFLOW = """\
workflow: m
labels: {type: multi_choice, choices: [a, b, c]}
queues:
  q: {roles: [annotator]}
  senior: {roles: [senior]}
  experts: {roles: [expert]}
on_create:
  - name: sure model
    when: prediction.confidence >= 0.9
    do: accept
  - name: hard
    when: task.category == "hard"
    do: {escalate: experts}
  - do: {annotate: q, overlap: 1}
on_quorum:
  - do: {review: senior}
on_review:
  - name: model approved
    when: review.verdict == "approve" and review.label == null
    do: {accept: {label: prediction.label}}
  - do: accept
"""


def test_every_final_multi_choice_label_is_a_set_in_choice_order(tmp_path):
    p = Project(tmp_path, WORKFLOW)
    p.worker("ann", "annotator")
    p.worker("sam", "senior")
    p.worker("eve", "expert")
    p.ingest([{"id": "MODEL", "prediction": {"label": ["a", "a"], "confidence": 0.95}},
              {"id": "EXPERT", "category": "hard"},
              {"id": "SENIOR"},
              {"id": "RULE", "prediction": {"label": ["c", "a", "c"], "confidence": 0.5}}])
    assert p.show("MODEL")["task"]["final_label"] == ["a"]
    expert = p.claim("eve")
    assert expert["external_id"] == "EXPERT"
    p.submit(expert["assignment"], "eve", "--value", json.dumps(["b", "a"]))
    for ref, given in (("SENIOR", ["c", "b", "b"]), ("RULE", None)):
        vote = p.claim("ann")
        assert vote["external_id"] == ref
        p.submit(vote["assignment"], "ann", "--value", json.dumps(["a"]))
        review = p.claim("sam")
        assert review["external_id"] == ref
        p.submit(review["assignment"], "sam", *(["--value", json.dumps(given)] if given else ["--approve"]))
    finals = {ref: p.show(ref)["task"] for ref in ("MODEL", "EXPERT", "SENIOR", "RULE")}
    assert {ref: (t["final_by"], t["final_label"]) for ref, t in finals.items()} == {
        "MODEL": ("model", ["a"]), "EXPERT": ("expert", ["a", "b"]),
        "SENIOR": ("reviewer", ["b", "c"]), "RULE": ("reviewer", ["a", "c"])}
    exported = {row["id"]: row["label"] for row in map(json.loads, p.run_ok("export").stdout.splitlines())}
    assert exported == {"MODEL": ["a"], "EXPERT": ["a", "b"], "SENIOR": ["b", "c"], "RULE": ["a", "c"]}
