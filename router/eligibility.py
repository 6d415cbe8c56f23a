"""Who may take which work, said in words: a worker at capacity, the workers each queue admits
(``status``), and why nobody can take an open task's remaining slots (``explain``, ``show``).

A task whose queue no registered worker may take, or whose slots only workers the claim keeps
away from it could fill (its own annotators, those who gave its slot up), waits for ever and
would look like any waiting task. Reads go through :class:`router.store.Store`'s methods; the
counts are per queue and per worker, never a scan of the tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .store import loads

if TYPE_CHECKING:  # the claim path imports this module: rules.workflow loads with the workflow, not before
    from rules.workflow import QueueSpec

NAMES_SHOWN = 5  # workers named in a reason, then "and N more"
STALLABLE_STAGES = ("annotate", "review", "escalated")  # a correction waits for its own annotator
# Why ``claim`` keeps a worker away from a task's slot (:func:`_kept_away`), said of one worker, and of
# several named together ("al, bo hold slots of it", not "al, bo holds a slot of it").
KEPT_AWAY = {
    "annotated": ("annotated it", "annotated it"),
    "released": ("gave its slot up or had it taken back", "gave their slots up or had them taken back"),
    "holds": ("holds a slot of it", "hold slots of it"),
    "took_part": ("already took part in this stage", "already took part in this stage"),
    "held": ("held an annotation slot of it", "held annotation slots of it"),
}


def at_capacity(worker: str, held: int, capacity: int) -> str:
    """Why ``worker`` gets no more slots: the slots they hold and their capacity, which a lead may
    have lowered below what they hold."""
    return f"{worker} already holds {held} active assignment(s); their capacity is {capacity}"


@dataclass
class Crew:
    """The registered workers a queue's roles and skills admit, paused or not."""

    working: list[str] = field(default_factory=list)
    paused: list[str] = field(default_factory=list)


def crews(queues: Mapping[str, QueueSpec], workers: Iterable[Any]) -> dict[str, Crew]:
    """Per queue, the workers (rows of ``workers``) it admits."""
    out = {name: Crew() for name in queues}
    for w in workers:
        roles, skills = loads(w["roles"]), loads(w["skills"])
        for name, spec in queues.items():
            if spec.admits(roles, skills):
                (out[name].paused if w["paused"] else out[name].working).append(w["id"])
    return out


def queue_specs(spec: Mapping[str, Any]) -> dict[str, QueueSpec]:
    """The queues of a stored workflow version, read without compiling its rules."""
    from rules.workflow import QueueSpec

    return {name: QueueSpec(name, tuple(q.get("roles") or ()), tuple(q.get("skills") or ()))
            for name, q in (spec.get("queues") or {}).items()}


def needs(spec: QueueSpec) -> str:
    """What a queue asks of a worker: "the role senior", "one of the roles a, b and the skill law"."""
    text = f"the role {spec.roles[0]}" if len(spec.roles) == 1 else "one of the roles " + ", ".join(spec.roles)
    if spec.skills:
        text += (" and the skill " if len(spec.skills) == 1 else " and the skills ") + ", ".join(spec.skills)
    return text


def names(workers: list[str]) -> str:
    """Workers' names for a message, as ``workers list`` writes them (a name holding a comma, a space
    or a control character quoted, escapes written out), the first few of them."""
    from .render import listed_name

    shown = ", ".join(map(listed_name, workers[:NAMES_SHOWN]))
    return shown + (f" and {len(workers) - NAMES_SHOWN} more" if len(workers) > NAMES_SHOWN else "")


def queue_warning(queue: str, waiting: int, spec: QueueSpec | None, crew: Crew | None, workflow: str) -> str | None:
    """``status``'s warning for a queue where tasks wait and no worker may take any; ``None`` otherwise."""
    if not waiting or (crew is not None and crew.working):
        return None
    tasks = f"{waiting} task{'s wait' if waiting != 1 else ' waits'} in `{queue}`"
    if spec is None or crew is None:
        return f"{tasks}, which workflow `{workflow}` does not have: no claim takes work from it"
    if crew.paused:
        return f"{tasks}, and every worker who may take it is paused ({names(crew.paused)})"
    return f"{tasks}, which no registered worker may take (it needs {needs(spec)})"


def stalled(store, queues: Mapping[str, QueueSpec], workflow: str, task: Any, *,
            crew_of: Mapping[str, Crew] | None = None) -> str | None:
    """Why nobody can take the rest of an open task's slots, or ``None`` when someone can (or none
    is free). Who may is who ``claim`` would give it to: admitted by the queue, not paused, and
    not kept away from the task (their own label, a slot given up or taken back, a slot of this
    round); capacity is left out, as a worker's load changes by the minute. ``crew_of``: the
    queues' crews already read (``status`` asks of many tasks), else the workers are read."""
    if task["status"] != "open" or task["is_gold"]:
        return None
    if task["stage"] == "correct":
        return _corrections_stalled(store, task)
    if task["stage"] not in STALLABLE_STAGES:
        return None
    free, queue = task["free_slots"], task["queue"]
    if free < 1:
        return None
    spec = queues.get(queue)
    if spec is None:
        return f"`{queue}` is not a queue of workflow `{workflow}`: no claim takes work from it"
    crew = (crew_of or {}).get(queue) or crews({queue: spec}, store.workers())[queue]
    if not crew.working and not crew.paused:
        return f"no registered worker may take `{queue}` (it needs {needs(spec)})"
    if not crew.working:
        return f"every worker who may take `{queue}` is paused ({names(crew.paused)})"
    kept = _kept_away(store, task)
    takers = [w for w in crew.working if w not in kept]
    if len(takers) >= free:
        return None
    why: dict[str, list[str]] = {}
    for w in crew.working:
        if w in kept:
            why.setdefault(kept[w], []).append(w)
    parts = [f"{names(ws)} {KEPT_AWAY[reason][len(ws) > 1]}" for reason, ws in why.items()]
    if crew.paused:
        parts.append(f"{names(crew.paused)} {'is' if len(crew.paused) == 1 else 'are'} paused")
    if not takers:
        return f"no worker may take it from `{queue}`: " + "; ".join(parts)
    more = "distinct annotators" if task["stage"] == "annotate" else "workers"
    return (f"only {len(takers)} worker{'s' if len(takers) != 1 else ''} may take `{queue}` ({names(takers)}) "
            f"but it needs {free} more {more}" + "".join(f"; {p}" for p in parts))


def _corrections_stalled(store, task: Any) -> str | None:
    """A correction round where every correction still to come waits for a paused annotator (one
    no longer admitted by its queue is dropped as it happens): nobody else may take it."""
    slots = [a for a in store.task_slots(task["id"], ("offered", "active"))
             if a["stage"] == "correct" and a["round"] == task["round"]]
    if not slots or any(a["status"] == "active" for a in slots):
        return None
    paused = [a["worker"] for a in slots if (row := store.worker(a["worker"])) is not None and row["paused"]]
    if len(paused) < len(slots):
        return None
    are = "is" if len(paused) == 1 else "are"
    return (f"its corrections wait for {names(paused)}, who {are} paused: a correction goes only to its own "
            "annotator (`workers resume`, or `escalate` the task)")


def unused_by_queues(queues: Mapping[str, QueueSpec], workflow: str, roles: Iterable[str],
                     skills: Iterable[str]) -> list[str]:
    """A warning for each role and skill no queue of ``workflow`` uses (``lead`` is the lead
    actions'), with the name it was maybe meant to be: such a worker is registered, but a claim
    finds them no work until a workflow uses it."""
    import difflib

    used_roles = {r for q in queues.values() for r in q.roles} | {"lead"}
    used_skills = {k for q in queues.values() for k in q.skills}
    warnings = []
    for kind, verb, given, used in (("role", "takes", roles, used_roles), ("skill", "asks for", skills, used_skills)):
        for name in dict.fromkeys(given):
            if name in used:
                continue
            close = difflib.get_close_matches(name, sorted(used), n=1)
            warnings.append(f"no queue of workflow `{workflow}` {verb} the {kind} `{name}`"
                            + (f" (did you mean `{close[0]}`?)" if close else ""))
    return warnings


def task_stalled(store, task: Any) -> str | None:
    """:func:`stalled` under the active workflow's queues (read from its stored spec, no rule
    compiled); ``None`` without a workflow."""
    active = store.active_workflow()
    if active is None or task["status"] != "open":
        return None
    return stalled(store, queue_specs(loads(active["spec"])), active["name"], task)


def _kept_away(store, task: Any) -> dict[str, str]:
    """The workers ``claim`` never gives this task's current slot, each with why (a key of
    :data:`KEPT_AWAY`; as ``Store._MAY_TAKE`` keeps them away)."""
    voters = {a["worker"] for a in store.annotations(task["id"]) if a["stage"] in ("annotate", "correct")}
    kept: dict[str, str] = {w: "annotated" for w in voters}
    for a in store.assignments(task["id"]):
        w = a["worker"]
        if w in kept:
            continue
        if a["status"] == "released":
            kept[w] = "released"
        elif a["round"] == task["round"]:
            kept[w] = "holds" if a["status"] == "active" else "took_part"
        elif a["stage"] in ("annotate", "correct"):
            kept[w] = "held"
    return kept
