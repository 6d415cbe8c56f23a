"""``worker.agreement`` and the TUI's roster read sums kept as tasks finish (``router.vote_agreement``).

Before, every submission judged the worker's whole history again (each vote on
a finished task against its final label, box matching included), inside the
write transaction: 2.3 s of CPU per submission after 20,000 finished box tasks.
Now a task's votes are marked once, when it finishes; the sums must stay equal
to that old computation (:func:`old_agreement`, its SQL and judgement kept
here) through every path: consensus, reviews, corrections, a lead's
escalation to an expert, gold questions, a version whose IoU judges the marked
votes again, and a final label that changes or a finished task that reopens.

The histories run on real SQLite files: in process through the engine (many
steps, checked after each), and through the ``labelyard`` command (migration
of an existing database, the rules' ``worker.agreement``).
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from lead_support import Project

WORKFLOW = """\
workflow: marks
labels: {{type: boxes, iou: {iou}}}
queues:
  pool: {{roles: [annotator]}}
  senior: {{roles: [senior]}}
  experts: {{roles: [expert]}}
on_create:
  - {{name: three, do: {{annotate: pool, overlap: 3}}}}
on_quorum:
  - {{name: majority, when: votes.top != null and votes.top_count * 2 > votes.count, do: accept}}
  - {{name: split, do: {{review: senior}}}}
on_worker:
  - {{name: low, when: 'worker.agreement != null and worker.agreement < 0.4', do: flag}}
quality:
  gold: {{rate: 0.15}}
"""
ANNOTATORS = ("u1", "u2", "u3", "u4")
CLASSES = ("car", "person", 1, "1", None)


def old_agreement(store, worker: str, spec: Any) -> tuple[int, int]:
    """The computation the sums replace (``Store.worker_final_agreement`` before them): each of the
    worker's latest annotate/correct votes on a finished non-gold task, judged against the final label."""
    from router.consensus import same_label

    pairs = store.query(
        "SELECT a.label, t.final_label FROM annotations AS a JOIN tasks AS t ON t.id = a.task_id "
        "WHERE a.worker = ? AND a.stage IN ('annotate', 'correct') AND t.status = 'done' AND t.is_gold = 0 "
        "AND NOT EXISTS (SELECT 1 FROM annotations AS b WHERE b.task_id = a.task_id AND b.id > a.id "
        "AND b.worker = a.worker AND b.stage IN ('annotate', 'correct'))", (worker,))
    return len(pairs), sum(same_label(json.loads(v), json.loads(f), spec) for v, f in pairs)


def kept(store) -> dict[str, tuple[int, int]]:
    return {w["id"]: store.worker_final_agreement(w["id"]) for w in store.workers()}


def assert_equal_to_old(engine) -> dict[str, tuple[int, int]]:
    """The kept sums, the old computation and the TUI's roster agree for every worker."""
    from router.queries import Queries

    from rules.workflow import LabelSpec

    store = engine.store
    spec = LabelSpec.from_spec(json.loads(store.active_workflow()["spec"])["labels"])  # the active version's
    sums = kept(store)
    assert sums == {name: old_agreement(store, name, spec) for name in sums}
    roster = {r["id"]: (r["decided"], r["agreement"]) for r in Queries(store, engine).worker_rows()}
    assert roster == {name: (d, (m / d) if d else None) for name, (d, m) in sums.items()}
    return sums


def a_label(rng: random.Random, base: int) -> list[dict[str, Any]]:
    """The task's boxes as an annotator draws them: each shifted 0, 2 or 6 (IoU 1, 0.67 or 0.25 with
    the true box), mostly of its true class (classes include 1 and "1", and none), now and then one box
    missed or one too many."""
    n = 1 + base // 100 % 3
    boxes = []
    for k in range(n + (rng.random() < 0.1) - (n > 1 and rng.random() < 0.1)):
        box = {"x": base + 40 * k + rng.choice((0, 0, 0, 2, 6)), "y": 0, "width": 10, "height": 10}
        cls = CLASSES[(base // 100 + k) % len(CLASSES)] if rng.random() < 0.85 else rng.choice(CLASSES)
        if cls is not None:
            box["label"] = cls
        boxes.append(box)
    return boxes


def engine_for(folder: Path, monkeypatch) -> Any:
    """A project in ``folder``: the workflow (IoU 0.5), four annotators, a senior, an expert, a lead,
    24 tasks (T0…T23) and 3 gold questions."""
    from router.engine import Engine
    from router.gold import add_gold
    from router.ingest import read_file
    from router.store import Store

    monkeypatch.setenv("LABELYARD_NOW", "1767225600")
    store, _ = Store.init(str(folder / "labelyard.db"))
    engine = Engine(store)
    (folder / "marks.workflow.yaml").write_text(WORKFLOW.format(iou=0.5))
    engine.apply(WORKFLOW.format(iou=0.5), "marks.workflow.yaml", actor="lena")
    engine.add_worker("lena", ["lead"], actor="lena")
    for name in ANNOTATORS:
        engine.add_worker(name, ["annotator"], actor="lena")
    engine.add_worker("sen", ["senior"], actor="lena")
    engine.add_worker("exp", ["expert"], actor="lena")
    (folder / "t.jsonl").write_text("".join(json.dumps({"id": f"T{i}", "data": {"base": 100 * i}}) + "\n"
                                            for i in range(24)))
    engine.ingest(read_file(str(folder / "t.jsonl")), "t.jsonl")
    (folder / "gold.jsonl").write_text("".join(
        json.dumps({"id": f"G{i}", "data": {"base": 0}, "answer": [{"x": 0, "y": 0, "width": 10, "height": 10}]})
        + "\n" for i in range(3)))
    add_gold(engine, str(folder / "gold.jsonl"), "lena")
    return engine


def run_history(engine, rng: random.Random, steps: int, seen: dict[str, int]) -> None:
    """``steps`` claims and submissions by random workers, the sums checked after each; held tasks
    are escalated to the expert by the lead."""
    from router.errors import NothingToDo
    from router.lead import Lead

    workers = (*ANNOTATORS, *ANNOTATORS, "sen", "exp")
    for _ in range(steps):
        name = rng.choice(workers)
        try:
            view = engine.claim(name)
        except NothingToDo:
            held = [t["external_id"] for t in engine.store.query("SELECT external_id FROM tasks WHERE status = 'held'")]
            if held:
                Lead(engine, "lena").run("escalate", held, queue="experts")
                seen["escalated"] += len(held)
            continue
        base = view["data"]["base"]
        if view["kind"] in ("annotate", "correct"):
            engine.submit(view["assignment"], name, label=a_label(rng, base))
            seen[view["kind"]] += 1
        elif view["kind"] == "escalated" or rng.random() < 0.3:  # an expert, or a senior who relabels
            engine.submit(view["assignment"], name, verdict="approve", label=a_label(rng, base))
            seen["relabelled"] += 1
        elif rng.random() < 0.5:
            engine.submit(view["assignment"], name, verdict="reject", comment="look again")
            seen["rejected"] += 1
        else:
            engine.submit(view["assignment"], name, verdict="approve")
        assert_equal_to_old(engine)


def test_the_kept_sums_equal_the_old_computation_through_a_mixed_history(tmp_path, monkeypatch):
    from router.agreement import agreement_report
    from router.engine import Engine
    from router.ingest import read_file

    engine = engine_for(tmp_path, monkeypatch)
    rng = random.Random(20260101)
    seen: dict[str, int] = {"annotate": 0, "correct": 0, "rejected": 0, "relabelled": 0, "escalated": 0}
    run_history(engine, rng, 220, seen)
    before = assert_equal_to_old(engine)
    # Another process applies a version whose IoU is lower: boxes shifted by 6 (IoU 0.25) now match,
    # so marked votes change; this engine, which loaded the first version, judges by the new one too.
    other = Engine.open(str(engine.store.path))
    other.apply(WORKFLOW.format(iou=0.2), "marks.workflow.yaml", actor="lena")
    after = assert_equal_to_old(engine)
    assert sum(m for _d, m in after.values()) > sum(m for _d, m in before.values())
    assert [d for d, _m in after.values()] == [d for d, _m in before.values()]
    more = tmp_path / "more.jsonl"
    more.write_text("".join(json.dumps({"id": f"T{i}", "data": {"base": 100 * i}}) + "\n" for i in range(24, 60)))
    engine.ingest(read_file(str(more)), "more.jsonl")
    run_history(engine, rng, 150, seen)
    run_history(other, rng, 150, seen)
    sums = assert_equal_to_old(engine)

    # the history was the mixed one this test is about
    assert all(seen[k] > 0 for k in seen), seen
    finals = {r[0] for r in engine.store.query("SELECT final_by FROM tasks WHERE status = 'done'")}
    assert {"consensus", "reviewer", "expert"} <= finals
    gold_answers = engine.store.query("SELECT count(*) FROM annotations AS a JOIN tasks AS t ON t.id = a.task_id "
                                      "WHERE t.is_gold = 1")[0][0]
    assert gold_answers > 0
    assert any(0 < m < d for d, m in sums.values())  # some agree and some do not
    # the agreement report judges the same votes alike
    report = {a["worker"]: (a["decided"], a["matched"]) for a in agreement_report(other)["annotators"]}
    assert {name: sums[name] for name in report} == report
    other.close()
    engine.close()


def test_a_changed_final_label_or_a_reopened_task_moves_the_sums(tmp_path, monkeypatch):
    """No command changes a finished task today; a path that does calls ``mark_task`` in its transaction,
    and the sums follow the final label (or leave a task that is no longer finished)."""
    from router.vote_agreement import mark_task

    engine = engine_for(tmp_path, monkeypatch)
    run_history(engine, random.Random(7), 150, {k: 0 for k in ("annotate", "correct", "rejected", "relabelled",
                                                              "escalated")})
    store, spec = engine.store, engine.workflow.labels
    done = store.query("SELECT id, final_label FROM tasks WHERE status = 'done' AND is_gold = 0 ORDER BY id")
    assert len(done) >= 4
    voters = store.query("SELECT a.label FROM annotations AS a WHERE a.task_id = ? AND a.stage = 'annotate'",
                         (done[0]["id"],))
    first = assert_equal_to_old(engine)
    with store.transaction():  # relabelled with a voter's label, another with nothing anyone drew
        store.update_task(done[0]["id"], final_label=voters[-1]["label"])
        mark_task(store, done[0]["id"], spec)
        store.update_task(done[1]["id"], final_label=json.dumps([{"x": 9999, "y": 0, "width": 1, "height": 1}]))
        mark_task(store, done[1]["id"], spec)
        store.update_task(done[2]["id"], status="open", stage="correct")  # reopened
        mark_task(store, done[2]["id"], spec)
    assert assert_equal_to_old(engine) != first
    with store.transaction():  # and finished again with its first label
        store.update_task(done[2]["id"], status="done", stage=None)
        mark_task(store, done[2]["id"], spec)
        store.update_task(done[1]["id"], final_label=done[1]["final_label"])
        mark_task(store, done[1]["id"], spec)
        store.update_task(done[0]["id"], final_label=done[0]["final_label"])
        mark_task(store, done[0]["id"], spec)
    assert assert_equal_to_old(engine) == first
    engine.close()


def test_a_submission_judges_only_its_own_task_whatever_the_history(tmp_path, monkeypatch):
    """Deterministic evidence of the cost: the box comparisons a submission runs, and the SQLite
    steps of the TUI's roster, do not grow with the worker's finished tasks."""
    import router.consensus as consensus
    from router.engine import Engine
    from router.ingest import read_file
    from router.queries import Queries
    from router.store import Store

    monkeypatch.setenv("LABELYARD_NOW", "1767225600")
    solo = WORKFLOW.format(iou=0.5).replace("overlap: 3", "overlap: 1").replace("  gold: {rate: 0.15}\n", "  {}\n")
    store, _ = Store.init(str(tmp_path / "solo.db"))
    engine = Engine(store)
    engine.apply(solo.replace("quality:\n  {}\n", ""), "solo.workflow.yaml", actor="lena")
    engine.add_worker("u1", ["annotator"], actor="lena")
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"id": f"T{i}", "data": {}}) + "\n" for i in range(80)))
    engine.ingest(read_file(str(tmp_path / "t.jsonl")), "t.jsonl")
    boxes = [{"x": 20 * k, "y": 0, "width": 10, "height": 10, "label": "car"} for k in range(3)]
    calls = []
    judged = consensus._same_objects
    monkeypatch.setattr(consensus, "_same_objects", lambda *a: calls.append(1) or judged(*a))

    def cost_of_one_submission() -> tuple[int, int]:
        calls.clear()
        view = engine.claim("u1")
        engine.submit(view["assignment"], "u1", label=boxes)
        steps = []
        store.conn.set_progress_handler(lambda: steps.append(1) and 0, 1)
        Queries(store, engine).worker_rows()
        store.conn.set_progress_handler(None, 0)
        return len(calls), len(steps)

    early = cost_of_one_submission()  # the worker's first finished task
    for _ in range(60):
        cost_of_one_submission()
    late = cost_of_one_submission()  # their 62nd
    assert store.worker_final_agreement("u1") == (62, 62)
    assert late == early
    engine.close()


def test_an_existing_database_is_marked_by_the_migration(tmp_path, monkeypatch, run):
    """A database made before the sums (their columns dropped, schema 9) gets them from `labelyard init`,
    judged by the active workflow's labels."""
    engine = engine_for(tmp_path, monkeypatch)
    run_history(engine, random.Random(11), 160, {k: 0 for k in ("annotate", "correct", "rejected", "relabelled",
                                                               "escalated")})
    expected = assert_equal_to_old(engine)
    assert any(m < d for d, m in expected.values())
    engine.close()
    conn = sqlite3.connect(run.db, isolation_level=None)
    for statement in ("ALTER TABLE annotations DROP COLUMN agrees", "ALTER TABLE workers DROP COLUMN final_votes",
                      "ALTER TABLE workers DROP COLUMN final_agreed", "UPDATE schema_version SET version = 9",
                      "DELETE FROM _sqlite_migrations WHERE name = 'm010_final_vote_marks'",
                      "DELETE FROM _sqlite_migrations WHERE name = 'm011_json_value_classes'"):  # after it
        conn.execute(statement)
    conn.close()
    assert "run `labelyard init` to migrate" in run("status").stderr
    assert run.json("init", "--json")["migrations_applied"] == ["m010_final_vote_marks", "m011_json_value_classes"]
    conn = sqlite3.connect(run.db)
    migrated = {w: (d, m) for w, d, m in conn.execute("SELECT id, final_votes, final_agreed FROM workers")}
    marks = conn.execute("SELECT count(agrees), count(*) FROM annotations").fetchone()
    conn.close()
    assert migrated == expected
    assert marks[0] == sum(d for d, _m in expected.values()) < marks[1]  # other submissions are unmarked


@pytest.mark.parametrize("label_type", ["boxes", "choice"])
def test_worker_agreement_in_rules_reads_the_sums(tmp_path, label_type):
    """Through the command: the on_worker rule sees the agreement the sums give (2 of 3, then 3 of 4
    in the report): a box label judged by matching, a choice exactly."""
    labels = "{type: boxes}" if label_type == "boxes" else "{type: choice, choices: [a, b]}"
    agreeing = "[]" if label_type == "boxes" else '"a"'
    other = '[{"x": 0, "y": 0, "width": 1, "height": 1}]' if label_type == "boxes" else '"b"'
    p = Project(tmp_path, f"""\
workflow: seen
labels: {labels}
queues:
  q: {{roles: [annotator]}}
  senior: {{roles: [senior]}}
on_create: [{{name: one, do: {{annotate: q}}}}]
on_quorum: [{{name: check, do: {{review: senior}}}}]
on_worker:
  - {{name: watch, when: worker.agreement != null and worker.agreement < 0.8, do: {{flag: true}}}}
""")
    p.worker("u1", "annotator")
    p.worker("sen", "senior")
    p.ingest([{"id": f"T{i}"} for i in range(4)])
    for value in (agreeing, agreeing, other, agreeing):  # the senior's label is final: u1's third disagrees
        view = p.claim("u1")
        p.submit(view["assignment"], "u1", "--value", value)
        view = p.claim("sen")
        p.submit(view["assignment"], "sen", "--approve", "--value", agreeing)
    # u1's fourth submission (on T3) sees T0..T2 finished, two of them agreeing
    (flagged,) = [e for e in p.show("T3")["events"] if e["kind"] == "worker_flagged"]
    assert flagged["detail"]["facts"]["agreement"] == 2 / 3
    report = {a["worker"]: a for a in p.json("agreement")["annotators"]}
    assert (report["u1"]["decided"], report["u1"]["matched"]) == (4, 3)
    conn = sqlite3.connect(p.db)
    assert conn.execute("SELECT final_votes, final_agreed FROM workers WHERE id = 'u1'").fetchone() == (4, 3)
    conn.close()
