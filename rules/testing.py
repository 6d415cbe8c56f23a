"""Rule tests: ``NAME.test.yaml`` cases run against ``NAME.workflow.yaml``, like ``opa test``.

A test file is a mapping with ``cases``: each case names a section (``event``),
the facts the rules see, and the decision it expects::

    workflow: ticket-triage.workflow.yaml     # optional; default: NAME.workflow.yaml beside
    cases:
      - name: an unsure model sends the ticket to three annotators
        event: on_create
        facts:
          task: {category: support, data: {subject: "Refund", customer: c-1}}
          prediction: {label: billing, confidence: 0.62}
        expect: {rule: uncertain, action: annotate, target: triage, values: {overlap: 3}}

Each case is PASS (the decision is the expected one), FAIL (it is not: the
result carries a diff and the traces of the rule that fired and of the rule
that was expected) or ERROR (the case itself is wrong: an unknown rule, a
fact the section cannot see or that does not exist...). Rules no case fired are reported as not
covered. Everything here is pure: files are read, nothing else.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import durations
from .actions import ACTIONS
from .context import CONTEXT_SCHEMA, SECTION_ROOTS, score_facts
from .diagnostics import Diagnostic, WorkflowInvalid
from .errors import RulesError
from .expr import EvaluationError
from .instants import InstantError, parse_instant
from .source import read_source
from .timer_choice import PASSED_OVER, decide_alone
from .visible_text import one_line, quoted
from .workflow import Workflow, compile_workflow

__all__ = [
    "EVENTS",
    "FACT_ROOTS",
    "TEST_SCHEMA",
    "CaseResult",
    "Report",
    "SuiteResult",
    "build_context",
    "discover",
    "run_paths",
    "run_suite",
    "votes_from_labels",
]

EVENTS = ("on_create", "on_quorum", "on_review", "on_worker", "on_timer")
FACT_ROOTS = ("task", "prediction", "votes", "review", "worker", "assignment", "queue", "now")
CASE_ONLY_FACTS = {"votes": ("workers",)}
"""Facts a case may give that no rule reads: who cast ``votes.labels``, for the votes the engine derives."""
AGE_KEYS = {("task", "age"), ("task", "stage_age"), ("assignment", "age"), ("queue", "oldest_age"),
            ("queue", "sla")}
TEST_SUFFIX = ".test.yaml"
WORKFLOW_SUFFIX = ".workflow.yaml"

_FACTS_DOC = "The facts the rules see, by root; anything left out is null."
_OBJECT = {"type": "object"}

TEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Labelyard rule tests",
    "description": "Cases for `labelyard test`: an event, the facts, and the decision expected.",
    "type": "object",
    "properties": {
        "workflow": {"description": "The workflow file, relative to this file (default: NAME.workflow.yaml "
                                    "beside NAME.test.yaml).", "type": "string"},
        "description": {"description": "What these cases are about.", "type": "string"},
        "cases": {
            "description": "The cases, run in order; each one is independent.",
            "type": "array",
            "items": {
                "description": "One case.",
                "type": "object",
                "properties": {
                    "name": {"description": "A unique name, shown in the report.", "type": "string", "minLength": 1},
                    "description": {"description": "Why this case matters.", "type": "string"},
                    "event": {"description": "The section whose rules decide.", "enum": list(EVENTS)},
                    "facts": {
                        "description": _FACTS_DOC,
                        "type": "object",
                        "properties": {
                            **{root: {**_OBJECT, "description": f"`{root}.*` facts."}
                               for root in FACT_ROOTS if root != "now"},
                            "now": {"description": "The time: epoch seconds or ISO 8601 (UTC if no zone).",
                                    "type": ["number", "string"]},
                        },
                        "additionalProperties": False,
                    },
                    "expect": {
                        "description": "The decision expected; only the keys given are compared.",
                        "type": "object",
                        "properties": {
                            "rule": {"description": "The rule's name; null when no rule should match.",
                                     "type": ["string", "null"]},
                            "action": {"description": "The action (`none` when an on_worker or on_timer "
                                                      "section does nothing).",
                                       "enum": [*ACTIONS, "none"]},
                            "target": {"description": "The queue, skill or other main value of the action.",
                                       "type": ["string", "null"]},
                            "values": {"description": "Action parameters (overlap, priority, reason, label); "
                                                      "whole numbers match exactly, others within float rounding "
                                                      "(1e-12 of their size, or 1e-9).", "type": "object"},
                            "reason": {"description": "The reason a hold, reject or pause records.",
                                       "type": ["string", "null"]},
                        },
                        "minProperties": 1,
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "event", "expect"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["cases"],
    "additionalProperties": False,
}


# ---------------------------------------------------------------- results

@dataclass
class CaseResult:
    """One case's outcome: ``PASS``, ``FAIL`` or ``ERROR``."""

    name: str
    file: str
    line: int
    event: str | None
    status: str
    expected: dict[str, Any] = field(default_factory=dict)
    got: dict[str, Any] | None = None
    diff: list[str] = field(default_factory=list)
    message: str | None = None
    trace: list[str] = field(default_factory=list)
    expected_trace: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "file": self.file, "line": self.line, "event": self.event, "status": self.status,
            "expected": self.expected, "got": self.got, "diff": self.diff, "message": self.message,
            "trace": self.trace, "expected_trace": self.expected_trace,
        }


@dataclass
class SuiteResult:
    """The cases of one test file against one workflow, and the rules they left unexercised."""

    workflow_file: str
    test_file: str | None
    workflow: str | None = None
    cases: list[CaseResult] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    rules: int = 0
    uncovered: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(c.status == "PASS" for c in self.cases)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workflow_file": self.workflow_file, "test_file": self.test_file, "workflow": self.workflow,
            "ok": self.ok, "errors": [d.as_dict() for d in self.errors],
            "cases": [c.as_dict() for c in self.cases],
            "coverage": {"rules": self.rules, "covered": self.rules - len(self.uncovered),
                         "uncovered": self.uncovered},
        }


@dataclass
class Report:
    """Every suite of a run."""

    suites: list[SuiteResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Cases by status (``pass + fail + error == cases``), the problems outside any case
        (``file_errors``: a file that cannot be read or has the wrong shape, a broken workflow, a
        missing path) and the rules no case exercised."""
        counted = Counter(c.status for s in self.suites for c in s.cases)
        return {"cases": sum(counted.values()), "pass": counted["PASS"], "fail": counted["FAIL"],
                "error": counted["ERROR"], "file_errors": sum(len(s.errors) for s in self.suites) + len(self.errors),
                "uncovered_rules": sum(len(s.uncovered) for s in self.suites)}

    @property
    def ok(self) -> bool:
        return not self.errors and bool(self.suites) and all(s.ok for s in self.suites)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "summary": self.counts(), "errors": self.errors,
                "suites": [s.as_dict() for s in self.suites]}


# ---------------------------------------------------------------- finding files

def discover(paths: Iterable[str]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """``(workflow file, test file or None)`` pairs for files and folders, and problems (missing paths)."""
    pairs: list[tuple[str, str | None]] = []
    problems: list[str] = []
    seen: set[tuple[str, str | None]] = set()

    def add(pair: tuple[str, str | None]) -> None:
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)

    for path in paths:
        if os.path.isdir(path):
            found = False
            for folder, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    full = os.path.normpath(os.path.join(folder, name))
                    if name.endswith(TEST_SUFFIX):
                        add((_workflow_for(full), full))
                        found = True
                    elif name.endswith(WORKFLOW_SUFFIX) and not os.path.exists(_test_for(full)):
                        add((full, None))
                        found = True
            if not found:
                problems.append(f"{path}: no *{TEST_SUFFIX} or *{WORKFLOW_SUFFIX} files here")
        elif os.path.isfile(path):
            if path.endswith(TEST_SUFFIX):
                add((_workflow_for(path), path))
            elif path.endswith(WORKFLOW_SUFFIX):
                test = _test_for(path)
                add((path, test if os.path.exists(test) else None))
            else:
                problems.append(f"{path}: expected a NAME{TEST_SUFFIX} or NAME{WORKFLOW_SUFFIX} file")
        else:
            problems.append(f"{path}: no such file or folder")
    return pairs, problems


def _workflow_for(test_path: str) -> str:
    """The workflow a test file names with ``workflow:``, else ``NAME.workflow.yaml`` beside it.

    The file is read as YAML (a BOM, a quoted key and flow style all count);
    one that cannot be read names no workflow here, and its errors are
    reported when its cases are loaded.
    """
    from .loader import load_document

    default = test_path[: -len(TEST_SUFFIX)] + WORKFLOW_SUFFIX
    try:
        data = load_document(read_source(test_path), test_path).data
    except (OSError, WorkflowInvalid):
        return default
    value = data.get("workflow") if isinstance(data, dict) else None
    if isinstance(value, str) and value.strip():
        return os.path.normpath(os.path.join(os.path.dirname(test_path), value.strip()))
    return default


def _test_for(workflow_path: str) -> str:
    return workflow_path[: -len(WORKFLOW_SUFFIX)] + TEST_SUFFIX


FunctionsFor = Callable[[str], Mapping[str, Callable]]
# ``votes_for(votes facts of a case, workflow)``: the ``votes.*`` the engine would compute
VotesFor = Callable[[Mapping[str, Any], Workflow], Mapping[str, Any]]
# ``explain(diagnostics, text, filename)``: a workflow's compile errors as the caller words them
Explain = Callable[[list[Diagnostic], str, str], list[Diagnostic]]


def run_paths(paths: Iterable[str], functions: Mapping[str, Callable] | None = None,
              functions_for: FunctionsFor | None = None, votes_for: VotesFor | None = None,
              explain: Explain | None = None) -> Report:
    """Run every suite found under ``paths`` (files or folders).

    ``functions`` are expression functions for every workflow; ``functions_for(text)``
    instead gives each workflow its own (the plugins its ``plugins:`` list loads).
    ``votes_for`` derives ``votes.*`` from a case's ``votes.labels`` with the
    workflow's label type and consensus (the router's aggregator); without it,
    by exact votes (:func:`votes_from_labels`). ``explain`` rewords the errors of a workflow
    that does not compile (the router says where an unknown function may come from).
    """
    pairs, problems = discover(paths)
    report = Report(errors=problems)
    for workflow_file, test_file in pairs:
        report.suites.append(run_suite(workflow_file, test_file, functions, functions_for, votes_for, explain))
    return report


# ---------------------------------------------------------------- running

def run_suite(workflow_file: str, test_file: str | None, functions: Mapping[str, Callable] | None = None,
              functions_for: FunctionsFor | None = None, votes_for: VotesFor | None = None,
              explain: Explain | None = None) -> SuiteResult:
    """Compile the workflow, load the cases, run each one, and work out the coverage."""
    suite = SuiteResult(workflow_file, test_file)
    text = _read(workflow_file, suite)
    if text is None:
        return suite
    if functions is None and functions_for is not None:
        functions = functions_for(text)
    workflow, diagnostics = compile_workflow(text, workflow_file, functions)
    if workflow is None:
        errors = [d for d in diagnostics if d.severity == "error"]
        suite.errors += explain(errors, text, workflow_file) if explain is not None else errors
        return suite
    suite.workflow = workflow.name
    written = [r for section in EVENTS for r in workflow.rules.get(section, ()) if not r.builtin]
    suite.rules = len(written)
    fired: set[tuple[str, str]] = set()
    if test_file is not None:
        test_text = _read(test_file, suite)  # unreadable: no case ran, so no rule was exercised
        cases = _load_cases(test_text, test_file, suite) if test_text is not None else []
        for case in cases:
            result = _run_case(workflow, case, test_file, votes_for)
            suite.cases.append(result)
            if result.got is not None and result.got.get("rule") is not None:
                fired.add((case["event"], result.got["rule"]))
    suite.uncovered = [
        {"section": r.section, "rule": r.name, "line": r.line}
        for r in written if (r.section, r.name) not in fired
    ]
    return suite


def _read(path: str, suite: SuiteResult) -> str | None:
    try:
        return read_source(path)
    except OSError as exc:
        suite.errors.append(Diagnostic(path, 1, 1, f"cannot read: {exc.strerror}"))
    except WorkflowInvalid as exc:
        suite.errors.extend(exc.diagnostics)
    return None


def _load_cases(text: str, filename: str, suite: SuiteResult) -> list[dict[str, Any]]:
    """The checked cases, each with ``_line``; structural mistakes become the suite's errors."""
    import jsonschema

    from .loader import load_document

    try:
        doc = load_document(text, filename)
    except WorkflowInvalid as exc:
        suite.errors += exc.diagnostics
        return []
    if not isinstance(doc.data, dict):
        suite.errors.append(Diagnostic(filename, 1, 1, "a test file is a YAML mapping with `cases:`"))
        return []
    validator = _validator(jsonschema)
    problems: list[Diagnostic] = []
    bad_events: dict[int, tuple[Diagnostic, Diagnostic]] = {}  # (for the file, for the case): not the file's fault
    for error in validator.iter_errors(doc.data):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = list((error.schema.get("properties") or {}).keys())
            extra = [k for k in error.instance if k not in allowed] if isinstance(error.instance, dict) else []
            for key in extra:
                pos = doc.where(path + (key,), key=True)
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                suffix = f"; did you mean `{hint[0]}`?" if hint else f" (allowed: {', '.join(allowed)})"
                problems.append(Diagnostic(filename, pos.line, pos.col, f"unknown key {quoted(key)}{suffix}"))
            continue
        pos = doc.where(path)
        where = ".".join(str(p) for p in path) or "the file"
        if error.validator == "enum":
            hint = difflib.get_close_matches(str(error.instance), [str(v) for v in error.validator_value], n=1)
            message = f"{quoted(where)} is {json.dumps(error.instance)}; expected one of {', '.join(map(str, error.validator_value))}"
            if hint:
                message += f" (did you mean `{hint[0]}`?)"
            if _is_case_event(path):
                bad_events[path[1]] = (Diagnostic(filename, pos.line, pos.col, message),
                                       Diagnostic(filename, pos.line, pos.col, _unknown_event(error.instance)))
                continue
        elif error.validator == "required":
            message = f"{one_line(where)}: {error.message.replace('is a required property', 'is required')}"
        else:
            message = f"{quoted(where)}: {error.message}"
        problems.append(Diagnostic(filename, pos.line, pos.col, message))
    if problems:  # the file's shape is wrong: no case runs, every problem is listed
        suite.errors += sorted(set(problems) | {whole for whole, _ in bad_events.values()})
        return []
    cases = []
    seen: dict[str, int] = {}
    for index, case in enumerate(doc.data.get("cases") or []):
        pos = doc.where(("cases", index))
        name = case["name"]
        problem = bad_events.get(index)
        message = str(problem[1]) if problem else None
        if name in seen:  # this case is an ERROR; the others still run
            at = doc.where(("cases", index, "name"))
            message = str(Diagnostic(filename, at.line, at.col, f"duplicate case name {quoted(name)} (first at line "
                                                                f"{seen[name]})"))
        else:
            seen[name] = pos.line
        positions = {key: doc.where(("cases", index) + key) for key in _POSITION_KEYS}
        for root, given in (case.get("facts") or {}).items():
            at = ("cases", index, "facts", root)
            positions[("facts", root)] = doc.where(at, key=True)
            positions[("value", root)] = doc.where(at)  # where a fact's value is (FactError)
            for key in given if isinstance(given, dict) else ():
                positions[("facts", root, key)] = doc.where(at + (key,), key=True)
                positions[("value", root, key)] = doc.where(at + (key,))
        cases.append({**case, "_line": pos.line, "_positions": positions, "_problem": message})
    if not cases and not suite.errors:
        suite.errors.append(Diagnostic(filename, 1, 1, "no cases: add some under `cases:`"))
    return cases


def _is_case_event(path: tuple) -> bool:
    """Whether a schema path is one case's ``event`` (``cases.N.event``)."""
    return len(path) == 3 and path[0] == "cases" and isinstance(path[1], int) and path[2] == "event"


def _unknown_event(event: Any) -> str:
    """``unknown event `on_creat`; did you mean `on_create`?``"""
    hint = difflib.get_close_matches(event, EVENTS, n=1) if isinstance(event, str) else []
    shown = event if isinstance(event, str) else json.dumps(event)
    return f"unknown event {quoted(shown)}" + (f"; did you mean `{hint[0]}`?" if hint else f" (events: {', '.join(EVENTS)})")


def _validator(jsonschema: Any) -> Any:
    """The validator of test files (timestamps stay text: rules.loader reads no dates)."""
    return jsonschema.Draft202012Validator(TEST_SCHEMA)


_POSITION_KEYS = (("expect", "rule"), ("expect", "action"), ("facts",))


def _run_case(workflow: Workflow, case: dict[str, Any], filename: str,
              votes_for: VotesFor | None = None) -> CaseResult:
    event, expect, line = case["event"], case["expect"], case["_line"]
    result = CaseResult(case["name"], filename, line, event, "ERROR", expected=dict(expect))
    if case.get("_problem"):  # an unknown event or a duplicate name, found when the file was read
        result.message = case["_problem"]
        return result
    problem = _case_problem(workflow, case)
    if problem is not None:
        key, message = problem
        pos = case["_positions"].get(key)
        result.message = f"{filename}:{pos.line if pos else line}:{pos.col if pos else 1}: {message}"
        return result
    try:
        derive = (lambda votes: votes_for(votes, workflow)) if votes_for is not None else None
        ctx = workflow.labels.stored_facts(build_context(case.get("facts") or {}, derive))
    except ValueError as exc:  # at the value that cannot be read, else at `facts`
        path = ("value", *exc.path) if isinstance(exc, FactError) else ("facts",)
        pos = case["_positions"].get(path) or case["_positions"][("facts",)]
        result.message = f"{filename}:{pos.line}:{pos.col}: {exc}"
        return result
    passed: dict[str, str] = {}  # on_timer: the matching rules a tick passes over, with why
    try:
        decision = decide_alone(workflow, ctx, passed) if event == "on_timer" else workflow.decide(event, ctx)
    except RulesError as exc:  # decide turns rule failures into a hold; anything else is the case's fault
        result.message = str(exc)
        return result
    got = {"rule": decision.rule, "action": decision.action, "target": decision.target,
           "values": _plain(decision.values), "reason": decision.reason}
    result.got = got
    result.trace = list(decision.trace)
    result.diff = _diff(expect, got)
    if not result.diff and _rule_failed(decision) and not _expects_hold(expect):
        result.diff = [f"- rule: {_show(decision.rule)}", f"+ rule: {_show(decision.rule)} failed: the task is held"]
    result.status = "FAIL" if result.diff else "PASS"
    if result.status == "FAIL":
        if decision.reason and decision.action == "hold" and decision.rule is not None:
            result.message = decision.reason
        wanted = expect.get("rule")
        if isinstance(wanted, str) and wanted != decision.rule:
            failed = decision.rule if _rule_failed(decision) else None
            result.expected_trace = _explain_rule(workflow, event, wanted, ctx, failed, passed)
    return result


def _rule_failed(decision: Any) -> bool:
    """Whether the rule that decided failed at run time (``decide`` made that a hold, with the error)."""
    return (decision.action == "hold" and decision.rule is not None and isinstance(decision.reason, str)
            and decision.reason.startswith(f"rule `{decision.rule}` failed: "))


def _expects_hold(expect: Mapping[str, Any]) -> bool:
    """Whether a case asks for the hold itself (``action: hold`` or a ``reason``), not only for the rule."""
    return expect.get("action") == "hold" or "reason" in expect


def _case_problem(workflow: Workflow, case: dict[str, Any]) -> tuple[tuple, str] | None:
    """Why a case cannot be run against this workflow, with the key to point at."""
    event, expect = case["event"], case["expect"]
    names = [r.name for r in workflow.rules.get(event, ())]
    rule = expect.get("rule")
    if isinstance(rule, str) and rule not in names:
        hint = difflib.get_close_matches(rule, names, n=1)
        if hint:
            suffix = f"; did you mean {quoted(hint[0])}?"
        elif names:
            suffix = f" (its rules: {', '.join(map(one_line, names))})"
        else:
            suffix = " (it has no rules)"
        return ("expect", "rule"), f"no rule {quoted(rule)} in {event} of {workflow.name}{suffix}"
    action = expect.get("action")
    if action is not None and action != "none" and event not in ACTIONS[action].sections:
        return ("expect", "action"), f"`{action}` cannot happen in {event}"
    seen = SECTION_ROOTS[event]
    for root in case.get("facts") or {}:
        if root not in seen:
            order = [r for r in FACT_ROOTS if r in seen]
            return ("facts", root), f"{event} does not see {quoted(root)} (it sees {', '.join(order)})"
    for root, given in (case.get("facts") or {}).items():
        unknown = _unknown_fact(root, given)
        if unknown is not None:
            return ("facts", root, unknown[0]), unknown[1]
    task = (case.get("facts") or {}).get("task")
    if event == "on_create" and isinstance(task, Mapping) and task.get("id") is not None:
        # on_create decides before the row exists; a case with an id would pass where the real task cannot
        return ("facts", "task"), "`task.id` is null in on_create: the task gets its id after on_create routes it"
    return None


def _unknown_fact(root: str, given: Any) -> tuple[str, str] | None:
    """The first field of ``given`` (a root's facts) that no rule can read, with the message; ``None`` if none.

    Each root has a fixed list of fields (:data:`rules.context.CONTEXT_SCHEMA`); only below
    ``task.data``, ``prediction.scores`` and ``votes.labels`` is anything allowed. A misspelt
    field would be null to the rules, and the case could pass for the wrong reason.
    """
    fields = CONTEXT_SCHEMA.get(root)
    if not isinstance(fields, dict) or not isinstance(given, Mapping):
        return None  # `now`, or facts that are no mapping (build_context says so)
    known = [*fields, *CASE_ONLY_FACTS.get(root, ())]
    for key in given:
        if key in known:
            continue
        name = f"{root}.{key}"
        hint = difflib.get_close_matches(str(key), known, n=1)
        suffix = f"; did you mean `{root}.{hint[0]}`?" if hint else f" ({root} has: {', '.join(known)})"
        return key, f"unknown fact {quoted(name)}{suffix}"
    return None


def _explain_rule(workflow: Workflow, event: str, name: str, ctx: Mapping[str, Any],
                  failed: str | None = None, passed: Mapping[str, str] | None = None) -> list[str]:
    """Why the expected rule did not decide: an earlier rule won (or ``failed``), a tick passes it over
    (``passed``, ``on_timer``), or its own condition's trace."""
    task = ctx.get("task")
    shown = quoted(name)
    for rule in workflow.rules.get(event, ()):
        if rule.name == failed:
            return [f"why not {shown}: the earlier rule {quoted(failed)} failed, which holds the task"]
        if rule.name != name:
            continue
        if passed and name in passed:
            return [f"why not {shown}: it matches, but a tick passes it over: {PASSED_OVER[passed[name]]}"]
        if (event == "on_timer" and rule.action.kind != "release" and isinstance(task, Mapping)
                and task.get("gold") is True):
            return [f"why not {shown}: a gold task is never moved; only `release` rules run for its slots"]
        if rule.when is None:
            return [f"why not {shown}: it has no condition, but an earlier rule matched first"]
        try:
            value, lines = rule.when.trace(ctx)
        except EvaluationError as exc:
            return [f"{shown}: {exc}"]
        head = f"why not {shown}: {one_line(rule.when.source)} → {json.dumps(_plain(value))}"
        if value not in (None, False, 0, "", []):
            head += " (it matches, but an earlier rule matched first)"
        return [head, *lines]
    return []


# ---------------------------------------------------------------- facts

def build_context(facts: Mapping[str, Any],
                  derive_votes: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The context a case describes: durations read, ``now`` parsed, ``votes.*`` derived from ``votes.labels``.

    ``derive_votes(votes facts)`` computes the derived ``votes.*`` (the engine's
    aggregator for the workflow's label type); by default, exact votes.
    """
    ctx: dict[str, Any] = {}
    for root, value in facts.items():
        if root == "now":
            ctx["now"] = _instant(value)
            continue
        if not isinstance(value, Mapping):
            raise FactError((root,), f"`{root}` facts must be a mapping")
        data = dict(value)
        for key in list(data):
            if (root, key) in AGE_KEYS and isinstance(data[key], str):
                data[key] = _duration(data[key], root, key)
        ctx[root] = data
    votes = ctx.get("votes")
    if isinstance(votes, dict) and isinstance(votes.get("labels"), list):
        derived = derive_votes(votes) if derive_votes is not None else votes_from_labels(votes["labels"])
        ctx["votes"] = {**derived, **votes}
    prediction = ctx.get("prediction")
    if isinstance(prediction, dict) and isinstance(prediction.get("scores"), Mapping):
        ctx["prediction"] = {**score_facts(prediction["scores"]), **prediction}
    return ctx


class FactError(ValueError):
    """A fact a case gives that cannot be read; ``path`` is the fact's (``("now",)``,
    ``("assignment", "age")``), so the message points at its value in the file."""

    def __init__(self, path: tuple[str, ...], message: str):
        super().__init__(message)
        self.path = path


def _instant(value: Any) -> float:
    """``now`` as ``LABELYARD_NOW`` takes it (:mod:`rules.instants`), a YAML number too."""
    try:
        return parse_instant(value)
    except InstantError as exc:
        shown = "an integer too long to show" if isinstance(value, int) and abs(value) > 10**100 else repr(value)
        raise FactError(("now",), f"`now` is {shown}: {exc}") from None


def _duration(text: str, root: str, key: str) -> float:
    """A duration written as text, as the rule language reads it (:mod:`rules.durations`)."""
    try:
        return durations.parse(text)
    except durations.DurationError as exc:
        raise FactError((root, key), f"`{root}.{key}` is {text!r}: {exc}") from None


def _label_key(label: Any) -> Any:
    return json.dumps(label, sort_keys=True) if isinstance(label, (list, dict)) else label


def votes_from_labels(labels: list[Any]) -> dict[str, Any]:
    """``votes.*`` derived from a list of labels by exact votes (no gold, nobody flagged).

    The engine's aggregator is type-aware (a median of numbers, matched boxes);
    ``labelyard test`` passes it in as ``votes_for``.
    """
    keys = [_label_key(label) for label in labels]
    counts = Counter(keys).most_common()
    count = len(labels)
    top, top_count, tie = None, 0, False
    if counts:
        top_key, top_count = counts[0]
        tie = len(counts) > 1 and counts[1][1] == top_count
        top = None if tie else labels[keys.index(top_key)]
    entropy = -sum((n / count) * math.log2(n / count) for _, n in counts) + 0.0 if count else None
    return {"count": count, "labels": labels, "top": top, "top_count": top_count,
            "agreement": top_count / count if count else None, "unanimous": count > 0 and len(counts) == 1,
            "tie": tie, "entropy": entropy, "min_accuracy": None, "any_flagged": False}


# ---------------------------------------------------------------- comparing

def plain_value(value: Any) -> Any:
    """Values as JSON would carry them (tuples to lists)."""
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


_EXACT_FLOATS = 2.0 ** 53  # below it, a float's rounding is never a whole unit


def same_number(expected: float, got: float) -> bool:
    """Whether two numbers (not booleans) are the same value as decisions go.

    Equal numbers match. Two whole numbers (integers, or floats such as ``7200.0`` below 2**53) that
    differ never do: ``-1735689601`` is not ``-1735689600``. Otherwise (``0.1 + 0.2`` against ``0.3``)
    they match within ``rel_tol=1e-12, abs_tol=1e-9``, which float rounding stays within and which
    cannot hide a difference of 1 below 1e12 (before, ``rel_tol=1e-9`` let a ``priority`` near 1.7e9,
    from epoch seconds, be a unit off).
    """
    if expected == got:
        return True
    if _whole(expected) and _whole(got):
        return False
    try:
        return math.isclose(expected, got, rel_tol=1e-12, abs_tol=1e-9)
    except OverflowError:  # an integer beyond any float, against a float: not the same
        return False


def _whole(value: float) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and abs(value) < _EXACT_FLOATS and value.is_integer())


def same_value(expected: Any, got: Any) -> bool:
    """Equal as decisions go: booleans are not numbers, numbers by :func:`same_number`, containers
    item by item."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, (int, float)) and isinstance(got, (int, float)):
        return same_number(expected, got)
    if isinstance(expected, list) and isinstance(got, list):
        return len(expected) == len(got) and all(map(same_value, expected, got))
    if isinstance(expected, dict) and isinstance(got, dict):
        return expected.keys() == got.keys() and all(same_value(expected[k], got[k]) for k in expected)
    return expected == got


_plain = plain_value
_same = same_value


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _diff(expect: Mapping[str, Any], got: Mapping[str, Any]) -> list[str]:
    """``- expected`` / ``+ got`` lines for each compared field that differs; empty when all match."""
    lines: list[str] = []
    for key in ("rule", "action", "target", "reason"):
        if key in expect and not _same(expect[key], got.get(key)):
            lines += [f"- {key}: {_show(expect[key])}", f"+ {key}: {_show(got.get(key))}"]
    for key, wanted in (expect.get("values") or {}).items():
        have = (got.get("values") or {}).get(key)
        if not _same(wanted, have):
            lines += [f"- values.{key}: {_show(wanted)}", f"+ values.{key}: {_show(have)}"]
    return lines
