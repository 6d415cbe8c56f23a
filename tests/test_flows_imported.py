"""Imported votes, corrections and claims racing a lead, on a real database through router's API.

Found by a randomized lifecycle test: each case checks the slot arithmetic
(``free_slots = needed - active slots``) or who may take work back.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest

from router import work
from router.engine import Engine
from router.errors import LabelyardError, NothingToDo
from router.ingest import TaskInput
from router.lead import Lead
from router.runner import add_prior_votes
from router.store import Store

OVERLAP_TWO = """\
workflow: prior
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  check: {roles: [reviewer]}
on_create: [{do: {annotate: triage, overlap: 2}}]
on_quorum: [{do: {review: check}}]
on_review:
  - {name: rejected, when: 'review.verdict == "reject"', do: {return: annotators}}
  - {name: approved, do: accept}
"""


@pytest.fixture()
def engine(tmp_path, monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", "2025-03-01T09:00:00Z")
    store, _ = Store.init(str(tmp_path / "l.db"))
    store.close()
    eng = Engine.open(str(tmp_path / "l.db"))
    eng.add_worker("lead", ["lead"], [], actor="lead")
    for name in ("ann1", "ann2", "ann3"):
        eng.add_worker(name, ["annotator"], [], actor="lead")
    eng.add_worker("rev", ["reviewer"], [], actor="lead")
    eng.apply(OVERLAP_TWO, "prior.workflow.yaml", actor="lead")
    eng.ingest([TaskInput(1, "T1", {"x": 1})], "src")
    yield eng
    eng.close()


def slots(eng: Engine) -> tuple[int, int, int]:
    """``(needed, free_slots, active slots)`` of T1."""
    return tuple(eng.store.one(
        "SELECT needed, free_slots, (SELECT count(*) FROM assignments WHERE task_id = t.id AND status = 'active') "
        "FROM tasks AS t WHERE external_id = 'T1'"))


def test_a_prior_vote_on_a_task_whose_slots_are_all_held_is_an_extra_vote(engine):
    first, second = engine.claim("ann1"), engine.claim("ann2")
    assert add_prior_votes(engine, {"T1": [{"worker": "tool", "label": "a"}]}, "feed") == 1
    assert slots(engine) == (2, 0, 2)  # before: (1, 0, 2), one active slot too many
    work.skip(engine, first["assignment"], "ann1")
    assert slots(engine) == (2, 1, 1)
    third = engine.claim("ann3")
    engine.submit(second["assignment"], "ann2", label="a")
    result = engine.submit(third["assignment"], "ann3", label="b")  # before: refused, the task had moved on
    assert result["decision"]["action"] == "review"
    assert sorted(v["worker"] for v in engine.store.votes(third["task"])) == ["ann2", "ann3", "tool"]


def test_a_prior_vote_takes_a_free_slot(engine):
    engine.claim("ann1")
    add_prior_votes(engine, {"T1": [{"worker": "tool", "label": "a"}]}, "feed")
    assert slots(engine) == (1, 0, 1)


def test_imported_and_automatic_votes_count_as_submissions(engine):
    add_prior_votes(engine, {"T1": [{"worker": "ann1", "label": "a"}, {"worker": "tool", "label": "b"}]}, "feed")
    counts = dict(engine.store.query(
        "SELECT w.id, w.submitted - (SELECT count(*) FROM annotations AS a WHERE a.worker = w.id) FROM workers AS w"))
    assert set(counts.values()) == {0}, counts
    assert engine.store.worker("ann1")["submitted"] == 1


def test_a_return_goes_only_to_voters_who_can_take_it_back(engine):
    add_prior_votes(engine, {"T1": [{"worker": "tool", "label": "a"}]}, "feed")
    slot = engine.claim("ann1")
    engine.submit(slot["assignment"], "ann1", label="b")
    review = engine.claim("rev")
    decision = engine.submit(review["assignment"], "rev", verdict="reject", comment="look again")["decision"]
    assert decision["action"] == "return"
    offered = engine.store.query("SELECT worker FROM assignments WHERE task_id = ? AND status = 'offered'",
                                 (review["task"],))
    assert [r["worker"] for r in offered] == ["ann1"]  # before: tool too, whose slot nobody could ever take
    returned = [e for e in engine.show("T1")["events"] if e["action"] == "return"][-1]["detail"]
    assert returned["left_out"] == [{"worker": "tool", "queue": "triage",  # said, where before it was silent
                                     "reason": "tool's vote was imported; they claim no work"}]
    correction = engine.claim("ann1")
    assert correction["kind"] == "correct"
    engine.submit(correction["assignment"], "ann1", label="a")
    assert engine.store.task(review["task"])["stage"] == "review"  # on again, not stuck in `correct`


def test_a_return_to_imported_voters_alone_is_held_and_unhold_says_why(engine):
    add_prior_votes(engine, {"T1": [{"worker": "tool", "label": "a"}, {"worker": "tool2", "label": "a"}]}, "feed")
    review = engine.claim("rev")
    engine.submit(review["assignment"], "rev", verdict="reject", comment="no")
    task = engine.store.task(review["task"])
    assert (task["status"], task["reason"]) == ("held", "return: no annotators to return the task to")


def test_unhold_of_a_correction_offers_it_only_to_people_who_can_take_it(engine):
    slot = engine.claim("ann1")
    engine.submit(slot["assignment"], "ann1", label="b")
    add_prior_votes(engine, {"T1": [{"worker": "tool", "label": "a"}]}, "feed")
    review = engine.claim("rev")
    engine.submit(review["assignment"], "rev", verdict="reject", comment="no")
    lead = Lead(engine, "lead")
    lead.run("hold", ["T1"])
    engine.add_worker("ann1", ["reviewer"], [], actor="lead")  # ann1 no longer annotates
    with pytest.raises(LabelyardError, match="waits for corrections nobody can take back"):
        lead.run("unhold", ["T1"])
    engine.add_worker("ann1", ["annotator"], [], actor="lead")
    assert lead.run("unhold", ["T1"]).done
    assert slots(engine)[0] == 1
    assert engine.claim("ann1")["kind"] == "correct"


def test_a_claim_that_waits_behind_a_pause_gets_nothing(engine, tmp_path):
    path = str(tmp_path / "l.db")
    lead_engine = Engine.open(path)
    waiting = threading.Event()
    outcome: dict = {}

    def claim():
        claimer = Engine.open(path)  # SQLite connections stay in the thread that made them
        original = claimer.store.transaction

        def announced():
            waiting.set()  # the claim has read the worker (not paused yet) and now queues for the lock
            return original()

        claimer.store.transaction = announced
        try:
            outcome["view"] = claimer.claim("ann1")
        except NothingToDo as exc:
            outcome["refused"] = str(exc)
        finally:
            outcome["assignments"] = claimer.store.one("SELECT count(*) FROM assignments")[0]
            claimer.close()

    thread = threading.Thread(target=claim)
    with lead_engine.store.transaction():
        lead_engine.set_worker_paused("ann1", True, "gold accuracy", actor="lead")
        thread.start()
        assert waiting.wait(30)
    thread.join(30)
    # before: a slot, claimed after the pause was committed
    assert outcome == {"refused": "ann1 is paused: gold accuracy", "assignments": 0}
    lead_engine.close()


def test_votes_left_out_are_counted_by_reason_and_said(engine):
    from collections import Counter

    from router.plugin_api import SourcePart
    from router.runner import ingest_parts, prior_votes_said

    engine.ingest([TaskInput(2, "T2", {}), TaskInput(3, "T3", {})], "src")
    done = engine.claim("ann1")
    engine.submit(done["assignment"], "ann1", label="a")
    parts = [SourcePart("feed", [], cursor=1, votes={
        "T2": [{"worker": "tool", "label": "zz"}, {"worker": "t1", "label": "a"}, {"worker": "t2", "label": "b"},
               {"worker": "t3", "label": "a"}],
        "T3": [{"worker": "t1", "label": "a"}, {"worker": "t1", "label": "b"}],
        "nope": [{"worker": "t1", "label": "a"}],
    })]
    result = ingest_parts(engine, iter(parts))
    assert result["prior_votes"] == 3  # T2: t1 and t2 complete it; T3: t1 once
    assert result["prior_votes_left_out"] == {
        'label refused: label "zz" is not one of a, b': 1, "more votes than the task needed": 1,
        "worker already voted on the task": 1, "no such task": 1}
    said = prior_votes_said(result)
    assert said.startswith(", prior votes 3, prior votes left out 4 (")
    assert "more votes than the task needed 1" in said
    left: Counter = Counter()
    assert add_prior_votes(engine, {"T1": [{"worker": "x", "label": "a"}, {"worker": "y", "label": "b"}]},
                           "feed", left) == 1
    assert left == {"more votes than the task needed": 1}
    assert engine.store.task(done["task"])["stage"] == "review"
