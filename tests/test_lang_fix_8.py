"""Fixes of the eighth session in the workflow language: `labelyard test` derives `votes.*` with the
engine's type-aware consensus, refuses `task.id` in on_create cases, the docs' `when:` examples are
valid YAML, and `submit` says "no rule matched" instead of rule `None`.

Rule tests and engine run through the real ``labelyard`` command on a real SQLite file.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import yaml

DOCS = Path(__file__).resolve().parent.parent / "docs" / "workflow-language.md"

NUMBER_WORKFLOW = """\
workflow: w
labels: {type: number, min: 0, max: 10}
queues: {q: {roles: [annotator]}}
on_create: [{name: all, do: {annotate: q, overlap: 3}}]
on_quorum:
  - {name: median four, when: votes.top == 4, do: accept}
  - {name: other, do: {hold: "not four"}}
"""

MULTI_WORKFLOW = """\
workflow: m
labels: {type: multi_choice, choices: [a, b, c]}
queues: {q: {roles: [annotator]}}
on_create: [{name: all, do: {annotate: q, overlap: 2}}]
on_quorum:
  - {name: same set, when: votes.unanimous, do: accept}
  - {name: other, do: {hold: "split"}}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def vote_all(run, values: list[str], flag: str = "--value") -> None:
    for n, value in enumerate(values, 1):
        run.ok("workers", "add", f"u{n}", "--role", "annotator")
    for n, value in enumerate(values, 1):
        claim = run.json("claim", "--as", f"u{n}", "--json")
        run.ok("submit", claim["assignment"], "--as", f"u{n}", flag, value)


def test_number_votes_in_a_case_take_the_median_as_the_engine_does(run, tmp_path):
    write(tmp_path, "w.workflow.yaml", NUMBER_WORKFLOW)
    write(tmp_path, "w.test.yaml", """\
        cases:
          - {name: three numbers, event: on_quorum, facts: {votes: {labels: [3, 4, 5]}}, expect: {rule: median four}}
        """)
    report = run("test", "w.test.yaml", "--json")
    assert report.returncode == 0, report.stdout
    # the engine, for real: the same votes make the same rule fire
    run.ok("init")
    run.ok("apply", "w.workflow.yaml")
    (tmp_path / "t.jsonl").write_text('{"id": "N1"}\n')
    run.ok("ingest", "t.jsonl")
    vote_all(run, ["3", "4", "5"])
    task = run.json("show", "N1", "--json")["task"]
    assert (task["status"], task["final_rule"], task["final_label"]) == ("done", "median four", 4)


def test_multi_choice_votes_in_another_order_are_unanimous_in_a_case_as_for_real(run, tmp_path):
    write(tmp_path, "m.workflow.yaml", MULTI_WORKFLOW)
    write(tmp_path, "m.test.yaml", """\
        cases:
          - {name: same set, event: on_quorum, facts: {votes: {labels: [[a, b], [b, a]]}}, expect: {rule: same set}}
        """)
    assert run("test", "m.test.yaml").returncode == 0
    run.ok("init")
    run.ok("apply", "m.workflow.yaml")
    (tmp_path / "t.jsonl").write_text('{"id": "M1"}\n')
    run.ok("ingest", "t.jsonl")
    vote_all(run, ['["a", "b"]', '["b", "a"]'])
    assert run.json("show", "M1", "--json")["task"]["final_rule"] == "same set"


def test_a_case_label_the_type_cannot_hold_is_an_error_at_its_facts(run, tmp_path):
    write(tmp_path, "w.workflow.yaml", NUMBER_WORKFLOW)
    write(tmp_path, "w.test.yaml", """\
        cases:
          - {name: bad, event: on_quorum, facts: {votes: {labels: [3, "x"]}}, expect: {rule: other}}
        """)
    proc = run("test", "w.test.yaml")
    assert proc.returncode == 1
    assert re.search(r"w\.test\.yaml:2:\d+: `votes\.labels\[1\]`: label \"x\" is not a finite number", proc.stdout)


def test_an_on_create_case_cannot_give_task_id(run, tmp_path):
    write(tmp_path, "i.workflow.yaml", """\
        workflow: i
        labels: {type: choice, choices: [a, b]}
        queues: {q: {roles: [annotator]}}
        on_create:
          - {name: has id, when: task.id != null, do: {annotate: q}}
          - {name: no id, do: {hold: "task.id was null"}}
        """)
    write(tmp_path, "i.test.yaml", """\
        cases:
          - {name: with id, event: on_create, facts: {task: {id: 1, external_id: I1}}, expect: {rule: has id}}
          - {name: as for real, event: on_create, facts: {task: {external_id: I1}}, expect: {rule: no id}}
        """)
    proc = run("test", "i.test.yaml")
    assert proc.returncode == 1
    assert "ERROR i.test.yaml:2: with id" in proc.stdout
    assert "`task.id` is null in on_create" in proc.stdout
    assert "PASS  i.test.yaml:3: as for real" in proc.stdout


def test_every_when_example_in_the_docs_is_valid_yaml():
    whens = [line.strip() for line in DOCS.read_text(encoding="utf-8").splitlines()
             if line.strip().startswith("when: ")]
    assert len(whens) > 10
    for line in whens:
        parsed = yaml.safe_load(line)
        assert isinstance(parsed, dict) and isinstance(parsed["when"], str), line


def test_submit_without_a_matching_rule_says_so(run, tmp_path):
    write(tmp_path, "n.workflow.yaml", """\
        workflow: n
        labels: {type: choice, choices: [a, b]}
        queues: {q: {roles: [annotator]}}
        on_create: [{do: {annotate: q}}]
        on_quorum: [{name: never, when: votes.count > 5, do: accept}]
        """)
    run.ok("init")
    run.ok("apply", "n.workflow.yaml")
    (tmp_path / "t.jsonl").write_text('{"id": "T1"}\n')
    run.ok("ingest", "t.jsonl")
    run.ok("workers", "add", "u1", "--role", "annotator")
    claim = run.json("claim", "--as", "u1", "--json")
    out = run.ok("submit", claim["assignment"], "--as", "u1", "--label", "a").stdout
    assert "no rule matched → hold" in out and "None" not in out


def test_a_quoted_epoch_now_is_read_as_labelyard_now_reads_it_and_years_past_9999_are_refused(run, tmp_path):
    write(tmp_path, "t.workflow.yaml", """\
        workflow: t
        labels: {type: choice, choices: [a, b]}
        queues: {q: {roles: [annotator]}}
        on_create: [{do: {annotate: q}}]
        on_timer:
          - {name: new year, when: now >= 1735689600, do: {hold: "new year"}}
        """)
    write(tmp_path, "t.test.yaml", """\
        cases:
          - {name: quoted epoch, event: on_timer, facts: {now: "1735689600"}, expect: {rule: new year}}
          - {name: quoted before, event: on_timer, facts: {now: "1735689599"}, expect: {rule: null}}
          - {name: year zero, event: on_timer, facts: {now: "0001-01-01T00:30+01:00"}, expect: {rule: null}}
        """)
    proc = run("test", "t.test.yaml")
    assert "PASS  t.test.yaml:2: quoted epoch" in proc.stdout
    assert "PASS  t.test.yaml:3: quoted before" in proc.stdout
    assert "ERROR t.test.yaml:4: year zero" in proc.stdout and "outside 0001-01-02T00:00:00Z to 9999-12-30T00:00:00Z" in proc.stdout


def test_demo_sizes_are_bounded(run, tmp_path):
    for option, value in (("--tasks", "-5"), ("--tasks", "99999999999999999999"), ("--steps", "-1")):
        proc = run("demo", "--dir", str(tmp_path / "d"), option, value)
        assert proc.returncode == 2 and "is not in the range" in proc.stderr, proc.stderr
    assert not (tmp_path / "d").exists()
