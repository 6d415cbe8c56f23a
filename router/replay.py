"""``labelyard replay FILE``: what a candidate workflow would have decided over the recorded history.

Each recorded decision event (``created``, ``routed``, ``final``, ``held``,
``invalid``; a timer's ``released`` and ``priority``; ``on_worker``'s
``worker_paused``, ``worker_flagged``…; its detail names the section) is re-run
through the candidate's ``decide`` on the facts that decision saw:

- ``on_create``: rebuilt from the task row (data and prediction never change;
  a new task has no stage, queue or attempts, and age 0);
- the other sections: the task row plus the ``facts`` snapshot the engine keeps
  in the event (stage, queue, attempts, votes, review…; ``queue.*`` only when
  the recorded rules read it). Events written before snapshots existed are
  skipped and counted. A candidate that reads ``queue.*`` facts the recorded
  decision did not keep sees ``null``; the report counts those decisions
  (``unrecorded``).
- ``on_worker``: the ``worker.*`` facts its rules read (kept in the event), the
  worker's name, and the task's fixed facts from its row (and ``task.age``);
  it keeps no ``votes.*`` and no changing ``task.*``, so a candidate reading
  those sees ``null`` and is counted too. Its changes are counted per worker.

A timer decision is chosen as ``labelyard tick`` chooses it: a candidate's rule
that had acted on the task in the event's round before it, or whose action
would leave the task where the recorded facts put it, is passed over and the
next matching rule decides (:func:`timer_decision`).

Timers and worker rules record a decision only when it acts (a release, a
reprioritise, a pause, a flag that changes the worker…): a candidate's rules there are tried on
those alone; when a candidate's ``on_worker`` rules had none to try, the report
says so (``notes``) rather than show 0 decisions.

``multi_choice`` labels are sets in the candidate's choice order, as ``submit`` stores
them: ``votes.labels``, ``votes.top`` and ``review.label`` recorded before votes and
review labels were stored so, and an ``accept``'s ``label`` on both sides, are put in that
form before the candidate decides and before outcomes are compared.

``votes.*`` are replayed as recorded: they were computed with the recorded
workflow's ``quality.consensus`` (and ``labels.iou``), so a candidate that
changes those is not re-aggregated; the report notes it (``notes``).

The outcome of each decision is compared with the recorded one; an ``accept``
the engine turned into a hold (no valid label), or a ``return`` it held (nobody
to return the task to), counts as the action the rule decided; a rule that
failed at run time decided its hold itself. A timer's reprioritise (a
``priority`` event: the rule's action into the task's own stage and queue, with
another ``priority``) is the action the rule decided, with its values, so a
candidate giving another priority, taking another action, or with no rule
acting there, differs. Each decision is judged alone: what
the candidate changes is not carried forward (a task the candidate would have
accepted at once still has its later recorded decisions replayed, and they are
marked ``after_change``).

Reads only: the caller opens the store read-only.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rules.testing import plain_value as _plain
from rules.testing import same_value as _same
from rules.timer_choice import choose, pass_over_reason
from rules.workflow import LabelSpec

from .context import prediction_facts
from .store import Store, loads
from .timers import TASK_ACTED, RuleIdentities
from .versions import VersionsAt
from .worker_rules import EVENT_KINDS

WORKER_KINDS = (*EVENT_KINDS.values(), "worker_rule_failed")
"""The events of ``on_worker`` decisions (:mod:`router.worker_rules`)."""
DECISION_KINDS = ("created", "routed", "final", "held", "invalid", "released", "priority", *WORKER_KINDS)
ACTION_INTO_STAGE = {"annotate": "annotate", "correct": "annotate", "review": "review", "escalated": "escalate"}
"""The action a timer rule decided when it reprioritised a task in this stage: one into the stage and queue
the task is in (``router.timers``; a correction round counts as ``annotate``)."""
UNTRIED = {"on_worker": "a pause, a flag, a skill, when it changes the worker"}
"""Sections recorded only when a rule acts (what acting is): noted when a candidate's rules there had
no recorded decision to replay."""
SECTIONS = ("on_create", "on_quorum", "on_review", "on_worker", "on_timer")
NEW_TASK = {"stage": None, "queue": None, "attempts": 0, "priority": 0.0, "status": "open"}
ROW_FACTS = ("id", "external_id", "source", "category", "tags", "data", "gold")
"""``task.*`` rebuilt from the task row; the others come from the event's snapshot
(``router.engine.REPLAY_FACTS``)."""
WORKER_WATCHED = ("task", "worker", "votes")
"""Roots an ``on_worker`` event keeps only in part (``worker.*`` the rules read, the task's fixed facts)."""
FLAGGED_BEFORE = {"worker_flagged": False, "worker_unflagged": True}
"""``worker.flagged`` as it was when a rule changed it (the event is written only on a change)."""


class _Watched(Mapping):
    """Recorded ``queue.*`` facts that remember which missing ones a candidate read."""

    def __init__(self, recorded: Mapping[str, Any]):
        self.recorded = recorded
        self.missed: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        if key not in self.recorded:
            self.missed.add(key)
        return self.recorded[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.recorded)

    def __len__(self) -> int:
        return len(self.recorded)


def replay(store: Store, candidate: Any, *, sample_size: int = 5,
           progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Replay every recorded decision against ``candidate`` (a compiled ``rules.workflow.Workflow``)."""
    active = store.active_workflow()
    recorded_rules = _RecordedRules(store)
    versions = VersionsAt(store)
    totals: Counter = Counter()
    per_section: dict[str, Counter] = defaultdict(Counter)
    skipped: Counter = Counter()
    groups: dict[tuple, dict[str, Any]] = {}
    fewer: Counter = Counter()
    fired: Counter = Counter()
    changed_subjects: set[tuple[str, Any]] = set()  # ("task", id) or ("worker", name) a change touched
    unrecorded: Counter = Counter()
    under: Counter = Counter()  # replayed decisions per workflow version id that took them
    identities: RuleIdentities | None = None  # the candidate's on_timer rules, read at the first timer decision
    labels = candidate.labels  # multi_choice labels compared as sets in its choice order, as `submit` stores them
    seen = 0
    for row in store.decision_events(DECISION_KINDS):
        seen += 1
        if progress is not None and seen % 1000 == 0:
            progress(seen)
        detail = loads(row["detail"]) or {}
        section = detail.get("section") if isinstance(detail, dict) else None
        if section not in SECTIONS:
            continue  # a lead's action, not a rule's decision
        ctx = rebuild_context(row, section, detail)
        if ctx is None:
            skipped[f"{section}: no facts recorded"] += 1
            continue
        ctx = labels.stored_facts(ctx)  # votes and a review label recorded before they were stored as sets
        # the rules of the version that took the decision, not the one that created the task
        version = versions.at(row["id"]) or row["t_workflow_version"]
        under[version] += 1
        kind, target = recorded_rules.outcome(version, section, row["rule"], _decided_action(row, detail),
                                              detail.get("target"), detail.get("reason"))
        old = {"rule": row["rule"], "action": kind, "target": target,
               "values": _stored_values(detail.get("values") or {}, labels)}
        watched = _watch(ctx, section)
        if section == "on_timer":
            if identities is None:
                identities = RuleIdentities(store, candidate.rules.get("on_timer", ()))
            decision = timer_decision(candidate, ctx, row["id"], row["task_id"], detail, identities)
        else:
            decision = candidate.decide(section, ctx)
        missed = _unrecorded(watched, section, ctx)
        if missed:
            unrecorded["decisions"] += 1
            unrecorded.update(missed)
        new = {"rule": decision.rule, "action": decision.action, "target": decision.target,
               "values": _stored_values(_plain(decision.values), labels)}
        totals["decisions"] += 1
        per_section[section]["decisions"] += 1
        fired[(section, decision.rule)] += 1
        outcome_same = _outcome(old) == _outcome(new) and _same_values(old["values"], new["values"])
        if outcome_same:
            totals["unchanged" if old["rule"] == new["rule"] else "same_outcome_other_rule"] += 1
            continue
        subject, shown = _subject(row, section, detail)
        after = subject in changed_subjects
        changed_subjects.add(subject)
        totals["changed"] += 1
        per_section[section]["changed"] += 1
        if after:
            totals["after_change"] += 1
        key = (section, new["rule"], _outcome(new))
        group = groups.setdefault(key, {
            "section": section, "rule": new["rule"], "action": new["action"], "target": new["target"],
            "unit": subject[0], "changed": 0, "after_change": 0, "instead_of": Counter(), "values": Counter(),
            "tasks": [], "moved": set(), "same_way": set(), "sampled": set(),
        })
        group["changed"] += 1
        group["after_change"] += int(after)
        group["instead_of"][(old["rule"], *_outcome(old))] += 1
        if _outcome(old) == _outcome(new):
            group["values"][_values_change(old["values"], new["values"])] += 1
            group["same_way"].add(subject)
        else:
            group["moved"].add(subject)
        _add_sample(group, shown, sample_size)
        fewer[(section, old["rule"])] += 1
    rules = sorted(groups.values(), key=lambda g: (-g["changed"], SECTIONS.index(g["section"]), str(g["rule"])))
    return {
        "candidate": {"name": candidate.name},
        "database": store.path,
        "recorded": None if active is None else {"name": active["name"], "version": active["version"]},
        "recorded_under": _recorded_under(store, under),
        "decisions": totals["decisions"],
        "unchanged": totals["unchanged"],
        "same_outcome_other_rule": totals["same_outcome_other_rule"],
        "changed": totals["changed"],
        "after_change": totals["after_change"],
        "skipped": dict(skipped),
        "unrecorded": {"decisions": unrecorded.pop("decisions", 0), "facts": sorted(unrecorded)},
        "notes": _notes(active, candidate) + _untried(candidate, per_section),
        "sections": {s: {"decisions": c["decisions"], "changed": c["changed"]}
                     for s, c in sorted(per_section.items(), key=lambda kv: SECTIONS.index(kv[0]))},
        "rules": [_group_view(g) for g in rules],
        "fewer": [{"section": s, "rule": r, "count": n} for (s, r), n in fewer.most_common()],
        "candidate_rules": [
            {"section": s, "rule": r.name, "decisions": fired[(s, r.name)]}
            for s in SECTIONS for r in candidate.rules.get(s, ()) if not r.builtin or fired[(s, r.name)]
        ],
    }


def timer_decision(candidate: Any, ctx: Mapping[str, Any], event_id: int, task_id: int,
                   detail: Mapping[str, Any], identities: RuleIdentities) -> Any:
    """The candidate's ``on_timer`` decision as a tick would have taken it (:func:`rules.timer_choice.choose`):
    a rule that had acted on the task in the event's round before it (by its key), or whose action would
    have left the task where the recorded facts put it, is passed over. A correction round's other queues
    are not recorded: only the task's own queue counts as its stage's there."""
    round_ = detail.get("round")
    task = ctx["task"]
    facts = {"stage": task.get("stage"), "queue": task.get("queue"), "priority": task.get("priority")}
    known = isinstance(round_, int) and not isinstance(round_, bool)  # older events: no round recorded

    def acted(rule: str) -> bool:
        return known and identities.acted(task_id, rule, round_, TASK_ACTED, before=event_id)

    def opened(rule: str) -> bool:
        return known and identities.acted(task_id, rule, round_ - 1, kinds=("routed",), before=event_id)

    def pass_over(decision: Any) -> str | None:
        return pass_over_reason(decision, facts, slot=bool(ctx.get("assignment")), acted=acted, opened=opened)

    return choose(candidate, ctx, pass_over).decision


def _decided_action(row: Mapping[str, Any], detail: Mapping[str, Any]) -> str | None:
    """The action the rule decided: a ``priority`` event's is the one into the stage the task was in."""
    if row["kind"] != "priority":
        return row["action"]
    stage = ((detail.get("facts") or {}).get("task") or {}).get("stage")
    return ACTION_INTO_STAGE.get(stage, row["action"])


def _recorded_under(store: Store, under: Counter) -> list[dict[str, Any]]:
    """The workflow versions that took the replayed decisions, in the order they were applied, with how many
    each took (``name`` and ``version`` ``None`` for decisions taken before any recorded apply)."""
    out = []
    for version_id in sorted(under, key=lambda v: (v is not None, v or 0)):
        row = store.workflow_version(version_id) if version_id is not None else None
        out.append({"name": None if row is None else row["name"], "version": None if row is None else row["version"],
                    "decisions": under[version_id]})
    return out


def _watch(ctx: dict[str, Any], section: str) -> list[tuple[str, _Watched]]:
    """Wrap the roots whose facts may be missing from the record, to learn which ones the candidate read."""
    watched = []
    for root in WORKER_WATCHED if section == "on_worker" else ("queue",):
        ctx[root] = _Watched(ctx.get(root) or {})
        watched.append((root, ctx[root]))
    return watched


def _unrecorded(watched: list[tuple[str, _Watched]], section: str, ctx: Mapping[str, Any]) -> set[str]:
    """``root.fact`` names the candidate read that the recorded decision did not keep."""
    names: set[str] = set()
    for root, facts in watched:
        if root == "queue" and (section == "on_create" or ctx["task"].get("queue") is None):
            continue  # on_create, or a task in no queue, has no queue facts live either
        names.update(f"{root}.{name}" for name in facts.missed)
    return names


def _subject(row: Mapping[str, Any], section: str, detail: Mapping[str, Any]) -> tuple[tuple[str, Any], str]:
    """What a decision is about, and how a sample shows it: the worker for ``on_worker``, else the task."""
    if section == "on_worker":
        worker = str(detail.get("worker"))
        return ("worker", worker), worker
    return ("task", row["task_id"]), row["t_external_id"] or str(row["task_id"])


def _untried(candidate: Any, per_section: Mapping[str, Counter]) -> list[str]:
    """Notes for sections where the candidate has rules but no recorded decision was there to try them on."""
    notes = []
    for section, acting in UNTRIED.items():
        if per_section.get(section, {}).get("decisions") or not any(
                not r.builtin for r in candidate.rules.get(section, ())):
            continue
        notes.append(f"{section}: no recorded decision to replay; {section} decisions are recorded only when "
                     f"they act ({acting}), so the candidate's {section} rules were not tried")
    return notes


def _add_sample(group: dict[str, Any], shown: str, size: int) -> None:
    """Add ``shown`` to the group's sample (``tasks``) of at most ``size`` distinct task ids (worker
    names for ``on_worker``)."""
    if len(group["tasks"]) < size and shown not in group["sampled"]:
        group["sampled"].add(shown)
        group["tasks"].append(shown)


def _notes(active: Mapping[str, Any] | None, candidate: Any) -> list[str]:
    """What the replay cannot show of this candidate (a consensus it does not recompute)."""
    if active is None:
        return []
    recorded = loads(active["spec"]) or {}
    was = ((recorded.get("quality") or {}).get("consensus") or "majority",
           LabelSpec.from_spec(recorded.get("labels")).iou)  # as the version was read: boxes' only
    now = (candidate.quality.get("consensus") or "majority", candidate.labels.iou)
    if was == now:
        return []
    return [f"votes.* are replayed as recorded (consensus {was[0]}, labels.iou {was[1]}); the candidate's "
            f"consensus {now[0]}, labels.iou {now[1]} is not applied to them"]


def rebuild_context(row: Mapping[str, Any], section: str, detail: Mapping[str, Any]) -> dict[str, Any] | None:
    """The facts a recorded decision saw, from the task row (``t_`` columns) and the event's snapshot."""
    facts = detail.get("facts")
    if section == "on_worker":
        return _worker_context(row, detail) if isinstance(facts, dict) else None
    if not isinstance(facts, dict):
        if section != "on_create":
            return None
        age = row["at"] - row["t_created_at"]
        facts = {"task": {**NEW_TASK, "age": age, "stage_age": age}}  # its stage starts when it is created
    ctx: dict[str, Any] = {
        "task": {**_row_task(row), **(facts.get("task") or {})},
        "prediction": _row_prediction(row),
        "queue": facts.get("queue") or {},
        "now": row["at"],
    }
    for root in ("votes", "review", "assignment", "worker"):
        if root in facts:
            ctx[root] = facts[root]
    return ctx


def _worker_context(row: Mapping[str, Any], detail: Mapping[str, Any]) -> dict[str, Any]:
    """An ``on_worker`` decision's facts: the ``worker.*`` its rules read (``detail.facts``), the worker's
    name, ``flagged`` when the event tells it, and the task's fixed facts; no votes."""
    worker: dict[str, Any] = {"id": detail.get("worker")}
    if row["kind"] in FLAGGED_BEFORE:
        worker["flagged"] = FLAGGED_BEFORE[row["kind"]]
    task = {**_row_task(row), "age": row["at"] - row["t_created_at"]}
    return {"task": task, "prediction": _row_prediction(row), "worker": {**worker, **detail["facts"]},
            "votes": {}, "now": row["at"]}


def _row_task(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``task.*`` facts that never change (:data:`ROW_FACTS`), from the task row (``t_`` columns)."""
    return {"id": row["t_id"], "external_id": row["t_external_id"], "source": row["t_source"],
            "category": row["t_category"], "tags": loads(row["t_tags"]), "data": loads(row["t_data"]),
            "gold": bool(row["t_is_gold"])}


def _row_prediction(row: Mapping[str, Any]) -> dict[str, Any]:
    return prediction_facts(loads(row["t_pred_label"]), row["t_pred_confidence"], row["t_pred_model"],
                            loads(row["t_pred_scores"]))


class _RecordedRules:
    """The action each rule of each recorded workflow version takes (to see through engine adjustments)."""

    def __init__(self, store: Store):
        self.store = store
        self.versions: dict[int | None, dict[tuple[str, str], str] | None] = {}

    def outcome(self, version: int | None, section: str, rule: str | None, action: str | None,
                target: Any, reason: Any = None) -> tuple[str | None, Any]:
        """The recorded ``(action, target)`` as the rule decided them, before the engine adjusted them
        (an ``accept`` without a valid label, or a ``return`` with nobody to return to, was held).
        A rule that failed at run time decided the hold itself (``reason``: ``rule `X` failed: …``)."""
        if rule is None or (isinstance(reason, str) and reason.startswith(f"rule `{rule}` failed: ")):
            return action, target
        if version not in self.versions:
            self.versions[version] = self._load(version)
        table = self.versions[version]
        if table is None or (section, rule) not in table:
            return action, target
        kind, rule_target = table[(section, rule)]
        if kind != action and (rule_target is None or isinstance(rule_target, str)):
            return kind, rule_target  # the held decision carries no target; the rule's is a constant
        return kind, target

    def _load(self, version: int | None) -> dict[tuple[str, str], tuple[str, Any]] | None:
        if version is None:
            return None
        row = self.store.workflow_version(version)
        if row is None:
            return None
        from rules.errors import RulesError
        from rules.workflow import Workflow

        try:
            workflow = Workflow.from_spec(loads(row["spec"]))
        except (RulesError, KeyError, TypeError, ValueError):
            return None  # e.g. it used plugin functions that are not loaded here
        return {(s, r.name): (r.action.kind, r.action.target) for s, rules in workflow.rules.items() for r in rules}


def _outcome(decision: Mapping[str, Any]) -> tuple[str | None, Any]:
    return decision["action"], decision["target"]


def _stored_values(values: Mapping[str, Any], labels: LabelSpec) -> Mapping[str, Any]:
    """A decision's values with an ``accept``'s ``label`` in its stored form (:meth:`LabelSpec.stored`):
    a ``multi_choice`` label recorded as ``["c", "b"]`` is the candidate's ``["b", "c"]``."""
    if "label" not in values:
        return values
    return {**values, "label": labels.stored(values["label"])}


def _same_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    keys = set(old) | set(new)
    return all(_same(old.get(k), new.get(k)) for k in keys)


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _values_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """``overlap 1 → 3``; a value that varies from task to task (a computed priority) as ``priority changed``."""
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if _same(a, b):
            continue
        discrete = all(v is None or isinstance(v, (int, str, bool)) for v in (a, b))
        parts.append(f"{k} {_short(a)} → {_short(b)}" if discrete else f"{k} changed")
    return ", ".join(parts)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return _key(value)


def _group_view(g: dict[str, Any]) -> dict[str, Any]:
    return {
        "section": g["section"], "rule": g["rule"], "action": g["action"], "target": g["target"],
        "changed": g["changed"], "after_change": g["after_change"],
        f"{g['unit']}_count": len(g["moved"] | g["same_way"]),
        "sentence": sentence(g["rule"], g["action"], g["target"], len(g["moved"]), len(g["same_way"]),
                             decisions=g["changed"], noun=g["unit"]),
        "instead_of": [{"rule": r, "action": a, "target": t, "count": n}
                       for (r, a, t), n in g["instead_of"].most_common()],
        "value_changes": [{"change": c, "count": n} for c, n in g["values"].most_common()],
        "tasks": g["tasks"],
    }


def sentence(rule: str | None, action: str | None, target: Any, n: int, values_only: int = 0,
             decisions: int | None = None, noun: str = "task") -> str:
    """``rule `uncertain` would have sent 412 more tasks to triage``: ``n`` tasks it would have
    decided otherwise, ``values_only`` tasks with the same outcome but other values (``overlap 3``
    for ``overlap 2``); ``decisions``, when more than the tasks, is said too (a task decided twice).
    ``noun`` is what is counted: ``worker`` for ``on_worker`` decisions."""
    who = f"rule `{rule}`" if rule else "no rule matching"
    same_way = (f"decided {_many(values_only, noun)} the same way "
                f"({action}{f' {target}' if target and not isinstance(target, bool) else ''}) but with other values")
    count = f" ({decisions} decisions)" if decisions is not None and decisions > n + values_only else ""
    if action == "release" and decisions is not None and decisions > n:  # a timer decides per assignment
        return f"{who} would have released {decisions} more assignments (of {_many(n, 'task')})"
    if not n:
        return f"{who} would have {same_way}{count}"
    if action == "none" and not rule:  # on_worker, on_timer: the candidate's rules would leave these alone
        return f"no rule would have acted: {_many(n, noun)} left alone{count}"
    more = f"{n} more {noun if n == 1 else noun + 's'}"
    verbs = {
        "annotate": f"sent {more} to {target}",
        "review": f"sent {more} to review in {target}",
        "escalate": f"escalated {more} to {target}",
        "accept": f"accepted {more}",
        "return": f"returned {more} to their annotators",
        "hold": f"held {more}" if noun == "task" else f"failed on {more}",  # on_worker: the rule failed
        "reject": f"rejected {more}",
        "release": f"released {n} more {'assignment' if n == 1 else 'assignments'}",
        "pause": f"paused {more}",
        "flag": f"flagged {more}",
        "unflag": f"unflagged {more}",
        "add_skill": f"given {target} to {more}",
        "remove_skill": f"taken {target} from {more}",
        "none": f"left {_many(n, noun)} alone",
    }
    moved = verbs.get(action or '', f'decided {action} for {_many(n, noun)}')
    return f"{who} would have {moved}" + (f", and {same_way}" if values_only else "") + count


def _many(n: int, noun: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{n} {noun if n == 1 else noun + 's'}"


def render_replay(result: dict[str, Any]) -> Iterator[str]:
    """The report as lines of text for a terminal."""
    where = _where(result["recorded_under"], result["recorded"])
    yield (f"replayed {result['decisions']} recorded decisions of {where} against "
           f"{result['candidate']['name']} ({result['candidate'].get('file', '')})")
    sections = ", ".join(f"{s} {c['decisions']}" for s, c in result["sections"].items())
    if sections:
        yield f"  by section: {sections}"
    yield (f"  {result['unchanged']} unchanged, {result['same_outcome_other_rule']} same outcome by another rule, "
           f"{result['changed']} would differ")
    for reason, n in result["skipped"].items():
        yield f"  skipped {n} ({reason})"
    missing = result["unrecorded"]
    if missing["decisions"]:
        n = missing["decisions"]
        yield (f"  note: {n} {'decision' if n == 1 else 'decisions'} read {', '.join(missing['facts'])}, which the "
               f"recorded decisions did not keep ({_why_unrecorded(missing['facts'])}): the candidate saw null there")
    for note in result["notes"]:
        yield f"  note: {note}"
    if not result["rules"]:
        yield "no decision would differ"
        return
    yield ""
    for g in result["rules"]:
        yield f"{g['section']}: {g['sentence']}"
        for vc in g["value_changes"][:3]:
            yield f"    {vc['count']} × {vc['change']}"
        yield f"    instead of: {_instead_of(g['instead_of'])}"
        if g["after_change"]:
            subject = "worker" if g["section"] == "on_worker" else "task"
            yield f"    ({_after_change(g['after_change'], g['changed'])} an earlier change on the same {subject})"
        if g["tasks"]:
            yield f"    e.g. {', '.join(g['tasks'])}"


def _where(under: list[dict[str, Any]], active: dict[str, Any] | None) -> str:
    """Which workflow versions took the decisions: ``t v1``; ``t v1 (120), v2 (36)``; with each version's
    name when more than one workflow took them (one applied with ``--replace``): ``t v1 (11), u v1 (5)``."""
    if not under:
        return "no workflow" if active is None else f"{active['name']} v{active['version']}"
    if len(under) == 1 and under[0]["name"] is not None:
        return f"{under[0]['name']} v{under[0]['version']}"
    named = len({u["name"] for u in under}) > 1
    parts, shown = [], None
    for u in under:
        if u["name"] is None:
            parts.append(f"an unrecorded version ({u['decisions']})")
            continue
        label = f"v{u['version']}" if shown == u["name"] and not named else f"{u['name']} v{u['version']}"
        shown = u["name"]
        parts.append(f"{label} ({u['decisions']})")
    return ", ".join(parts)


def _why_unrecorded(facts: list[str]) -> str:
    """Why the record lacks these facts: unread ``queue.*`` / ``worker.*``, or what ``on_worker`` never keeps."""
    roots = {name.split(".", 1)[0] for name in facts}
    why = []
    if roots & {"queue", "worker"}:
        why.append("their rules never read them")
    if roots & {"task", "votes"}:
        why.append("on_worker decisions keep no votes.* and, of task.*, only what never changes")
    return "; ".join(why)


def _after_change(n: int, decisions: int) -> str:
    """``3 of these 10 decisions follow`` (or ``it follows``, ``all 4 decisions follow``)."""
    if decisions == 1:
        return "it follows"
    if n == decisions:
        return f"all {n} decisions follow"
    return f"{n} of these {decisions} decisions {'follows' if n == 1 else 'follow'}"


def _instead_of(entries: list[dict[str, Any]], shown: int = 4) -> str:
    """``23 by `confident model` → accept; …``: the first ``shown`` entries, then how many more."""
    text = "; ".join(
        f"{n['count']} by {('`' + n['rule'] + '`') if n['rule'] else 'no rule'} → {n['action']}"
        + (f" {n['target']}" if n["target"] and not isinstance(n["target"], bool) else "")
        for n in entries[:shown])
    rest = entries[shown:]
    if rest:
        left = sum(n["count"] for n in rest)
        text += f"; and {len(rest)} more ({left} {'decision' if left == 1 else 'decisions'})"
    return text
