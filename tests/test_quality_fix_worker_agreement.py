"""``worker.agreement`` counts each annotator's latest vote on a task, never the vote a correction replaced.

The history is made by real ``labelyard`` subprocesses on a real SQLite file
(``LABELYARD_NOW`` fixed). An annotator's first label on A1 is rejected by the
senior, the corrected label becomes final: their one vote on a finished task
agrees, so ``worker.agreement`` is 1.0, as ``labelyard agreement`` says.
"""

from __future__ import annotations

import json
from typing import Any

WORKFLOW = """\
workflow: agree
labels: {{type: {type}, choices: [a, b]}}
queues:
  triage: {{roles: [annotator]}}
  senior: {{roles: [senior]}}
on_create: [{{name: annotate, do: {{annotate: triage}}}}]
on_quorum: [{{name: review, do: {{review: senior}}}}]
on_worker:
  - {{name: low agreement, when: 'worker.agreement != null and worker.agreement < 0.75', do: {{flag: true, reason: low agreement}}}}
  - {{name: full agreement, when: worker.agreement == 1, do: {{add_skill: agreeing}}}}
"""


def project(run: Any, write_workflow: Any, tmp_path: Any, label_type: str = "choice") -> None:
    """A workflow whose on_worker rules show ``worker.agreement``; ann annotates, sen reviews; tasks A1, A2."""
    run.ok("init")
    run.ok("apply", write_workflow(WORKFLOW.format(type=label_type), name="agree.workflow.yaml"))
    run.ok("workers", "add", "ann", "--role", "annotator")
    run.ok("workers", "add", "sen", "--role", "senior")
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"id": t, "data": {}}) + "\n" for t in ("A1", "A2")))
    run.ok("ingest", "t.jsonl")


def step(run: Any, worker: str, task: str, *submit: str) -> None:
    """``worker`` claims (it must be ``task``) and submits."""
    view = run.json("claim", "--as", worker, "--json")
    assert view["external_id"] == task
    run.ok("submit", view["assignment"], "--as", worker, *submit)


def correct_then_annotate(run: Any, first: list[str], second: list[str], final: list[str]) -> None:
    """ann labels A1 (``first``), sen rejects, ann corrects (``second``), sen approves (with ``final``
    as a correction when given); then ann labels A2 ``second``."""
    step(run, "ann", "A1", *first)
    step(run, "sen", "A1", "--reject", "--comment", "it is a")
    step(run, "ann", "A1", *second)
    step(run, "sen", "A1", "--approve", *final)
    step(run, "ann", "A2", *second)


def worker(run: Any, name: str) -> dict[str, Any]:
    return next(w for w in run.json("workers", "list", "--json") if w["id"] == name)


def agreement_seen(run: Any) -> list[float]:
    """``worker.agreement`` as each on_worker event on A2 recorded it."""
    events = run.json("show", "A2", "--json")["events"]
    return [e["detail"]["facts"]["agreement"] for e in events if e["kind"].startswith("worker_")]


def test_a_corrected_vote_replaces_the_first_one_in_worker_agreement(run, write_workflow, tmp_path):
    project(run, write_workflow, tmp_path)
    correct_then_annotate(run, ["--label", "b"], ["--label", "a"], [])
    assert run.json("show", "A1", "--json")["task"]["final_label"] == "a"
    ann = worker(run, "ann")
    assert not ann["flagged"]
    assert "agreeing" in ann["skills"]
    assert agreement_seen(run) == [1.0]
    report = run.json("agreement", "--json")
    (row,) = [a for a in report["annotators"] if a["worker"] == "ann"]
    assert row["agreement"] == 1.0  # the same number the rules saw


def test_a_latest_vote_that_the_final_label_overrode_still_disagrees(run, write_workflow, tmp_path):
    project(run, write_workflow, tmp_path)
    # the senior approves with a correction: ann's latest vote on A1 ("b") is not the final "a"
    correct_then_annotate(run, ["--label", "a"], ["--label", "b"], ["--label", "a"])
    assert run.json("show", "A1", "--json")["task"]["final_label"] == "a"
    assert worker(run, "ann")["flagged"]
    assert agreement_seen(run) == [0.0]


def test_a_corrected_set_replaces_the_first_one_for_label_types_judged_in_python(run, write_workflow, tmp_path):
    project(run, write_workflow, tmp_path, label_type="multi_choice")
    correct_then_annotate(run, ["--value", '["b"]'], ["--value", '["b", "a"]'], [])
    assert run.json("show", "A1", "--json")["task"]["final_label"] == ["a", "b"]
    ann = worker(run, "ann")
    assert not ann["flagged"] and "agreeing" in ann["skills"]
    assert agreement_seen(run) == [1.0]
