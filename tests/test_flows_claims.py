"""Claiming and submitting around returned work, capacity and lead actions, through the CLI.

Each test runs the real ``labelyard`` command in a subprocess on a real database
(the ``run`` fixture of ``conftest``), on the small workflow :data:`MINI`.
"""

from __future__ import annotations

import json

import pytest

MINI = """\
workflow: mini
labels: {type: choice, choices: [a, b, c]}
queues:
  q1: {roles: [annotator]}
  q2: {roles: [annotator], skills: [x]}
  rev: {roles: [senior]}
on_create:
  - {name: to q2, when: 'task.category == "x"', do: {annotate: q2, overlap: 1}}
  - {name: default, do: {annotate: q1, overlap: 1, priority: task.data.p}}
on_quorum: [{name: review, do: {review: rev}}]
on_review:
  - {name: rejected, when: 'review.verdict == "reject"', do: {return: annotators}}
  - {name: ok, do: accept}
"""

MINI_ROWS = [{"id": "A", "data": {"p": 1}}, {"id": "B", "data": {"p": 1}}, {"id": "C", "data": {"p": 1}},
             {"id": "X", "category": "x", "data": {"p": 1}}]


def mini(run, rows: list | None = None, workers: dict[str, list[str]] | None = None, workflow: str = MINI):
    """init, apply ``workflow``, add ``workers`` (name -> options), ingest ``rows`` (default MINI_ROWS)."""
    run.ok("init")
    (run.folder / "mini.yaml").write_text(workflow, encoding="utf-8")
    run.ok("apply", "mini.yaml")
    for name, args in (workers or {}).items():
        run.ok("workers", "add", name, *args)
    rows = MINI_ROWS if rows is None else rows
    (run.folder / "mini.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return run.json("ingest", "mini.jsonl", "--json")


def claim(run, worker: str, *args: str) -> dict:
    return run.json("claim", "--as", worker, "--json", *args)


def submit(run, assignment: int, worker: str, *args: str) -> dict:
    return run.json("submit", assignment, "--as", worker, "--json", *args)


def active(run, worker: str) -> int:
    return next(w["active"] for w in run.json("workers", "list", "--json") if w["id"] == worker)


def returned_to(run, worker: str) -> dict:
    """ann annotates, the senior rejects: the task comes back to ``worker`` (offered); returns its claim."""
    first = claim(run, worker)
    submit(run, first["assignment"], worker, "--label", "a")
    review = claim(run, "sen")
    assert review["kind"] == "review" and review["task"] == first["task"]
    decided = submit(run, review["assignment"], "sen", "--reject", "--comment", "fix")
    assert (decided["decision"]["rule"], decided["decision"]["action"]) == ("rejected", "return")
    return first


# -- 1. capacity counts returned work -------------------------------------------------------


def test_returned_work_counts_against_capacity_and_comes_first_when_there_is_room(run):
    mini(run, workers={"ann": ["--role", "annotator", "--skill", "x", "--capacity", "1"], "sen": ["--role", "senior"]})
    a = claim(run, "ann")
    submit(run, a["assignment"], "ann", "--label", "a")
    b = claim(run, "ann")
    assert b["external_id"] == "B"
    review = claim(run, "sen")
    submit(run, review["assignment"], "sen", "--reject", "--comment", "fix")

    full = run("claim", "--as", "ann", "--json")
    assert (full.returncode, full.stdout) == (3, "")
    assert "capacity" in full.stderr and "returned" in full.stderr
    assert active(run, "ann") == 1

    submit(run, b["assignment"], "ann", "--label", "b")
    again = claim(run, "ann")
    assert (again["external_id"], again["kind"], again["comment"]) == ("A", "correct", "fix")
    assert active(run, "ann") == 1


# -- 3. --queue holds for returned work too ------------------------------------------------


def test_claim_with_a_queue_takes_returned_work_only_from_that_queue(run):
    mini(run, workers={"ann": ["--role", "annotator", "--skill", "x"], "sen": ["--role", "senior"]})
    first = returned_to(run, "ann")
    assert first["queue"] == "q1"

    other = claim(run, "ann", "--queue", "q2")
    assert (other["external_id"], other["kind"], other["queue"]) == ("X", "annotate", "q2")
    empty = run("claim", "--as", "ann", "--queue", "q2", "--json")
    assert empty.returncode == 3 and "no work for ann in `q2`" in empty.stderr
    assert "returned" in empty.stderr
    back = claim(run, "ann", "--queue", "q1")
    assert (back["external_id"], back["kind"], back["queue"]) == ("A", "correct", "q1")


# -- 2. reassign respects capacity unless forced --------------------------------------------


def test_reassign_to_a_worker_at_capacity_needs_force(run):
    mini(run, workers={"a1": ["--role", "annotator", "--capacity", "1"]})
    held = claim(run, "a1")
    assert held["external_id"] == "A"

    refused = run("reassign", "B", "--to", "a1")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "a1 already holds 1 active assignment(s); their capacity is 1" in refused.stderr
    assert "--force" in refused.stderr
    assert active(run, "a1") == 1

    forced = run.json("reassign", "B", "--to", "a1", "--force", "--json")
    assert forced["done"][0]["forced"].endswith("their capacity is 1")
    assert active(run, "a1") == 2
    event = [e for e in run.json("show", "B", "--json")["events"] if e["kind"] == "reassigned"]
    assert event and "capacity" in event[0]["detail"]["forced"]


def test_a_correction_released_by_a_lead_says_how_to_get_it_back(run):
    mini(run, workers={"ann": ["--role", "annotator"], "sen": ["--role", "senior"]})
    correction = returned_to(run, "ann")
    again = claim(run, "ann")
    assert (again["kind"], again["task"]) == ("correct", correction["task"])
    run.ok("release", "--assignment", again["assignment"])
    refused = run("submit", again["assignment"], "--as", "ann", "--label", "b")
    assert refused.returncode == 1
    assert f"assignment {again['assignment']} is waiting for you to claim it again (labelyard claim --as ann)" \
        in refused.stderr
    back = claim(run, "ann")
    assert (back["assignment"], back["kind"]) == (again["assignment"], "correct")
    submit(run, back["assignment"], "ann", "--label", "b")


# -- claim --resume: a claim whose output was lost ---------------------------------------------


def test_claim_resume_shows_again_the_slot_a_worker_holds(run):
    mini(run, workers={"a1": ["--role", "annotator", "--capacity", "1"]})
    none = run("claim", "--as", "a1", "--resume", "--json")
    assert none.returncode == 3 and none.stdout == "" and "a1 holds no active slot" in none.stderr

    held = claim(run, "a1")  # say the annotator's terminal died before they read this
    full = run("claim", "--as", "a1", "--json")
    assert full.returncode == 3 and "--resume" in full.stderr

    again = claim(run, "a1", "--resume")
    assert again == held
    assert active(run, "a1") == 1  # resuming takes nothing new
    assert run("claim", "--as", "a1", "--resume", "--queue", "q2").returncode == 3
    unknown = run("claim", "--as", "a1", "--resume", "--queue", "nope")
    assert unknown.returncode == 1 and "no queue `nope`" in unknown.stderr

    submit(run, again["assignment"], "a1", "--label", "a")
    assert run("claim", "--as", "a1", "--resume").returncode == 3


# -- submit --value: what the CLI cannot read is a clear error -------------------------------------


@pytest.mark.parametrize("value, message", [
    ("1" * 4400, "--value: a number with more than 4300 digits at column 1 is too long to read"),
    ("[" * 100000, "--value: JSON nested too deeply"),
    ('"\\ud800"', "--value: the lone UTF-16 surrogate escape `\\ud800` at column 2 is not text"),
    ("[1,", "--value: invalid JSON at column 4: Expecting value"),
])
def test_a_value_the_cli_cannot_read_is_refused_with_where(run, value, message):
    mini(run, workers={"a1": ["--role", "annotator"]})
    slot = claim(run, "a1")
    proc = run("submit", slot["assignment"], "--as", "a1", "--value", value)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert claim(run, "a1", "--resume")["assignment"] == slot["assignment"]  # the slot is still theirs


# -- a slot given up stays given up; a finished review may come back ---------------------------


def test_a_reviewer_whose_slot_was_released_never_gets_the_task_again_but_one_who_finished_does(run):
    mini(run, rows=[{"id": "A", "data": {"p": 1}}], workers={
        "ann": ["--role", "annotator"], "sen": ["--role", "senior"], "sen2": ["--role", "senior"]})
    first = claim(run, "ann")
    submit(run, first["assignment"], "ann", "--label", "a")
    taken = claim(run, "sen")
    assert taken["kind"] == "review"
    run.ok("release", "A")  # the lead takes it back: someone else should look
    review = claim(run, "sen2")
    submit(run, review["assignment"], "sen2", "--reject", "--comment", "look again")
    fix = claim(run, "ann")
    assert fix["kind"] == "correct"
    submit(run, fix["assignment"], "ann", "--label", "b")  # a new round of review
    refused = run("claim", "--as", "sen", "--json")
    assert refused.returncode == 3  # before: sen got A again in the new round
    again = claim(run, "sen2")  # sen2 finished their review: the corrected task may come back to them
    assert (again["external_id"], again["kind"]) == ("A", "review")
