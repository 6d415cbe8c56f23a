"""Scale fixes of the eleventh session: paths whose cost must not grow with the project's history.

Measured without clocks: SQLite's virtual-machine steps, counted by a progress
handler (deterministic), the SQL a call runs, and what a call holds in memory.
"""

from __future__ import annotations

import sqlite3

from lead_support import Project, engine_at
from test_scale_paths import steps  # SQLite VM steps a call takes, never time

SPARSE = """\
workflow: scale
labels: {type: choice, choices: [a, b, c]}
queues:
  main: {roles: [annotator]}
  side: {roles: [annotator], skills: [side]}
on_create:
  - {name: side, when: 'task.category == "side"', do: {annotate: side, overlap: 2}}
  - {name: main, do: {annotate: main, overlap: 1}}
on_quorum:
  - {name: collapse, when: queue.kappa != null and queue.kappa < -0.9, do: {hold: "agreement collapsed"}}
  - {name: done, do: accept}
"""


def _claim_submit(engine, worker: str, queue: str, n: int) -> None:
    for i in range(n):
        slot = engine.claim(worker, queue=queue)
        engine.submit(slot["assignment"], worker, label="abc"[i % 3])


def _quorum_steps(engine, queue: str) -> int:
    """The VM steps of the submission that completes a task's quorum in ``queue`` (its rules read `queue.kappa`)."""
    first = engine.claim("s1", queue=queue)
    engine.submit(first["assignment"], "s1", label="a")
    second = engine.claim("s2", queue=queue)
    assert second["task"] == first["task"]
    taken = steps(engine.store.conn, lambda: engine.submit(second["assignment"], "s2", label="a"))
    assert engine.store.task(first["task"])["status"] == "done"
    return taken


def test_a_sparse_queues_agreement_window_does_not_grow_with_the_other_queues_history(tmp_path, monkeypatch):
    """`queue.kappa` (and Dawid-Skene's history) read the queue's latest votes inside the submission's
    write transaction: they walked every annotation of the project to find a sparse queue's few."""
    p = Project(tmp_path, workflow=SPARSE)
    p.ingest([{"id": f"S{i}", "category": "side"} for i in range(12)]
             + [{"id": f"M{i}", "category": "main"} for i in range(1300)])
    engine = engine_at(p.db, monkeypatch, 0)
    engine.add_worker("w1", ["annotator"], actor="lead")
    for name in ("s1", "s2"):
        engine.add_worker(name, ["annotator"], skills=["side"], actor="lead")
    store = engine.store
    _claim_submit(engine, "s1", "side", 4)
    _claim_submit(engine, "s2", "side", 4)
    _claim_submit(engine, "w1", "main", 100)
    small = steps(store.conn, lambda: store.recent_votes("side", 2000))
    submit_small = _quorum_steps(engine, "side")

    _claim_submit(engine, "w1", "main", 1200)  # twelve times the history, none of it in `side`
    votes = store.recent_votes("side", 2000)
    assert len(votes) == 10 and {worker for _task, worker, _label in votes} == {"s1", "s2"}
    large = steps(store.conn, lambda: store.recent_votes("side", 2000))
    submit_large = _quorum_steps(engine, "side")
    assert large <= small + 2, (small, large)  # the old query read every annotation: 10 and 95
    # ~1.5 more: the window holds two more votes of `side` (13 and 16 here; 21 and 107 before)
    assert submit_large <= submit_small + 5, (submit_small, submit_large)
    engine.close()


def test_the_migration_gives_an_existing_databases_votes_their_queue(tmp_path, monkeypatch):
    """A database made before ``annotations.queue`` (schema 11) gets each vote's slot queue from `init`,
    and the index of `workflow_applied` events."""
    p = Project(tmp_path, workflow=SPARSE)
    p.ingest([{"id": "S0", "category": "side"}, {"id": "M0", "category": "main"}])
    engine = engine_at(p.db, monkeypatch, 0)
    engine.add_worker("w1", ["annotator"], skills=["side"], actor="lead")
    _claim_submit(engine, "w1", "main", 1)
    _claim_submit(engine, "w1", "side", 1)
    before = engine.store.recent_votes("side", 10)
    engine.close()
    conn = sqlite3.connect(p.db, isolation_level=None)
    for statement in ("DROP INDEX annotations_queue_votes", "ALTER TABLE annotations DROP COLUMN queue",
                      "DROP INDEX events_workflow_applied",
                      "UPDATE schema_version SET version = 11",
                      "DELETE FROM _sqlite_migrations WHERE name = 'm013_read_path_indexes'"):
        conn.execute(statement)
    conn.close()
    assert "run `labelyard init` to migrate" in p.run("status").stderr
    assert p.json("init")["migrations_applied"] == ["m013_read_path_indexes"]
    conn = sqlite3.connect(p.db)
    assert conn.execute("SELECT worker, queue FROM annotations ORDER BY id").fetchall() == [("w1", "main"), ("w1", "side")]
    plan = conn.execute("EXPLAIN QUERY PLAN SELECT id, detail FROM events WHERE kind = 'workflow_applied' ORDER BY id")
    assert "events_workflow_applied" in " ".join(row[3] for row in plan)
    conn.close()
    engine = engine_at(p.db, monkeypatch, 1)
    assert engine.store.recent_votes("side", 10) == before != []
    engine.close()


class _Kept:
    """A bulk action's ``out`` that keeps only counts, and what the database held when the first task came."""

    def __init__(self, db=None):
        self.db, self.items, self.matched_first, self.held_at_first = db, 0, None, None

    def matched(self, report) -> None:
        self.matched_first = report.matched

    def item(self, kind: str, item) -> None:
        self.items += 1
        if self.items == 1 and self.db is not None:
            conn = sqlite3.connect(self.db)
            self.held_at_first = conn.execute("SELECT count(*) FROM tasks WHERE status = 'held'").fetchone()[0]
            conn.close()


def _peak(call) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_bulk_where_action_holds_no_list_of_its_matches(tmp_path, monkeypatch):
    """`priority --where … --dry-run` on 766,000 matches took 490 MB: every match was kept (its row's
    facts, then the report's dicts) until the end. Now the matches are ids in a temporary table and each
    task goes to the output as its page ends: the memory is the same for 400 matches and for 2,400."""
    from lead_support import LEAD

    from router.lead import Lead

    peaks = []
    for n in (400, 2400):
        p = Project(tmp_path / str(n))
        p.ingest([{"id": f"T{i}", "data": {"text": "x" * 50}} for i in range(n)])
        engine = engine_at(p.db, monkeypatch, 1)
        lead = Lead(engine, LEAD)
        out = _Kept()
        lead.run("priority", [], 'task.queue == "triage"', dry_run=True, out=out, value=3)  # warm: imports, caches
        report = None

        def run(lead=lead, out=out):
            nonlocal report
            report = lead.run("priority", [], 'task.queue == "triage"', dry_run=True, out=out, value=3)

        peaks.append(_peak(run))
        assert (report.matched, report.done_count, report.done, out.matched_first) == (n, n, [], n)
        engine.close()
    assert peaks[1] < peaks[0] + 100_000, peaks  # kept, the 2,000 more matches took ~1.3 MB


def test_a_bulk_where_action_hands_over_each_page_as_it_ends(tmp_path, monkeypatch):
    from lead_support import LEAD

    from router.lead import PAGE, Lead

    p = Project(tmp_path)
    p.ingest([{"id": f"T{i}"} for i in range(PAGE + 50)])
    engine = engine_at(p.db, monkeypatch, 1)
    out = _Kept(p.db)
    report = Lead(engine, LEAD).run("hold", [], 'task.queue == "triage"', out=out)
    assert (report.matched, report.done_count, out.items) == (PAGE + 50, PAGE + 50, PAGE + 50)
    assert out.held_at_first == PAGE  # the first page was committed and printed before the second began
    engine.close()


def test_bulk_output_is_printed_and_streamed_as_one_json_document(tmp_path):
    """Text: a line per task as its page ends. JSON: the same document as before (done and skipped
    lists), written as it goes with the skipped tasks spooled to a temporary file."""
    import json

    from router.lead import PAGE

    p = Project(tmp_path)
    p.ingest([{"id": f"T{i}"} for i in range(PAGE + 30)])
    p.run_ok("escalate", "T3", "T220", "--to", "experts")
    where = 'task.queue == "triage" or task.queue == "experts"'
    data = json.loads(p.run_ok("escalate", "--where", where, "--to", "experts", "--dry-run", "--json").stdout)
    assert list(data) == ["action", "matched", "done", "skipped", "dry_run"]
    assert (data["action"], data["matched"], len(data["done"]), data["dry_run"]) == ("escalate", PAGE + 30,
                                                                                      PAGE + 28, True)
    assert [(s["external_id"], s["reason"]) for s in data["skipped"]] == [
        ("T3", "task T3 is already escalated to experts"), ("T220", "task T220 is already escalated to experts")]
    assert data["done"][0]["external_id"] == "T0" and data["done"][0]["target"] == "experts"
    text = p.run_ok("escalate", "--where", where, "--to", "experts", "--dry-run")
    lines = text.stdout.splitlines()
    assert len(lines) == PAGE + 28 and lines[0] == "dry run: escalated T0 (id:1) to experts"
    assert text.stderr.splitlines() == [
        "dry run: skipped T3 (id:4): task T3 is already escalated to experts",
        "dry run: skipped T220 (id:221): task T220 is already escalated to experts",
        f"escalate: dry run, {PAGE + 28} would be done, 2 skipped of {PAGE + 30} matching; nothing changed"]
    empty = json.loads(p.run_ok("hold", "--where", 'task.queue == "nowhere"', "--json").stdout)
    assert empty == {"action": "hold", "matched": 0, "done": [], "skipped": [], "dry_run": False}


def test_release_where_reads_only_the_tasks_holding_a_slot(tmp_path):
    """`release --where 'task.queue == "triage"'` printed a "has no active assignment to release" line for
    every open task of the queue without a held slot (133,000 lines for 2,000 releases)."""
    p = Project(tmp_path)
    p.ingest([{"id": f"T{i}"} for i in range(40)] + [{"id": "V1", "category": "medical"}])
    p.worker("a1", "annotator", skills=("vet",))
    p.worker("a2", "annotator")
    first, second = (p.json("claim", "--as", w, "--queue", "triage") for w in ("a1", "a2"))
    assert first["task"] == second["task"] == 1  # two slots of one task: it is matched and released once
    p.json("claim", "--as", "a1", "--queue", "vets")
    done = p.run_ok("release", "--where", 'task.queue == "triage"')
    assert done.stdout.splitlines() == [
        f"released T0 (id:1): assignment(s) {first['assignment']}, {second['assignment']}"]
    assert done.stderr == ""  # not 39 lines of "skipped T1 (id:2): task T1 has no active assignment to release"
    data = p.json("release", "--where", 'task.queue == "triage"')
    assert (data["matched"], data["done"], data["skipped"]) == (0, [], [])
    vets = p.json("release", "--where", "true", "--dry-run")
    assert (vets["matched"], [d["external_id"] for d in vets["done"]], vets["skipped"]) == (1, ["V1"], [])


def test_explain_reads_the_applied_versions_by_index_not_every_event(tmp_path, monkeypatch):
    """`explain TASK` (and the TUI's task detail) found the `workflow_applied` events by reading the whole
    events table (151 ms at 1.1M events); a partial index holds only those."""
    from router.explain import explain_task

    p = Project(tmp_path)
    p.ingest([{"id": f"A{i}"} for i in range(20)])
    p.run_ok("apply", tmp_path / "wf.workflow.yaml")  # no change: no new version
    engine = engine_at(p.db, monkeypatch, 1)
    small = steps(engine.store.conn, lambda: explain_task(engine.store, "A3"))
    engine.close()
    p.ingest([{"id": f"B{i}"} for i in range(3000)], name="more.jsonl")  # 3,000 more events, none of A3's
    engine = engine_at(p.db, monkeypatch, 1)
    explained = explain_task(engine.store, "A3")
    large = steps(engine.store.conn, lambda: explain_task(engine.store, "A3"))
    engine.close()
    assert explained["task"]["external_id"] == "A3" and explained["events"]
    assert large <= small + 2, (small, large)


TIMERS = """\
workflow: scale
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
  urgent: {roles: [annotator]}
on_create: [{name: start, do: {annotate: triage}}]
on_timer:
  - {name: urgent, when: 'task.queue == "triage" and task.data.urgent == true', do: {annotate: urgent}}
  - {name: slow, when: 'task.queue == "triage" and task.stage_age > 3h', do: {annotate: triage, priority: 5}}
"""


def _decodes(monkeypatch) -> list[str]:
    """The JSON texts the facts of a task decode from now on (``router.context.loads``)."""
    import router.context

    decoded: list[str] = []
    real = router.context.loads

    def counting(text):
        if text is not None:
            decoded.append(text)
        return real(text)

    monkeypatch.setattr(router.context, "loads", counting)
    return decoded


def test_tick_decodes_no_task_json_its_rules_do_not_read(tmp_path, monkeypatch):
    """`tick` and every `run` decoded each open task's data, tags and prediction (four JSON texts a
    task; ~13 s of CPU a cron run at 1M tasks with nothing due), whatever its rules read."""
    from router.timers import tick

    rules = TIMERS.replace("  - {name: urgent, when: 'task.queue == \"triage\" and task.data.urgent == true', "
                           "do: {annotate: urgent}}\n", "")
    p = Project(tmp_path, workflow=rules)
    p.ingest([{"id": f"T{i}", "data": {"text": "x" * 200, "urgent": False}, "tags": ["a"],
               "prediction": {"label": "cat", "confidence": 0.4, "scores": {"cat": 0.4, "dog": 0.6}}}
              for i in range(30)])
    engine = engine_at(p.db, monkeypatch, 1)
    decoded = _decodes(monkeypatch)
    report = tick(engine)
    assert (report.tasks, dict(report.actions)) == (30, {})  # nothing due: every task read, none decoded
    assert decoded == []
    engine.close()
    engine = engine_at(p.db, monkeypatch, 4)
    report = tick(engine)
    assert dict(report.actions) == {"priority": 30} and decoded == []
    engine.close()


def test_a_timer_or_where_filter_reading_task_data_still_sees_it(tmp_path, monkeypatch):
    from lead_support import LEAD

    from router.lead import Lead
    from router.timers import tick

    p = Project(tmp_path, workflow=TIMERS)
    p.ingest([{"id": f"T{i}", "data": {"urgent": i % 10 == 0}, "tags": ["x"] if i % 2 else []} for i in range(30)])
    engine = engine_at(p.db, monkeypatch, 1)
    decoded = _decodes(monkeypatch)
    assert dict(tick(engine).actions) == {"annotate": 3}
    assert len(decoded) == 30  # each task's data, read by the rule; never its tags or prediction
    assert sorted(t["external_id"] for t in engine.store.tasks_after("open", "urgent", 0, 50)) == ["T0", "T10", "T20"]
    lead = Lead(engine, LEAD)
    decoded.clear()
    assert lead.run("hold", [], 'task.queue == "triage"', dry_run=True).matched == 27
    assert decoded == []
    report = lead.run("hold", [], '"x" in task.tags and task.queue == "triage"', dry_run=True)
    # the tags of every task of `triage` (that queue's tasks alone are read); read again under the lock
    assert (report.matched, len(decoded)) == (15, 27 + 15)
    engine.close()


def test_a_verdict_on_a_correction_slot_names_it_with_the_right_article(run):
    """`submit 47 --approve` on a `correct` slot said "assignment 47 is an correct slot"."""
    from test_flows_claims import claim
    from test_flows_returns import reject, voted

    voted(run)
    reject(run)
    correction = claim(run, "a1")
    assert correction["kind"] == "correct"
    refused = run("submit", correction["assignment"], "--as", "a1", "--approve")
    assert refused.returncode != 0
    assert (f"assignment {correction['assignment']} is a correction slot: submit a --label, not a verdict"
            in refused.stderr), refused.stderr
    vote = run("submit", claim(run, "a2")["assignment"], "--as", "a2", "--reject")
    assert "is a correction slot: submit a --label" in vote.stderr, vote.stderr
