"""``labelyard tick``: the workflow's ``on_timer`` rules over active assignments and open tasks.

Two passes, each reading page by page (only active assignments and open
tasks, through their indexes) and acting in one short transaction per page:

1. every active assignment, with ``assignment.*`` (age since it was claimed,
   worker, kind) beside ``task.*``; ``release`` ends that assignment and gives
   its slot back to the queue; a task action (escalate, hold…) moves its task.
2. every open task, with ``assignment.*`` null; ``release`` does nothing here
   (pass 1 saw the assignments).

Ticks are idempotent: a released assignment is no longer active; a rule acts
at most once on a task per round (the round is recorded in the event and
checked); an action that would leave the task where it is (``escalate:
experts`` on a task already escalated to ``experts``) is not taken. Each row is
read again inside the transaction and skipped when it changed meanwhile. A
task moves at most once per tick: one escalated to a queue that sorts later is
met again further on, and waits for the next tick (as it would if the queue
sorted earlier).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import clock
from .context import stored_prediction, task_facts
from .engine import decision_facts
from .lead import hold_task, release_assignment

PAGE = 500
ACTOR = "labelyard tick"
STAGE_OF_ACTION = {"annotate": "annotate", "review": "review", "escalate": "escalated"}


@dataclass
class TickReport:
    """What a tick did."""

    assignments: int = 0
    tasks: int = 0
    released: int = 0
    actions: Counter = field(default_factory=Counter)
    already: int = 0  # a rule that already acted on the task in this round
    unchanged: int = 0  # an action that would leave the task where it is

    def as_dict(self) -> dict[str, Any]:
        return {"assignments_checked": self.assignments, "tasks_checked": self.tasks, "released": self.released,
                "actions": dict(self.actions), "already_fired": self.already, "unchanged": self.unchanged}


def tick(engine, *, page: int = PAGE, actor: str = ACTOR) -> TickReport:
    """Run ``on_timer`` once over active assignments and open tasks at ``clock.now()``."""
    report = TickReport()
    rules = engine.workflow.rules.get("on_timer") or []
    if not rules:
        return report
    now = clock.now()
    queues: dict[str, Any] = {}

    def queue_facts(name):
        if name not in queues:
            queues[name] = engine._queue_facts(name, now)
        return queues[name]

    def context(task, assignment) -> dict[str, Any]:
        facts = {}
        if assignment is not None:
            start = assignment["updated_at"]  # an active slot's last change is its claim
            facts = {"age": now - start, "worker": assignment["worker"], "kind": assignment["stage"]}
        return {"task": task_facts(task, now), "prediction": stored_prediction(task), "assignment": facts,
                "queue": queue_facts(task["queue"]), "now": now}

    store = engine.store
    moved: set[int] = set()  # tasks an action moved this tick: decided once, even if met again further on
    after = 0
    while True:
        slots = store.active_assignments_after(after, page)
        if not slots:
            break
        after = slots[-1]["id"]
        report.assignments += len(slots)
        todo = []
        for a in slots:
            task = store.task(a["task_id"])
            if task is None:
                continue
            ctx = context(task, a)
            decision = engine.workflow.decide("on_timer", ctx)
            if decision.rule is not None and (decision.action == "release" or not task["is_gold"]):
                todo.append((a, task, decision, decision_facts(ctx)))
        _act(engine, todo, now, actor, report, moved)

    if all(rule.when is not None and rule.when.roots <= {"assignment", "now"} for rule in rules):
        return report  # every rule is about assignments: nothing to decide per task
    queue, after = "", 0
    while True:
        tasks = store.tasks_after("open", queue, after, page)
        if not tasks:
            break
        queue, after = tasks[-1]["queue"], tasks[-1]["id"]
        # A task moved to a queue that sorts later is met again on a later page: not again.
        tasks = [t for t in tasks if t["id"] not in moved]
        report.tasks += len(tasks)
        todo = []
        for task in tasks:
            ctx = context(task, None)
            decision = engine.workflow.decide("on_timer", ctx)
            if decision.rule is not None and decision.action != "release":
                todo.append((None, task, decision, decision_facts(ctx)))
        _act(engine, todo, now, actor, report, moved)
    return report


def _act(engine, todo: list, now: float, actor: str, report: TickReport, moved: set[int]) -> None:
    """Apply one page of decisions in one transaction, each on fresh rows; ``moved`` gathers the
    tasks moved this tick, which no later decision of the tick touches."""
    if not todo:
        return
    store = engine.store
    with store.transaction():
        for a, old, decision, facts in todo:
            task = store.task(old["id"])
            if task["id"] in moved or task["status"] != "open" or task["round"] != old["round"]:
                continue  # moved on since it was read (or by an earlier decision of this page)
            if a is not None:
                a = store.assignment(a["id"])
                if a["status"] != "active":
                    continue
            if decision.action == "release":
                release_assignment(engine, a, now, actor,
                                   detail={"rule": decision.rule, "section": "on_timer", "round": task["round"],
                                           "facts": facts})
                report.released += 1
                continue
            if store.timer_fired(task["id"], decision.rule, task["round"]):
                report.already += 1
                continue
            stage = STAGE_OF_ACTION.get(decision.action)
            if stage is not None and stage == task["stage"] and decision.target == task["queue"]:
                report.unchanged += 1
                continue
            mark = {"section": "on_timer", "round": task["round"]}
            if a is not None:
                mark["assignment"] = a["id"]
            if decision.action == "hold":
                hold_task(engine, task, now, actor, decision.reason or f"held by rule `{decision.rule}`",
                          rule=decision.rule, detail={**decision.as_detail(), **mark, "facts": facts})
            else:
                engine._apply(task, decision, now, actor, votes=engine._votes(task["id"]), final_by="lead",
                              facts=facts, extra=mark)
            report.actions[decision.action] += 1
            moved.add(task["id"])
