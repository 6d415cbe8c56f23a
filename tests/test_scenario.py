"""End to end: the seed's ticket-triage policy driven through the CLI by simulated annotators.

Real ``labelyard`` subprocesses on a real database file; ``LABELYARD_NOW``
moves time. The workflow is ``workflows/ticket-triage.workflow.yaml`` (the
policy of DESIGN.md) plus the ``on_timer`` rules of DESIGN.md, written into
``tmp_path``. Five tickets, one per path of the policy:

- ``T-confident`` (confidence 0.97): accepted from the model, no human work.
- ``T-unanimous`` (0.50): three annotators, 3/3 agree: final by consensus.
- ``T-split`` (0.62): 2/3 agree: a senior reviews and approves: final by reviewer.
- ``T-rejected`` (0.40): 2/3, the senior rejects with a comment: back to its three
  annotators, who see the comment and their own label; their resubmissions run
  ``on_quorum`` again (now 3/3): final by consensus.
- ``T-stale`` (0.80, one annotator): claimed and abandoned; 49 hours later a
  ``labelyard tick`` releases the stale slot and escalates the SLA breach to the
  experts; the expert's label is final with ``final_by = expert``.

Every task's final state and its whole history (``show --json``, ``explain
--json``) are checked. The three annotators work at the same time, each in its
own thread of subprocesses: the outcome does not depend on their order.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

WORKFLOW_FILE = Path(__file__).resolve().parents[1] / "workflows" / "ticket-triage.workflow.yaml"
ON_TIMER = """
on_timer:                 # checked by `labelyard tick`
  - name: stale assignment
    when: assignment.age > 2h
    do: release
  - name: sla breach
    when: task.age > 48h
    do: {escalate: experts}
"""
START = "2025-03-01T09:00:00Z"
LATER = "2025-03-03T10:00:00Z"  # 49 hours on
ANNOTATORS = ("ann-ada", "ann-bo", "ann-cy")
SENIOR, EXPERT = "sam-senior", "eve-expert"
COMMENT = "read the ticket again: the customer asks for a refund"

TICKETS = [
    ("T-confident", "bug", 0.97),
    ("T-unanimous", "billing", 0.50),
    ("T-split", "bug", 0.62),
    ("T-rejected", "spam", 0.40),
    ("T-stale", "feature", 0.80),
]
# what each annotator answers on their first pass (None: claim it and walk away)
FIRST_PASS = {
    "T-unanimous": {"ann-ada": "billing", "ann-bo": "billing", "ann-cy": "billing"},
    "T-split": {"ann-ada": "bug", "ann-bo": "bug", "ann-cy": "feature"},
    "T-rejected": {"ann-ada": "spam", "ann-bo": "spam", "ann-cy": "billing"},
    "T-stale": {name: None for name in ANNOTATORS},
}


def history(shown: dict) -> list[tuple]:
    """A task's events as (kind, rule, action, actor)."""
    return [(e["kind"], e["rule"], e["action"], e["actor"]) for e in shown["events"]]


def test_ticket_triage_policy_end_to_end(run, tmp_path):
    workflow = tmp_path / "ticket-triage.workflow.yaml"
    workflow.write_text(WORKFLOW_FILE.read_text(encoding="utf-8") + ON_TIMER, encoding="utf-8")
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text("".join(
        json.dumps({"id": tid, "data": {"subject": f"ticket {tid}", "customer": "acme"},
                    "prediction": {"label": label, "confidence": confidence, "model": "triage-v3"}}) + "\n"
        for tid, label, confidence in TICKETS))

    run.ok("init")
    run.ok("apply", workflow)
    for name in ANNOTATORS:
        run.ok("workers", "add", name, "--role", "annotator")
    run.ok("workers", "add", SENIOR, "--role", "senior")
    run.ok("workers", "add", EXPERT, "--role", "expert")
    report = run.json("ingest", tickets, "--json")
    assert (report["ingested"], report["rejected"]) == (5, 0)
    assert report["routed"] == {"confident model": 1, "uncertain": 3, "default": 1}

    # -- first pass: three annotators at once, each claiming until there is no work ---------------
    def annotate(name: str) -> dict:
        seen: dict = {}
        while True:
            claim = run("claim", "--as", name, "--json")
            if claim.returncode == 3:
                return seen
            assert claim.returncode == 0, claim.stderr
            view = json.loads(claim.stdout)
            assert view["kind"] == "annotate"
            assert "votes" not in view and "prediction" not in view  # annotation is blind
            label = FIRST_PASS[view["external_id"]][name]
            seen[view["external_id"]] = label
            if label is not None:
                result = run.json("submit", view["assignment"], "--as", name, "--label", label, "--json")
                assert result["status"] == "submitted"

    with ThreadPoolExecutor(len(ANNOTATORS)) as pool:
        passes = dict(zip(ANNOTATORS, pool.map(annotate, ANNOTATORS)))
    # nobody got the confident ticket; each uncertain ticket went to all three; the stale one to one
    for name, seen in passes.items():
        assert {"T-unanimous", "T-split", "T-rejected"} <= set(seen) <= set(FIRST_PASS), (name, seen)
    abandoned_by = [name for name, seen in passes.items() if "T-stale" in seen]
    assert len(abandoned_by) == 1

    unanimous = run.json("show", "T-unanimous", "--json")["task"]
    assert (unanimous["status"], unanimous["final_label"], unanimous["final_by"], unanimous["final_rule"]) == \
        ("done", "billing", "consensus", "unanimous")

    # -- the senior reviews the two 2/3 splits: approves one, rejects the other with a comment -------
    for _ in range(2):
        view = run.json("claim", "--as", SENIOR, "--json")
        assert view["kind"] == "review" and view["queue"] == "senior"
        assert sorted(v["label"] for v in view["votes"]) in (["bug", "bug", "feature"], ["billing", "spam", "spam"])
        if view["external_id"] == "T-split":
            run.ok("submit", view["assignment"], "--as", SENIOR, "--approve")
        else:
            assert view["external_id"] == "T-rejected"
            run.ok("submit", view["assignment"], "--as", SENIOR, "--reject", "--comment", COMMENT)
    assert run("claim", "--as", SENIOR, "--json").returncode == 3

    # -- the rejected ticket is back with its three annotators, with the comment ---------------------
    for name in ANNOTATORS:
        view = run.json("claim", "--as", name, "--json")
        assert (view["external_id"], view["kind"], view["comment"]) == ("T-rejected", "correct", COMMENT)
        assert view["your_label"] == FIRST_PASS["T-rejected"][name]
        run.ok("submit", view["assignment"], "--as", name, "--label", "billing")

    # -- two days later: a tick releases the abandoned slot and escalates the SLA breach --------------
    later = {"LABELYARD_NOW": LATER}
    ticked = run.json("tick", "--json", env=later)
    assert ticked["released"] == 1
    assert ticked["actions"] == {"escalate": 1}
    again = run.json("tick", "--json", env=later)  # idempotent
    assert again["released"] == 0 and again["actions"] == {}

    view = run.json("claim", "--as", EXPERT, "--json", env=later)
    assert (view["external_id"], view["kind"], view["queue"]) == ("T-stale", "escalated", "experts")
    assert view["prediction"]["label"] == "feature"
    run.ok("submit", view["assignment"], "--as", EXPERT, "--label", "bug", env=later)
    assert run("claim", "--as", EXPERT, "--json", env=later).returncode == 3

    # -- every task's final state and history ---------------------------------------------------------
    status = run.json("status", "--json", env=later)
    assert status["tasks"] == {"open": 0, "done": 5, "held": 0, "invalid": 0}

    shown = {tid: run.json("show", tid, "--json", env=later) for tid, _, _ in TICKETS}
    finals = {tid: (s["task"]["status"], s["task"]["final_label"], s["task"]["final_by"], s["task"]["final_rule"])
              for tid, s in shown.items()}
    assert finals == {
        "T-confident": ("done", "bug", "model", "confident model"),
        "T-unanimous": ("done", "billing", "consensus", "unanimous"),
        "T-split": ("done", "bug", "reviewer", "approved"),
        "T-rejected": ("done", "billing", "consensus", "unanimous"),
        "T-stale": ("done", "bug", "expert", "approved"),
    }
    for s in shown.values():
        assert all(a["status"] != "active" for a in s["assignments"])
        assert sum(e["kind"] == "final" for e in s["events"]) <= 1

    # the confident ticket: accepted at creation, no human work at all
    confident = shown["T-confident"]
    assert confident["assignments"] == [] and confident["annotations"] == []
    assert history(confident) == [("created", "confident model", "accept", "labelyard")]

    def decisions(s: dict) -> list[tuple]:
        return [h for h in history(s) if h[0] not in ("claimed", "submitted")]

    assert decisions(shown["T-unanimous"]) == [
        ("created", "uncertain", "annotate", "labelyard"),
        ("final", "unanimous", "accept", history(shown["T-unanimous"])[-2][3]),
    ]
    assert [h[0] for h in history(shown["T-unanimous"])].count("submitted") == 3

    split = decisions(shown["T-split"])
    assert [(k, r, a) for k, r, a, _ in split] == [
        ("created", "uncertain", "annotate"), ("routed", "two of three", "review"), ("final", "approved", "accept")]
    assert split[-1][3] == SENIOR
    assert sorted(a["label"] for a in shown["T-split"]["annotations"] if a["stage"] == "annotate") == \
        ["bug", "bug", "feature"]

    rejected = shown["T-rejected"]
    assert [(k, r, a) for k, r, a, _ in decisions(rejected)] == [
        ("created", "uncertain", "annotate"), ("routed", "two of three", "review"),
        ("routed", "rejected", "return"), ("final", "unanimous", "accept")]
    review = [a for a in rejected["annotations"] if a["stage"] == "review"]
    assert [(a["worker"], a["verdict"], a["comment"]) for a in review] == [(SENIOR, "reject", COMMENT)]
    corrections = [a for a in rejected["annotations"] if a["stage"] == "correct"]
    assert sorted((a["worker"], a["label"]) for a in corrections) == [(n, "billing") for n in ANNOTATORS]
    returned = [a for a in rejected["assignments"] if a["stage"] == "correct"]
    assert sorted(a["worker"] for a in returned) == sorted(ANNOTATORS)
    assert all(a["status"] == "submitted" for a in returned)

    stale = shown["T-stale"]
    assert decisions(stale) == [
        ("created", "default", "annotate", "labelyard"),
        ("released", "stale assignment", "release", "labelyard tick"),
        ("routed", "sla breach", "escalate", "labelyard tick"),
        ("final", "approved", "accept", EXPERT),
    ]
    slots = {a["worker"]: a["status"] for a in stale["assignments"]}
    assert slots == {abandoned_by[0]: "released", EXPERT: "submitted"}
    assert stale["annotations"][-1]["worker"] == EXPERT and stale["annotations"][-1]["label"] == "bug"

    # explain tells the same story, with the values each rule saw
    explained = run.json("explain", "T-rejected", "--json", env=later)
    assert explained["task"]["final_by"] == "consensus"
    rules_seen = [(e["decision"]["section"], e["decision"]["rule"]) for e in explained["events"] if "decision" in e]
    assert rules_seen == [("on_create", "uncertain"), ("on_quorum", "two of three"), ("on_review", "rejected"),
                          ("on_quorum", "unanimous")]
    explained = run.json("explain", "T-stale", "--json", env=later)
    rules_seen = [(e["decision"]["section"], e["decision"]["rule"]) for e in explained["events"] if "decision" in e]
    assert rules_seen[0] == ("on_create", "default")
    assert rules_seen[-2:] == [("on_timer", "sla breach"), ("on_review", "approved")]
    assert explained["events"][1]["actor"] == abandoned_by[0]  # claimed, then released by the tick
