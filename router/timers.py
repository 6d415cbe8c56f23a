"""``labelyard tick``: the workflow's ``on_timer`` rules over active assignments and open tasks.

Two passes, each reading page by page (only active assignments and open
tasks, through their indexes) and acting in one short transaction per page:

1. every active assignment, with ``assignment.*`` (age since it was claimed,
   worker, kind) beside ``task.*``; ``release`` ends that assignment and gives
   its slot back to the queue; a task action (escalate, hold…) moves its task.
   A gold task is never moved: only the ``release`` rules are run for its slots.
2. every open task, with ``assignment.*`` null; a ``release`` is passed over
   here (pass 1 saw the assignments). Skipped when the leading rules, whose
   conditions read only ``now`` and ``assignment.*`` and so decide the same for
   every task, show that no task can be acted on this tick.

``queue.*`` facts are read once per queue and tick, then kept up to date as
the tick moves tasks and releases slots (:class:`QueueBook`): each decision
sees, and its event records, the values at the moment it was taken. What
other processes change meanwhile (another tick or run, claims, ingest) is
read again before each page is decided and again inside its write
transaction, whenever another connection committed since the last read. A
decision that read them is taken again, from the page's row, when the queue's
counts changed since it was made. So ticks may overlap: ``queue.waiting >
1500`` over 3000 waiting tasks moves 1500 in all, however many ticks run.

Ticks are idempotent: a released assignment is no longer active; a rule acts
at most once on a task per round (the round and the rule's key are recorded
in the event and checked: :class:`RuleIdentities`); an action that would
leave the task where it is (``escalate: experts`` on a task already escalated
to ``experts``) is not taken, except that one giving another ``priority``
sets the priority (a reprioritise). Such a rule is passed over and the next
matching rule decides (:func:`choose`, :func:`pass_over_reason`), so a rule
that held a task a lead then unheld does not keep a later ``release`` from
its stale slots. Each row is read again inside the
transaction and skipped when it changed meanwhile. A task moves at most once per tick: one escalated to a queue that
sorts later is met again further on, and waits for the next tick (as it would
if the queue sorted earlier).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

from rules.timer_choice import choose, gold_rules, new_priority, only, pass_over_reason
from rules.timer_choice import stays as _stays
from rules.workflow import POSITIONAL_NAME, rule_key

from . import clock
from .context import Lazy, lazy_prediction, lazy_task_facts
from .engine import decision_facts
from .lead import hold_task, release_assignment
from .returns import correction_queues
from .store import loads
from .versions import VersionsAt

PAGE = 500
ACTOR = "labelyard tick"
SAME_FOR_EVERY_TASK = frozenset({"assignment", "now"})  # roots whose values are the same for every open task
TASK_ACTED = ("held", "routed", "priority", "final", "invalid")
"""The events of a timer rule acting on its task (``released`` is a rule acting on one slot)."""


@dataclass
class TickReport:
    """What a tick did."""

    assignments: int = 0
    tasks: int = 0
    released: int = 0
    actions: Counter = field(default_factory=Counter)
    # slots and tasks no rule acted on although one matched, by why the first matching rule was passed over:
    already: int = 0  # it already acted on the task in this round
    unchanged: int = 0  # its action would leave the task where it is

    def as_dict(self) -> dict[str, Any]:
        return {"assignments_checked": self.assignments, "tasks_checked": self.tasks, "released": self.released,
                "actions": dict(self.actions), "already_fired": self.already, "unchanged": self.unchanged}


def tick(engine, *, page: int = PAGE, actor: str = ACTOR) -> TickReport:
    """Run ``on_timer`` once over active assignments and open tasks at ``clock.now()``."""
    report = TickReport()
    engine.follow_active()  # a long `labelyard run` ticks by the version active now
    if not engine.workflow.rules.get("on_timer"):
        return report
    run = _Tick(engine, clock.now(), actor, report)
    run.assignment_pass(page)
    if task_pass_needed(engine.workflow, run.now):
        run.task_pass(page)
    return report


def task_pass_needed(workflow, now: float) -> bool:
    """Whether the task pass may act on some open task at ``now``.

    The leading rules whose conditions read only ``now`` and ``assignment.*``
    (null for a task) decide the same for every open task, so they are decided
    once: a task action matching may act; a ``release`` is passed over (a task
    has no slot to release), and the rules after them need the pass.
    """
    rules = workflow.rules.get("on_timer") or []
    leading = list(takewhile(_same_for_every_task, rules))
    ctx = {"task": {}, "prediction": {}, "assignment": {}, "queue": {}, "now": now}
    releases = {r.name for r in leading if r.action.kind == "release"}
    try:
        decision = only(workflow, leading).decide("on_timer", ctx, releases)
    except Exception:  # noqa: BLE001 - in doubt, run the pass
        return True
    return decision.rule is not None or len(leading) < len(rules)


def _same_for_every_task(rule) -> bool:
    return rule.when is None or rule.when.roots <= SAME_FOR_EVERY_TASK


@dataclass
class _Counts:
    """One queue's counters, kept up to date through a tick."""

    waiting: int
    active: int
    oldest: float | None  # stage_at of the oldest waiting task (None: none waits)
    oldest_known: bool = True  # False once that task left: read again when a rule asks


class QueueBook:
    """``queue.*`` for one tick: read once per queue, then changed as the tick changes tasks, and read
    again (:meth:`refresh`) when another process committed since."""

    def __init__(self, engine, now: float):
        self.engine, self.now = engine, now
        self._counts: dict[str, _Counts] = {}
        self._versions: dict[str, int] = {}
        self._snapshots: dict[str, tuple[int, Any]] = {}  # the latest, shared until the queue changes
        self._data_version: int | None = None  # the database's as of the counts' last read

    @property
    def tracking(self) -> bool:
        """Whether a rule read some queue's facts (then the tick's changes are counted)."""
        return bool(self._counts)

    def version(self, name: str | None) -> int:
        """Goes up each time the queue's counters change."""
        return self._versions.get(name, 0) if name is not None else 0

    def facts(self, name: str | None) -> Lazy:
        """``queue.*`` for a queue as they are when a rule first reads them."""
        return Lazy(lambda: self._snapshot(name))

    def _snapshot(self, name: str | None) -> Any:
        if name is None:
            return {}
        version = self.version(name)
        kept = self._snapshots.get(name)
        if kept is None or kept[0] != version:
            kept = self._snapshots[name] = (version, self._read(name))
        return kept[1]

    def _read(self, name: str) -> Any:
        counts = self._load(name)
        spec = self.engine.workflow.queues.get(name)
        values: dict[str, Any] = {"name": name, "waiting": counts.waiting, "active": counts.active}
        agreement = self.engine._queue_agreement
        computed = {"kappa": lambda: agreement(name)[0], "alpha": lambda: agreement(name)[1]}
        if counts.oldest_known:
            values["oldest_age"] = None if counts.oldest is None else self.now - counts.oldest
        else:
            computed["oldest_age"] = lambda: self._oldest_age(name)
        values["sla"] = spec.sla if spec else None
        return Lazy.keys(values, **computed)

    def _load(self, name: str) -> _Counts:
        counts = self._counts.get(name)
        if counts is None:
            if not self._counts:
                self._data_version = self.engine.store.data_version()  # before the read: a commit between is seen
            counts = self._counts[name] = self._fetch(name)
        return counts

    def _fetch(self, name: str) -> _Counts:
        stats = self.engine.store.queue_stats(name, self.now)
        oldest = None if stats["oldest_age"] is None else self.now - stats["oldest_age"]
        return _Counts(stats["waiting"], stats["active"], oldest)

    def refresh(self) -> None:
        """Read the counts again when another process committed since they were read (another tick or
        run, a claim, an ingest), so a decision acts on the queue as it is, not as this tick last saw it.

        Called before a page is decided and again inside its write transaction, where nobody else can
        change the queue until the page's actions are written. This process's own commits do not count
        (``PRAGMA data_version``): the book follows them itself. A queue whose counts differ gets a new
        version, so the decisions that read it are taken again.
        """
        if not self._counts:
            return
        version = self.engine.store.data_version()
        if version == self._data_version:
            return
        self._data_version = version
        for name, counts in list(self._counts.items()):
            fresh = self._fetch(name)
            same_oldest = counts.oldest_known and counts.oldest == fresh.oldest
            if (counts.waiting, counts.active) != (fresh.waiting, fresh.active) or not same_oldest:
                self._counts[name] = fresh
                self._versions[name] = self._versions.get(name, 0) + 1

    def _oldest_age(self, name: str) -> float | None:
        counts = self._counts[name]
        if not counts.oldest_known:
            counts.oldest, counts.oldest_known = self.engine.store.oldest_waiting_since(name), True
        return None if counts.oldest is None else self.now - counts.oldest

    def changed(self, before: Any, after: Any, closed: Iterable[Any]) -> None:
        """Count a task's change: its rows ``before`` and ``after``, the active slots it lost (a gold
        question's slots were never counted)."""
        for slot in () if before["is_gold"] else closed:
            self._bump(slot["queue"], lambda c: setattr(c, "active", c.active - 1))
        was, now = _waiting(before), _waiting(after)
        if was == now:
            return
        if was is not None:
            self._bump(was[0], lambda c: _leave(c, was[1]))
        if now is not None:
            self._bump(now[0], lambda c: _enter(c, now[1]))

    def _bump(self, name: str | None, change: Callable[[_Counts], None]) -> None:
        counts = self._counts.get(name) if name is not None else None
        if counts is not None:  # a queue no rule read yet is read fresh when one does
            change(counts)
            self._versions[name] = self._versions.get(name, 0) + 1


def _waiting(row: Any) -> tuple[str, float] | None:
    """``(queue, stage_at)`` when the task counts in ``queue.waiting``."""
    if row["status"] == "open" and row["free_slots"] > 0 and not row["is_gold"]:
        return row["queue"], row["stage_at"]
    return None


def _leave(counts: _Counts, stage_at: float) -> None:
    counts.waiting -= 1
    if counts.waiting <= 0:
        counts.oldest, counts.oldest_known = None, True
    elif counts.oldest_known and counts.oldest is not None and stage_at <= counts.oldest:
        counts.oldest_known = False  # the oldest left: the next is read when a rule asks


def _enter(counts: _Counts, stage_at: float) -> None:
    counts.waiting += 1
    if counts.oldest_known:
        counts.oldest = stage_at if counts.oldest is None else min(counts.oldest, stage_at)


class RuleIdentities:
    """Which rule an ``on_timer`` event was written by, told by the rule's key (:func:`rules.workflow.rule_key`:
    its name, or for an unnamed rule a fingerprint of its ``when`` and ``do``), not by the name it was
    shown by: an unnamed rule's name is its position, which a rule inserted before it shifts.

    An event written before keys were recorded names an unnamed rule by position alone; its rule is
    looked up at that position in the workflow version active when the event was written.
    """

    def __init__(self, store, rules: Iterable[Any]):
        self.store = store
        self.keys = {r.name: r.key or r.name for r in rules}  # the active version's rules, by name
        self._at: VersionsAt | None = None  # read at the first event from an older Labelyard
        self._entries: dict[int | None, list[Any] | None] = {}

    def key(self, name: str) -> str:
        """The key of the active version's rule shown as ``name``."""
        return self.keys.get(name, name)

    def acted(self, task_id: int, name: str, round_: int, kinds: tuple[str, ...] | None = None,
              before: int | None = None) -> bool:
        """Whether the rule shown as ``name`` acted on the task in round ``round_`` (an event of ``kinds``;
        before the event ``before``, when given)."""
        return self.acted_in(self.store.timer_decisions(task_id, round_), name, kinds, before)

    def acted_in(self, events: Iterable[Any], name: str, kinds: tuple[str, ...] | None = None,
                 before: int | None = None) -> bool:
        """:meth:`acted`, over the task's round's ``events`` (:meth:`Store.timer_decisions`) read already."""
        key = self.key(name)
        for event in events:
            if (kinds is not None and event["kind"] not in kinds) or (before is not None and event["id"] >= before):
                continue
            written_by = self._written_by(event)
            if (written_by == key) if written_by is not None else (event["rule"] == name):
                return True
        return False

    def _written_by(self, event: Any) -> str | None:
        """The event's rule key; ``None`` when it cannot be told (then the names are compared, as before)."""
        if event["rule_key"] is not None:
            return event["rule_key"]
        match = POSITIONAL_NAME.fullmatch(event["rule"])
        if match is None or match["section"] != "on_timer":
            return event["rule"]  # a named rule: its name is its key
        if self._at is None:
            self._at = VersionsAt(self.store)
        version = self._at.at(event["id"])
        if version not in self._entries:
            row = self.store.workflow_version(version) if version is not None else None
            spec = loads(row["spec"]) if row is not None else None
            entries = spec.get("on_timer") if isinstance(spec, dict) else None
            self._entries[version] = entries if isinstance(entries, list) else None
        entries, index = self._entries[version], int(match["number"]) - 1
        if entries is None or index >= len(entries) or not isinstance(entries[index], dict) \
                or isinstance(entries[index].get("name"), str):
            return None
        return rule_key("on_timer", entries[index])


@dataclass
class _Candidate:
    """A row decided on: the decision (None: nothing to do), the version of the queue facts it read, and
    the rules passed over to reach it (:class:`rules.timer_choice.Choice`)."""

    assignment: Any
    task: Any
    decision: Any
    ctx: dict[str, Any]
    seen: int | None  # None: no rule read queue.*
    passed: tuple[str, ...] = ()
    why: str | None = None

    @property
    def kept(self) -> bool:
        return self.decision is not None or self.seen is not None


class _Tick:
    """One tick's passes, with the state they share."""

    def __init__(self, engine, now: float, actor: str, report: TickReport):
        self.engine, self.store, self.now, self.actor, self.report = engine, engine.store, now, actor, report
        self._rules_of(engine.workflow)
        self.book = QueueBook(engine, now)
        self.moved: set[int] = set()  # tasks acted on this tick: decided once, even if met again further on

    def _rules_of(self, workflow: Any) -> None:
        """Decide by ``workflow``'s ``on_timer`` rules from now on."""
        self.workflow = workflow
        rules = workflow.rules.get("on_timer") or []
        self.gold_workflow = gold_rules(workflow)  # gold tasks: only their slots' release
        self.identities = RuleIdentities(self.store, rules)

    def assignment_pass(self, page: int) -> None:
        after = 0
        while slots := self.store.active_assignments_after(after, page):
            after = slots[-1]["id"]
            self.report.assignments += len(slots)
            self.book.refresh()
            tasks = ((self.store.task(a["task_id"]), a) for a in slots)
            self._act([self._decide(t, a) for t, a in tasks if t is not None])

    def task_pass(self, page: int) -> None:
        queue, after = "", 0
        while tasks := self.store.tasks_after("open", queue, after, page):
            queue, after = tasks[-1]["queue"], tasks[-1]["id"]
            # A task moved to a queue that sorts later is met again on a later page: not again.
            tasks = [t for t in tasks if t["id"] not in self.moved]
            self.report.tasks += len(tasks)
            self.book.refresh()
            self._act([self._decide(t, None) for t in tasks])

    def _context(self, task: Any, a: Any) -> dict[str, Any]:
        facts = {}
        if a is not None:
            start = a["updated_at"]  # an active slot's last change is its claim
            facts = {"age": self.now - start, "worker": a["worker"], "kind": a["stage"]}
        # task.data, task.tags and prediction.* decoded only if a rule reads them: most timers read neither
        return {"task": lazy_task_facts(task, self.now), "prediction": lazy_prediction(task),
                "assignment": facts, "queue": self.book.facts(task["queue"]), "now": self.now}

    def _decide(self, task: Any, a: Any, passed: Sequence[str] = (), why: str | None = None) -> _Candidate:
        """Decide on the page's row, outside the write lock: passing over a rule that already acted on the
        task this round (it stays so: read once per task, without the lock), a task action on a task this
        tick moved, and a release with no slot. What would change nothing is seen under the lock."""
        ctx = self._context(task, a)
        workflow = self.gold_workflow if task["is_gold"] else self.workflow
        decision = workflow.decide("on_timer", ctx, passed)
        if decision.rule is not None:  # most ticks find nothing due: that path stays short
            events: list[Any] = []

            def pass_over(d) -> str | None:
                if d.action == "release":
                    return None if a is not None else "no slot"
                if task["id"] in self.moved:
                    return "moved"
                if not events:
                    events.append(self.store.timer_decisions(task["id"], task["round"]))
                return "already" if self.identities.acted_in(events[0], d.rule, TASK_ACTED) else None

            choice = choose(workflow, ctx, pass_over, passed, why, decision)
            decision, passed, why = choice.decision, choice.passed, choice.why
        read = ctx["queue"]._value is not None  # computed: a rule read queue.* (as decision_facts tells)
        return _Candidate(a, task, decision if decision.rule is not None else None, ctx,
                          self.book.version(task["queue"]) if read else None, tuple(passed), why)

    def _act(self, todo: list[_Candidate]) -> None:
        """Apply one page's decisions in one transaction, each on fresh rows."""
        for candidate in todo:
            if not candidate.kept:
                self._count(candidate.why)
        todo = [c for c in todo if c.kept]
        if not any(c.decision is not None for c in todo):
            for candidate in todo:
                self._count(candidate.why)
            return  # nothing acts, so no queue changes and nothing is decided again
        with self.engine.transaction():
            self.book.refresh()  # under the write lock: what another process did up to now is counted
            if self.engine.workflow is not self.workflow:
                # a version applied since the page was decided (:meth:`Engine.transaction`): its rules decide
                self._rules_of(self.engine.workflow)
                todo = [self._decide(c.task, c.assignment) for c in todo]
            for candidate in todo:
                self._settle(candidate)

    def _count(self, why: str | None) -> None:
        """Count a slot or task no rule acted on, by the first counted reason a matching rule was passed over."""
        if why == "already":
            self.report.already += 1
        elif why == "unchanged":
            self.report.unchanged += 1

    def _settle(self, c: _Candidate) -> None:
        if c.seen is not None and self.book.version(c.task["queue"]) != c.seen:
            c = self._decide(c.task, c.assignment, c.passed, c.why)  # its queue changed: decide on the facts of now
        if c.decision is None:
            self._count(c.why)
            return
        task = self.store.task(c.task["id"])
        if task["status"] != "open" or task["round"] != c.task["round"]:
            return  # moved on since it was read (or by an earlier decision of this tick)
        a = c.assignment
        if a is not None:
            a = self.store.assignment(a["id"])
            if a["status"] != "active":
                return
        if dict(task) != dict(c.task) or (a is not None and dict(a) != dict(c.assignment)):
            # another process changed it since the page was read (a lead's priority keeps the round):
            # decided again on the row as it is now, so no rule acts on facts that no longer hold
            c = self._decide(task, a)
            if c.decision is None:
                self._count(c.why)
                return
        rules = _LockedRow(self, task, a)
        workflow = self.gold_workflow if task["is_gold"] else self.workflow
        choice = choose(workflow, c.ctx, rules.pass_over, c.passed, c.why, c.decision)
        if choice.decision.rule is None:
            self._count(choice.why)
            return
        c.decision = decision = choice.decision
        if decision.action == "release":
            self._release(task, a, c)
        elif _stays(decision, task, rules.corrections):
            self._reprioritise(task, a, c, new_priority(decision, task, rules.opened))
        else:
            self._move(task, a, c)

    def _mark(self, task: Any, a: Any, c: _Candidate) -> dict[str, Any]:
        """What a timer event records beside the decision: section, the rule's key, round, assignment, facts."""
        mark = {"section": "on_timer", "rule_key": self.identities.key(c.decision.rule), "round": task["round"],
                "facts": decision_facts(c.ctx)}
        if a is not None:
            mark["assignment"] = a["id"]
        return mark

    def _release(self, task: Any, a: Any, c: _Candidate) -> None:
        # the condition is kept even when null, so explain can tell "always matches" from "not recorded"
        detail = {**c.decision.as_detail(), "condition": c.decision.condition, "rule": c.decision.rule,
                  **self._mark(task, None, c)}
        release_assignment(self.engine, a, self.now, self.actor, detail=detail)
        if self.book.tracking:
            self.book.changed(task, self.store.task(task["id"]), [a])
        self.report.released += 1

    def _move(self, task: Any, a: Any, c: _Candidate) -> None:
        decision, mark, tracking = c.decision, self._mark(task, a, c), self.book.tracking
        closed = self.store.task_slots(task["id"], ("active",)) if tracking else ()
        if decision.action == "hold":
            hold_task(self.engine, task, self.now, self.actor, decision.reason or f"held by rule `{decision.rule}`",
                      rule=decision.rule, detail={**decision.as_detail(), **mark})
        else:
            facts = mark.pop("facts")
            self.engine._apply(task, decision, self.now, self.actor, votes=self.engine._votes(task["id"]),
                               final_by="lead", facts=facts, extra=mark)
        if tracking:
            self.book.changed(task, self.store.task(task["id"]), closed)
        self.report.actions[decision.action] += 1
        self.moved.add(task["id"])

    def _reprioritise(self, task: Any, a: Any, c: _Candidate, priority: float) -> None:
        """Set the priority an action into the task's own stage and queue gives (:func:`new_priority`)."""
        decision = c.decision
        self.store.update_task(task["id"], priority=priority, updated_at=self.now)
        self.store.add_event("priority", self.now, task_id=task["id"], rule=decision.rule, action="priority",
                             actor=self.actor, detail={**decision.as_detail(), **self._mark(task, a, c),
                                                       "from": task["priority"], "to": priority})
        self.report.actions["priority"] += 1
        self.moved.add(task["id"])


class _LockedRow:
    """Why a rule is passed over for a row read again under the write lock (:func:`pass_over_reason`)."""

    def __init__(self, run: _Tick, task: Any, a: Any):
        self.run, self.task, self.slot = run, task, a is not None
        self.corrections = correction_queues(run.store, task) if task["stage"] == "correct" else ()
        self._opened: dict[str, bool] = {}  # asked again when the rule acts: read once

    def pass_over(self, decision) -> str | None:
        if decision.action != "release" and self.task["id"] in self.run.moved:
            return "moved"  # an earlier decision of this tick acted on it
        return pass_over_reason(decision, self.task, slot=self.slot, acted=self.acted, opened=self.opened,
                                corrections=self.corrections)

    def acted(self, rule: str) -> bool:
        return self.run.identities.acted(self.task["id"], rule, self.task["round"], TASK_ACTED)

    def opened(self, rule: str) -> bool:
        if rule not in self._opened:
            self._opened[rule] = self.run.identities.acted(self.task["id"], rule, self.task["round"] - 1,
                                                           kinds=("routed",))
        return self._opened[rule]
