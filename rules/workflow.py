"""The compiled workflow: checks a document, compiles its rules once, decides.

``compile_workflow(text, filename)`` checks everything and reports every
mistake as a :class:`Diagnostic`; ``Workflow.from_spec(spec)`` rebuilds a
workflow that was already checked (as stored by ``apply``) without YAML or
jsonschema, which keeps the CLI's start-up fast.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import durations
from .actions import ACTIONS, SECTIONS
from .context import SECTION_ROOTS
from .diagnostics import Diagnostic, WorkflowInvalid
from .errors import RulesError
from .expr import EvaluationError, Expression, ExpressionError, compile_expression
from .label_text import TOO_LARGE, not_among, not_one_of
from .schema import label_key_problem
from .visible_text import one_line, quoted

TASK_DECISION_SECTIONS = ("on_create", "on_quorum", "on_review", "on_timer")
HOLD_WHEN_NO_RULE = ("on_create", "on_quorum", "on_review")
MAX_OVERLAP = 1000
NUMERIC_PARAMS = ("overlap", "priority")
PRIORITY_LIMIT = 1e15  # priorities are stored as REAL; beyond this they stop being exact


def param_problem(key: str, value: Any) -> str | None:
    """Why an action's ``overlap`` or ``priority`` value cannot be used; ``None`` when it can.

    ``null`` is allowed and means the default (overlap 1, priority unchanged).
    """
    if value is None or key not in ("overlap", "priority"):
        return None
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if key == "overlap":
        if not number or not 1 <= value <= MAX_OVERLAP or value % 1:
            return f"overlap must be a whole number from 1 to {MAX_OVERLAP}, not {_show_short(value)}"
    elif not number or not -PRIORITY_LIMIT <= value <= PRIORITY_LIMIT:
        return f"priority must be a number from -1e15 to 1e15, not {_show_short(value)}"
    return None


def _show_short(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**18:
        # str() of a huge int is slow and refused past 4,300 digits
        digits = int(value.bit_length() * 0.30103)  # at most one short: 10**digits tells
        return f"an integer of {digits + (abs(value) >= 10**digits)} digits"
    try:
        text = repr(value) if isinstance(value, float) else _show(value)
    except (TypeError, ValueError):
        text = _repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _repr(value: Any) -> str:
    """``repr(value)``, or a plain phrase when Python refuses (an integer past 4,300 digits inside it)."""
    try:
        return repr(value)
    except ValueError:
        return "a value with an integer too long to show"


def sla_seconds(value: Any) -> float | None:
    """A queue's ``sla`` in seconds (:func:`rules.durations.seconds`); ``None`` when it has none.

    A version applied before durations had one definition was checked by a pattern whose ``\\d``
    took any Unicode digit (``٤h``), read by ``float``: such a stored SLA is read as it was then, so
    the version keeps loading. A workflow checked now has none (:meth:`_Compiler.semantic_checks`).
    """
    if value is None:
        return None
    try:
        return durations.seconds(value)
    except durations.DurationError:
        return float(value[:-1]) * durations.UNITS[value[-1]]


def in_choice_order(chosen: Iterable[str], choices: Sequence[str] = ()) -> list[str]:
    """Distinct choices in the workflow's order (others after them, alphabetically)."""
    order = {c: i for i, c in enumerate(choices)}
    return sorted(set(chosen), key=lambda c: (order.get(c, len(order)), c))


@dataclass(frozen=True)
class LabelSpec:
    """What a submission must look like."""

    type: str = "choice"
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    iou: float = 0.5

    @classmethod
    def from_spec(cls, labels: Any) -> "LabelSpec":
        """The spec of a workflow's ``labels`` section (defaults where it is missing).

        A key with no effect on the type (:data:`rules.schema.LABEL_KEYS`) is left out: validation
        refuses it, but a version stored before it did (``choices`` of text labels) still loads, and
        nothing that reads its labels (claims, ingest's checks, plugins, the TUI) sees it."""
        labels = labels if isinstance(labels, dict) else {}
        kind = labels.get("type", "choice")
        given = {key: value for key, value in labels.items() if label_key_problem(key, kind) is None}
        return cls(type=kind, choices=tuple(given.get("choices") or ()),
                   min=given.get("min"), max=given.get("max"), iou=given.get("iou", 0.5))

    def stored(self, label: Any) -> Any:
        """``label`` in the one form it is stored and rules see it: a ``multi_choice`` label (a list of
        text) as a set in choice order (``["c", "b", "b"]`` is ``["b", "c"]``), as its consensus is;
        any other label as it is. Votes, a reviewer's label and final labels all take this form, so
        ``review.label == votes.top`` holds for the same set however it was written."""
        if self.type == "multi_choice" and isinstance(label, list) and all(isinstance(c, str) for c in label):
            return in_choice_order(label, self.choices)
        return label

    def stored_facts(self, ctx: dict[str, Any]) -> dict[str, Any]:
        """``ctx`` with ``review.label`` and ``votes.labels`` / ``votes.top`` in their :meth:`stored` form
        (for a ``multi_choice`` workflow; any other ``ctx`` as it is): what a rule sees of facts given
        by hand (a rule test's case) or recorded before votes and review labels were stored so
        (``replay`` of an older event)."""
        if self.type != "multi_choice":
            return ctx
        review, votes = ctx.get("review"), ctx.get("votes")
        if isinstance(review, Mapping) and "label" in review:
            ctx["review"] = {**review, "label": self.stored(review["label"])}
        if isinstance(votes, Mapping):
            votes = dict(votes)
            if isinstance(votes.get("labels"), list):
                votes["labels"] = [self.stored(label) for label in votes["labels"]]
            if "top" in votes:
                votes["top"] = self.stored(votes["top"])
            ctx["votes"] = votes
        return ctx

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a valid label, or ``None`` when it is."""
        if self.type == "choice":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                return f"label {not_one_of(value, self.choices)}"
        elif self.type == "multi_choice":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return "a multi_choice label is a list of choices"
            bad = [v for v in value if self.choices and v not in self.choices]
            if bad:
                return not_among(bad, self.choices)
        elif self.type == "number":
            if isinstance(value, int) and not isinstance(value, bool) and not finite_number(value):
                return f"label {_show_short(value)} {TOO_LARGE}"
            if not finite_number(value):
                return f"label {_show_short(value)} is not a finite number"
            if self.min is not None and value < self.min or self.max is not None and value > self.max:
                return f"label {value} is outside {self.min}..{self.max}"
        elif self.type == "text":
            if not isinstance(value, str):
                return "a text label is a string"
        elif self.type in ("spans", "boxes"):
            keys = ("start", "end") if self.type == "spans" else ("x", "y", "width", "height")
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                return f"a {self.type} label is a list of objects with {', '.join(keys)}"
            for item in value:
                missing = [k for k in keys if not finite_number(item.get(k))]
                if missing:
                    return f"each of the {self.type} needs finite numeric {', '.join(missing)}"
                if self.type == "boxes" and (item["width"] < 0 or item["height"] < 0):
                    return f"a box has a negative size ({item['width']} × {item['height']})"
                if self.type == "spans" and not 0 <= item["start"] <= item["end"]:
                    return f"a span must have 0 <= start <= end, not {item['start']}..{item['end']}"
                if self.choices and item.get("label") is not None and item["label"] not in self.choices:
                    return not_one_of(item["label"], self.choices)
        return None


def _show(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class QueueSpec:
    """A queue and who may work in it."""

    name: str
    roles: tuple[str, ...]
    skills: tuple[str, ...] = ()
    sla: float | None = None  # seconds

    def admits(self, roles: Any, skills: Any) -> bool:
        """Whether a worker with these roles and skills may take work here."""
        return bool(set(self.roles) & set(roles)) and set(self.skills) <= set(skills)


@dataclass(frozen=True)
class Action:
    """A rule's action: its kind, its main value, and its parameters (constants or expressions)."""

    kind: str
    target: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    """One compiled rule. ``key`` is its identity across workflow versions (:func:`rule_key`)."""

    name: str
    section: str
    index: int
    when: Expression | None
    action: Action
    line: int = 0
    builtin: bool = False
    key: str = ""


POSITIONAL_NAME = re.compile(r"(?P<section>on_[a-z]+)\[(?P<number>[1-9][0-9]*)\]")


def positional_name(section: str, index: int) -> str:
    """The name an unnamed rule is shown by: ``on_timer[2]`` for the second rule of ``on_timer``."""
    return f"{section}[{index + 1}]"


def rule_key(section: str, entry: Mapping[str, Any]) -> str:
    """A rule's identity across workflow versions, for "this rule already acted on the task".

    A named rule is its name (editing its condition keeps it the same rule). An unnamed rule is
    named by its position (``on_timer[2]``), which a rule inserted before it shifts, so its identity
    is a fingerprint of what it says instead: ``on_timer#`` and 12 hex digits of the SHA-256 of its
    ``when`` and ``do`` (their values, however the YAML lays them out). Editing an unnamed rule
    makes it another rule.
    """
    name = entry.get("name")
    if isinstance(name, str):
        return name
    source = json.dumps({"when": entry.get("when"), "do": entry.get("do")}, sort_keys=True, ensure_ascii=False,
                        separators=(",", ":"), default=str)
    return f"{section}#{hashlib.sha256(source.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"


_FIELDS = ("section", "rule", "action", "target", "values", "condition", "trace", "reason")


class Decision:
    """What a section decided: the rule (``None`` when none matched), the action and its values.

    ``trace`` (the lines explain shows) is a list; for a decision from
    :meth:`Workflow.decide` it is worked out on first access, from the firing
    rule's condition and the context it decided on, then kept.
    """

    __slots__ = ("section", "rule", "action", "target", "values", "condition", "reason", "_trace", "_when", "_ctx")

    def __init__(self, section: str, rule: str | None, action: str, target: Any = None,
                 values: dict[str, Any] | None = None, condition: str | None = None,
                 trace: list[str] | None = None, reason: str | None = None) -> None:
        self.section = section
        self.rule = rule
        self.action = action
        self.target = target
        self.values = {} if values is None else values
        self.condition = condition
        self.reason = reason
        self._trace = [] if trace is None else trace
        self._when: Expression | None = None  # with _ctx, while the trace is still to be worked out
        self._ctx: Mapping[str, Any] | None = None

    @property
    def trace(self) -> list[str]:
        trace = self._trace
        if trace is None:
            trace = self._trace = _condition_trace(self._when, self._ctx)  # type: ignore[arg-type]
            self._when = self._ctx = None
        return trace

    @trace.setter
    def trace(self, value: list[str]) -> None:
        self._trace, self._when, self._ctx = value, None, None

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        return f"Decision({', '.join(f'{name}={getattr(self, name)!r}' for name in _FIELDS)})"

    def as_detail(self, *, explained: bool = True) -> dict[str, Any]:
        """The decision as stored in an event's detail.

        ``explained=False`` leaves out the condition and the trace of the values
        it saw (rendering the trace is the costly part), for decisions that can
        be traced again later from inputs that never change (``on_create``).
        """
        detail: dict[str, Any] = {"section": self.section}
        if self.target is not None:
            detail["target"] = self.target
        if self.values:
            detail["values"] = self.values
        if explained and self.condition is not None:
            detail["condition"] = self.condition
        if explained and self.trace:
            detail["trace"] = self.trace
        if self.reason:
            detail["reason"] = self.reason
        return detail


EMPTY_SECTION = {
    "on_create": "on_create is an empty list: every new task is held, as no rule routes it",
    "on_quorum": "on_quorum is an empty list: every task that reaches its quorum is held; leave the section "
                 "out for the default (accept a strict majority, else hold)",
    "on_review": "on_review is an empty list: every reviewed task is held; leave the section out for the "
                 "default (a rejection returns the task to its annotators, else accept)",
}
"""The warning for a section written as ``[]``: unlike a section left out, it has no default rules."""

DEFAULT_RULES: dict[str, list[dict[str, Any]]] = {
    "on_quorum": [
        {"name": "default: strict majority", "when": "votes.top_count * 2 > votes.count", "do": "accept"},
        {"name": "default: no majority", "do": {"hold": "no strict majority among the votes"}},
    ],
    "on_review": [
        {"name": "default: rejected", "when": 'review.verdict == "reject"', "do": {"return": "annotators"}},
        {"name": "default: approved", "do": "accept"},
    ],
}


class Workflow:
    """A checked, compiled workflow."""

    def __init__(self, spec: dict[str, Any], rules: dict[str, list[Rule]]):
        self.spec = spec
        self.name: str = spec["workflow"]
        self.description: str = spec.get("description", "")
        self.labels = LabelSpec.from_spec(spec.get("labels"))
        self.queues: dict[str, QueueSpec] = {
            name: QueueSpec(
                name,
                tuple(q.get("roles") or ()),
                tuple(q.get("skills") or ()),
                sla_seconds(q.get("sla")),
            )
            for name, q in (spec.get("queues") or {}).items()
        }
        self.rules = rules
        self.quality: dict[str, Any] = spec.get("quality") or {}
        self.sources: list[dict] = spec.get("sources") or []
        self.sinks: list[dict] = spec.get("sinks") or []
        self.notify: list[dict] = spec.get("notify") or []
        self.plugins: list[str] = spec.get("plugins") or []
        self._plans: dict[str, tuple] = {}

    @classmethod
    def from_spec(cls, spec: dict[str, Any], functions: Mapping[str, Callable] | None = None) -> "Workflow":
        """Rebuild a workflow from an already checked document (as ``apply`` stored it)."""
        compiler = _Compiler(spec, None, functions)
        rules = compiler.compile_rules()
        if compiler.errors:
            raise WorkflowInvalid(compiler.errors)
        return cls(spec, rules)

    def queues_for(self, roles: Any, skills: Any) -> list[str]:
        """The queues a worker with these roles and skills may take work from."""
        return [name for name, q in self.queues.items() if q.admits(roles, skills)]

    def decide(self, section: str, ctx: Mapping[str, Any], passed: Collection[str] = ()) -> Decision:
        """Run ``section``'s rules on ``ctx``: the first rule whose condition holds decides.

        No rule matching, or a rule failing at run time, yields a ``hold``
        decision with the reason, so the task waits for a lead. The rules named
        in ``passed`` are passed over, unevaluated (``on_timer``: a rule that
        already acted on the task in its round lets the next matching rule decide).
        """
        plan = self._plans.get(section)
        if plan is None:
            plan = self._plans[section] = _plan(section, self.rules.get(section, ()))
        try:
            if passed:
                for rule, (test, fire) in zip(self.rules.get(section, ()), plan):
                    if rule.name not in passed and test(ctx):
                        return fire(ctx)
            else:
                for test, fire in plan:
                    if test(ctx):
                        return fire(ctx)
        except (EvaluationError, RecursionError):
            return self._decide_slowly(section, ctx, passed)  # it tells which rule failed, and how
        return _no_rule(section)

    def _decide_slowly(self, section: str, ctx: Mapping[str, Any], passed: Collection[str] = ()) -> Decision:
        """:meth:`decide` step by step, tracing eagerly: how failures become hold decisions."""
        for rule in self.rules.get(section, ()):
            if rule.name in passed:
                continue
            trace: list[str] = []
            try:
                if rule.when is not None:
                    if not holds(rule.when.evaluate(ctx)):
                        continue
                    # Only the rule that fires is traced: tracing formats every value it reads.
                    matched, trace = rule.when.trace(ctx)
                    if not trace:  # a bare name or call: say what it read
                        trace = [_plain_trace(rule.when, ctx, matched)]
                values = {
                    key: (value.evaluate(ctx) if isinstance(value, Expression) else value)
                    for key, value in rule.action.params.items()
                }
                _check_params(values)
            except EvaluationError as exc:
                return Decision(
                    section, rule.name, "hold", condition=_source(rule.when), trace=trace,
                    reason=f"rule `{rule.name}` failed: {exc}",
                )
            return Decision(
                section,
                rule.name,
                rule.action.kind,
                target=rule.action.target,
                values=values,
                condition=_source(rule.when),
                trace=trace,
                reason=values.get("reason") if isinstance(values.get("reason"), str) else None,
            )
        return _no_rule(section)


def _no_rule(section: str) -> Decision:
    # on_timer sees every open task at each tick: no rule matching there means nothing is due
    return Decision(section, None, "hold" if section in HOLD_WHEN_NO_RULE else "none",
                    reason=f"no rule in {section} matched")


def _always(ctx: Mapping[str, Any]) -> bool:
    return True


def _plan(section: str, rules: Any) -> tuple:
    """Per rule, in order: ``(test(ctx), fire(ctx))``; ``fire`` makes the rule's :class:`Decision`.

    ``test`` is the condition's untraced evaluator (``decide``'s truthiness
    applied when the condition is not known to give true or false); ``fire``
    evaluates the action's values and leaves the trace to be worked out on
    first access. Any failure is left to :meth:`Workflow._decide_slowly`.
    """
    plan = []
    for rule in rules:
        when = rule.when
        if when is None:
            test = _always
        elif when.boolean:
            test = when.fast
        else:
            test = (lambda fast: lambda ctx: holds(fast(ctx)))(when.fast)
        plan.append((test, _firing(section, rule)))
    return tuple(plan)


def _firing(section: str, rule: Rule) -> Callable[[Mapping[str, Any]], Decision]:
    name, when = rule.name, rule.when
    kind, target, params = rule.action.kind, rule.action.target, dict(rule.action.params)
    condition = when.source if when is not None else None
    computed = tuple((k, v.fast) for k, v in params.items() if isinstance(v, Expression))
    numeric = any(k in NUMERIC_PARAMS for k, _ in computed)
    new = object.__new__

    if not computed:
        reason = params.get("reason")
        reason = reason if isinstance(reason, str) else None
        if when is None:
            def fire_always(ctx: Mapping[str, Any]) -> Decision:
                d = new(Decision)
                d.section, d.rule, d.action, d.target = section, name, kind, target
                d.values, d.condition, d.reason = dict(params), condition, reason
                d._trace, d._when, d._ctx = [], None, None
                return d

            return fire_always
        if not params:
            def fire_bare(ctx: Mapping[str, Any]) -> Decision:
                d = new(Decision)
                d.section, d.rule, d.action, d.target = section, name, kind, target
                d.values, d.condition, d.reason = {}, condition, reason
                d._trace, d._when, d._ctx = None, when, ctx
                return d

            return fire_bare

        def fire(ctx: Mapping[str, Any]) -> Decision:
            d = new(Decision)
            d.section, d.rule, d.action, d.target = section, name, kind, target
            d.values, d.condition, d.reason = params.copy(), condition, reason
            d._trace, d._when, d._ctx = None, when, ctx
            return d

        return fire

    if len(computed) == 1 and computed[0][0] != "reason":
        (key1, fast1), = computed
        fixed_reason = params.get("reason")
        fixed_reason = fixed_reason if isinstance(fixed_reason, str) else None

        quick_ok = _QUICK_OK.get(key1)

        def fire_one(ctx: Mapping[str, Any]) -> Decision:
            values = params.copy()
            value = values[key1] = fast1(ctx)
            if quick_ok is not None and not quick_ok(value):
                _check_params(values)  # raises unless the value is usable after all (null, 2.0)
            d = new(Decision)
            d.section, d.rule, d.action, d.target = section, name, kind, target
            d.values, d.condition, d.reason = values, condition, fixed_reason
            if when is None:
                d._trace, d._when, d._ctx = [], None, None
            else:
                d._trace, d._when, d._ctx = None, when, ctx
            return d

        return fire_one

    def fire_computed(ctx: Mapping[str, Any]) -> Decision:
        values = params.copy()
        for key, fast in computed:
            values[key] = fast(ctx)
        if numeric:
            _check_params(values)
        d = new(Decision)
        d.section, d.rule, d.action, d.target = section, name, kind, target
        reason = values.get("reason")
        d.values, d.condition, d.reason = values, condition, reason if isinstance(reason, str) else None
        if when is None:
            d._trace, d._when, d._ctx = [], None, None
        else:
            d._trace, d._when, d._ctx = None, when, ctx
        return d

    return fire_computed


# The common good values, tested without param_problem's general checks (decisions are hot).
_QUICK_OK: dict[str, Callable[[Any], bool]] = {
    "overlap": lambda v: v.__class__ is int and 0 < v <= MAX_OVERLAP,
    "priority": lambda v: (v.__class__ is float or v.__class__ is int) and -PRIORITY_LIMIT <= v <= PRIORITY_LIMIT,
}


def _check_params(values: Mapping[str, Any]) -> None:
    """Raise :class:`EvaluationError` (the rule failed: the task is held) for an unusable number."""
    for key in NUMERIC_PARAMS:
        problem = param_problem(key, values.get(key))
        if problem is not None:
            raise EvaluationError(problem)


def _condition_trace(when: Expression, ctx: Mapping[str, Any]) -> list[str]:
    """The trace lines of a condition that held on ``ctx``."""
    try:
        matched, trace = when.trace(ctx)
    except RulesError as exc:
        return [f"{when.source}: {exc}"]
    if not trace:  # a bare name or call: say what it read
        trace = [_plain_trace(when, ctx, matched)]
    return trace


def _plain_trace(expr: Expression, ctx: Mapping[str, Any], value: Any) -> str:
    """A trace line for a condition without comparisons, like ``votes.unanimous = true → true``."""
    import json

    def show(v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**18:
            return _show_short(v)
        try:
            return json.dumps(v, ensure_ascii=False, default=str)[:80]
        except (TypeError, ValueError):
            return _repr(v)[:80]

    names = sorted(n for n in expr.names if "." in n or n == "now")
    seen = []
    for name in names:
        current: Any = ctx
        for part in name.split("."):
            current = current.get(part) if isinstance(current, Mapping) else None
        seen.append(f"{name} = {show(current)}")
    if len(seen) == 1 and expr.source.strip() == names[0]:
        return f"{seen[0]} → {show(value)}"
    return f"{expr.source} → {show(value)}" + (f" ({', '.join(seen)})" if seen else "")


def _source(expr: Expression | None) -> str | None:
    return expr.source if expr is not None else None


def holds(value: Any) -> bool:
    """Whether a condition's value lets its rule fire: anything but ``null``, ``false``, ``0``, NaN,
    ``""``, ``[]`` and ``{}``. A lead's ``--where`` filter is judged the same way (``router.lead``)."""
    return value not in (None, False, 0, "", [], {}) and value == value


def compile_workflow(
    text: str, filename: str, functions: Mapping[str, Callable] | None = None
) -> tuple[Workflow | None, list[Diagnostic]]:
    """Check and compile a workflow file. Returns the workflow (``None`` on errors) and all diagnostics."""
    from .loader import load_document

    try:
        doc = load_document(text, filename)
    except WorkflowInvalid as exc:
        return None, exc.diagnostics
    if not isinstance(doc.data, dict):
        return None, [Diagnostic(filename, 1, 1, "a workflow is a YAML mapping with `workflow:`, `labels:` and `queues:`")]
    diagnostics = _schema_diagnostics(doc)
    compiler = _Compiler(doc.data, doc, functions)
    rules = compiler.compile_rules()
    diagnostics += compiler.errors
    diagnostics += compiler.semantic_checks()
    diagnostics = sorted(set(diagnostics))
    if any(d.severity == "error" for d in diagnostics):
        return None, diagnostics
    return Workflow(doc.data, rules), diagnostics


def load_workflow(text: str, filename: str, functions: Mapping[str, Callable] | None = None) -> Workflow:
    """Compile a workflow or raise :class:`WorkflowInvalid` with every error."""
    workflow, diagnostics = compile_workflow(text, filename, functions)
    if workflow is None:
        raise WorkflowInvalid(diagnostics)
    return workflow


def _schema_diagnostics(doc: Any) -> list[Diagnostic]:
    import jsonschema

    from .schema import build_schema

    validator = jsonschema.Draft202012Validator(build_schema())
    out: list[Diagnostic] = []
    for error in validator.iter_errors(doc.data):
        path = tuple(error.absolute_path)
        if _under_do(path) or (error.validator == "anyOf" and path and path[-1] == "do"):
            continue  # actions get precise messages from the compiler
        if error.validator == "additionalProperties":
            allowed = list((error.schema.get("properties") or {}).keys())
            for key in _extra_keys(error):
                pos = doc.where(path + (key,), key=True)
                hint = difflib.get_close_matches(key, allowed, n=1)
                where = f" in {quoted(path[-1])}" if path and isinstance(path[-1], str) else ""
                msg = f"unknown key {quoted(key)}{where}"
                msg += f"; did you mean `{hint[0]}`?" if hint else f" (allowed: {', '.join(allowed)})"
                out.append(Diagnostic(doc.filename, pos.line, pos.col, msg))
            continue
        if _is_sla(path):
            continue  # said in words by the compiler (_Compiler.semantic_checks), as durations are in rules
        if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
            pos = doc.where(path + (error.instance,), key=True)  # at the key itself, not at its mapping
            out.append(Diagnostic(doc.filename, pos.line, pos.col, _name_message(error.instance, path)))
            continue
        if error.validator == "pattern" and path == ("workflow",):
            pos = doc.where(path)
            out.append(Diagnostic(doc.filename, pos.line, pos.col, _name_message(error.instance, path)))
            continue
        if error.validator == "uniqueItems" and isinstance(error.instance, list):
            out.extend(_duplicate_items(doc, path, error.instance))
            continue
        if error.validator == "not" and error.schema.get("description"):  # a key the schema refuses, and says why
            pos = doc.where(path, key=True)
            out.append(Diagnostic(doc.filename, pos.line, pos.col, error.schema["description"]))
            continue
        pos = doc.where(path)
        out.append(Diagnostic(doc.filename, pos.line, pos.col, _schema_message(error, path)))
    return out


NAMES = {
    "queues": ("queue name", "letters, digits, `_` and `-`"),
    "workflow": ("workflow name", "letters, digits, `_`, `.` and `-`"),
}
"""What the names the schema's patterns check may hold, in words."""


def _name_message(name: Any, path: tuple) -> str:
    """Why a queue's or the workflow's name is refused, in words: ``queue name `bad name` may hold only
    letters, digits, `_` and `-`, starting with a letter or digit (it holds a space)``."""
    what, allowed = NAMES.get(path[0] if path else "", ("name", "letters, digits, `_` and `-`"))
    text = str(name)
    if not text:
        return f"a {what} may not be empty: it holds {allowed}, starting with a letter or digit"
    extra = "_-." if path[:1] == ("workflow",) else "_-"
    bad = next((c for c in text if not (c.isascii() and (c.isalnum() or c in extra))), None)
    if bad is None:
        why = f"it starts with {quoted(text[0])}"
    elif bad == " ":
        why = "it holds a space"
    else:
        why = f"it holds {quoted(bad)}" if bad.isprintable() else f"it holds {one_line(bad)}"
    return f"{what} {quoted(text)} may hold only {allowed}, starting with a letter or digit ({why})"


def _duplicate_items(doc: Any, path: tuple, items: list) -> list[Diagnostic]:
    """A diagnostic at each repeated item of a list whose items must differ (``labels.choices``),
    naming it and where it was first."""
    out = []
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        key = json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
        if key not in first:
            first[key] = index
            continue
        pos, was = doc.where(path + (index,)), doc.where(path + (first[key],))
        shown = quoted(item) if isinstance(item, str) else _show_short(item)
        out.append(Diagnostic(doc.filename, pos.line, pos.col,
                              f"`{'.'.join(map(str, path))}`: {shown} is listed twice (first at {was.line}:{was.col})"))
    return out


def _is_sla(path: tuple) -> bool:
    """Whether a schema path is a queue's ``sla`` (``queues.NAME.sla``)."""
    return len(path) == 3 and path[0] == "queues" and path[2] == "sla"


def _under_do(path: tuple) -> bool:
    return len(path) >= 3 and path[0] in SECTIONS and path[2] == "do"


def _extra_keys(error: Any) -> list[str]:
    props = error.schema.get("properties") or {}
    return [k for k in error.instance if k not in props] if isinstance(error.instance, dict) else []


def _schema_message(error: Any, path: tuple) -> str:
    where = ".".join(str(p) for p in path) or "the document"
    if error.validator == "required":
        return f"{one_line(where)}: {error.message.replace('is a required property', 'is required')}"
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{quoted(where)} should be {wanted}, not {_show(error.instance)}"
    if error.validator == "enum":
        return f"{quoted(where)} is {_show(error.instance)}; expected one of {', '.join(map(str, error.validator_value))}"
    return f"{quoted(where)}: {error.message}"


class _Compiler:
    """Compiles rules from a document; collects diagnostics when given a located document."""

    def __init__(self, spec: dict[str, Any], doc: Any, functions: Mapping[str, Callable] | None):
        self.spec = spec
        self.doc = doc
        self.functions = functions
        self.errors: list[Diagnostic] = []
        self.filename = doc.filename if doc is not None else "<stored workflow>"
        # a stored version was checked when it was applied: the checks added since are not made again
        self.strict = doc is not None
        self.compiled: dict[tuple[str, str, str], Expression] = {}  # by section and text: aliases repeat them
        self.unconditional: dict[tuple[str, int], bool] = {}  # rules whose `when` is a constant true

    def error(self, path: tuple, message: str, *, key: bool = False, offset: int | None = None,
              severity: str = "error") -> None:
        """Record a diagnostic at ``path`` (its key with ``key``); ``offset`` is a character of the
        value's text (an expression's mistake), placed in the file through quotes and folds."""
        if self.doc is None:
            pos_line, pos_col = 1, 1
        else:
            if offset is not None and not key:
                pos_line, pos_col = self.doc.locate(path, offset)
            else:
                pos = self.doc.where(path, key=key)
                pos_line, pos_col = pos.line, pos.col
        self.errors.append(Diagnostic(self.filename, pos_line, pos_col, message, severity))

    def compile_rules(self) -> dict[str, list[Rule]]:
        rules: dict[str, list[Rule]] = {}
        for section in SECTIONS:
            entries = self.spec.get(section)
            builtin = entries is None and section in DEFAULT_RULES
            if builtin:
                entries = DEFAULT_RULES[section]
            if not isinstance(entries, list):
                continue
            compiled = []
            seen: dict[str, int] = {}
            for index, entry in enumerate(entries):
                if not isinstance(entry, dict) or "do" not in entry:
                    continue  # reported by the schema
                name = entry.get("name") if isinstance(entry.get("name"), str) else positional_name(section, index)
                if name in seen:
                    self.error((section, index, "name"), f"duplicate rule name {quoted(name)} in {section} (first at rule {seen[name] + 1})")
                seen[name] = index
                rule = self.compile_rule(section, index, name, entry, builtin)
                if rule is not None:
                    compiled.append(rule)
            rules[section] = compiled
        return rules

    def compile_expr(self, section: str, path: tuple, value: Any) -> Expression | None:
        key = (section, type(value).__name__, value if isinstance(value, str) else repr(value))
        if key in self.compiled:
            return self.compiled[key]
        try:
            expr = compile_expression(value, roots=SECTION_ROOTS[section], functions=self.functions,
                                      strict=self.strict)
        except ExpressionError as exc:
            message = exc.message if hasattr(exc, "message") else str(exc)
            suggestion = getattr(exc, "suggestion", None)
            if suggestion and suggestion not in message:
                message += f"; {suggestion}"
            self.error(path, message, offset=getattr(exc, "offset", 0) or 0)
            return None
        self.compiled[key] = expr
        return expr

    def compile_rule(self, section: str, index: int, name: str, entry: dict, builtin: bool) -> Rule | None:
        base = (section, index)
        when = None
        if "when" in entry:
            when = self.compile_expr(section, base + ("when",), entry["when"])
        # the action is checked even when the condition failed, so one run reports every mistake
        action = self.compile_action(section, base + ("do",), entry["do"])
        if when is not None and when.constant and holds(when.evaluate({})):
            self.unconditional[base] = True  # `when: true`: as if it had no `when`
        if action is None or ("when" in entry and when is None):
            return None
        line = self.doc.where(base).line if self.doc is not None else 0
        return Rule(name, section, index, when, action, line, builtin, rule_key(section, entry))

    def compile_action(self, section: str, path: tuple, do: Any) -> Action | None:
        allowed = sorted(n for n, spec in ACTIONS.items() if section in spec.sections)
        if isinstance(do, str):
            kind, target, extra = do, None, {}
        elif isinstance(do, dict) and do:
            kinds = [k for k in do if k in ACTIONS]
            if len(kinds) != 1:
                unknown = [k for k in do if k not in ACTIONS]
                if kinds:
                    self.error(path, f"one action per rule, found {', '.join(kinds)}")
                else:
                    self._unknown_action(path + (unknown[0],), unknown[0], allowed, key=True)
                return None
            kind = kinds[0]
            target = do[kind]
            extra = {k: v for k, v in do.items() if k != kind}
        else:
            self.error(path, f"`do` must be an action name or a mapping; one of {', '.join(allowed)}")
            return None
        if kind not in ACTIONS:
            self._unknown_action(path, kind, allowed)
            return None
        spec = ACTIONS[kind]
        if section not in spec.sections:
            self.error(path, f"`{kind}` cannot be used in {section}; it is for {', '.join(sorted(spec.sections))}")
            return None
        ok = True
        for key in extra:
            if key not in spec.params:
                hint = difflib.get_close_matches(key, spec.params, n=1)
                suffix = f"; did you mean `{hint[0]}`?" if hint else (
                    f" (it takes {', '.join(spec.params)})" if spec.params else " (it takes no parameters)")
                self.error(path + (key,), f"unknown parameter {quoted(key)} for `{kind}`{suffix}", key=True)
                ok = False
        params: dict[str, Any] = {}
        problem = _target_problem(kind, spec.target, target)
        if problem is not None:
            self.error(path + (kind,) if isinstance(do, dict) else path, problem)
            return None
        if spec.target == "queue":
            queues = self.spec.get("queues") or {}
            if not isinstance(target, str):
                self.error(path + (kind,), f"`{kind}` needs a queue name")
                ok = False
            elif isinstance(queues, dict) and target not in queues:
                hint = difflib.get_close_matches(target, list(queues), n=1)
                suffix = (f"; did you mean {quoted(hint[0])}?" if hint
                          else f" (queues: {', '.join(one_line(str(q)) for q in queues)})")
                self.error(path + (kind,), f"undefined queue {quoted(target)}{suffix}")
                ok = False
        elif spec.target == "accept" and target is not None:
            if isinstance(target, dict) and "label" in target:
                params["label"] = target["label"]
            target = None
        elif spec.target == "reason":
            params.setdefault("reason", target if isinstance(target, str) else None)
            target = None
        for key, value in extra.items():
            if key in spec.params:
                params[key] = value
        for key in list(params):
            if key in spec.expression_params or key == "label":
                value = params[key]
                if isinstance(value, str) or key in ("overlap", "priority"):
                    where = path + ((kind, "label") if key == "label" else (key,))
                    expr = self.compile_expr(section, where, value)
                    if expr is None:
                        ok = False
                        del params[key]  # reported; not checked again below
                        continue
                    params[key] = _constant_or(expr)
        for key in NUMERIC_PARAMS:
            value = params.get(key)
            problem = None if isinstance(value, Expression) else param_problem(key, value)
            if problem is not None:
                self.error(path + (key,), problem)
                ok = False
        label = params.get("label")
        if label is not None and not isinstance(label, Expression):
            problem = LabelSpec.from_spec(self.spec.get("labels")).problem(label)
            if problem is not None:
                self.error(path + (kind, "label"), f"`accept` can never use this label: {problem}")
                ok = False
        elif "label" in params and label is None and self.strict:  # `label: null`, `label: '1/0'`: held, always
            self.error(path + (kind, "label"), "`accept` can never use this label: it is always null, and a task "
                       "with no label to accept is held; write `do: accept` for the prediction's (or the votes', "
                       "or the reviewer's) label")
            ok = False
        if "reason" in extra and not isinstance(extra["reason"], str):
            self.error(path + ("reason",), f"`reason` is text, not {_show_short(extra['reason'])}")
            ok = False
        if kind == "annotate":
            params.setdefault("overlap", 1)
        return Action(kind, target, params) if ok else None

    def _unknown_action(self, path: tuple, kind: Any, allowed: list[str], key: bool = False) -> None:
        hint = difflib.get_close_matches(str(kind), allowed, n=1)
        suffix = f"; did you mean `{hint[0]}`?" if hint else f" (expected one of {', '.join(allowed)})"
        self.error(path, f"unknown action {quoted(kind)}{suffix}", key=key)

    def semantic_checks(self) -> list[Diagnostic]:
        out: list[Diagnostic] = []
        labels = self.spec.get("labels")
        if isinstance(labels, dict) and labels.get("type", "choice") in ("choice", "multi_choice") and not labels.get("choices"):
            pos = self.doc.where(("labels",))
            out.append(Diagnostic(self.filename, pos.line, pos.col, f"labels of type {labels.get('type', 'choice')} need `choices`"))
        for path, value in _non_finite(self.spec, ()):
            pos = self.doc.where(path)
            out.append(Diagnostic(self.filename, pos.line, pos.col,
                                  f"{_setting_named(self.spec, path)} must be a finite number, not {value!r}"))
        for path, text, is_key in _one_line_values(self.spec):
            if isinstance(text, str) and text.endswith("\n"):
                pos = self.doc.where(path, key=is_key)
                out.append(Diagnostic(self.filename, pos.line, pos.col,
                                      f"{_show_short(text)} ends with a line break (a `|` block?); write it on one line"))
            elif _is_sla(path) and not (isinstance(text, float) and not math.isfinite(text)):  # those said above
                try:
                    durations.seconds(text)
                except durations.DurationError as exc:
                    pos = self.doc.where(path)
                    out.append(Diagnostic(self.filename, pos.line, pos.col,
                                          f"`{'.'.join(map(str, path))}` is {_show_short(text)}: {exc}"))
        if isinstance(labels, dict) and _number(labels.get("min")) and _number(labels.get("max")) \
                and labels["min"] > labels["max"]:
            pos = self.doc.where(("labels", "min"))
            out.append(Diagnostic(self.filename, pos.line, pos.col,
                                  f"labels: min ({labels['min']}) is above max ({labels['max']}); no label could be valid"))
        out.extend(self._band_checks())
        for section in SECTIONS:
            entries = self.spec.get(section)
            if entries == [] and section in HOLD_WHEN_NO_RULE:
                pos = self.doc.where((section,), key=True)
                out.append(Diagnostic(self.filename, pos.line, pos.col, EMPTY_SECTION[section], "warning"))
            if not isinstance(entries, list) or not entries:
                continue
            unconditional = None
            for index, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    continue
                pos = self.doc.where((section, index))
                if unconditional is not None and section != "on_timer":
                    # on_timer passes a rule that does not act over (it already acted in the task's round, a
                    # release with no slot, ...), so the rules after an unconditional one still decide
                    why = ("has no `when`" if "when" not in entries[unconditional]
                           else f"always matches (`when: {_show_short(entries[unconditional]['when'])}`)")
                    out.append(Diagnostic(self.filename, pos.line, pos.col,
                                          f"this rule can never match: rule {unconditional + 1} of {section} {why}",
                                          "warning"))
                    break
                if "when" not in entry or self.unconditional.get((section, index)):
                    unconditional = index
                if section == "on_timer" and not isinstance(entry.get("name"), str):
                    out.append(Diagnostic(
                        self.filename, pos.line, pos.col,
                        "this on_timer rule has no `name`: it is known by its `when` and `do`, so once edited it "
                        "is a new rule, which may act again on tasks the old one acted on in their round; "
                        "give it a `name:` to keep it the same rule", "warning"))
            if unconditional is None and section in ("on_create", "on_quorum", "on_review"):
                pos = self.doc.where((section,), key=True)
                out.append(Diagnostic(self.filename, pos.line, pos.col,
                                      f"{section} has no rule without `when`: a task no rule matches is held",
                                      "warning"))
        return out


    def _band_checks(self) -> list[Diagnostic]:
        """``quality.agreement``: ``alert`` above ``excellent`` (defaults 0.6 and 0.8) inverts the bands."""
        quality = self.spec.get("quality")
        bands = quality.get("agreement") if isinstance(quality, dict) else None
        if not isinstance(bands, dict):
            return []
        excellent, alert = bands.get("excellent", 0.8), bands.get("alert", 0.6)
        if not (_number(excellent) and _number(alert)) or alert <= excellent:
            return []
        pos = self.doc.where(("quality", "agreement", "alert" if "alert" in bands else "excellent"))
        return [Diagnostic(self.filename, pos.line, pos.col,
                           f"quality.agreement: alert ({alert}{'' if 'alert' in bands else ', the default'}) is "
                           f"above excellent ({excellent}{'' if 'excellent' in bands else ', the default'}); "
                           "a value could be excellent and alert at once")]


PLUGIN_SECTIONS = ("sources", "reviewers", "sinks", "notify")


def _setting_named(spec: dict, path: tuple) -> str:
    """A value's place as messages name it: a plugin entry's setting as the other messages about
    entries say it (``sources entry 1 (`jsonl`): setting `finished_after:` ``: entries counted from
    1, as people count), anything else as its dotted path (`` `labels.min` ``)."""
    if len(path) >= 3 and path[0] in PLUGIN_SECTIONS and isinstance(path[1], int):
        entries = spec.get(path[0])
        entry = entries[path[1]] if isinstance(entries, list) and path[1] < len(entries) else None
        plugin = entry.get("plugin") if isinstance(entry, dict) else None
        named = f" (`{plugin}`)" if isinstance(plugin, str) else ""
        return f"{path[0]} entry {path[1] + 1}{named}: setting `{'.'.join(map(str, path[2:]))}:`"
    return quoted(".".join(map(str, path)))


def _non_finite(data: Any, path: tuple) -> Iterator[tuple[tuple, float]]:
    """``(path, value)`` of ``.nan`` and ``.inf`` values: YAML has them, no setting of a workflow means them."""
    if isinstance(data, float) and not math.isfinite(data):
        yield path, data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _non_finite(value, path + (key,))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _non_finite(value, path + (index,))


def _one_line_values(spec: dict[str, Any]) -> list[tuple[tuple, Any, bool]]:
    """``(path, value, is_key)`` of the workflow's name, queue names and SLAs.

    The schema's patterns check them, but its ``$`` (Python's) also matches
    before a final line break, which a `|` block scalar leaves.
    """
    found: list[tuple[tuple, Any, bool]] = [(("workflow",), spec.get("workflow"), False)]
    queues = spec.get("queues")
    if isinstance(queues, dict):
        for name, queue in queues.items():
            found.append((("queues", name), name, True))
            if isinstance(queue, dict) and "sla" in queue:
                found.append((("queues", name, "sla"), queue["sla"], False))
    return found


def finite_number(value: Any) -> bool:
    """A number (not a bool) that is neither NaN nor infinite: a float, or an integer whose float is
    finite (at most about 1.8e308 in size, as a float is; an integer of 310 digits is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _target_problem(kind: str, target_kind: str | None, target: Any) -> str | None:
    """Why ``target`` cannot be the main value of action ``kind``; ``None`` when it can."""
    if target_kind == "queue":
        return None  # checked against the workflow's queues by the compiler
    if target_kind == "skill":
        if isinstance(target, str) and target.strip():
            return None
        return f"`{kind}` needs a skill name, e.g. {{{kind}: contracts}}" + (
            "" if target is None else f", not {_show_short(target)}")
    if target is None:
        return None
    if target_kind == "accept":
        if isinstance(target, dict) and set(target) <= {"label"}:
            return None
        return ("`accept` takes no value, or {label: EXPR} to set the label "
                f"(e.g. {{accept: {{label: '\"bug\"'}}}}), not {_show_short(target)}")
    if target_kind == "reason":
        return None if isinstance(target, str) else (
            f"`{kind}` takes the reason as text, e.g. {{{kind}: \"why\"}}, not {_show_short(target)}")
    if target_kind == "return_to":
        return None if target == "annotators" else (
            f"`return` gives the task back to `annotators` (the only value), not {_show_short(target)}")
    if target_kind == "worker":
        return None if target == "worker" else (
            f"`pause` pauses the worker who submitted: `pause: worker` (the only value), not {_show_short(target)}")
    if target is True:
        return None
    return f"`{kind}` takes no value (write `{kind}` or {{{kind}: true}}), not {_show_short(target)}"


def _constant_or(expr: Expression) -> Any:
    """A constant expression's value, else the expression (evaluated per decision)."""
    # literals and operators on them only: a call (`sample(0.1)`, a plugin's `tick()`) has no
    # names yet may differ per decision
    if expr.constant:
        try:
            return expr.evaluate({})
        except RulesError:
            return expr
    return expr
