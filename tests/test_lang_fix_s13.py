"""Fixes of the thirteenth session in the workflow language.

A ``multi_choice`` vote or review label is stored and seen as a set in choice order; ``on_timer``
rules are passed over as the tick passes them (no "never match" warning, ``labelyard test``
decides as the tick does); numbers in rule tests and replay compare exactly as integers;
invalid queue names are reported at their key, in words; ``\\r`` and ``\\u`` escapes in
expression text; names in "undefined queue" messages written out; ``\\p{L}`` classes in
``matches()``; ``workers list`` shows flagged workers and ``workers set --unflag`` clears the flag.

The CLI runs as a real ``labelyard`` subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from lead_support import Project


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# ---------------------------------------------------------------- 1. multi_choice votes and reviews as sets

MULTI_REVIEW = """\
workflow: mcr
labels: {type: multi_choice, choices: [a, b, c]}
queues:
  q: {roles: [annotator]}
  r: {roles: [reviewer]}
on_create:
  - name: d
    do: {annotate: q, overlap: 1}
on_quorum:
  - name: check
    do: {review: r}
on_review:
  - name: reviewer changed the label
    when: review.label != null and review.label != votes.top
    do: {hold: "the reviewer changed the label; a lead looks"}
  - name: same set
    when: review.label == ["b", "c"] and votes.labels == [["b", "c"]]
    do: accept
  - name: other
    do: {hold: "not the set"}
"""


def test_a_reviewers_multi_choice_label_in_another_order_is_the_same_set(tmp_path):
    p = Project(tmp_path, MULTI_REVIEW)
    p.worker("ann", "annotator")
    p.worker("rev", "reviewer")
    p.ingest([{"id": "M2", "data": {}}])
    vote = p.claim("ann")
    p.submit(vote["assignment"], "ann", "--value", json.dumps(["c", "b", "c"]))
    review = p.claim("rev")
    assert review["votes"] == [{"worker": "ann", "label": ["b", "c"]}]  # the stored form
    decided = p.submit(review["assignment"], "rev", "--value", json.dumps(["c", "b"]))
    assert decided["decision"]["rule"] == "same set", decided
    shown = p.show("M2")
    assert [a["label"] for a in shown["annotations"]] == [["b", "c"], ["b", "c"]]
    assert shown["task"]["status"] == "done" and shown["task"]["final_label"] == ["b", "c"]
    explained = p.run_ok("explain", "M2").stdout
    assert 'submitted by rev: label ["b", "c"], approve' in explained
    assert '["c", "b"]' not in explained


def test_a_rule_test_sees_a_multi_choice_review_label_and_votes_as_sets(run, tmp_path):
    write(tmp_path, "mcr.workflow.yaml", MULTI_REVIEW)
    path = write(tmp_path, "mcr.test.yaml", """\
        cases:
          - name: another order is the same set
            event: on_review
            facts:
              votes: {labels: [[c, b, b]]}
              review: {verdict: approve, label: [c, b]}
            expect: {rule: same set, action: accept}
        """)
    proc = run("test", path)
    assert proc.returncode == 0, proc.stdout
    assert "PASS" in proc.stdout and "FAIL" not in proc.stdout


# ---------------------------------------------------------------- 2/3. on_timer rules passed over, in validate and test

TIMERS = """\
workflow: unc
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
  x: {roles: [expert]}
on_create:
  - name: d
    do: {annotate: q}
on_timer:
  - name: give every slot back
    do: release
  - name: late
    when: task.stage_age > 1h
    do: {hold: late}
  - name: sla missed
    do: {hold: "SLA missed"}
"""


def test_validate_does_not_say_a_rule_after_an_unconditional_on_timer_rule_never_matches(run, tmp_path):
    path = write(tmp_path, "unc.workflow.yaml", TIMERS)
    proc = run("validate", "--strict", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "never match" not in proc.stdout + proc.stderr
    on_create = write(tmp_path, "c.workflow.yaml", TIMERS.replace("    do: {annotate: q}\n",
                                                                   "    do: {annotate: q}\n  - do: {hold: x}\n"))
    proc = run("validate", on_create)  # other sections still warn
    assert f"{on_create}:9:5: warning: this rule can never match: rule 1 of on_create has no `when`" in proc.stderr


def test_an_on_timer_case_is_decided_as_the_tick_decides(run, tmp_path):
    write(tmp_path, "unc.workflow.yaml", TIMERS)
    path = write(tmp_path, "unc.test.yaml", """\
        cases:
          - name: a task on its own, late
            event: on_timer
            facts: {task: {stage_age: 2h}}
            expect: {rule: late, action: hold}
          - name: a slot
            event: on_timer
            facts: {task: {stage_age: 2h}, assignment: {age: 1h, worker: a1, kind: annotate}}
            expect: {rule: give every slot back, action: release}
          - name: a gold task is not moved
            event: on_timer
            facts: {task: {stage_age: 2h, gold: true}}
            expect: {rule: null, action: none}
          - name: on time
            event: on_timer
            facts: {task: {stage_age: 30m}}
            expect: {rule: sla missed}
          - name: expects the release without a slot
            event: on_timer
            facts: {task: {stage_age: 2h}}
            expect: {rule: give every slot back}
        """)
    proc = run("test", path)
    assert proc.returncode == 1, proc.stdout
    out = proc.stdout
    for line in (2, 6, 10, 14):
        assert f"PASS  {path}:{line}:" in out, out
    assert f"FAIL  {path}:18: expects the release without a slot" in out
    assert ("why not `give every slot back`: it matches, but a tick passes it over: a `release` with no slot "
            "to release (a task looked at on its own: no `assignment.*`)") in out
    assert "1 of 4 rules not exercised by any case" in out and "on_create `d`" in out  # every on_timer rule ran

    # the tick, on a task without a slot two hours into its stage, holds it by `late`, as the case says
    p = Project(tmp_path / "p", TIMERS)
    p.ingest([{"id": "T1", "data": {}}])
    p.run_ok("tick", hours=2)
    task = p.show("T1")["task"]
    assert (task["status"], task["reason"]) == ("held", "late")


# ---------------------------------------------------------------- 4. numbers in rule tests and replay

DEADLINE = """\
workflow: tol
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: by deadline
    do: {annotate: q, priority: PRIORITY - task.data.due}
"""


def test_same_value_compares_whole_numbers_exactly_and_floats_within_rounding():
    from rules.testing import same_value

    assert not same_value(-1735689601, -1735689600)
    assert not same_value(-1735689601, -1735689600.0) and not same_value(1e9 + 1, 1e9)
    assert same_value(7200, 7200.0) and same_value(0.3, 0.1 + 0.2) and same_value(0.38, 1 - 0.62)
    assert same_value(1e-10, 0) and not same_value(1e-8, 0)  # the absolute 1e-9, near zero
    assert not same_value(1735689600.5, 1735689600.25)  # a quarter off is no rounding
    assert not same_value(10**400, 1.0) and same_value(10**400, 10**400) and not same_value(True, 1)


def test_a_rule_test_with_a_priority_one_off_fails(run, tmp_path):
    write(tmp_path, "tol.workflow.yaml", DEADLINE.replace("PRIORITY", "0"))
    path = write(tmp_path, "tol.test.yaml", """\
        cases:
          - name: priority is minus the deadline
            event: on_create
            facts: {task: {data: {due: 1735689600}}}
            expect: {rule: by deadline, values: {priority: -1735689601}}
          - name: exactly
            event: on_create
            facts: {task: {data: {due: 1735689600}}}
            expect: {rule: by deadline, values: {priority: -1735689600.0}}
        """)
    proc = run("test", path)
    assert proc.returncode == 1, proc.stdout
    assert (f"FAIL  {path}:2: priority is minus the deadline\n"
            "      - values.priority: -1735689601\n"
            "      + values.priority: -1735689600\n") in proc.stdout
    assert f"PASS  {path}:6: exactly" in proc.stdout


def test_replay_sees_a_priority_one_off(tmp_path):
    p = Project(tmp_path, DEADLINE.replace("PRIORITY", "1"))
    p.ingest([{"id": "D1", "data": {"due": 1735689600}}])
    candidate = write(tmp_path, "c.workflow.yaml", DEADLINE.replace("PRIORITY", "0"))
    report = p.json("replay", candidate)
    assert report["changed"] == 1, report
    assert "no decision would differ" not in p.run_ok("replay", candidate).stdout


# ---------------------------------------------------------------- 5. names and repeated choices, at their place, in words

def test_bad_queue_names_are_reported_at_their_own_key_in_words(run, tmp_path):
    path = write(tmp_path, "e3.workflow.yaml", """\
        workflow: "bad name"
        labels: {type: choice, choices: [a, b, a, b]}
        queues:
          good: {roles: [annotator]}
          fine: {roles: [annotator]}
          "bad name": {roles: [annotator]}
          ok2: {roles: [annotator]}
          "_under": {roles: [annotator]}
          "q\\e]0;x\\a": {roles: [annotator]}
        on_create:
          - do: {annotate: good}
        """)
    proc = run("validate", path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines() + proc.stderr.splitlines()
    allowed = "may hold only letters, digits, `_` and `-`, starting with a letter or digit"
    assert f"{path}:6:3: queue name `bad name` {allowed} (it holds a space)" in lines
    assert f"{path}:8:3: queue name `_under` {allowed} (it starts with `_`)" in lines
    assert f"{path}:9:3: queue name `q\\x1b]0;x\\x07` {allowed} (it holds \\x1b)" in lines
    assert (f"{path}:1:11: workflow name `bad name` may hold only letters, digits, `_`, `.` and `-`, "
            "starting with a letter or digit (it holds a space)") in lines
    assert f"{path}:2:40: `labels.choices`: `a` is listed twice (first at 2:34)" in lines
    assert f"{path}:2:43: `labels.choices`: `b` is listed twice (first at 2:37)" in lines
    assert not any(":4:3:" in line or "does not match" in line or "non-unique" in line for line in lines), lines


# ---------------------------------------------------------------- 6. \r and \u escapes in expression text

def test_r_and_u_escapes_are_characters_and_patterns_keep_their_backslashes():
    from rules.expr import ExpressionError, compile_expression

    def value(src: str) -> object:
        return compile_expression(src).evaluate({"task": {"data": {"s": "line\r\nnext café 12"}}})

    assert value(r'"\r\n"') == "\r\n" and value(r"'a\rb'") == "a\rb"
    assert value(r'"caf\u00e9"') == "café" and value(r'"\u{1F600}"') == "😀" and value(r'"\ud83d\ude00"') == "😀"
    assert value(r'"\\u00e9"') == "\\u00e9" and value(r'"\d+"') == "\\d+"
    assert value(r'"\r\n" in task.data.s') is True and value(r'"caf\u00e9" in task.data.s') is True
    assert value(r'matches(task.data.s, "\d\d$")') is True and value(r'matches(task.data.s, "caf\u00e9")') is True
    assert value(r'matches(task.data.s, "\bnext\b")') is True
    for src, offset in ((r'"\u12"', 1), (r'"ab\ud800"', 3), (r'"\u{110000}"', 1), (r'"\u"', 1)):
        try:
            compile_expression(src)
        except ExpressionError as exc:
            assert exc.offset == offset, (src, exc.offset)
        else:
            raise AssertionError(f"{src} compiled")
    assert compile_expression(r'"\u12"', strict=False).evaluate({}) == "\\u12"  # a stored version keeps loading


def test_a_rule_test_matches_crlf_and_a_u_escape(run, tmp_path):
    write(tmp_path, "r.workflow.yaml", """\
        workflow: r
        labels: {type: choice, choices: [a, b]}
        queues:
          q: {roles: [annotator]}
        on_create:
          - name: windows line end
            when: '"\\r\\n" in task.data.text'
            do: {hold: "CRLF text"}
          - name: unicode
            when: task.data.name == "caf\\u00e9"
            do: {hold: "cafe"}
          - name: d
            do: {annotate: q}
        """)
    path = write(tmp_path, "r.test.yaml", """\
        cases:
          - name: crlf
            event: on_create
            facts: {task: {data: {text: "line\\r\\nnext"}}}
            expect: {rule: windows line end}
          - name: cafe
            event: on_create
            facts: {task: {data: {name: "café"}}}
            expect: {rule: unicode}
        """)
    proc = run("test", "-v", path)
    assert proc.returncode == 0, proc.stdout
    assert 'task.data.name = "café" == "caf\\u00e9" → true' in proc.stdout
    bad = write(tmp_path, "bad.workflow.yaml", """\
        workflow: r
        labels: {type: choice, choices: [a, b]}
        queues:
          q: {roles: [annotator]}
        on_create:
          - when: task.data.name == "caf\\u0e9"
            do: {annotate: q}
        """)
    proc = run("validate", bad)
    assert proc.returncode == 1
    assert f"{bad}:6:33: `\\u` is a character's code: four hex digits" in proc.stderr


# ---------------------------------------------------------------- 7. queue names in "undefined queue" written out

def test_undefined_queue_lists_and_hints_write_names_out(run, tmp_path):
    listed = write(tmp_path, "e4.workflow.yaml", """\
        workflow: esc
        labels: {type: choice, choices: [a, b]}
        queues:
          "triage\\nfake.yaml:1:1: all good": {roles: [annotator]}
          "z\\u2028": {roles: [annotator]}
        on_create:
          - do: {annotate: nope}
        """)
    hinted = write(tmp_path, "e5.workflow.yaml", """\
        workflow: esc
        labels: {type: choice, choices: [a, b]}
        queues:
          "triage\\n": {roles: [annotator]}
        on_create:
          - do: {annotate: triage}
        """)
    out = run("validate", listed).stderr
    assert f"{listed}:7:20: undefined queue `nope` (queues: triage\\x0afake.yaml:1:1: all good, z\\u2028)\n" in out
    assert "\u2028" not in out and "\nfake.yaml" not in out
    out = run("validate", hinted).stderr
    assert f"{hinted}:6:20: undefined queue `triage`; did you mean `triage\\x0a`?\n" in out


def test_why_not_names_the_expected_rule_written_out(run, tmp_path):
    write(tmp_path, "w.workflow.yaml", """\
        workflow: w
        labels: {type: choice, choices: [a, b]}
        queues:
          q: {roles: [annotator]}
        on_create:
          - name: first
            do: {annotate: q}
          - name: "r\\e[2J\\u2028x"
            when: task.data.x == 1
            do: {hold: x}
        """)
    path = write(tmp_path, "w.test.yaml", """\
        cases:
          - name: c
            event: on_create
            facts: {task: {data: {x: 1}}}
            expect: {rule: "r\\e[2J\\u2028x"}
        """)
    report = json.loads(run("test", "--json", path).stdout)
    trace = report["suites"][0]["cases"][0]["expected_trace"]
    assert trace[0].startswith("why not `r\\x1b[2J\\u2028x`: task.data.x == 1 → true"), trace


# ---------------------------------------------------------------- 8. Unicode classes in matches()

def test_unicode_classes_pass_the_pattern_size_limit_and_blow_ups_do_not(run, tmp_path):
    from rules.expr import ExpressionError, compile_expression

    def refused(pattern: str) -> str | None:
        try:
            compile_expression(f'matches(task.data.s, "{pattern}")')
        except ExpressionError as exc:
            return str(exc)
        return None

    for pattern in (r"\p{L}", r"\pL", r"\P{L}", r"(?i)\p{L}+", r"^[\p{L}\p{N} ]+$", r"\p{L}{3}", r"[^\p{L}]",
                    r"(\p{L}|\p{N}){5}"):
        assert refused(pattern) is None, (pattern, refused(pattern))
    assert compile_expression(r'matches(task.data.s, "^\p{L}+$")').evaluate({"task": {"data": {"s": "Ωmega"}}})
    assert not compile_expression(r'matches(task.data.s, "^\p{L}+$")').evaluate({"task": {"data": {"s": "a1"}}})
    big = refused(r"\p{L}{10}")
    assert big == ("the pattern is too large: with its Unicode classes (`\\p{L}`) it compiles to 11,964 RE2 "
                   "instructions, more than 10,000 (`\\p{L}` alone is 1,200; a counted repeat multiplies a class: "
                   "`\\p{L}{3}` is about 3,600)")
    assert refused(r"\p{N}[^x]{200}").startswith("the pattern is too large: counting each Unicode class as one "
                                                 "character, it compiles to 1,605 RE2 instructions, more than 1,000")
    assert "counted repeats multiply it" in refused("[^x]{1000}")
    assert refused("." * 200) == ("the pattern is too large: it compiles to 1,604 RE2 instructions, more than 1,000 "
                                  "(each character, class and group adds to it)")  # no repeat in it: none blamed
    assert refused(r"\p{L}{1000}").startswith("the pattern is too large for RE2 to build")
    from rules.expr import _unicode_classes

    assert _unicode_classes(r"\\p{L}\p{N}[\PL]") == (r"\\p{L}a[a]", [r"\p{N}", r"\PL"])  # `\\p`: a backslash

    path = write(tmp_path, "re.workflow.yaml", """\
        workflow: re
        labels: {type: choice, choices: [a, b]}
        queues:
          q: {roles: [annotator]}
        on_create:
          - name: letters
            when: 'matches(task.data.name, "^\\p{L}+$")'
            do: {annotate: q}
          - do: {hold: x}
        """)
    proc = run("validate", path)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- 9. flagged workers in `workers list`; unflag from the CLI

FLAGGING = """\
workflow: wk
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: d
    do: {annotate: q}
on_worker:
  - name: first vote
    when: worker.submitted >= 1 and not worker.flagged and worker.id == "ann"
    do: {flag: true, reason: "new"}
"""


def test_workers_list_shows_a_flag_and_workers_set_clears_it_with_its_event(tmp_path):
    import sqlite3

    p = Project(tmp_path, FLAGGING)
    p.worker("ann", "annotator")
    p.worker("bob", "annotator")
    p.ingest([{"id": "W1", "data": {}}])
    p.submit(p.claim("ann")["assignment"], "ann", "--label", "a")
    listed = {line.split()[0]: line for line in p.run_ok("workers", "list").stdout.splitlines()}
    assert listed["ann"].endswith(" flagged") and not listed["bob"].endswith(" flagged")
    assert [w["flagged"] for w in p.json("workers", "list") if w["id"] == "ann"] == [True]

    out = p.run_ok("workers", "set", "ann", "--unflag", "--as", "lena", hours=1).stdout
    assert out == "ann: roles=annotator skills=- capacity=-\n"
    assert not p.run_ok("workers", "list").stdout.splitlines()[0].endswith("flagged")
    out = p.run_ok("workers", "set", "ann", "--unflag").stdout
    assert out.startswith("ann is not flagged; the flag is unchanged\n")
    p.run_ok("workers", "set", "bob", "--flag", "--skill", "vet")
    assert p.run_ok("workers", "list").stdout.splitlines()[1].startswith("bob") and "flagged" in \
        p.run_ok("workers", "list").stdout.splitlines()[1]
    refused = p.run("workers", "set", "bob", "--unflag", "--as", "bob")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr  # only a lead changes workers

    with sqlite3.connect(p.db) as conn:
        events = conn.execute("SELECT kind, actor, action, rule, detail FROM events WHERE kind LIKE 'worker_%flagged' "
                              "ORDER BY id").fetchall()
    assert [(kind, actor, action, rule) for kind, actor, action, rule, _ in events] == [
        ("worker_flagged", "labelyard", "flag", "first vote"),
        ("worker_unflagged", "lena", "unflag", None),
        ("worker_flagged", "lena", "flag", None)]
    assert json.loads(events[1][4]) == {"worker": "ann"}
