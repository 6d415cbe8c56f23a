"""``explain`` and ``replay`` name the workflow of a version applied with ``--replace``.

A task created under workflow ``t`` v1 and decided under ``u`` v1 (applied with ``--replace``) was
explained as "created under workflow t v1; later decisions under v1" and "(workflow v1)": the
version number alone, read as t's. ``--json`` had only ``workflow_version``. ``replay``'s header
named the active workflow alone ("recorded decisions of u v1") when most were taken under ``t``.

Real SQLite file, the real ``labelyard`` command (``run`` fixture, ``LABELYARD_NOW`` fixed).
"""

from __future__ import annotations

T1 = """\
workflow: t
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
on_create: [{name: all, do: {annotate: triage, overlap: 2}}]
on_quorum:
  - {name: agree, when: votes.unanimous, do: accept}
  - {name: split, do: {hold: split}}
"""
T2 = T1.replace("do: {hold: split}", "do: {hold: split votes}")
U1 = T1.replace("workflow: t", "workflow: u")


def vote(run, task_votes: dict[str, tuple[str, str]]) -> None:
    for worker in ("ann1", "ann2"):
        for _ in task_votes:
            claim = run.json("claim", "--as", worker, "--json")
            run.ok("submit", claim["assignment"], "--as", worker, "--label", task_votes[claim["external_id"]][
                0 if worker == "ann1" else 1])


def history(run, tmp_path) -> None:
    """X1 decided under t v1; X2 and X3 created under t v1, decided under u v1 (applied with --replace)."""
    for name, text in (("t1", T1), ("u1", U1)):
        (tmp_path / f"{name}.workflow.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "one.jsonl").write_text('{"id": "X1"}\n', encoding="utf-8")
    (tmp_path / "two.jsonl").write_text('{"id": "X2"}\n{"id": "X3"}\n', encoding="utf-8")
    run.ok("init")
    run.ok("apply", "t1.workflow.yaml")
    for worker in ("ann1", "ann2"):
        run.ok("workers", "add", worker, "--role", "annotator")
    run.ok("ingest", "one.jsonl")
    vote(run, {"X1": ("a", "a")})
    run.ok("ingest", "two.jsonl")
    run.ok("apply", "u1.workflow.yaml", "--replace")
    vote(run, {"X2": ("b", "b"), "X3": ("a", "b")})


def test_explain_names_the_workflow_of_a_replacing_version(run, tmp_path):
    history(run, tmp_path)
    lines = run.ok("explain", "X2").stdout.splitlines()
    assert lines[1] == "created under workflow t v1; later decisions under u v1"
    assert any(line.strip() == "on_quorum: rule `agree` → accept (workflow u v1)" for line in lines), lines
    decided = [e["decision"] for e in run.json("explain", "X2", "--json")["events"] if e.get("decision")]
    assert [(d["section"], d.get("workflow"), d.get("workflow_version")) for d in decided] == [
        ("on_create", None, None), ("on_quorum", "u", 1)]


def test_explain_keeps_the_version_alone_when_one_workflow_took_every_decision(run, tmp_path):
    (tmp_path / "t2.workflow.yaml").write_text(T2, encoding="utf-8")
    history(run, tmp_path)
    lines = run.ok("explain", "X1").stdout.splitlines()
    assert lines[1] == "created under workflow t v1"
    assert not any("(workflow" in line for line in lines)
    (tmp_path / "three.jsonl").write_text('{"id": "X4"}\n', encoding="utf-8")
    run.ok("apply", "t1.workflow.yaml", "--replace")  # t again: a new version of t
    run.ok("ingest", "three.jsonl")
    run.ok("apply", "t2.workflow.yaml")
    vote(run, {"X4": ("a", "b")})
    lines = run.ok("explain", "X4").stdout.splitlines()
    assert lines[1] == "created under workflow t v2; later decisions under v3"
    assert any(line.strip() == "on_quorum: rule `split` → hold (workflow v3)" for line in lines), lines
    [quorum] = [e["decision"] for e in run.json("explain", "X4", "--json")["events"]
                if (e.get("decision") or {}).get("section") == "on_quorum"]
    assert (quorum["workflow"], quorum["workflow_version"]) == ("t", 3)


def test_replay_names_each_workflow_that_took_the_decisions(run, tmp_path):
    history(run, tmp_path)
    result = run.json("replay", "u1.workflow.yaml", "--json")
    assert result["recorded"] == {"name": "u", "version": 1}  # the active version, as before
    assert result["recorded_under"] == [{"name": "t", "version": 1, "decisions": 4},
                                        {"name": "u", "version": 1, "decisions": 2}]
    head = run.ok("replay", "u1.workflow.yaml").stdout.splitlines()[0]
    assert head == "replayed 6 recorded decisions of t v1 (4), u v1 (2) against u (u1.workflow.yaml)"
