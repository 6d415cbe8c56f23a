"""A `return` whose votes were cast in more than one queue: each voter's correction waits in
the queue of their own counted vote, through the CLI on a real database.

a1 and a2 vote a / b on T1 in `triage`; the split sends it to `legal` for a third vote (l1, who
has the `legal` skill, votes b); the senior s1 rejects it. Before, the return offered a
correction to l1 alone (in `legal`, the latest vote's queue), said nothing of a1 and a2, and
their old votes decided again at the next `on_quorum`.
"""

from __future__ import annotations

from test_flows_claims import claim, submit

TWO = """\
workflow: two
labels: {type: choice, choices: [a, b, c]}
queues:
  triage: {roles: [annotator]}
  legal:  {roles: [annotator], skills: [legal]}
  senior: {roles: [senior]}
on_create: [{name: first, do: {annotate: triage, overlap: 2}}]
on_quorum:
  - {name: agree, when: votes.unanimous and votes.count >= 3, do: accept}
  - {name: split, when: votes.count == 2, do: {annotate: legal, overlap: 3}}
  - {name: review, do: {review: senior}}
on_review:
  - {name: rejected, when: review.verdict == "reject", do: {return: annotators}}
  - {name: ok, do: accept}
"""
WITHOUT_TRIAGE = TWO.replace("  triage: {roles: [annotator]}\n", "  intake: {roles: [annotator]}\n").replace(
    "annotate: triage", "annotate: intake")
WAITING_A_DAY = TWO + """\
on_timer:
  - {name: waiting a day, when: task.stage == "correct" and task.stage_age > 1d, do: {annotate: triage, priority: 10}}
"""


def voted(run, workflow: str = TWO) -> None:
    """T1 voted a (a1) and b (a2) in `triage`, then b (l1) in `legal`: it waits for s1's review."""
    run.ok("init")
    (run.folder / "two.workflow.yaml").write_text(workflow, encoding="utf-8")
    run.ok("apply", "two.workflow.yaml")
    for name, args in (("a1", ()), ("a2", ()), ("l1", ("--skill", "legal"))):
        run.ok("workers", "add", name, "--role", "annotator", *args)
    run.ok("workers", "add", "s1", "--role", "senior")
    (run.folder / "t.jsonl").write_text('{"id": "T1", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    for worker, queue, label in (("a1", "triage", "a"), ("a2", "triage", "b"), ("l1", "legal", "b")):
        slot = claim(run, worker)
        assert slot["queue"] == queue
        submit(run, slot["assignment"], worker, "--label", label)
    task = run.json("show", "T1", "--json")["task"]
    assert (task["stage"], task["queue"]) == ("review", "senior")


def reject(run) -> dict:
    review = claim(run, "s1")
    assert (review["external_id"], review["kind"]) == ("T1", "review")
    return submit(run, review["assignment"], "s1", "--reject", "--comment", "read the contract again")


def corrections(run, status: str = "offered") -> list[tuple[str, str]]:
    return [(a["worker"], a["queue"]) for a in run.json("show", "T1", "--json")["assignments"]
            if a["stage"] == "correct" and a["status"] == status]


def returned_event(run) -> dict:
    return [e for e in run.json("show", "T1", "--json")["events"] if e["action"] == "return"][-1]


def test_each_voter_corrects_in_the_queue_of_their_own_vote_and_no_stale_vote_decides(run):
    voted(run)
    assert reject(run)["decision"]["action"] == "return"
    task = run.json("show", "T1", "--json")["task"]
    # `queue` names the newest returned vote's queue; each correction waits in its own
    assert (task["stage"], task["queue"], task["needed"]) == ("correct", "legal", 3)
    assert corrections(run) == [("a1", "triage"), ("a2", "triage"), ("l1", "legal")]  # before: l1 alone
    assert returned_event(run)["detail"]["corrections"] == [
        {"worker": "a1", "queue": "triage"}, {"worker": "a2", "queue": "triage"}, {"worker": "l1", "queue": "legal"}]
    assert "left_out" not in returned_event(run)["detail"]

    fix = claim(run, "a1")
    assert (fix["external_id"], fix["kind"], fix["queue"], fix["your_label"]) == ("T1", "correct", "triage", "a")
    assert fix["comment"] == "read the contract again"
    claimed = [e for e in run.json("show", "T1", "--json")["events"] if e["kind"] == "claimed"][-1]
    assert claimed["detail"]["queue"] == "triage"
    submit(run, fix["assignment"], "a1", "--label", "c")
    fix = claim(run, "a2", "--queue", "triage")
    assert (fix["kind"], fix["queue"]) == ("correct", "triage")
    submit(run, fix["assignment"], "a2", "--label", "c")
    assert run.json("show", "T1", "--json")["task"]["stage"] == "correct"  # waits for l1 too
    fix = claim(run, "l1", "--queue", "legal")
    assert (fix["kind"], fix["queue"]) == ("correct", "legal")
    decided = submit(run, fix["assignment"], "l1", "--label", "c")
    assert decided["decision"]["rule"] == "agree"  # three new votes c: none of a / b / b is left to decide
    task = run.json("show", "T1", "--json")["task"]
    assert (task["status"], task["final_label"]) == ("done", "c")


def test_a_voter_who_no_longer_works_their_votes_queue_is_left_out_and_the_lead_is_told(run):
    voted(run)
    run.ok("workers", "set", "a2", "--role", "senior")  # a2 no longer works `triage`
    reject(run)
    task = run.json("show", "T1", "--json")["task"]
    assert (task["stage"], task["queue"], task["needed"]) == ("correct", "legal", 2)
    assert corrections(run) == [("a1", "triage"), ("l1", "legal")]
    detail = returned_event(run)["detail"]
    assert detail["left_out"] == [{"worker": "a2", "queue": "triage", "reason": "a2 no longer works `triage`"}]
    shown = " ".join(run.ok("show", "T1").stdout.split())  # as read, whatever the terminal's width
    assert "correction offered to a1 in triage, l1 in legal; left out: a2 (a2 no longer works `triage`)" in shown
    explained = run.ok("explain", "T1").stdout
    assert "corrections: a1 in triage, l1 in legal" in explained
    assert "left out: a2 (a2 no longer works `triage`)" in explained
    assert run.json("explain", "T1", "--json")["events"][-1]["decision"]["left_out"] == detail["left_out"]


def test_when_every_correction_is_dropped_the_hold_names_each_queue(run):
    voted(run)
    reject(run)
    run.ok("workers", "set", "a1", "--role", "senior")
    run.ok("workers", "set", "a2", "--role", "senior")
    assert run.json("show", "T1", "--json")["task"]["status"] == "open"  # l1 may still correct it
    run.ok("workers", "set", "l1", "--no-skills")
    task = run.json("show", "T1", "--json")["task"]
    reason = "waits for corrections nobody can take back (its annotators no longer work `legal` or `triage`)"
    assert (task["status"], task["stage"], task["reason"]) == ("held", "correct", reason)
    refused = run("unhold", "T1")
    assert refused.returncode == 1, refused.stderr
    assert "nobody can take back (its annotators no longer work `legal` or `triage`)" in refused.stderr
    run.ok("workers", "set", "a2", "--role", "annotator")
    unheld = run.ok("unhold", "T1")
    assert unheld.returncode == 0
    task = run.json("show", "T1", "--json")["task"]
    assert (task["status"], task["queue"], task["needed"]) == ("open", "triage", 1)
    assert corrections(run) == [("a2", "triage")]
    event = [e for e in run.json("show", "T1", "--json")["events"] if e["kind"] == "unheld"][-1]
    assert event["detail"]["corrections"] == [{"worker": "a2", "queue": "triage"}]
    assert [(d["worker"], d["reason"]) for d in event["detail"]["left_out"]] == [
        ("a1", "a1 no longer works `triage`"), ("l1", "l1 no longer works `legal`")]


def test_unhold_offers_the_corrections_again_each_in_its_own_queue(run):
    voted(run)
    reject(run)
    fix = claim(run, "a1")
    submit(run, fix["assignment"], "a1", "--label", "c")
    run.ok("hold", "T1")
    assert corrections(run) == []
    run.ok("unhold", "T1")
    assert corrections(run) == [("a2", "triage"), ("l1", "legal")]  # before: both in the task's one queue
    assert run.json("show", "T1", "--json")["task"]["needed"] == 2
    assert claim(run, "a2", "--queue", "triage")["kind"] == "correct"


def test_a_return_with_votes_in_a_queue_the_version_dropped_is_held_naming_it_and_whose_votes(run):
    voted(run)
    (run.folder / "next.workflow.yaml").write_text(WITHOUT_TRIAGE, encoding="utf-8")
    applied = run.json("apply", "next.workflow.yaml", "--json")
    assert applied["votes_in_dropped_queues"] == {"triage": 1}  # before: {} (the latest vote was in `legal`)
    out = run.ok("submit", claim(run, "s1")["assignment"], "--as", "s1", "--reject").stdout
    reason = ("return: queue `triage`, where the votes of a1 and a2 were cast, is not in version 2 of workflow "
              "`two`; a lead can `escalate` it")
    assert reason in out  # before: returned to l1 alone, a1's and a2's votes counted again
    task = run.json("show", "T1", "--json")["task"]
    assert (task["status"], task["reason"]) == ("held", reason)
    assert corrections(run) == []


def test_a_version_that_drops_a_queue_where_corrections_wait_is_refused_as_for_open_tasks(run):
    voted(run)
    reject(run)
    (run.folder / "next.workflow.yaml").write_text(WITHOUT_TRIAGE, encoding="utf-8")
    refused = run("apply", "next.workflow.yaml")
    assert refused.returncode == 1
    assert "this version drops `triage` (1 open task" in refused.stderr, refused.stderr
    held = run.json("apply", "next.workflow.yaml", "--hold-orphans", "--json")
    assert held["held_orphans"] == 1
    task = run.json("show", "T1", "--json")["task"]
    assert (task["status"], task["stage"], task["reason"]) == (
        "held", "correct", "corrections wait in queue `triage`, which is not in version 2 of workflow `two`")
    refused = run("unhold", "T1")  # as for a task of a dropped queue: a lead escalates it
    assert refused.returncode == 1
    assert ("task T1 waits for corrections in queue `triage`, which the workflow no longer has; "
            "route it with `labelyard escalate id:1 --to QUEUE`") in refused.stderr
    run.ok("escalate", "T1", "--to", "legal")
    assert run.json("show", "T1", "--json")["task"]["stage"] == "escalated"

def test_a_timer_reprioritises_a_correction_round_in_any_of_its_queues(run):
    voted(run, WAITING_A_DAY)
    reject(run)
    report = run.json("tick", "--json", env={"LABELYARD_NOW": "2025-03-02T10:00:00Z"})
    assert report["actions"] == {"priority": 1}  # before: a new annotate round in triage, corrections expired
    task = run.json("show", "T1", "--json")["task"]
    assert (task["stage"], task["priority"]) == ("correct", 10.0)
    assert corrections(run) == [("a1", "triage"), ("a2", "triage"), ("l1", "legal")]



def test_a_dropped_correction_takes_the_tasks_queue_to_a_correction_still_waiting(run):
    voted(run)
    reject(run)
    assert run.json("show", "T1", "--json")["task"]["queue"] == "legal"  # l1's vote was the newest
    run.ok("workers", "set", "l1", "--no-skills")  # l1's correction in `legal` is dropped
    task = run.json("show", "T1", "--json")["task"]
    assert (task["status"], task["stage"], task["needed"]) == ("open", "correct", 2)
    assert task["queue"] == "triage"  # before: `legal`, where no correction waited any more
    assert corrections(run) == [("a1", "triage"), ("a2", "triage")]
    assert run.json("status", "--json")["queues"].get("legal", {}).get("waiting", 0) == 0
