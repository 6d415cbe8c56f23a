"""Fixes of the ninth session in the workflow language.

YAML tags that build dates or bytes, lone UTF-16 surrogates written as `\\u` escapes, aliases that
repeat long texts, regular expressions that compile to huge programs, quadratic joins of text,
conditions that fail for every task because a fact's type is fixed, an `accept` whose constant label
is null, and `when: true` taken for a condition.

The CLI runs as a real ``labelyard`` subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from rules.diagnostics import WorkflowInvalid
from rules.loader import MAX_TEXT, load_document

HEAD = """\
workflow: w
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as info:
        load_document(text, "w.workflow.yaml")
    return [str(d) for d in info.value.diagnostics]


# ---------------------------------------------------------------- YAML tags on scalars

def test_a_timestamp_or_binary_tag_is_refused_where_it_is_written_as_other_tags_are():
    assert errors_of("workflow: w\ndescription: !!timestamp 2020-01-01\n") == [
        "w.workflow.yaml:2:14: YAML: tag `tag:yaml.org,2002:timestamp` is not allowed"]
    assert errors_of("a: [x, !!binary aGVsbG8=]\n? !!timestamp 2020-01-01\n: 1\n") == [
        "w.workflow.yaml:1:8: YAML: tag `tag:yaml.org,2002:binary` is not allowed",
        "w.workflow.yaml:2:3: YAML: tag `tag:yaml.org,2002:timestamp` is not allowed"]
    # JSON's own values keep their tags; a plain date stays text, and so do a plain `=` and `<<`
    doc = load_document("a: [!!str 5, !!int 5, !!float 5, !!bool true, !!null '', 2020-01-01, =, <<]\n", "w.yaml")
    assert doc.data == {"a": ["5", 5, 5.0, True, None, "2020-01-01", "=", "<<"]}


def test_validate_and_apply_refuse_a_timestamp_tag_without_a_traceback(run, tmp_path):
    path = write(tmp_path, "w.workflow.yaml", HEAD + "description: !!timestamp 2020-01-01\n"
                 "on_create: [{do: {annotate: q}}]\n")
    for command in (("validate", path), ("apply", path)):
        if command[0] == "apply":
            run.ok("init")
        proc = run(*command)
        assert proc.returncode == 1
        expected = "w.workflow.yaml:4:14: YAML: tag `tag:yaml.org,2002:timestamp` is not allowed"
        assert expected in proc.stdout + proc.stderr


def test_a_dated_fact_in_a_rule_test_is_an_error_at_its_place(run, tmp_path):
    write(tmp_path, "w.workflow.yaml", HEAD + 'on_create:\n'
          '  - {name: r, when: task.data.d == "2020-01-01", do: {annotate: q}}\n  - {name: d, do: {hold: x}}\n')
    write(tmp_path, "w.test.yaml", """\
        cases:
          - {name: c, event: on_create, facts: {task: {data: {d: !!timestamp 2020-01-01}}}, expect: {rule: r}}
        """)
    proc = run("test", "w.test.yaml")
    assert proc.returncode == 1
    assert "ERROR w.test.yaml:2:58: YAML: tag `tag:yaml.org,2002:timestamp` is not allowed" in proc.stdout


# ---------------------------------------------------------------- surrogates in \u escapes

def test_a_surrogate_pair_written_as_two_escapes_is_its_character():
    doc = load_document('a: "x\\ud83d\\ude00y"\n"k\\ud83d\\ude00": 1\n', "w.yaml")
    assert doc.data == {"a": "x\U0001F600y", "k\U0001F600": 1}
    assert doc.locate(("a",), 2) == (1, 18)  # `y`, past the pair's 12 characters of escapes


def test_a_lone_surrogate_is_refused_at_its_escape():
    assert errors_of('a: "ab\\ud800c"\nb: "\\ud83d\\ude00 \\udc00"\n"k\\ud800": 1\n') == [
        "w.workflow.yaml:1:7: YAML: `\\ud800` is half of a UTF-16 surrogate pair, not a character "
        "(write the character itself, or both halves of its pair)",
        "w.workflow.yaml:2:18: YAML: `\\udc00` is half of a UTF-16 surrogate pair, not a character "
        "(write the character itself, or both halves of its pair)",
        "w.workflow.yaml:3:3: YAML: `\\ud800` is half of a UTF-16 surrogate pair, not a character "
        "(write the character itself, or both halves of its pair)"]


def test_validate_finds_a_lone_surrogate_that_apply_refused_without_a_place(run, tmp_path):
    path = write(tmp_path, "w.workflow.yaml",
                 HEAD + 'description: "bad \\ud800 here"\non_create: [{do: {annotate: q}}]\n')
    proc = run("validate", path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"{path}:4:19: YAML: `\\ud800` is half of a UTF-16 surrogate pair"), proc.stderr
    run.ok("init")
    proc = run("apply", path, "--json")
    assert proc.returncode == 1 and "4:19" in proc.stdout + proc.stderr
    assert '"workflow":' not in proc.stdout + proc.stderr  # no longer the whole spec in the message


def test_an_emoji_written_as_a_surrogate_pair_applies(run, tmp_path):
    path = write(tmp_path, "w.workflow.yaml", HEAD + 'description: "fast \\ud83d\\ude80"\n'
                 'on_create: [{name: rocket, when: "task.data.s == \\"\\ud83d\\ude80\\"", do: {hold: x}},'
                 ' {do: {annotate: q}}]\n')
    run.ok("init")
    run.ok("apply", path)
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "T1", "data": {"s": "\U0001F680"}}) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    assert run.json("show", "T1", "--json")["task"]["status"] == "held"


# ---------------------------------------------------------------- aliases and the text budget

def long_condition(terms: int) -> str:
    return "+".join(["1"] * terms) + " + task.data.x > 0"


def test_aliases_repeating_a_long_condition_are_refused_at_the_alias_past_the_budget():
    condition = long_condition(2400)  # 4,818 characters; 208 copies pass 1,000,000
    rules = [f"  - {{name: r0, when: &e '{condition}', do: hold}}"]
    rules += ["  - {when: *e, do: hold}"] * 399
    text = HEAD + "on_create:\n" + "\n".join(rules) + "\n"
    assert len(text.encode()) < 30_000
    [message] = errors_of(text)
    line = 5 + MAX_TEXT // len(condition)  # the first alias past the budget (r0 is on line 5)
    assert message == (f"w.workflow.yaml:{line}:12: aliases expand the document to more than 1,000,000 "
                       "characters of text (refused as a possible YAML bomb)")


def test_aliases_within_the_budget_still_work():
    rules = ["  - {name: r0, when: &e 'task.data.x > 0', do: hold}"] + ["  - {when: *e, do: hold}"] * 50
    doc = load_document(HEAD + "on_create:\n" + "\n".join(rules) + "\n", "w.yaml")
    assert [r["when"] for r in doc.data["on_create"]] == ["task.data.x > 0"] * 51


def test_identical_conditions_are_compiled_once():
    from rules.workflow import Workflow

    rules = [{"name": f"r{n}", "when": "task.data.x > 0", "do": {"hold": "x"}} for n in range(3)]
    spec = {"workflow": "w", "labels": {"type": "choice", "choices": ["a"]}, "queues": {"q": {"roles": ["a"]}},
            "on_create": [*rules, {"when": "task.data.x > 0", "do": {"annotate": "q"}}]}
    compiled = Workflow.from_spec(spec).rules["on_create"]
    assert len({id(rule.when) for rule in compiled}) == 1
    assert [rule.name for rule in compiled] == ["r0", "r1", "r2", "on_create[4]"]


# ---------------------------------------------------------------- matches(): the size of the compiled pattern

SLOW_PATTERN = "[^x]{1000}" * 49 + "z"  # 491 characters, 392,005 RE2 instructions


def test_a_pattern_that_compiles_to_a_huge_program_is_a_validate_error(run, tmp_path):
    path = write(tmp_path, "w.workflow.yaml", HEAD + "on_create:\n"
                 f"  - {{name: spam, when: 'matches(task.data.body, \"{SLOW_PATTERN}\")', do: {{reject: spam}}}}\n"
                 "  - {name: small, when: 'matches(task.data.body, \"^(?i:re): *refund|[a-z]{400}|.{60}\")', do: hold}\n"
                 "  - {do: {annotate: q}}\n")
    proc = run("validate", path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{path}:5:49: the pattern is too large: it compiles to 392,005 RE2 instructions, more than 1,000 "
        "(counted repeats multiply it: `[a-z]{500}` is about 500, `.{100}` 800)"]


def test_a_stored_version_with_a_huge_pattern_still_loads():
    """Applied by an older Labelyard: refusing it now would stop every command on that database."""
    from rules.workflow import Workflow

    spec = {"workflow": "w", "labels": {"type": "choice", "choices": ["a"]}, "queues": {"q": {"roles": ["a"]}},
            "on_create": [{"name": "spam", "when": f'matches(task.data.body, "{SLOW_PATTERN}")', "do": "hold"},
                          {"name": "old", "when": 'task.age > "1d"', "do": "hold"},
                          {"name": "null label", "do": {"accept": {"label": None}}}]}
    workflow = Workflow.from_spec(spec)
    decision = workflow.decide("on_create", {"task": {"age": 5, "data": {"body": "short"}}})
    assert (decision.rule, decision.action) == ("old", "hold")
    assert "cannot compare number and text with >" in decision.reason


# ---------------------------------------------------------------- `+` on texts and lists

def test_joining_past_a_million_characters_holds_the_task_with_the_reason(run, tmp_path):
    condition = "len(" + "+".join(["task.data.s"] * 11) + ") > 0"
    path = write(tmp_path, "w.workflow.yaml", HEAD + f"on_create:\n  - {{name: big, when: '{condition}', do: hold}}\n"
                 "  - {name: rest, do: {annotate: q}}\n")
    run.ok("init")
    run.ok("apply", path)
    rows = [{"id": "BIG", "data": {"s": "x" * 100_000}}, {"id": "SMALL", "data": {"s": "x" * 90_000}}]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    big = run.json("show", "BIG", "--json")["task"]
    assert big["status"] == "held"
    assert big["reason"].startswith("rule `big` failed: the result of add is too long (more than 1,000,000 "
                                    "characters) in `task.data.s+task.data.s+")
    assert run.json("show", "SMALL", "--json")["task"]["status"] == "held"  # 990,000: joined, and the rule held it
    assert "failed" not in run.json("show", "SMALL", "--json")["task"]["reason"]


@pytest.mark.parametrize(("source", "data", "value"), [
    ("task.data.a + task.data.b + task.data.c", {"a": "x", "b": "y", "c": "z"}, "xyz"),
    ("task.data.a + task.data.b + task.data.c", {"a": [1], "b": [2], "c": [3]}, [1, 2, 3]),
    ("task.data.a + task.data.b + task.data.c", {"a": 1, "b": 2, "c": 3}, 6),
    ("task.data.a + task.data.b + task.data.c", {"a": None, "b": "y", "c": "z"}, None),
    ("task.data.a + task.data.b + task.data.c", {"a": "x", "b": "y", "c": None}, None),
    ("task.data.a + task.data.b - task.data.c", {"a": 1, "b": 2, "c": 3}, 0),
    ("task.data.a - task.data.b + task.data.c + task.data.c", {"a": 1, "b": 2, "c": 3}, 5),
])
def test_a_chain_of_joins_gives_what_joining_step_by_step_gives(source, data, value):
    from rules.expr import compile_expression

    expr = compile_expression(source, section="on_create")
    assert expr.evaluate({"task": {"data": data}}) == value
    assert expr.trace({"task": {"data": data}})[0] == value


@pytest.mark.parametrize(("source", "data", "message"), [
    ("task.data.a + task.data.b - 1", {"a": "x", "b": "y"},
     "cannot subtract text and number in `task.data.a + task.data.b - 1`"),
    ("task.data.a + task.data.b + 1", {"a": "x", "b": "y"},
     "cannot add text and number in `task.data.a + task.data.b + 1`"),
    ("task.data.a + task.data.b + task.data.a", {"a": "x", "b": [1]},
     "cannot add text and list in `task.data.a + task.data.b`"),
    ("task.data.a + task.data.a", {"a": ["x"] * 600_000}, "the result of add is too long (more than 1,000,000 items)"),
])
def test_a_chain_of_joins_fails_where_joining_step_by_step_fails(source, data, message):
    from rules.expr import EvaluationError, compile_expression

    expr = compile_expression(source, section="on_create")
    for evaluate in (expr.evaluate, lambda ctx: expr.trace(ctx)[0]):
        with pytest.raises(EvaluationError) as info:
            evaluate({"task": {"data": data}})
        assert message in info.value.message


# ---------------------------------------------------------------- fact types

def test_validate_refuses_what_fails_for_every_task_because_a_facts_type_is_fixed(run, tmp_path):
    path = write(tmp_path, "w.workflow.yaml", HEAD + """\
on_create:
  - {name: old, when: 'task.age > "1d"', do: hold}
  - {name: m, when: 'matches(now, "^1")', do: hold}
  - {name: c, when: task.category in 5, do: hold}
  - {name: p, when: task.data.x == 1, do: {annotate: q, priority: '-task.status'}}
  - {do: {annotate: q}}
on_worker:
  - {name: w, when: 'worker.submitted + "x" == 1', do: {flag: true}}
""")
    proc = run("validate", path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f'{path}:5:24: cannot compare number and text with > in `task.age > "1d"` for every task: '
        "`task.age` is always a number",
        f'{path}:6:22: matches() needs text, not number in `matches(now, "^1")` for every task: '
        "`now` is always a number",
        f"{path}:7:21: cannot look inside number with `in` in `task.category in 5` for every task",
        f"{path}:8:68: cannot negate text in `-task.status` for every task: `task.status` is always text",
        f'{path}:11:22: cannot add number and text in `worker.submitted + "x"` for every task: '
        "`worker.submitted` is always a number",
    ]


@pytest.mark.parametrize("source", [
    'task.data.x + 1 + "a"',         # data has no fixed type
    'len(task.data.x) + "a"',        # null for null: null + "a" is null
    'task.age / 0 + "x"',            # division by zero is null
    'task.category + 1',             # the category may be null
    'task.age == "1d"',              # == compares any values
    '"x" in votes.labels',
    'votes.labels[0] > 1',
    'not now',
    'max(task.tags)',
])
def test_what_some_task_can_pass_is_not_refused(source):
    from rules.expr import compile_expression

    compile_expression(source, section="on_review")


def test_a_misspelt_name_is_reported_before_a_type_problem():
    from rules.expr import ExpressionError, compile_expression

    with pytest.raises(ExpressionError) as info:
        compile_expression("task.ag in 5 or now + 'x'", section="on_create")
    assert info.value.message == "unknown name `task.ag`; did you mean `task.age`?"


# ---------------------------------------------------------------- accept with a null label

def test_an_accept_whose_constant_label_is_null_is_a_validate_error(run, tmp_path):
    path = write(tmp_path, "w.workflow.yaml", HEAD + """\
on_create:
  - {name: n1, when: task.data.k == 1, do: {accept: {label: null}}}
  - {name: n2, when: task.data.k == 2, do: {accept: {label: '1/0'}}}
  - {name: n3, when: task.data.k == 3, do: {accept: {label: prediction.label}}}
  - {name: n4, when: task.data.k == 4, do: accept}
  - {do: {annotate: q}}
""")
    proc = run("validate", path)
    assert proc.returncode == 1
    message = ("`accept` can never use this label: it is always null, and a task with no label to accept is held; "
               "write `do: accept` for the prediction's (or the votes', or the reviewer's) label")
    assert proc.stderr.splitlines() == [f"{path}:5:61: {message}", f"{path}:6:61: {message}"]


# ---------------------------------------------------------------- `when: true`

def test_when_true_counts_as_unconditional_in_the_warnings(run, tmp_path):
    path = write(tmp_path, "w.workflow.yaml", HEAD + """\
on_create:
  - {name: all, when: true, do: {annotate: q}}
  - {name: never, when: task.data.x == 1, do: hold}
on_quorum:
  - {name: all, when: '1 < 2', do: accept}
""")
    proc = run("validate", path)
    assert proc.returncode == 0
    assert proc.stderr.splitlines() == [
        f"{path}:6:5: warning: this rule can never match: rule 1 of on_create always matches (`when: true`)"]
