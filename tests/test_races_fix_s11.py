"""Races between processes on one database file, found in the eleventh session.

Each test opens a second connection to the real file and commits its change between the
first process's read and its write transaction, as another process would while the first
waited for the write lock.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOW = "2025-03-01T09:00:00Z"
LATER = "2025-03-01T11:00:00Z"  # two hours on

V1 = """\
workflow: g
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  legal: {roles: [annotator]}
  senior: {roles: [senior]}
quality: {gold: {rate: 1.0}}
on_create:
  - {name: default, do: {annotate: triage}}
on_quorum:
  - {name: accept one vote, do: accept}
on_review:
  - {name: ok, do: accept}
on_timer:
  - {name: old, when: task.stage_age > 1h, do: {escalate: senior}}
"""
# v2: no `legal`, every quorum to review, no timer rule, a label `b` no more, tasks routed with two votes
V2 = (V1.replace("  legal: {roles: [annotator]}\n", "")
      .replace("{name: accept one vote, do: accept}", "{name: senior checks, do: {review: senior}}")
      .replace("  - {name: old, when: task.stage_age > 1h, do: {escalate: senior}}\n", "")
      .replace("on_timer:\n", "")
      .replace("choices: [a, b]", "choices: [a, c]")
      .replace("{name: default, do: {annotate: triage}}", "{name: v2 default, do: {annotate: triage, overlap: 2}}"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch):
    """A database file with V1 applied, annotator `al`, and an engine over it (v1 compiled)."""
    from router.engine import Engine
    from router.store import Store

    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = str(tmp_path / "lab.db")
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(V1, "v1.workflow.yaml", actor="lead")
    engine.add_worker("al", ["annotator"], [], None, actor="lead")
    yield engine
    engine.close()


def apply_v2(engine) -> None:
    """Apply V2 from another connection to the same file, as another process would."""
    from router.engine import Engine
    from router.store import Store

    other = Engine(Store.open(engine.store.path))
    other.apply(V2, "v2.workflow.yaml", actor="lead")
    other.close()


def once_after(obj, name: str, monkeypatch, then) -> None:
    """Make ``obj.name`` run ``then`` once, right after its first call returns."""
    original = getattr(obj, name)
    done = []

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        if not done:
            done.append(True)
            then()
        return result

    monkeypatch.setattr(obj, name, wrapped)


def ingest(engine, *ids: str) -> None:
    from router.ingest import TaskInput

    engine.ingest([TaskInput(n, ext, {"n": n}) for n, ext in enumerate(ids, start=1)], "in.jsonl")


def test_a_submit_waiting_while_a_version_is_applied_is_decided_by_it_and_explained_so(project, monkeypatch):
    """`submit` checked its label, then waited for the lock while a lead applied v2: its quorum
    went to v1's `accept one vote` (the task final), and explain said "(workflow v2)"."""
    from router.explain import explain_task

    ingest(project, "T1")
    claim = project.claim("al")
    once_after(project, "_check_submission", monkeypatch, lambda: apply_v2(project))
    result = project.submit(claim["assignment"], "al", label="a")
    assert (result["decision"]["rule"], result["decision"]["action"]) == ("senior checks", "review")
    task = project.store.task("ext:T1")
    assert (task["status"], task["stage"], task["queue"]) == ("open", "review", "senior")
    (decision,) = [s["decision"] for s in explain_task(project.store, "T1")["events"] if s["kind"] == "routed"]
    assert (decision["rule"], decision["workflow_version"]) == ("senior checks", 2)


def test_a_submit_whose_label_the_version_applied_meanwhile_refuses_is_refused(project, monkeypatch):
    from router.errors import AssignmentError

    ingest(project, "T1")
    claim = project.claim("al")
    once_after(project, "_check_submission", monkeypatch, lambda: apply_v2(project))
    with pytest.raises(AssignmentError, match="in the workflow version applied meanwhile"):
        project.submit(claim["assignment"], "al", label="b")
    assert project.store.assignment(claim["assignment"])["status"] == "active"


def test_a_claim_waiting_while_a_version_is_applied_serves_no_gold_from_a_queue_it_dropped(project, monkeypatch,
                                                                                            tmp_path):
    """The claim read the worker's queues under v1 (`legal` among them); v2, applied before its
    transaction, drops `legal`: the gold question waiting there was served all the same."""
    from router.gold import add_gold

    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "G1", "data": {}, "answer": "a", "queue": "legal"}\n')
    add_gold(project, str(gold), "lead")
    ingest(project, "T1")
    once_after(project.store, "claimer", monkeypatch, lambda: apply_v2(project))
    claim = project.claim("al")
    assert (claim["external_id"], claim["queue"]) == ("T1", "triage")
    assert claim["choices"] == ["a", "c"]


def test_a_tick_whose_page_was_decided_before_a_version_was_applied_acts_by_the_new_one(project, monkeypatch):
    """A tick (or a `labelyard run`'s) decided a page by v1's timer rule `old`; v2, with no timer
    rule, was applied before the page's transaction: the task was escalated all the same."""
    from router import timers

    ingest(project, "T1")
    monkeypatch.setenv("LABELYARD_NOW", LATER)
    act = timers._Tick._act

    def apply_then_act(self, todo):
        assert [c.decision.rule for c in todo] == ["old"]  # decided by v1
        apply_v2(project)
        act(self, todo)

    monkeypatch.setattr(timers._Tick, "_act", apply_then_act)
    report = timers.tick(project)
    assert report.actions == {}
    task = project.store.task("ext:T1")
    assert (task["status"], task["stage"], task["queue"]) == ("open", "annotate", "triage")
    assert [e["kind"] for e in project.store.events(task["id"])] == ["created"]


def test_a_lead_action_acts_by_the_version_active_in_its_transaction(project):
    """The lead's engine loaded v1; another process applied v2, which drops `legal`: an `unhold`
    reopened a task held in `legal`, where nobody can claim it. Now refused, as after the apply."""
    from router.errors import LabelyardError
    from router.lead import Lead

    project.add_worker("lead", ["lead"], [], None, actor="lead")
    ingest(project, "T1")
    lead = Lead(project, "lead")
    lead.run("escalate", ["T1"], queue="legal")
    lead.run("hold", ["T1"])
    apply_v2(project)  # a held task does not keep v2 from dropping its queue
    with pytest.raises(LabelyardError, match="waits in queue `legal`, which the workflow no longer has"):
        lead.run("unhold", ["T1"])
    assert project.store.task("ext:T1")["status"] == "held"


def test_an_ingest_batch_routed_by_a_replaced_version_is_routed_again_in_its_transaction(project):
    """The batch was routed by v1 (the router child's), then v2 was applied before the writer's
    transaction: each row is routed by v2, and a prediction v2's labels refuse is quarantined."""
    from router.ingest import TaskInput
    from router.ingest_pipeline import BatchWriter

    rows = [TaskInput(1, "T1", {}, label="b", confidence=0.5), TaskInput(2, "T2", {}, label="a", confidence=0.5)]
    batch = project._route_batch(project.workflow, project.workflow_id, rows, "in.jsonl")
    apply_v2(project)
    writer = BatchWriter(project.store.path, "in.jsonl")
    writer.write(batch)
    writer.close()
    store = project.store
    assert store.task("ext:T1") is None
    assert [(r["line"], r["reason"]) for r in store.query("SELECT line, reason FROM rejects")] == [
        (1, "`prediction.label`: " + project._compiled(store.active_workflow_id()).labels.problem("b"))]
    t2 = store.task("ext:T2")
    assert (t2["workflow_version"], t2["queue"], t2["needed"]) == (store.active_workflow_id(), "triage", 2)
    assert [(e["kind"], e["rule"]) for e in store.events(t2["id"])] == [("created", "v2 default")]
    assert (writer.report.ingested, writer.report.rejected, dict(writer.report.routed)) == (1, 1, {"v2 default": 1})


def test_an_ingest_routes_the_rows_read_after_an_apply_by_the_new_version(project):
    """The router reads the active version before each batch: rows read after a lead applied
    v2 are routed by it (in the forked child too: it reads on its own connection)."""
    from router.ingest import TaskInput

    def rows():
        yield TaskInput(1, "T1", {})
        yield None  # the stream pauses: the batch so far is routed and handed to the writer
        apply_v2(project)
        yield TaskInput(2, "T2", {})

    project.ingest(rows(), "in.jsonl")
    t2 = project.store.task("ext:T2")
    assert (t2["workflow_version"], t2["needed"]) == (project.store.active_workflow_id(), 2)
    assert project.workflow_id == project.store.active_workflow_id()


def test_a_row_whose_id_became_a_gold_question_while_its_batch_was_routed_is_quarantined(project, tmp_path):
    """`gold add G1` committed between the routing of an ingest batch holding a row `G1` and the
    batch's transaction: the row was counted as a duplicate, not quarantined as a gold question's id."""
    from router.engine import Engine
    from router.gold import add_gold
    from router.ingest import TaskInput
    from router.ingest_pipeline import BatchWriter
    from router.store import Store

    rows = [TaskInput(1, "T1", {}), TaskInput(2, "G1", {}), TaskInput(3, "T3", {})]
    batch = project._route_batch(project.workflow, project.workflow_id, rows, "in.jsonl")
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "G1", "data": {}, "answer": "a"}\n')
    other = Engine(Store.open(project.store.path))
    add_gold(other, str(gold), "lead")
    other.close()
    writer = BatchWriter(project.store.path, "in.jsonl")
    writer.write(batch)
    writer.close()
    assert (writer.report.ingested, writer.report.duplicates, writer.report.rejected) == (2, 0, 1)
    assert [tuple(r) for r in project.store.query("SELECT source, line, reason FROM rejects")] == [
        ("in.jsonl", 2, "id G1 is a gold question")]
    assert project.store.task("ext:G1")["is_gold"] == 1


def test_an_export_keeps_its_temp_file_locked_until_it_is_renamed(tmp_path, monkeypatch):
    """Another export of the same file cleans up killed exports' temps between this one's close and
    its rename: it removed this one's temp (its lock went with the close), and this export failed
    with "cannot write: No such file or directory"."""
    import os

    from router import export

    target = tmp_path / "final.jsonl"
    target.write_text("old\n", encoding="utf-8")
    replace = os.replace
    removed = []

    def another_export_cleans_up_then_replace(src, dst):
        removed.append(export._remove_stale_export_temps(str(target), export._export_temp_suffix(str(target))))
        return replace(src, dst)

    monkeypatch.setattr(os, "replace", another_export_cleans_up_then_replace)
    assert export.write_export([{"id": "T1", "label": "a"}], "jsonl", str(target)) == 1
    assert removed == [None]
    assert target.read_text(encoding="utf-8") == '{"id": "T1", "label": "a"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["final.jsonl"]
