"""Fixes of the fourteenth session in the workflow language.

A workflow file calling a function no loaded plugin registers is told where functions come
from, at the call's file:line:col, as a stored workflow is; ``replay`` compares
``multi_choice`` labels as sets in choice order; gold answers to ``number`` questions are
scored within the consensus tolerance.

The CLI runs as a real ``labelyard`` subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------- 1. a file's unknown function: where they come from

TOXIC = """\
workflow: fx
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: toxic
    when: toxicity(task.data.text) > 0.5
    do: {hold: toxic}
  - name: d
    do: {annotate: q}
on_quorum:
  - name: very toxic
    when: toxicity(task.data.text) > 0.9
    do: {hold: toxic}
  - name: rest
    do: accept
"""
TOXICITY_PLUGIN = """\
from router import hookimpl


@hookimpl
def register_functions(register):
    register("toxicity", lambda text: 0.0)
"""
WHERE = ("which no plugin loaded here registers: rule functions come from plugin files in LABELYARD_PLUGINS_DIR "
         "(`run`, `ingest NAME:ARG` and `plugins` also take --plugins-dir DIR), from modules in the workflow's "
         "`plugins:` (on PYTHONPATH), and from installed plugin packages")


def test_validate_of_a_file_says_where_an_unknown_function_comes_from_at_its_file_line_col(run, tmp_path):
    path = write(tmp_path, "fx.workflow.yaml", TOXIC)
    proc = run("validate", path)
    assert proc.returncode == 1
    first, second = proc.stderr.splitlines()
    # before: "fx.workflow.yaml:7:11: unknown function `toxicity` (functions: abs, len, …)" and nothing more
    assert first == (f"{path}:7:11: unknown function `toxicity` (called by on_create rule `toxic`, on_quorum rule "
                     f"`very toxic`), {WHERE}; `labelyard plugins` lists what is loaded "
                     "(functions here: abs, len, matches, max, min, sample)")
    assert second == f"{path}:13:11: unknown function `toxicity`, which no plugin loaded here registers (see 7:11)"
    listed = json.loads(run("validate", "--json", path).stdout)
    assert [(d["line"], d["col"], d["severity"]) for d in listed] == [(7, 11, "error"), (13, 11, "error")]
    assert listed[0]["message"] == first.split(":7:11: ", 1)[1]

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write(plugins, "tox.py", TOXICITY_PLUGIN)
    assert run("validate", path, env={"LABELYARD_PLUGINS_DIR": str(plugins)}).stdout == f"{path}: ok (fx)\n"


def test_a_did_you_mean_keeps_its_place_and_load_plugins_is_named_when_it_is_set(run, tmp_path):
    path = write(tmp_path, "ty.workflow.yaml", TOXIC.replace("toxicity(task.data.text) > 0.5", "lenn(task.tags) > 1"))
    proc = run("validate", path, env={"LABELYARD_LOAD_PLUGINS": "jsonl,gold"})
    assert f"{path}:7:11: unknown function `lenn` (called by on_create rule `toxic`); did you mean `len`? If it is a " \
           "plugin's, no plugin loaded here registers it: rule functions come from" in proc.stderr
    assert ("from installed plugin packages (only the entry points LABELYARD_LOAD_PLUGINS names here: `gold`, "
            "`jsonl`); `labelyard plugins` lists what is loaded\n") in proc.stderr
    assert f"{path}:13:11: unknown function `toxicity` (called by on_quorum rule `very toxic`), which no plugin" \
           in proc.stderr
    none = run("validate", path, env={"LABELYARD_LOAD_PLUGINS": ""})
    assert "installed plugin packages (none here: LABELYARD_LOAD_PLUGINS is set and empty)" in none.stderr


def test_apply_test_and_replay_of_a_file_say_it_as_validate_does(run, tmp_path):
    path = write(tmp_path, "fx.workflow.yaml", TOXIC)
    write(tmp_path, "fx.test.yaml", """\
        cases:
          - {name: c, event: on_create, facts: {task: {data: {text: hi}}}, expect: {rule: d}}
        """)
    said = (f"{path}:7:11: unknown function `toxicity` (called by on_create rule `toxic`, on_quorum rule "
            f"`very toxic`), {WHERE}")
    run.ok("init")
    applied = run("apply", path)
    assert applied.returncode == 1 and said in applied.stderr, applied.stderr
    tested = run("test", path)
    assert tested.returncode == 1 and f"ERROR {said}" in tested.stdout, tested.stdout
    run.ok("apply", write(tmp_path, "ok.workflow.yaml", TOXIC.replace("toxicity(task.data.text)", "len(task.tags)")))
    replayed = run("replay", path)
    assert replayed.returncode == 1 and said in replayed.stderr, replayed.stderr


# ---------------------------------------------------------------- 2. replay compares multi_choice labels as sets

RECORDED_MC = """\
workflow: mcr
labels: {type: multi_choice, choices: [a, b, c]}
queues:
  q: {roles: [annotator]}
  r: {roles: [reviewer]}
on_create:
  - name: d
    do: {annotate: q, overlap: 1}
on_quorum:
  - name: agreed
    when: votes.labels == [["b", "c"]] and votes.top == ["b", "c"]
    do: {review: r}
  - name: other
    do: {hold: other}
on_review:
  - name: same set
    when: review.label == ["b", "c"]
    do: {accept: {label: review.label}}
  - name: other review
    do: {hold: "not the set"}
"""


def recorded_before_the_set_fix(tmp_path: Path):
    """One task voted ["c", "b"] and reviewed ["c", "b"], its events rewritten as Labelyard wrote
    them before votes and review labels were stored as sets (the labels as given)."""
    import sqlite3

    from lead_support import Project

    p = Project(tmp_path, RECORDED_MC)
    p.worker("ann", "annotator")
    p.worker("rev", "reviewer")
    p.ingest([{"id": "M1", "data": {}}])
    p.submit(p.claim("ann")["assignment"], "ann", "--value", json.dumps(["c", "b"]))
    decided = p.submit(p.claim("rev")["assignment"], "rev", "--value", json.dumps(["c", "b"]))
    assert decided["decision"]["rule"] == "same set"
    with sqlite3.connect(p.db) as conn:  # as an older Labelyard wrote them
        conn.execute("""UPDATE events SET detail = json_set(detail, '$.facts.votes.labels', json('[["c","b","c"]]'),
                                                        '$.facts.votes.top', json('["c","b"]'))
                        WHERE kind IN ('routed', 'final')""")
        conn.execute("""UPDATE events SET detail = json_set(detail, '$.facts.review.label', json('["c","b"]'),
                                                        '$.values.label', json('["c","b"]'))
                        WHERE kind = 'final'""")
        recorded = [json.loads(d) for (d,) in conn.execute("SELECT detail FROM events WHERE kind = 'final'")]
    assert recorded[0]["values"] == {"label": ["c", "b"]} and recorded[0]["facts"]["review"]["label"] == ["c", "b"]
    return p


def test_replay_sees_votes_and_review_labels_recorded_before_the_set_fix_as_sets(tmp_path):
    p = recorded_before_the_set_fix(tmp_path)
    result = p.json("replay", str(p.folder / "wf.workflow.yaml"), "--json")
    # before: 2 of 3 differed (`agreed` and `same set` did not match the recorded ["c", "b"])
    assert (result["decisions"], result["unchanged"], result["changed"]) == (3, 3, 0), result["rules"]


def test_replay_compares_an_accepted_multi_choice_label_as_a_set_on_both_sides(tmp_path):
    p = recorded_before_the_set_fix(tmp_path)
    candidate = p.folder / "c.workflow.yaml"
    candidate.write_text(RECORDED_MC.replace("{accept: {label: review.label}}", '{accept: {label: ["c", "b", "b"]}}'),
                         encoding="utf-8")
    result = p.json("replay", str(candidate), "--json")
    assert (result["unchanged"], result["changed"]) == (3, 0), result["rules"]
    other = p.folder / "o.workflow.yaml"
    other.write_text(RECORDED_MC.replace("{accept: {label: review.label}}", '{accept: {label: ["a", "c"]}}'),
                     encoding="utf-8")
    (group,) = p.json("replay", str(other), "--json")["rules"]  # another set still differs, in its values
    assert (group["rule"], group["changed"], group["value_changes"]) == \
        ("same set", 1, [{"change": "label changed", "count": 1}]), group


# ---------------------------------------------------------------- 3. gold answers to numbers within the tolerance

GOLD_NUMBERS = """\
workflow: gn
labels: {labels}
queues:
  triage: {{roles: [annotator]}}
quality:
  gold: {{rate: 1.0}}
on_create:
  - do: {{annotate: triage}}
on_quorum:
  - do: accept
"""
SCALE = "{type: number, min: 0, max: 10}"  # tolerance 0.5 (5% of the range)


def gold_project(tmp_path: Path, answers: dict[str, Any], labels: str = SCALE, gold: Any = 3.0):
    """Each of ``answers``' workers answers the gold question G1 (answer ``gold``) with their value."""
    from lead_support import Project

    p = Project(tmp_path, GOLD_NUMBERS.format(labels=labels))
    (p.folder / "gold.jsonl").write_text(json.dumps({"id": "G1", "data": {}, "answer": gold}) + "\n")
    assert p.json("gold", "add", str(p.folder / "gold.jsonl"))["added"] == 1
    for worker, value in answers.items():
        p.worker(worker, "annotator")
        view = p.claim(worker)
        assert view["external_id"] == "G1"
        p.submit(view["assignment"], worker, "--value", json.dumps(value))
    return p


def gold_counters(p) -> dict[str, tuple[int, int]]:
    """Each worker's (gold answered, gold correct) as ``labelyard agreement`` reports the kept counters."""
    return {a["worker"]: (a["gold_answered"], a["gold_correct"]) for a in p.json("agreement")["annotators"]
            if a["gold_answered"]}


def test_a_gold_answer_to_a_number_is_right_within_the_consensus_tolerance(tmp_path):
    p = gold_project(tmp_path, {"near": 3.1, "edge": 3.5, "far": 3.6, "exact": 3})
    # before: near 3.1 and edge 3.5 scored wrong against the gold 3.0 (exact value only)
    assert gold_counters(p) == {"near": (1, 1), "edge": (1, 1), "far": (1, 0), "exact": (1, 1)}


def test_gold_list_and_a_leads_show_score_numbers_as_the_counters_do(tmp_path):
    p = gold_project(tmp_path, {"near": 3.1, "far": 3.6})
    assert p.json("gold", "list", "--json")["questions"][0]["right"] == 1  # same_label said 0: 3.1 is not 3.0
    marks = {a["worker"]: a["gold_right"] for a in p.json("show", "G1", "--json")["annotations"]}
    assert marks == {"near": True, "far": False}


def test_without_a_range_the_tolerance_is_five_percent_of_the_gold_answer(tmp_path):
    p = gold_project(tmp_path, {"near": 3.1, "far": 3.2}, labels="{type: number}")  # 0.15 of 3.0
    assert gold_counters(p) == {"near": (1, 1), "far": (1, 0)}


def test_gold_add_and_apply_score_numbers_again_within_the_tolerance(tmp_path):
    p = gold_project(tmp_path, {"ann": 3.4})
    assert gold_counters(p) == {"ann": (1, 1)}
    (p.folder / "gold.jsonl").write_text(json.dumps({"id": "G1", "data": {}, "answer": 3.8}) + "\n")
    assert p.json("gold", "add", str(p.folder / "gold.jsonl"))["updated"] == 1
    assert gold_counters(p) == {"ann": (1, 1)}  # 0.4 from the new answer: still right (it was wrong by value)
    (p.folder / "narrow.workflow.yaml").write_text(GOLD_NUMBERS.format(labels="{type: number, min: 0, max: 4}"))
    p.run_ok("apply", str(p.folder / "narrow.workflow.yaml"))  # tolerance 0.2
    assert gold_counters(p) == {"ann": (1, 0)}
    assert [(d["gold_correct"], d["was"]["gold_correct"], "version" in d) for d in rescored(p)] == [(0, 1, True)]


def rescored(p) -> list[dict]:
    """The details of the ``gold_rescored`` events, oldest first."""
    import sqlite3

    with sqlite3.connect(p.db) as conn:
        return [json.loads(d) for (d,) in conn.execute("SELECT detail FROM events WHERE kind = 'gold_rescored' "
                                                       "ORDER BY id")]


def scored_by_value_before_m018(p, correct: dict[str, int]) -> None:
    """Set the workers' gold_correct to ``correct`` (as a Labelyard scoring numbers by value left them)
    and forget that m018 ran, as the upgrade tests fake an older database."""
    import sqlite3

    conn = sqlite3.connect(p.db, isolation_level=None)
    try:
        for worker, n in correct.items():
            conn.execute("UPDATE workers SET gold_correct = ? WHERE id = ?", (n, worker))
        conn.execute("UPDATE schema_version SET version = 17")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm018_number_gold_within_tolerance'")
    finally:
        conn.close()


def test_init_scores_gold_answers_to_numbers_again_within_the_tolerance(tmp_path):
    from router import migrations

    p = gold_project(tmp_path, {"near": 3.1, "far": 3.6, "exact": 3})
    scored_by_value_before_m018(p, {"near": 0, "far": 0, "exact": 1})
    assert p.json("init")["migrations_applied"] == ["m018_number_gold_within_tolerance"]
    assert gold_counters(p) == {"near": (1, 1), "far": (1, 0), "exact": (1, 1)}
    assert [(d["worker"], d["gold_correct"], d["was"]["gold_correct"], d["migration"]) for d in rescored(p)] == \
        [("near", 1, 0, "m018_number_gold_within_tolerance")]
    import sqlite3

    with sqlite3.connect(p.db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (migrations.SCHEMA_VERSION,)
    assert migrations.SCHEMA_VERSION >= 18
    assert p.json("init")["migrations_applied"] == []  # and stays migrated


def test_init_leaves_gold_scores_of_other_label_types_as_they_are(tmp_path):
    p = gold_project(tmp_path, {"ann": "b"}, labels="{type: choice, choices: [a, b]}", gold="a")
    scored_by_value_before_m018(p, {"ann": 1})  # a count m018 has no reason to touch
    assert p.json("init")["migrations_applied"] == ["m018_number_gold_within_tolerance"]
    assert gold_counters(p) == {"ann": (1, 1)} and rescored(p) == []
