"""Lead actions through the CLI: reassign, escalate, hold/unhold, release, priority, bulk and --where."""

from __future__ import annotations

import pytest

from lead_support import LEAD, Project, engine_at


@pytest.fixture
def project(tmp_path):
    p = Project(tmp_path)
    for name in ("ann1", "ann2", "ann3"):
        p.worker(name, "annotator")
    p.worker("vic", "annotator", skills=("vet",))
    p.worker("sam", "senior")
    p.worker("eve", "expert")
    p.ingest([{"id": f"T{i}", "data": {"n": i}} for i in range(1, 5)]
             + [{"id": "M1", "category": "medical", "data": {"n": 9}}])
    return p


def task(p, ref):
    return p.show(ref)["task"]


def statuses(p, ref):
    return [(a["worker"], a["status"]) for a in p.show(ref)["assignments"]]


def events(p, ref, kind):
    return [e for e in p.show(ref)["events"] if e["kind"] == kind]


def test_lead_actions_need_the_lead_role(project):
    for args in (["hold", "T1"], ["reassign", "T1", "--to", "ann2"], ["escalate", "T1", "--to", "experts"],
                 ["priority", "T1", "3"], ["release", "T1"], ["unhold", "T1"]):
        proc = project.run(*args, "--as", "ann1")
        assert proc.returncode == 1, args
        assert "needs the lead role" in proc.stderr
    assert task(project, "T1")["status"] == "open"
    assert task(project, "T1")["priority"] == 0
    # an unknown name is no lead either
    assert "needs the lead role" in project.run("hold", "T1", "--as", "nobody").stderr


def test_reassign_moves_the_slot_in_one_transaction_with_an_event(project):
    first = project.claim("ann1")
    assert first["external_id"] == "T1"
    assert task(project, "T1")["free_slots"] == 1
    out = project.json("reassign", "T1", "--to", "ann2")
    assert out["done"][0]["from"] == ["ann1"]
    assert statuses(project, "T1") == [("ann1", "released"), ("ann2", "active")]
    assert task(project, "T1")["free_slots"] == 1  # one slot ended, one given
    (event,) = events(project, "T1", "reassigned")
    assert event["actor"] == LEAD and event["detail"]["to"] == "ann2"
    # the old holder's submission is refused: the slot is no longer theirs
    proc = project.run("submit", first["assignment"], "--as", "ann1", "--label", "cat")
    assert proc.returncode == 1 and "released" in proc.stderr
    # ann2 submits through the new assignment
    project.submit(out["done"][0]["assignment"], "ann2", "--label", "cat")
    assert task(project, "T1")["needed"] == 1


def test_reassign_refuses_an_ineligible_worker_unless_forced(project):
    proc = project.run("reassign", "M1", "--to", "ann1")
    assert proc.returncode == 1
    assert "vets" in proc.stderr and "--force" in proc.stderr
    assert statuses(project, "M1") == []
    out = project.json("reassign", "M1", "--to", "ann1", "--force")
    assert "vets" in out["done"][0]["forced"]
    assert statuses(project, "M1") == [("ann1", "active")]
    assert task(project, "M1")["free_slots"] == 0


def _to_review(p):
    """T1 split 1/1 between ann1 and ann2: it waits in senior review."""
    a = p.claim("ann1")
    b = p.claim("ann2")
    assert a["task"] == b["task"]
    p.submit(a["assignment"], "ann1", "--label", "cat")
    p.submit(b["assignment"], "ann2", "--label", "dog")
    t = p.show(a["external_id"])["task"]
    assert (t["stage"], t["queue"]) == ("review", "senior")
    return a["external_id"]


def test_reassign_refuses_an_annotator_as_reviewer_of_their_own_work(project):
    ref = _to_review(project)
    project.worker("ann1", "annotator", "senior")
    proc = project.run("reassign", ref, "--to", "ann1")
    assert proc.returncode == 1 and "annotated" in proc.stderr
    out = project.json("reassign", ref, "--to", "sam")
    assert out["done"][0]["stage"] == "review"
    # the same worker twice is refused even with --force
    proc = project.run("reassign", ref, "--to", "sam", "--force")
    assert proc.returncode == 1 and "already holds" in proc.stderr


def test_escalate_gives_an_expert_the_votes_and_the_expert_label_is_final(project):
    ref = _to_review(project)
    proc = project.run("escalate", ref, "--to", "nowhere")
    assert proc.returncode == 1 and "no queue" in proc.stderr
    project.json("escalate", ref, "--to", "experts", "--reason", "tricky")
    t = task(project, ref)
    assert (t["status"], t["stage"], t["queue"]) == ("open", "escalated", "experts")
    view = project.claim("eve")
    assert sorted(v["label"] for v in view["votes"]) == ["cat", "dog"]
    project.submit(view["assignment"], "eve", "--label", "bird")
    t = task(project, ref)
    assert (t["status"], t["final_label"], t["final_by"]) == ("done", "bird", "expert")
    routed = [e for e in project.show(ref)["events"] if e["action"] == "escalate"]
    assert routed[0]["actor"] == LEAD and routed[0]["detail"]["section"] == "lead"


def test_hold_and_unhold_keep_the_stage_and_its_slots(project):
    a = project.claim("ann1")
    assert a["external_id"] == "T1"
    out = project.json("hold", "T1", "--reason", "customer complained")
    assert out["done"][0]["released"] == [a["assignment"]]
    t = task(project, "T1")
    assert (t["status"], t["reason"], t["stage"], t["needed"]) == ("held", "customer complained", "annotate", 2)
    # nobody gets a held task
    assert project.claim("ann2")["external_id"] == "T2"
    proc = project.run("hold", "T1")  # held already: skipped, no event (docs/design.md "Bulk")
    assert proc.returncode == 0 and proc.stderr.startswith("skipped T1 (id:1): task T1 is already held\n")
    project.json("unhold", "T1")
    t = task(project, "T1")
    assert (t["status"], t["stage"], t["queue"], t["free_slots"], t["reason"]) == ("open", "annotate", "triage", 2, None)
    assert project.claim("ann3")["external_id"] == "T1"
    assert [e["kind"] for e in project.show("T1")["events"]][-3:] == ["held", "unheld", "claimed"]


def test_unhold_of_a_task_with_no_work_left_points_to_escalate(project, tmp_path):
    proc = project.run("unhold", "T1")  # open already: skipped, no event
    assert proc.returncode == 0 and proc.stderr.startswith("skipped T1 (id:1): task T1 is already open\n")
    # a rule-held task (no majority, no work left in its stage)
    p = Project(tmp_path / "b", workflow=project_workflow_without_review())
    p.worker("ann1", "annotator")
    p.worker("ann2", "annotator")
    p.ingest([{"id": "X"}])
    a, b = p.claim("ann1"), p.claim("ann2")
    p.submit(a["assignment"], "ann1", "--label", "cat")
    p.submit(b["assignment"], "ann2", "--label", "dog")
    assert p.show("X")["task"]["status"] == "held"
    proc = p.run("unhold", "X")
    assert proc.returncode == 1 and "no work left" in proc.stderr and "`labelyard escalate id:1 --to QUEUE`" in proc.stderr


def project_workflow_without_review() -> str:
    from lead_support import WORKFLOW

    return WORKFLOW.replace("  - name: split\n    do: {review: senior}\n", "")


def test_hold_and_unhold_in_the_correct_stage_offers_the_slots_again(project):
    ref = _to_review(project)
    review = project.claim("sam")
    project.submit(review["assignment"], "sam", "--reject", "--comment", "look at the ears")
    assert task(project, ref)["stage"] == "correct"
    project.json("hold", ref)
    assert all(s != "offered" for _, s in statuses(project, ref))
    assert project.run("claim", "--as", "ann1", "--queue", "triage", "--json").stdout.count(ref) == 0
    project.json("unhold", ref)
    view = project.claim("ann1")
    assert (view["external_id"], view["kind"], view["comment"]) == (ref, "correct", "look at the ears")


def test_release_returns_the_slot_to_the_queue(project):
    a = project.claim("ann1")
    b = project.claim("ann2")
    assert a["task"] == b["task"]
    assert task(project, "T1")["free_slots"] == 0
    out = project.json("release", "--assignment", a["assignment"])
    assert out["status"] == "released"
    assert task(project, "T1")["free_slots"] == 1
    assert project.claim("ann3")["external_id"] == "T1"
    proc = project.run("release", "--assignment", a["assignment"])
    assert proc.returncode == 1 and "not active" in proc.stderr
    project.json("release", "T1")
    assert task(project, "T1")["free_slots"] == 2
    assert [s for _, s in statuses(project, "T1")] == ["released", "released", "released"]
    assert len(events(project, "T1", "released")) == 3


def test_priority_orders_claims(project):
    project.run_ok("priority", "T3", "5")
    project.run_ok("priority", "T4", "--", "-1")
    assert task(project, "T3")["priority"] == 5 and task(project, "T4")["priority"] == -1
    assert project.claim("ann1")["external_id"] == "T3"
    (event,) = events(project, "T3", "priority")
    assert event["detail"] == {"from": 0.0, "to": 5.0}
    proc = project.run("priority", "T3", "high")
    assert proc.returncode == 2


def test_bulk_ids_are_all_or_nothing(project):
    proc = project.run("hold", "T1", "T2", "NOPE")
    assert proc.returncode == 1 and "NOPE" in proc.stderr
    assert task(project, "T1")["status"] == "open"
    out = project.json("hold", "T1", "T2", "--reason", "batch")
    assert [d["external_id"] for d in out["done"]] == ["T1", "T2"]
    assert task(project, "T2")["status"] == "held"


def test_where_filters_tasks_by_rule_expression(project):
    out = project.json("escalate", "--where", 'task.queue == "triage" and task.data.n >= 3', "--to", "experts",
                       "--dry-run")
    assert sorted(d["external_id"] for d in out["done"]) == ["T3", "T4"]
    assert task(project, "T3")["queue"] == "triage"  # dry run changed nothing
    out = project.json("escalate", "--where", 'task.queue == "triage" and task.data.n >= 3', "--to", "experts")
    assert out["matched"] == 2 and not out["skipped"]
    assert {task(project, r)["queue"] for r in ("T3", "T4")} == {"experts"}
    assert task(project, "T1")["queue"] == "triage"
    # hours later: everything older than a day
    out = project.json("priority", "--where", "task.age > 1d", "7", hours=30)
    assert out["matched"] == 5
    # a filter is an expression, never SQL
    out = project.json("hold", "--where", "task.queue == \"x'; DROP TABLE tasks; --\"")
    assert out["matched"] == 0
    assert task(project, "T1")["status"] == "open"


def test_where_mistakes_are_user_errors(project):
    proc = project.run("hold", "--where", "votes.count > 1")
    assert proc.returncode == 1 and "--where" in proc.stderr
    proc = project.run("hold", "--where", "task.queue ==")
    assert proc.returncode == 1 and "--where" in proc.stderr
    proc = project.run("hold", "T1", "--where", "true")
    assert proc.returncode == 1 and "not both" in proc.stderr
    proc = project.run("hold")
    assert proc.returncode == 1


def test_where_skips_tasks_an_action_cannot_apply_to(project, monkeypatch):
    from router.lead import Lead

    project.claim("ann1")  # T1 held by ann1
    engine = engine_at(project.db, monkeypatch, 1)
    report = Lead(engine, LEAD).run("reassign", [], 'task.queue == "triage"', to="ann1")
    # T1: ann1 already holds it; the others get ann1
    assert [s["external_id"] for s in report.skipped] == ["T1"]
    assert "already holds" in report.skipped[0]["reason"]
    assert sorted(d["external_id"] for d in report.done) == ["T2", "T3", "T4"]
    engine.close()


def test_where_skips_a_task_whose_match_changed_between_the_walk_and_its_page(project, monkeypatch):
    """Another lead lowers T2's priority (same round, same status) after the `--where` walk
    found it and before its page's transaction: the hold must skip it, since the task no
    longer matches. Before, only status and round were compared and T2 was held at 0."""
    from router.lead import Lead

    project.run_ok("priority", "T1", "T2", "T3", "9")
    engine = engine_at(project.db, monkeypatch, 1)
    other = engine_at(project.db, monkeypatch, 1)  # a second connection to the same file
    lead = Lead(engine, LEAD)
    walk = Lead._matching_pages

    def walk_then_change(self, *args):
        yield from walk(self, *args)
        Lead(other, LEAD).run("priority", ["T2"], value=0)

    monkeypatch.setattr(Lead, "_matching_pages", walk_then_change)
    report = lead.run("hold", [], "task.priority > 5")
    assert report.matched == 3
    assert sorted(d["external_id"] for d in report.done) == ["T1", "T3"]
    assert [(s["external_id"], s["reason"]) for s in report.skipped] == [
        ("T2", "changed meanwhile: no longer matches --where")]
    assert task(project, "T2")["status"] == "open"
    engine.close()
    other.close()


def test_an_escalation_to_a_queue_that_left_the_workflow_meanwhile_is_refused(project, monkeypatch):
    """A lead's `escalate` compiled the workflow with `experts`; another process applies a
    version without it before the escalation's transaction: the escalation is refused by the
    version active in its transaction, as it would be after the apply (it said "escalated T1
    (id:1) to None", then held the task)."""
    from lead_support import WORKFLOW
    from router.cli_lead import escalated_line
    from router.errors import LabelyardError
    from router.lead import Lead

    engine = engine_at(project.db, monkeypatch, 1)
    lead = Lead(engine, LEAD)
    engine.load_workflow()  # version 1, with `experts`
    other = engine_at(project.db, monkeypatch, 1)
    without = WORKFLOW.replace("  experts: {roles: [expert], sla: 4h}\n", "").replace(
        '{escalate: experts, reason: "SLA breach"}', '{hold: "SLA breach"}')
    other.apply(without, "v2.workflow.yaml", actor=LEAD)
    other.close()
    with pytest.raises(LabelyardError, match="no queue `experts`; queues: triage, vets, senior"):
        lead.run("escalate", ["T1"], queue="experts")
    assert task(project, "T1")["status"] == "open"
    assert escalated_line({"external_id": "T2", "task": 2, "action": "escalate", "target": "experts"}) == (
        "escalated T2 (id:2) to experts")
    engine.close()
