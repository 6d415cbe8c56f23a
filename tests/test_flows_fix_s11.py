"""Eleventh session's fixes to correction rounds a lead holds and reopens, through the CLI on a
real database.

a1, a2 and a3 vote a / b / a on T1 in `triage`; the split goes to s1 in `senior`, who rejects
it ("check again"): each voter owes a correction.
"""

from __future__ import annotations

from test_flows_claims import claim, submit

THREE = """\
workflow: w
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - {name: three, do: {annotate: triage, overlap: 3}}
on_quorum:
  - {name: split, when: votes.count == 3 and votes.top_count == 2, do: {review: senior}}
  - {name: ok, do: accept}
on_review:
  - {name: rejected, when: review.verdict == "reject", do: {return: annotators}}
  - {name: approved, do: accept}
"""
VOTERS = ("a1", "a2", "a3")


def voted(run) -> None:
    """T1 voted a (a1), b (a2), a (a3): it waits for s1's review."""
    run.ok("init")
    (run.folder / "w.workflow.yaml").write_text(THREE, encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    for name in VOTERS:
        run.ok("workers", "add", name, "--role", "annotator")
    run.ok("workers", "add", "s1", "--role", "senior")
    (run.folder / "t.jsonl").write_text('{"id": "T1", "data": {"text": "x"}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    vote(run)


def vote(run, *labels: str) -> None:
    """Each voter of VOTERS submits (a correction, after a return), in that order."""
    for worker, label in zip(VOTERS, labels or ("a", "b", "a")):
        slot = claim(run, worker)
        submit(run, slot["assignment"], worker, "--label", label)


def reject(run, comment: str = "check again") -> None:
    review = claim(run, "s1")
    assert review["kind"] == "review"
    assert submit(run, review["assignment"], "s1", "--reject", "--comment", comment)["decision"]["action"] == "return"


def show(run) -> dict:
    return run.json("show", "T1", "--json")


def offered(run) -> list[str]:
    return [a["worker"] for a in show(run)["assignments"] if a["stage"] == "correct" and a["status"] == "offered"]


def drop_every_correction(run) -> None:
    """The lead moves the whole team to another role by mistake: every correction is dropped, T1 held."""
    for name in VOTERS:
        run.ok("workers", "set", name, "--role", "tagger")
    assert show(run)["task"]["status"] == "held"


# -- unhold offers a correction to every voter who still owes one --------------------------------

def test_unhold_after_every_correction_was_dropped_offers_each_voter_again(run):
    voted(run)
    reject(run)
    drop_every_correction(run)
    shown = show(run)
    dropped = [e for e in shown["events"] if e["kind"] == "correction_dropped"][-1]
    assert shown["task"]["needed"] == dropped["detail"]["needed"] == 0  # before: stored 1, the event said 0
    for name in VOTERS:
        run.ok("workers", "set", name, "--role", "annotator")
    run.ok("unhold", "T1")
    assert offered(run) == ["a1", "a2", "a3"]  # before: a1 alone
    assert show(run)["task"]["needed"] == 3
    event = [e for e in show(run)["events"] if e["kind"] == "unheld"][-1]
    assert [c["worker"] for c in event["detail"]["corrections"]] == ["a1", "a2", "a3"]
    assert "left_out" not in event["detail"]
    first = claim(run, "a1")
    assert first["kind"] == "correct"
    assert "decision" not in submit(run, first["assignment"], "a1", "--label", "b")  # before: `split` on old votes
    for name in ("a2", "a3"):
        slot = claim(run, name)  # before: exit 3, no work
        assert (slot["external_id"], slot["kind"]) == ("T1", "correct")
        result = submit(run, slot["assignment"], name, "--label", "b")
    assert result["decision"]["rule"] == "ok"
    assert (show(run)["task"]["status"], show(run)["task"]["final_label"]) == ("done", "b")


def test_unhold_names_a_voter_who_still_cannot_take_their_correction_back(run):
    voted(run)
    reject(run)
    drop_every_correction(run)
    for name in ("a1", "a3"):
        run.ok("workers", "set", name, "--role", "annotator")
    run.ok("unhold", "T1")
    assert offered(run) == ["a1", "a3"]
    assert show(run)["task"]["needed"] == 2
    event = [e for e in show(run)["events"] if e["kind"] == "unheld"][-1]
    assert event["detail"]["left_out"] == [{"worker": "a2", "queue": "triage", "reason": "a2 no longer works `triage`"}]


def test_a_lead_hold_then_unhold_gives_back_every_pending_correction(run):
    voted(run)
    reject(run)
    run.ok("workers", "set", "a2", "--role", "senior")  # a2's correction is dropped: needed 2
    run.ok("hold", "T1")
    run.ok("workers", "set", "a2", "--role", "annotator")
    run.ok("unhold", "T1")
    assert offered(run) == ["a1", "a2", "a3"]  # before: a1 and a2, a3's pending correction silently gone
    assert show(run)["task"]["needed"] == 3
    assert claim(run, "a3")["kind"] == "correct"  # before: exit 3


def test_a_round_decided_by_its_corrections_and_held_by_a_rule_is_not_reopened(run):
    """A held correction round with nothing left (``on_quorum`` decided it) stays for a lead to escalate."""
    voted(run)
    (run.folder / "w.workflow.yaml").write_text(
        THREE.replace("  - {name: ok, do: accept}", "  - {name: look, do: hold}"), encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    reject(run)
    vote(run, "b", "b", "b")
    task = show(run)["task"]
    assert (task["status"], task["stage"], task["needed"]) == ("held", "correct", 0)
    refused = run("unhold", "T1")
    assert refused.returncode == 1
    assert "was held with no work left in its stage" in refused.stderr
    assert offered(run) == []


# -- a correction reopened by unhold shows the current round's reviewer comment -------------------

def test_a_correction_offered_again_after_every_one_was_dropped_keeps_the_reviewers_comment(run):
    voted(run)
    reject(run, "check again")
    drop_every_correction(run)
    for name in VOTERS:
        run.ok("workers", "set", name, "--role", "annotator")
    run.ok("unhold", "T1")
    assert claim(run, "a1")["comment"] == "check again"  # before: None ("(no comment)")
    shown = run.ok("claim", "--as", "a2").stdout
    assert "reviewer's comment: check again" in shown


def test_unhold_shows_the_comment_of_the_current_round_not_an_older_one(run):
    voted(run)
    reject(run, "FIRST: the old comment")
    run.ok("hold", "T1")
    run.ok("unhold", "T1")  # a lead pauses the first round once
    assert claim(run, "a1")["comment"] == "FIRST: the old comment"
    run.ok("release", "T1")
    vote(run)
    reject(run, "SECOND: the new comment")
    drop_every_correction(run)
    for name in VOTERS:
        run.ok("workers", "set", name, "--role", "annotator")
    run.ok("unhold", "T1")
    assert claim(run, "a1")["comment"] == "SECOND: the new comment"  # before: the first round's


# -- apply names the tasks whose corrections wait in a queue it drops ------------------------------

LEGAL = """\
workflow: w
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  legal:  {roles: [annotator], skills: [legal]}
  senior: {roles: [senior]}
on_create:
  - {name: legal, do: {annotate: legal, overlap: 2}}
on_quorum:
  - {name: split3, when: votes.count == 3 and votes.top_count == 2, do: {review: senior}}
  - {name: legal split, when: votes.count == 2 and not votes.unanimous, do: {annotate: triage, overlap: 3}}
  - {name: ok, do: accept}
on_review:
  - {name: rejected, when: review.verdict == "reject", do: {return: annotators}}
  - {name: approved, do: accept}
"""
WITHOUT_LEGAL = LEGAL.replace("  legal:  {roles: [annotator], skills: [legal]}\n", "").replace(
    "annotate: legal, overlap: 2", "annotate: triage, overlap: 2")


def test_apply_names_the_tasks_whose_corrections_wait_in_a_dropped_queue_with_a_command_that_moves_them(run):
    run.ok("init")
    (run.folder / "w.workflow.yaml").write_text(LEGAL, encoding="utf-8")
    (run.folder / "v2.workflow.yaml").write_text(WITHOUT_LEGAL, encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    for name in ("l1", "l2"):
        run.ok("workers", "add", name, "--role", "annotator", "--skill", "legal")
    run.ok("workers", "add", "a1", "--role", "annotator")
    run.ok("workers", "add", "s1", "--role", "senior")
    (run.folder / "t.jsonl").write_text('{"id": "T1", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    for worker, label in (("l1", "a"), ("l2", "b"), ("a1", "a")):
        submit(run, claim(run, worker)["assignment"], worker, "--label", label)
    submit(run, claim(run, "s1")["assignment"], "s1", "--reject", "--comment", "redo")
    task = run.json("show", "T1", "--json")["task"]
    assert (task["stage"], task["queue"]) == ("correct", "triage")  # l1's and l2's corrections wait in `legal`
    (run.folder / "t2.jsonl").write_text('{"id": "T2", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t2.jsonl")  # T2 waits in `legal` itself

    refused = run("apply", "v2.workflow.yaml")
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert "this version drops `legal` (2 open tasks, 1 of them by the corrections waiting there)" in message
    where = "labelyard escalate --where 'task.queue == \"legal\"' --to QUEUE"
    by_id = "labelyard escalate id:1 --to QUEUE for T1, whose own queue stays"  # before: `escalate TASK`, unnamed
    assert f"Move them first ({where}; {by_id})" in message, message
    assert run.ok("escalate", "--where", 'task.queue == "legal"', "--to", "senior").stdout.startswith("escalated T2")
    refused = run("apply", "v2.workflow.yaml")
    assert refused.returncode == 1
    assert f"Move them first ({by_id})" in " ".join(refused.stderr.split())
    run.ok("escalate", "id:1", "--to", "senior")  # the command the message gave
    run.ok("apply", "v2.workflow.yaml")
    assert run.json("status", "--json")["workflow"]["version"] == 2


def test_apply_names_a_few_such_tasks_and_counts_the_rest():
    from router.engine import _orphans_refused

    others = [(i, f"T{i}") for i in range(1, 9)]
    message = _orphans_refused({}, {"legal": [i for i, _ in others]}, others)
    assert ("Move them first (labelyard escalate id:1 id:2 id:3 id:4 id:5 --to QUEUE for T1, T2, T3, T4 and T5 "
            "… and 3 more (apply again names them), whose own queues stay)") in message
    assert "`legal` (8 open tasks, 8 of them by the corrections waiting there)" in message
    two = _orphans_refused({"a": 1, "b": 2}, {}, [])
    assert "(labelyard escalate --where 'task.queue == \"a\" or task.queue == \"b\"' --to QUEUE)" in two


# -- wording: who a queue admits, and a role holding a comma --------------------------------------

def test_reassign_words_what_a_queue_needs_as_status_does(run):
    run.ok("init")
    (run.folder / "w.workflow.yaml").write_text(THREE, encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    run.ok("workers", "add", "s1", "--role", "senior")
    (run.folder / "t.jsonl").write_text('{"id": "T1", "data": {}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    refused = run("reassign", "T1", "--to", "s1")
    assert refused.returncode == 1
    # before: "needs one of the roles annotator", while status and stalled say "the role annotator"
    assert "cannot reassign task T1 to s1: queue `triage` needs the role annotator (--force" in refused.stderr
    status = run.ok("status").stdout
    assert "it needs the role annotator" in " ".join(status.split())


def test_workers_list_tells_a_role_holding_a_comma_from_two_roles(run):
    run.ok("init")
    run.ok("workers", "add", "one", "--role", "senior,annotator")
    run.ok("workers", "add", "two", "--role", "annotator", "--role", "senior")
    run.ok("workers", "add", "three", "--role", "annotator", "--skill", 'a "b"', "--skill", "-")
    lines = {line.split()[0]: line.split(None, 1)[1] for line in run.ok("workers", "list").stdout.splitlines()}
    assert lines["one"].startswith('roles="senior,annotator" skills=-')  # before: roles=senior,annotator
    assert lines["two"].startswith("roles=annotator,senior skills=-")
    assert lines["three"].startswith('roles=annotator skills="-","a \\"b\\"" capacity=-')
    assert [w["roles"] for w in run.json("workers", "list", "--json") if w["id"] == "one"] == [["senior,annotator"]]
