"""Which matching ``on_timer`` rule acts: the pass-over rules the tick, ``replay`` and ``labelyard test`` share.

``on_timer`` is not "the first matching rule decides": a matching rule that would not act is passed
over and the rules after it are tried (``docs/workflow-language.md``, "A rule that does not act lets
the next one decide"). A rule is passed over when it is a ``release`` and there is no slot (a task
looked at on its own), when it already acted on the task in its round, and when its action would
leave the task where it is (``unchanged``). A gold task is never moved: only its ``release`` rules
run. Pure: the history a reason needs (did the rule act in this round?) is asked through callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STAGE_OF_ACTION = {"annotate": "annotate", "review": "review", "escalate": "escalated"}
COUNTED = ("already", "unchanged")
"""The reasons a rule is passed over that ``tick`` counts, when no rule acts; not ``no slot`` (a
``release`` in the task pass) nor ``moved`` (the tick already moved the task)."""

PASSED_OVER = {
    "no slot": "a `release` with no slot to release (a task looked at on its own: no `assignment.*`)",
    "already": "it already acted on the task in this round",
    "unchanged": "its action would leave the task in the stage and queue it is in, at its priority",
    "moved": "an earlier rule of the same tick already moved the task",
}
"""Why a matching rule is passed over, in words (rule tests say it)."""


@dataclass
class Choice:
    """Which matching ``on_timer`` rule acts: ``decision`` (its ``rule`` is ``None`` when none does), the
    rules passed over on the way, and the first of their reasons a tick counts (:data:`COUNTED`)."""

    decision: Any
    passed: tuple[str, ...] = ()
    why: str | None = None


def choose(workflow: Any, ctx: Mapping[str, Any], pass_over: Callable[[Any], str | None],
           passed: Sequence[str] = (), why: str | None = None, decision: Any = None,
           reasons: dict[str, str] | None = None) -> Choice:
    """The first matching ``on_timer`` rule that acts on ``ctx``: each matching rule ``pass_over`` gives a
    reason for is passed over and the rules after it are tried, the rules named in ``passed`` are not.

    ``decision`` is the workflow's decision with ``passed`` passed over, when already taken; ``reasons``,
    when given, receives each rule passed over here with its reason. The tick, ``labelyard replay`` and
    ``labelyard test`` all decide through here, with :func:`pass_over_reason` as the reasons.
    """
    passed = list(passed)
    while True:
        if decision is None:
            decision = workflow.decide("on_timer", ctx, passed)
        if decision.rule is None:
            return Choice(decision, tuple(passed), why)
        reason = pass_over(decision)
        if reason is None:
            return Choice(decision, tuple(passed), why)
        passed.append(decision.rule)
        if reasons is not None:
            reasons[decision.rule] = reason
        if why is None and reason in COUNTED:
            why = reason
        decision = None


def pass_over_reason(decision: Any, task: Mapping[str, Any], *, slot: bool, acted: Callable[[str], bool],
                     opened: Callable[[str], bool], corrections: Collection[str] = ()) -> str | None:
    """Why a matching ``on_timer`` rule does not act on ``task`` (on a ``slot`` of it, in the assignment
    pass), so the next matching rule decides; ``None`` when it acts.

    ``no slot``: a ``release`` with no slot to release (the task pass). ``already``: the rule acted on
    the task in its round (``acted(rule)``). ``unchanged``: its action would open the stage and queue
    the task is in (:func:`stays`) and give it no other priority (:func:`new_priority`; ``opened(rule)``:
    the rule moved the task into this stage in the round before).
    """
    if decision.action == "release":
        return None if slot else "no slot"
    if acted(decision.rule):
        return "already"
    if stays(decision, task, corrections) and new_priority(decision, task, opened) is None:
        return "unchanged"
    return None


def new_priority(decision: Any, task: Mapping[str, Any], opened: Callable[[str], bool]) -> float | None:
    """The priority a reprioritise sets, or ``None`` when the decision gives the task's own (or none).

    Not when this rule opened the stage (it moved the task in the round before): it set the priority then.
    """
    priority = decision.values.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, (int, float)) or float(priority) == task["priority"]:
        return None
    return None if opened(decision.rule) else float(priority)


def stays(decision: Any, task: Mapping[str, Any], corrections: Collection[str] = ()) -> bool:
    """Whether the action would open the stage and queue the task is already in.

    A correction round (stage ``correct``) is an ``annotate`` stage of each queue where its
    corrections wait (``corrections``: each in the queue its annotator voted in) for this: a new
    annotate round would expire the corrections offered to them, and they may not claim the new
    round (they already voted), so with no other annotator the task was stuck.
    """
    stage = STAGE_OF_ACTION.get(decision.action)
    if task["stage"] == "correct":
        return stage == "annotate" and (decision.target == task["queue"] or decision.target in corrections)
    return stage is not None and stage == task["stage"] and decision.target == task["queue"]


def only(workflow: Any, rules: Sequence[Any]) -> Any:
    """``workflow`` with ``rules`` as its whole ``on_timer`` section."""
    return type(workflow)(workflow.spec, {**workflow.rules, "on_timer": list(rules)})


def gold_rules(workflow: Any) -> Any:
    """``workflow`` with only its ``release`` rules in ``on_timer``: all a gold task's timers may do."""
    return only(workflow, [r for r in workflow.rules.get("on_timer") or () if r.action.kind == "release"])


def decide_alone(workflow: Any, ctx: Mapping[str, Any], reasons: dict[str, str] | None = None) -> Any:
    """The ``on_timer`` decision a tick takes on the facts of ``ctx`` alone, with no history (no rule has
    acted on the task in its round yet): a rule test's.

    The facts are a slot of the task when some ``assignment.*`` fact is given (not null), else the
    task on its own, where a ``release`` is passed over; ``task.gold`` true runs only the ``release``
    rules; an action into ``task.stage`` and ``task.queue`` at ``task.priority`` changes nothing and
    is passed over. ``reasons`` receives each matching rule passed over, with its reason.
    """
    task = ctx.get("task")
    task = task if isinstance(task, Mapping) else {}
    assignment = ctx.get("assignment")
    slot = isinstance(assignment, Mapping) and any(value is not None for value in assignment.values())
    if task.get("gold") is True:
        workflow = gold_rules(workflow)
    facts = {"stage": task.get("stage"), "queue": task.get("queue"), "priority": task.get("priority")}

    def pass_over(decision: Any) -> str | None:
        return pass_over_reason(decision, facts, slot=slot, acted=lambda rule: False, opened=lambda rule: False)

    return choose(workflow, ctx, pass_over, reasons=reasons).decision
