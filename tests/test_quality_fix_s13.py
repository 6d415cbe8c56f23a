"""Quality fixes of session 13: a number vote counted in ``top_count`` agrees with the final label.

Real ``labelyard`` subprocesses on a real SQLite file (:class:`lead_support.Project`,
``LABELYARD_NOW`` fixed); the consensus functions are also checked directly.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from lead_support import Project, engine_at
from router import migrations
from router.consensus import agrees_with_final, for_spec
from rules.workflow import LabelSpec

NUMBER_WORKFLOW = """\
workflow: f1
labels: {{type: number, min: 0, max: {high}}}
queues:
  triage: {{roles: [annotator]}}
on_create:
  - do: {{annotate: triage, overlap: 2}}
on_quorum:
  - name: close enough
    when: votes.top_count == votes.count
    do: accept
  - do: {{hold: "split"}}
on_worker:
  - name: disagrees
    when: worker.agreement < 0.5
    do: {{flag: true, reason: "agrees with under half of final labels"}}
"""


def vote(p: Project, worker: str, value, ref: str = "T1") -> dict:
    view = p.claim(worker)
    assert view["external_id"] == ref
    return p.submit(view["assignment"], worker, "--value", json.dumps(value))


def number_project(tmp_path, votes=(3, 3.1), high: int = 10) -> Project:
    p = Project(tmp_path, NUMBER_WORKFLOW.format(high=high))
    p.worker("a", "annotator")
    p.worker("b", "annotator")
    p.ingest([{"id": "T1", "data": {}}])
    for worker, value in zip("ab", votes):
        vote(p, worker, value)
    return p


# -- F1: number votes within the tolerance agree with the final label ---------------------------
def test_number_votes_that_made_the_consensus_agree_with_it(tmp_path):
    p = number_project(tmp_path)
    task = p.show("T1")["task"]
    assert task["status"] == "done" and task["final_label"] == 3.05  # accepted: top_count == count
    workers = {w["id"]: w for w in p.json("workers", "list")}
    assert not workers["a"]["flagged"] and not workers["b"]["flagged"]  # worker.agreement was 1.0, not 0.0
    annotators = {a["worker"]: a for a in p.json("agreement")["annotators"]}
    assert annotators["a"]["agreement"] == 1.0 and annotators["b"]["agreement"] == 1.0
    engine = engine_at(p.db, pytest.MonkeyPatch(), 0)
    try:
        assert engine.store.worker_final_agreement("a") == (1, 1)  # the counters worker.agreement reads
        assert engine.store.worker_final_agreement("b") == (1, 1)
    finally:
        engine.close()
    text = p.run_ok("agreement").stdout
    assert "0.000" not in text


def test_a_new_range_judges_number_votes_again(tmp_path):
    """``min``/``max`` set the tolerance: applying a narrower range judges the counted votes again."""
    p = number_project(tmp_path, votes=(3, 3.4))  # median 3.2, tolerance 0.5 of 0..10: both agree
    engine = engine_at(p.db, pytest.MonkeyPatch(), 0)
    try:
        assert engine.store.worker_final_agreement("a") == (1, 1)
    finally:
        engine.close()
    (p.folder / "narrow.workflow.yaml").write_text(NUMBER_WORKFLOW.format(high=2))  # tolerance 0.1
    p.run_ok("apply", p.folder / "narrow.workflow.yaml")
    engine = engine_at(p.db, pytest.MonkeyPatch(), 0)
    try:
        assert engine.store.worker_final_agreement("a") == (1, 0)
        assert engine.store.worker_final_agreement("b") == (1, 0)
    finally:
        engine.close()
    annotators = {a["worker"]: a for a in p.json("agreement")["annotators"]}
    assert annotators["a"]["agreement"] == 0.0  # the report and the counters still say the same


@pytest.mark.parametrize("votes, low, high", [
    ([3, 3.1], 0, 10),
    ([1, 2, 2.05, 9], 0, 10),
    ([100, 104, 106, 200], None, None),
    ([0, 0.0, 1e-9], None, None),
    ([1.5e308, 1.7e308, -1.7e308], None, None),
    ([10**20, 10**20 + 2, 10**20 + 10**19], None, None),
])
def test_agreement_with_the_median_counts_what_top_count_counts(votes, low, high):
    spec = LabelSpec(type="number", min=low, max=high)
    consensus = for_spec(votes, spec)
    assert sum(agrees_with_final(v, consensus.label, spec) for v in votes) == consensus.top_count


def test_other_types_agree_by_same_label():
    spec = LabelSpec(type="choice", choices=("a", "b"))
    assert agrees_with_final("a", "a", spec) and not agrees_with_final("b", "a", spec)
    number = LabelSpec(type="number")
    assert agrees_with_final(4.0, 4, number) and not agrees_with_final(4.5, 4, number)  # 5% of 4 is 0.2
    assert not agrees_with_final("4", 4, number)  # a vote that is no number: by canonical form


# -- F3: labels in agreement reasons are named as the confusion table names them ----------------
VOTED_TWICE = """\
workflow: f3
labels: {labels}
queues:
  triage: {{roles: [annotator]}}
on_create:
  - do: {{annotate: triage, overlap: 2}}
on_quorum:
  - do: accept
"""


def voted_twice(tmp_path, labels: str, value) -> Project:
    """Two tasks, each given ``value`` by two annotators."""
    p = Project(tmp_path, VOTED_TWICE.format(labels=labels))
    p.worker("a", "annotator")
    p.worker("b", "annotator")
    p.ingest([{"id": "T1", "data": {}}, {"id": "T2", "data": {}}])
    for ref in ("T1", "T2"):
        for worker in "ab":
            vote(p, worker, value, ref)
    return p


@pytest.mark.parametrize("labels, value, named", [
    ("{type: multi_choice, choices: [x, y]}", ["y", "x"], '["x", "y"]'),
    ("{type: choice, choices: [a, b]}", "a", "a"),
    ("{type: choice, choices: ['1', '2']}", "1", '"1"'),
    ("{type: boxes}", [{"x": 1, "y": 1, "width": 2.0, "height": 2, "label": "car"}],
     '[{"height": 2, "label": "car", "width": 2, "x": 1, "y": 1}]'),
])
def test_a_reason_names_the_label_as_the_confusion_table_does(tmp_path, labels, value, named):
    p = voted_twice(tmp_path, labels, value)
    report = p.json("agreement")
    reason = report["overall"]["reasons"]["fleiss_kappa"]
    assert reason == (f"Fleiss' kappa is undefined when every vote is the same label ({named}): "
                      "agreement is perfect but so is chance agreement")
    assert report["queues"]["triage"]["reasons"]["fleiss_kappa"] == reason
    text = p.run_ok("agreement").stdout
    assert f"same label ({named}):" in text
    assert "JsonStructure" not in text and "('" not in text


def test_a_vote_of_another_type_is_named_in_the_alpha_reason(tmp_path):
    """Votes given as text before the workflow became a number workflow: alpha (interval) says which."""
    p = voted_twice(tmp_path, "{type: choice, choices: [a, b]}", "a")
    (p.folder / "number.workflow.yaml").write_text(VOTED_TWICE.format(labels="{type: number}"))
    p.run_ok("apply", p.folder / "number.workflow.yaml")
    report = p.json("agreement")
    assert report["level"] == "interval"
    assert report["overall"]["reasons"]["krippendorff_alpha"] == (
        "Krippendorff's alpha (interval) needs number votes; got a")


# -- F6: `gold add` of an existing gold id updates what workers see of the question ---------------
GOLD_WORKFLOW = """\
workflow: g
labels: {type: choice, choices: [a, b, c]}
queues:
  triage: {roles: [annotator]}
on_create:
  - do: {annotate: triage, overlap: 1}
quality:
  gold: {rate: 1.0}
"""


def gold_add(p: Project, rows: list[dict]) -> dict:
    path = p.folder / "gold.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p.json("gold", "add", path)


def gold_events(p: Project, ref: str, kind: str) -> list[dict]:
    return [e["detail"] for e in p.show(ref)["events"] if e["kind"] == kind]


def test_gold_add_of_a_known_id_with_new_data_updates_the_question(tmp_path):
    p = Project(tmp_path, GOLD_WORKFLOW)
    assert gold_add(p, [{"id": "G1", "data": {"v": 1}, "answer": "a"}])["added"] == 1
    fixed = {"id": "G1", "data": {"v": 3, "text": "fixed typo"}, "answer": "a"}
    report = gold_add(p, [fixed])
    assert (report["updated"], report["unchanged"]) == (1, 0)
    assert p.show("G1")["task"]["data"] == {"v": 3, "text": "fixed typo"}
    (event,) = gold_events(p, "G1", "gold_updated")
    assert event["changed"] == ["data"] and event["was_question"] == {"data": {"v": 1}}
    assert "queue" not in event  # not moved: explain still says where it was placed
    report = gold_add(p, [fixed])  # the same row again: nothing to write
    assert (report["updated"], report["unchanged"]) == (0, 1)
    assert len(gold_events(p, "G1", "gold_updated")) == 1
    p.worker("u1", "annotator")
    assert p.claim("u1")["data"] == {"v": 3, "text": "fixed typo"}  # what a worker is shown now


def test_gold_add_updates_category_tags_and_prediction(tmp_path):
    p = Project(tmp_path, GOLD_WORKFLOW)
    gold_add(p, [{"id": "G1", "data": {"v": 1}, "answer": "a", "category": "x", "tags": ["t1"],
                  "prediction": {"label": "b", "confidence": 0.4, "model": "m1"}}])
    report = gold_add(p, [{"id": "G1", "data": {"v": 1}, "answer": "a", "category": "y", "tags": ["t2"]}])
    assert report["updated"] == 1
    task = p.show("G1")["task"]
    assert (task["category"], task["tags"], task["pred_label"], task["pred_model"]) == ("y", ["t2"], None, None)
    (event,) = gold_events(p, "G1", "gold_updated")
    assert event["changed"] == ["category", "tags", "prediction"]
    assert event["was_question"]["prediction"] == {"label": "b", "confidence": 0.4, "model": "m1", "scores": None}
    assert event["was_question"]["category"] == "x" and event["was_question"]["tags"] == ["t1"]


def test_answers_given_before_the_update_keep_their_score(tmp_path):
    p = Project(tmp_path, GOLD_WORKFLOW)
    p.worker("u1", "annotator")
    gold_add(p, [{"id": "G1", "data": {"v": 1}, "answer": "a"}])
    view = p.claim("u1")
    assert view["external_id"] == "G1"
    p.submit(view["assignment"], "u1", "--label", "a")
    gold_add(p, [{"id": "G1", "data": {"v": 2}, "answer": "a"}])
    (row,) = [a for a in p.json("agreement")["annotators"] if a["worker"] == "u1"]
    assert (row["gold_answered"], row["gold_correct"]) == (1, 1)
    with sqlite3.connect(p.db) as db:  # scored again, from scratch, to the same counts: no event
        assert db.execute("SELECT count(*) FROM events WHERE kind = 'gold_rescored'").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM events WHERE kind = 'gold_updated'").fetchone() == (1,)


# -- F4: sinks' `agreement` is the share of the votes that agree with the final label ------------
SINK_WORKFLOW = """\
workflow: s
labels: {labels}
queues:
  triage: {{roles: [annotator]}}
on_create:
  - do: {{annotate: triage, overlap: 3}}
on_quorum:
  - do: {accept}
sinks: [{{plugin: jsonl, path: out.jsonl}}]
"""


def sunk(tmp_path, labels: str, accept: str, votes: list) -> dict:
    """The row the jsonl sink writes for T1 after three annotators voted ``votes``."""
    p = Project(tmp_path, SINK_WORKFLOW.format(labels=labels, accept=accept))
    for worker in "abc":
        p.worker(worker, "annotator")
    p.ingest([{"id": "T1", "data": {}}])
    for worker, value in zip("abc", votes):
        vote(p, worker, value)
    p.run_ok("run")
    (row,) = [json.loads(line) for line in (p.folder / "out.jsonl").read_text().splitlines()]
    return row


def test_a_sinks_agreement_is_with_the_final_label_not_the_majority(tmp_path):
    row = sunk(tmp_path, "{type: choice, choices: [a, b]}", """{accept: {label: '"a"'}}""", ["a", "b", "b"])
    assert row["label"] == "a"
    assert row["agreement"] == pytest.approx(1 / 3)  # one vote of three gives "a" (the majority's share: 2/3)


@pytest.mark.parametrize("labels, votes, agreement", [
    ("{type: multi_choice, choices: [x, y]}", [["x"], ["x", "y"], ["y", "x"]], 2 / 3),  # not mean Jaccard 0.83
    ("{type: number, min: 0, max: 10}", [3, 3.1, 9], 2 / 3),  # 3 and 3.1 are within 0.5 of the median 3.1
])
def test_a_sinks_agreement_counts_the_votes_that_give_the_consensus(tmp_path, labels, votes, agreement):
    row = sunk(tmp_path, labels, "accept", votes)
    assert row["agreement"] == pytest.approx(agreement)


# -- F5: agreement tables aligned by terminal cells; number labels in the confusion by value ------
TABLE_WORKFLOW = """\
workflow: t
labels: {type: number}
queues:
  the_queue_with_a_name_longer_than_sixteen: {roles: [annotator]}
on_create:
  - do: {annotate: the_queue_with_a_name_longer_than_sixteen, overlap: 1}
on_quorum:
  - do: accept
"""
WIDE, LONG = "注釈者一号", "annotator-with-a-very-long-name"


def test_agreement_tables_align_long_and_wide_names_and_order_numbers_by_value(tmp_path):
    from rich.cells import cell_len

    p = Project(tmp_path, TABLE_WORKFLOW)
    for name in (WIDE, LONG, "a"):
        p.worker(name, "annotator")
    p.ingest([{"id": ref, "data": {}} for ref in ("T1", "T2", "T3")])
    for worker, value, ref in ((WIDE, 10, "T1"), (LONG, 2, "T2"), ("a", 9.5, "T3")):
        vote(p, worker, value, ref)
    text = p.run_ok("agreement").stdout
    blocks = text.split("\n\n")
    queues = [line for line in blocks[0].splitlines()[1:] if not line.startswith("  note")]
    assert len(queues) == 3
    # every row's figures end where the header's do (the band after them varies)
    assert len({cell_len(line.rsplit("  ", 1)[0]) for line in queues}) == 1, queues
    annotators = blocks[1].splitlines()
    assert [line.split()[0] for line in annotators] == ["annotator", "a", LONG, WIDE]
    assert len({cell_len(line) for line in annotators}) == 1, annotators
    assert all(name + " " in line for name, line in zip([LONG, WIDE], annotators[2:]))  # never glued to a figure
    confusion = blocks[2].splitlines()
    assert confusion[1].split() == ["2", "9.5", "10"]  # by value, not as text ("10" < "2")
    assert [line.split()[0] for line in confusion[2:]] == ["2", "9.5", "10"]
    assert list(p.json("agreement")["confusion"]) == ["2", "9.5", "10"]


@pytest.mark.parametrize("confusion, order", [
    ({"10": {"2": 1}, "(none)": {"10": 1}, "2": {"(none)": 1}, "(no class)": {"9.5": 1}},
     ["(no class)", "2", "9.5", "10", "(none)"]),  # box classes that are numbers: by value, placeholders kept
    ({"10": {"b": 1}, "b": {"2": 1}}, ["10", "2", "b"]),  # numbers among text: by name, as JSON text sorts
])
def test_confusion_names_are_numbers_by_value_only_when_all_are_numbers(confusion, order):
    from router.agreement import confusion_table

    lines = confusion_table({"confusion": confusion, "confusion_of": "objects"})
    rows = [line.split()[0] if not line.startswith("(") else line[:line.index(")") + 1] for line in lines[2:]]
    assert rows == [name for name in order if name in confusion]
    header = lines[1].replace("(no class)", "(no-class)").split()
    finals = {f for row in confusion.values() for f in row}
    assert header == [name.replace("(no class)", "(no-class)") for name in order if name in finals]


# -- M017: marks of number votes judged by exact equality are judged again by `labelyard init` -----
MIGRATION = "m017_number_votes_within_tolerance"
UPGRADE_WORKFLOW = """\
workflow: up
labels: {labels}
queues:
  triage: {{roles: [annotator]}}
quality:
  gold: {{rate: 1.0}}
on_create:
  - do: {{annotate: triage, overlap: 3}}
on_quorum:
  - do: accept
"""


def voted_with_gold(tmp_path, labels: str, gold, votes: list) -> Project:
    """Workers a, b, c each answer the gold question G1 and then vote on T1 (accepted), with the
    value they give in ``votes``."""
    p = Project(tmp_path, UPGRADE_WORKFLOW.format(labels=labels))
    for worker in "abc":
        p.worker(worker, "annotator")
    gold_add(p, [{"id": "G1", "data": {}, "answer": gold}])
    p.ingest([{"id": "T1", "data": {}}])
    for worker, value in zip("abc", votes):
        vote(p, worker, value, "G1")
        vote(p, worker, value, "T1")
    return p


def made_before_m017(p: Project, marks: dict[str, int]) -> None:
    """Set T1's vote marks and the workers' sums to ``marks`` (as an older Labelyard left them) and
    forget that m017 ran, as the upgrade tests fake an older database."""
    conn = sqlite3.connect(p.db, isolation_level=None)
    try:
        for worker, mark in marks.items():
            conn.execute("UPDATE annotations SET agrees = ? WHERE worker = ? AND agrees IS NOT NULL", (mark, worker))
            conn.execute("UPDATE workers SET final_votes = 1, final_agreed = ? WHERE id = ?", (mark, worker))
        conn.execute("UPDATE schema_version SET version = 15")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = ?", (MIGRATION,))
    finally:
        conn.close()


def counters(p: Project) -> dict[str, tuple[int, int, int, int]]:
    """Each annotator's (final_votes, final_agreed, gold_answered, gold_correct) as the database keeps them."""
    with sqlite3.connect(p.db) as conn:
        return {w: tuple(row) for w, *row in conn.execute(
            "SELECT id, final_votes, final_agreed, gold_answered, gold_correct FROM workers WHERE id != 'lena'")}


def test_init_judges_number_vote_marks_made_by_exact_equality_again(tmp_path):
    """Made before f66a201: of votes 3, 3.1 and 9 (final 3.1 on 0..10, tolerance 0.5), only b's equal
    vote was marked as agreeing; a stayed at 0.000 in worker.agreement while `agreement` said 1.000."""
    p = voted_with_gold(tmp_path, "{type: number, min: 0, max: 10}", 3, [3, 3.1, 9])
    assert p.show("T1")["task"]["final_label"] == 3.1
    made_before_m017(p, {"a": 0, "b": 1, "c": 0})
    assert counters(p)["a"][:2] == (1, 0)
    assert p.json("init")["migrations_applied"] == [MIGRATION]
    # b's gold answer 3.1 is right against 3 (within the tolerance, as scored at submission: m018), and stays so
    assert counters(p) == {"a": (1, 1, 1, 1), "b": (1, 1, 1, 1), "c": (1, 0, 1, 0)}
    annotators = {a["worker"]: a for a in p.json("agreement")["annotators"]}
    for worker, (decided, agreed, answered, correct) in counters(p).items():
        row = annotators[worker]
        assert (row["decided"], row["matched"]) == (decided, agreed), worker
        assert (row["gold_answered"], row["gold_correct"]) == (answered, correct), worker
    with sqlite3.connect(p.db) as conn:
        assert conn.execute("SELECT worker, agrees FROM annotations WHERE agrees IS NOT NULL ORDER BY worker"
                            ).fetchall() == [("a", 1), ("b", 1), ("c", 0)]
        assert conn.execute("SELECT count(*) FROM events WHERE kind = 'gold_rescored'").fetchone() == (0,)
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (migrations.SCHEMA_VERSION,)
    assert p.json("init")["migrations_applied"] == []  # and stays migrated


def test_init_leaves_the_vote_marks_of_other_label_types_as_they_are(tmp_path):
    """m017 is about numbers: a choice workflow's marks (here c's, faked) are not judged again."""
    p = voted_with_gold(tmp_path, "{type: choice, choices: [a, b]}", "a", ["a", "a", "b"])
    made_before_m017(p, {"a": 1, "b": 1, "c": 1})
    before = counters(p)
    assert p.json("init")["migrations_applied"] == [MIGRATION]
    assert counters(p) == before == {"a": (1, 1, 1, 1), "b": (1, 1, 1, 1), "c": (1, 1, 1, 0)}
