"""``on_worker``: rules about the worker who just submitted, and the ``worker.*`` facts they read.

Run by :meth:`router.engine.Engine.submit` inside the submission's
transaction, only when the workflow has ``on_worker`` rules. Each fact costs a
query on the worker row or the per-worker indexes and is computed only when a
rule reads it.
An action that would change nothing (pausing a paused worker) writes no event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .context import Lazy, stored_prediction, task_facts
from .store import loads

FAST_SECONDS = 5.0  # a submission this soon after its claim counts as fast
FAST_WINDOW = 20  # fast_submits counts among the worker's latest submissions
SKIP_WINDOW = 50  # skips_in_row looks back this many ended assignments before the submitted one
EVENT_KINDS = {"pause": "worker_paused", "flag": "worker_flagged", "unflag": "worker_unflagged",
               "add_skill": "worker_skill_added", "remove_skill": "worker_skill_removed"}


class LazyFacts(Mapping):
    """A mapping whose values are computed one by one, on first read."""

    def __init__(self, compute: dict[str, Callable[[], Any]]):
        self._compute = compute
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            self._values[key] = self._compute[key]()
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._compute)

    def __len__(self) -> int:
        return len(self._compute)

    def known(self) -> dict[str, Any]:
        """The facts computed so far (for the event)."""
        return dict(self._values)


def worker_facts(store, row, *, assignment: int) -> LazyFacts:
    """``worker.*`` for a worker row after their submission on ``assignment``."""
    name = row["id"]

    def gold() -> tuple[int, int]:
        return store.gold_accuracy([name]).get(name, (0, 0))

    def agreement() -> float | None:  # sums kept as tasks finish (router.vote_agreement)
        decided, matched = store.worker_final_agreement(name)
        return matched / decided if decided else None

    def fast() -> int:
        # a submission timed before its slot (the clock went back between them) is not fast: its pace is unknown
        return sum(1 for seconds in store.worker_recent_durations(name, FAST_WINDOW) if 0 <= seconds < FAST_SECONDS)

    def skips() -> int:
        # counted back from the submitted slot: slots claimed after it, or still held, do not end the run
        run = 0
        for status in store.worker_statuses_before(name, assignment, SKIP_WINDOW):
            if status != "released":
                break
            run += 1
        return run

    return LazyFacts({
        "id": lambda: name,
        "roles": lambda: loads(row["roles"]),
        "skills": lambda: loads(row["skills"]),
        "submitted": lambda: store.worker_submitted(name),
        "gold_count": lambda: gold()[0],
        "gold_accuracy": lambda: (gold()[1] / gold()[0]) if gold()[0] else None,
        "agreement": agreement,
        "fast_submits": fast,
        "skips_in_row": skips,
        "flagged": lambda: bool(row["flagged"]),
    })


def run_on_worker(engine, worker: str, task, assignment: int, now: float) -> dict[str, Any] | None:
    """Decide ``on_worker`` for ``worker`` after their submission on ``assignment`` of ``task`` and
    apply the action."""
    store = engine.store
    row = store.worker(worker)
    if row is None:
        return None
    facts = worker_facts(store, row, assignment=assignment)
    fresh = store.task(task["id"])
    ctx = {"worker": facts, "task": task_facts(fresh, now), "prediction": stored_prediction(fresh),
           "votes": Lazy(lambda: engine._votes(task["id"])), "now": now}
    decision = engine.workflow.decide("on_worker", ctx)
    if decision.rule is None:
        return None
    detail = {**decision.as_detail(), "worker": worker, "facts": facts.known()}
    action = decision.action
    changed = True
    if action == "pause":
        changed = not row["paused"]
        if changed:
            store.set_worker_paused(worker, True, decision.reason or f"paused by rule `{decision.rule}`")
    elif action in ("flag", "unflag"):
        changed = bool(row["flagged"]) != (action == "flag")
        if changed:
            store.set_worker_flagged(worker, action == "flag")
    elif action in ("add_skill", "remove_skill"):
        skills = set(loads(row["skills"]))
        skill = decision.target
        changed = (skill not in skills) if action == "add_skill" else (skill in skills)
        if changed:
            store.set_worker_skills(worker, list(skills | {skill}) if action == "add_skill" else list(skills - {skill}))
    elif action == "hold":  # the rule failed at run time: record it, change nothing
        store.add_event("worker_rule_failed", now, task_id=task["id"], rule=decision.rule, action=action,
                        actor="labelyard", detail=detail)
        return {"rule": decision.rule, "action": action, "changed": False}
    if changed:
        store.add_event(EVENT_KINDS[action], now, task_id=task["id"], rule=decision.rule, action=action,
                        actor="labelyard", detail=detail)
        if action == "remove_skill":  # corrections offered in a queue that needs the skill are theirs no more
            engine._drop_corrections(worker, now, "labelyard")
    return {"rule": decision.rule, "action": action, "changed": changed}
