"""A reviewer's `return` and the corrections it offers, around workflow versions and workers
whose roles change, through the CLI on a real database.

Two annotators vote on T1 in `triage` and a senior reviews it; a rejection offers each of
them a `correct` slot in `triage`, the queue where the votes were cast.
"""

from __future__ import annotations

import json

from conftest import Runner
from test_flows_claims import claim, submit

RETURNS = """\
workflow: t
labels: {type: choice, choices: [bug, spam]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create: [{name: default, do: {annotate: triage, overlap: 2}}]
on_quorum: [{name: review, do: {review: senior}}]
on_review:
  - {name: rejected, when: 'review.verdict == "reject"', do: {return: annotators}}
  - {name: approved, do: accept}
"""
RENAMED = RETURNS.replace("triage", "triage2")  # the annotators' queue under another name
NO_RETURN = RENAMED.replace("""  - {name: rejected, when: 'review.verdict == "reject"', do: {return: annotators}}\n""",
                            """  - {name: rejected, when: 'review.verdict == "reject"', do: {hold: rejected}}\n""")


def voted(run, tasks: tuple[str, ...] = ("T1",), workflow: str = RETURNS) -> None:
    """init, apply ``workflow``, workers a1 a2 (annotator) and sen (senior); a1 and a2 vote
    bug / spam on each task, which then waits for sen's review."""
    run.ok("init")
    (run.folder / "t.workflow.yaml").write_text(workflow, encoding="utf-8")
    run.ok("apply", "t.workflow.yaml")
    for name, role in (("a1", "annotator"), ("a2", "annotator"), ("sen", "senior")):
        run.ok("workers", "add", name, "--role", role)
    (run.folder / "t.jsonl").write_text("".join(json.dumps({"id": t, "data": {}}) + "\n" for t in tasks))
    run.ok("ingest", "t.jsonl")
    for _ in tasks:
        for worker, label in (("a1", "bug"), ("a2", "spam")):
            slot = claim(run, worker)
            submit(run, slot["assignment"], worker, "--label", label)
    for t in tasks:
        assert run.json("show", t, "--json")["task"]["stage"] == "review"


def reject(run, task: str = "T1") -> dict:
    review = claim(run, "sen")
    assert (review["external_id"], review["kind"]) == (task, "review")
    return submit(run, review["assignment"], "sen", "--reject", "--comment", "look again")


def apply(run, text: str, *args: str):
    (run.folder / "next.workflow.yaml").write_text(text, encoding="utf-8")
    return run("apply", "next.workflow.yaml", *args)


def offered(run, task: str = "T1") -> list[str]:
    return [a["worker"] for a in run.json("show", task, "--json")["assignments"] if a["status"] == "offered"]


# -- 1. the votes' queue is gone from the workflow -------------------------------------------------


def test_a_return_to_votes_cast_in_a_queue_the_version_dropped_is_held_naming_that_queue(run):
    voted(run)
    assert apply(run, RENAMED).returncode == 0  # T1 waits in `senior`: no open task of `triage`
    review = claim(run, "sen")
    out = run.ok("submit", review["assignment"], "--as", "sen", "--reject", "--comment", "no").stdout
    reason = ("return: queue `triage`, where its votes were cast, is not in version 2 of workflow `t`; "
              "a lead can `escalate` it")
    assert out.strip() == f"submitted assignment {review['assignment']}; rule `rejected` → hold ({reason})"
    shown = run.json("show", "T1", "--json")  # before: "return: no annotators to return the task to"
    assert (shown["task"]["status"], shown["task"]["reason"]) == ("held", reason)
    assert offered(run) == []
    refused = run("unhold", "T1")
    assert refused.returncode == 1 and "route it with `labelyard escalate id:1 --to QUEUE`" in refused.stderr


def test_apply_warns_of_tasks_in_review_whose_return_would_need_a_queue_it_drops(run):
    voted(run, ("T1", "T2", "T3"))
    run.ok("escalate", "T2", "--to", "senior")  # an expert's stage: its on_review may return too
    run.ok("hold", "T3")  # not open: not counted (unhold is where a lead meets it)
    applied = apply(run, RENAMED, "--json")
    assert applied.returncode == 0, applied.stderr  # not refused: the reviews can still be done
    result = json.loads(applied.stdout)
    assert (result["version"], result["held_orphans"]) == (2, 0)
    assert result["votes_in_dropped_queues"] == {"triage": 2}

    spare = RETURNS.replace("  senior:", "  spare: {roles: [annotator]}\n  senior:")
    assert json.loads(apply(run, spare, "--json").stdout)["votes_in_dropped_queues"] == {}  # v3: `triage` again
    assert json.loads(apply(run, RETURNS, "--json").stdout)[
        "votes_in_dropped_queues"] == {}  # v4 drops `spare` (and `triage2`), where no vote was cast
    text = apply(run, RENAMED)  # v5 drops `triage` again
    assert text.returncode == 0
    assert text.stderr == ("warning: 2 open task(s) wait for a review with votes cast in dropped queue `triage`: "
                           "a `return` would hold them, since no correction can be offered there\n")
    assert text.stdout.startswith("applied t version 5")

    assert apply(run, RETURNS).returncode == 0
    quiet = json.loads(apply(run, NO_RETURN, "--json").stdout)  # no rule returns: no return can need it
    assert quiet["votes_in_dropped_queues"] == {}


# -- 2. a correction goes only to an annotator who may work its queue ------------------------------


def test_a_role_change_after_or_before_the_return_leaves_the_same_correction_to_the_same_people(tmp_path):
    after, before = Runner(tmp_path / "after"), Runner(tmp_path / "before")
    for run in (after, before):
        run.folder.mkdir()
        voted(run)
    before.ok("workers", "set", "a2", "--role", "senior")
    reject(before)
    reject(after)
    changed = after.ok("workers", "set", "a2", "--role", "senior")
    assert "dropped the correction of T1 (id:1) offered to a2, who no longer works `triage`" in changed.stdout

    for run in (after, before):
        shown = run.json("show", "T1", "--json")
        assert (shown["task"]["stage"], shown["task"]["needed"]) == ("correct", 1)
        assert offered(run) == ["a1"]
        nothing = run("claim", "--as", "a2", "--json")
        assert (nothing.returncode, nothing.stdout) == (3, ""), nothing.stdout  # before: the correction
        refused = run("claim", "--as", "a2", "--queue", "triage", "--json")
        assert refused.returncode == 3 and "a2 may not take work from `triage`" in refused.stderr
        fix = claim(run, "a1")
        assert (fix["external_id"], fix["kind"]) == ("T1", "correct")
        decided = submit(run, fix["assignment"], "a1", "--label", "spam")  # the last correction: on_quorum
        assert (decided["decision"]["rule"], decided["decision"]["target"]) == ("review", "senior")
    dropped = [e for e in after.json("show", "T1", "--json")["events"] if e["kind"] == "correction_dropped"]
    assert [(e["actor"], e["detail"]["worker"], e["detail"]["queue"], e["detail"]["needed"]) for e in dropped] == [
        ("lead-lucy", "a2", "triage", 1)]


def test_the_last_correction_dropped_runs_on_quorum_on_the_votes_kept(run):
    voted(run)
    reject(run)
    fix = claim(run, "a1")
    submit(run, fix["assignment"], "a1", "--label", "spam")
    assert run.json("show", "T1", "--json")["task"]["stage"] == "correct"  # waits for a2
    run.ok("workers", "set", "a2", "--role", "senior")
    shown = run.json("show", "T1", "--json")
    assert (shown["task"]["status"], shown["task"]["stage"], shown["task"]["queue"]) == ("open", "review", "senior")
    routed = [e for e in shown["events"] if e["kind"] == "routed"][-1]
    assert (routed["actor"], routed["rule"]) == ("lead-lucy", "review")
    assert [(a["worker"], a["stage"], a["label"]) for a in shown["annotations"]] == [  # a2's vote still counts
        ("a1", "annotate", "bug"), ("a2", "annotate", "spam"), ("sen", "review", None), ("a1", "correct", "spam")]


def test_a_correction_nobody_left_can_take_holds_the_task_until_someone_can(run):
    voted(run)
    reject(run)
    run.ok("workers", "set", "a1", "--role", "senior")
    assert run.json("show", "T1", "--json")["task"]["status"] == "open"  # a2 may still correct it
    run.ok("workers", "set", "a2", "--role", "senior")
    task = run.json("show", "T1", "--json")["task"]
    reason = "waits for corrections nobody can take back (its annotators no longer work `triage`)"
    assert (task["status"], task["stage"], task["queue"], task["reason"]) == ("held", "correct", "triage", reason)
    refused = run("unhold", "T1")
    assert refused.returncode == 1 and "waits for corrections nobody can take back" in refused.stderr
    run.ok("workers", "set", "a1", "--role", "annotator")
    run.ok("unhold", "T1")
    assert offered(run) == ["a1"]
    assert claim(run, "a1")["kind"] == "correct"


def test_a_correction_given_back_by_someone_who_no_longer_works_its_queue_is_dropped(run):
    voted(run)
    reject(run)
    mine = claim(run, "a2")
    assert mine["kind"] == "correct"
    run.ok("workers", "set", "a2", "--role", "senior")  # an active slot stays theirs: they may submit it
    assert [a["status"] for a in run.json("show", "T1", "--json")["assignments"] if a["id"] == mine["assignment"]] \
        == ["active"]
    released = run.json("release", "--assignment", mine["assignment"], "--json")
    assert released["status"] == "expired"  # before: offered back to a2, who could never claim it
    shown = run.json("show", "T1", "--json")
    assert (shown["task"]["needed"], offered(run)) == (1, ["a1"])


def test_an_on_worker_rule_that_takes_a_skill_drops_the_corrections_that_need_it(run):
    skilled = RETURNS.replace("triage: {roles: [annotator]}",
                              "triage: {roles: [annotator], skills: [x]}\n  other: {roles: [annotator]}").replace(
        "on_create: [{name: default,",
        "on_worker: [{name: slipping, when: 'worker.submitted >= 2 and \"x\" in worker.skills', do: {remove_skill: x}}]\n"
        "on_create: [{name: other, when: 'task.category == \"o\"', do: {annotate: other}}, {name: default,")
    run.ok("init")
    (run.folder / "t.workflow.yaml").write_text(skilled, encoding="utf-8")
    run.ok("apply", "t.workflow.yaml")
    for name, args in (("a1", ("--role", "annotator", "--skill", "x")), ("a2", ("--role", "annotator", "--skill", "x")),
                       ("sen", ("--role", "senior",))):
        run.ok("workers", "add", name, *args)
    (run.folder / "t.jsonl").write_text('{"id": "T1", "data": {}}\n{"id": "O1", "category": "o", "data": {}}\n')
    run.ok("ingest", "t.jsonl")
    for worker, label in (("a1", "bug"), ("a2", "spam")):
        slot = claim(run, worker, "--queue", "triage")
        submit(run, slot["assignment"], worker, "--label", label)
    reject(run)
    assert offered(run) == ["a1", "a2"]
    other = claim(run, "a2", "--queue", "other")
    submit(run, other["assignment"], "a2", "--label", "bug")  # a2's second submission: `slipping` takes x
    shown = run.json("show", "T1", "--json")
    assert (shown["task"]["needed"], offered(run)) == (1, ["a1"])
    dropped = [e for e in shown["events"] if e["kind"] == "correction_dropped"]
    assert [(e["actor"], e["detail"]["worker"]) for e in dropped] == [("labelyard", "a2")]


SKILLED = RETURNS.replace("triage: {roles: [annotator]}", "triage: {roles: [annotator], skills: [x]}")


def test_a_version_whose_queue_no_longer_admits_an_annotator_drops_their_correction(run):
    """A version that asks `triage` for a skill a2 lacks drops a2's correction as `workers set` would."""
    voted(run)
    reject(run)
    run.ok("workers", "set", "a1", "--skill", "x")
    applied = apply(run, SKILLED)
    assert applied.returncode == 0, applied.stderr
    assert ("dropped the correction of T1 (id:1) offered to a2, who no longer works `triage` in this version"
            in applied.stderr)  # before: offered to a2 until a lead's hold and unhold
    shown = run.json("show", "T1", "--json")
    assert (shown["task"]["status"], shown["task"]["needed"], offered(run)) == ("open", 1, ["a1"])
    dropped = [e for e in shown["events"] if e["kind"] == "correction_dropped"]
    assert [(e["actor"], e["detail"]["worker"], e["detail"]["needed"]) for e in dropped] == [("lead-lucy", "a2", 1)]
    nothing = run("claim", "--as", "a2", "--json")
    assert (nothing.returncode, nothing.stdout) == (3, ""), nothing.stdout
    fix = claim(run, "a1")
    assert (fix["external_id"], fix["kind"]) == ("T1", "correct")
    decided = submit(run, fix["assignment"], "a1", "--label", "spam")  # the last correction: on_quorum again
    assert (decided["decision"]["rule"], decided["decision"]["target"]) == ("review", "senior")


def test_a_version_that_admits_none_of_the_annotators_holds_the_task_until_someone_can(run):
    voted(run)
    reject(run)
    (run.folder / "next.workflow.yaml").write_text(SKILLED, encoding="utf-8")
    result = run.json("apply", "next.workflow.yaml", "--json")
    assert [(d["external_id"], d["worker"], d["queue"]) for d in result["dropped_corrections"]] == [
        ("T1", "a1", "triage"), ("T1", "a2", "triage")]
    task = run.json("show", "T1", "--json")["task"]
    reason = "waits for corrections nobody can take back (its annotators no longer work `triage`)"
    assert (task["status"], task["stage"], task["reason"]) == ("held", "correct", reason)
    run.ok("workers", "set", "a1", "--skill", "x")
    run.ok("unhold", "T1")  # offered again only to those who may take it by then
    assert (run.json("show", "T1", "--json")["task"]["needed"], offered(run)) == (1, ["a1"])
    assert claim(run, "a1")["kind"] == "correct"
    unchanged = run.json("apply", "next.workflow.yaml", "--json")
    assert unchanged["changed"] is False and "dropped_corrections" not in unchanged


def test_a_correction_waiting_for_a_paused_annotator_is_named_by_explain_and_reassign(run):
    voted(run)
    run.ok("workers", "pause", "a2", "--reason", "bad gold")
    reject(run)
    fix = claim(run, "a1")
    submit(run, fix["assignment"], "a1", "--label", "spam")
    reason = ("its corrections wait for a2, who is paused: a correction goes only to its own annotator "
              "(`workers resume`, or `escalate` the task)")
    assert run.json("explain", "T1", "--json")["stalled"] == reason  # before: null, waiting for ever
    assert run.json("show", "T1", "--json")["stalled"] == reason
    refused = run("reassign", "T1", "--to", "a1")
    assert refused.returncode == 1
    # before: "release or escalate it instead", and release had nothing to release
    assert ("waits for its annotators' corrections (offered to a2 — a2 is paused (`workers resume`)); "
            "a correction goes only to its own annotator: `escalate` the task instead") in refused.stderr
    run.ok("workers", "resume", "a2")
    assert run.json("explain", "T1", "--json")["stalled"] is None
