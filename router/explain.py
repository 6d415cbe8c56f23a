"""``labelyard explain TASK``: why a task is where it is, from its events.

Every decision event carries what the rule engine recorded (``Decision.as_detail()``):
the section, the rule, its condition and the trace of the values it saw
(``prediction.confidence = 0.62 < 0.7 → true``), the action and its values.
``created`` events leave the condition and trace out (ingest would pay for
rendering them on every row): they are traced again here, with the workflow
version that routed the task, from the task's input, which never changes.
A decision taken under a later version (or, applied with ``--replace``, another
workflow's) names it; with its workflow's name when more than one workflow is involved.
The other events (claims, submissions, lead actions) say who acted and when.
The summary names the last event that put the task where it is (a rule's
decision or a person's action; never an ``on_worker`` rule, a claim or a release);
``stalled`` says why nobody can take an open task's remaining slots (``router.eligibility``).
Reads only, through :class:`router.store.Store`.
"""

from __future__ import annotations

import json
from typing import Any

from rules.visible_text import one_line

from . import clock
from .eligibility import task_stalled
from .errors import UnknownTask
from .returns import described
from .store import Store, loads

DECISION_KINDS = ("created", "routed", "final", "held", "invalid")
# Events that put a task where it is (status, stage, queue): a rule's decision or a person's action.
# Claims, submissions, releases, priority changes and on_worker rules (about the worker) do not.
PLACING_KINDS = ("created", "routed", "final", "held", "invalid", "unheld", "gold_added", "gold_updated",
                 "gold_retired")
DONE_BY = {"held": "held it", "unheld": "unheld it", "gold_added": "added it as a gold question",
           "gold_updated": "moved it with its gold answer", "gold_retired": "retired it as a gold question"}


def explain_task(store: Store, ref: str, viewer: str | None = None) -> dict[str, Any]:
    """The task's state and every event of its life, decisions spelled out; read in one read
    transaction (:meth:`Store.read_transaction`), so the state and the events agree. A gold question
    is explained whole to a lead or ``viewer=None``, and to another ``viewer`` as their claim gave
    it: their own events, nothing that says it is gold (:mod:`router.gold_view`)."""
    with store.read_transaction():
        return _explain_task(store, ref, viewer)


def _explain_task(store: Store, ref: str, viewer: str | None) -> dict[str, Any]:
    task = store.task(ref)
    if task is None:
        raise UnknownTask(f"no task `{ref}` (by id or external id)")
    data = _explained(store, task)
    if task["is_gold"]:
        from .gold_view import blind_explain, sees_gold

        if not sees_gold(store, viewer):
            return blind_explain(data, viewer, _summary({**dict(task), "reason": None}, None))
    return data


def _explained(store: Store, task: Any) -> dict[str, Any]:
    """The explanation of ``task`` (its row), every event in it."""
    version = store.workflow_version(task["workflow_version"]) if task["workflow_version"] is not None else None
    steps = [_step(row) for row in store.events(task["id"])]
    _mark_versions(store, steps, task["workflow_version"])
    for step in steps:
        d = step.get("decision")
        if step["kind"] == "created" and d and d["rule"] and not d["condition"] and not d["trace"]:
            _trace_creation(task, version, d)
    decisions = [s for s in steps if s.get("decision")]
    placing = [s for s in steps if _places(s)]
    return {
        "task": {
            "id": task["id"], "external_id": task["external_id"], "status": task["status"],
            "stage": task["stage"], "queue": task["queue"], "needed": task["needed"],
            "priority": task["priority"], "reason": task["reason"],
            "final_label": loads(task["final_label"]), "final_by": task["final_by"],
            "final_rule": task["final_rule"], "final_at": clock.iso(task["final_at"]),
        },
        "workflow": None if version is None else {"name": version["name"], "version": version["version"]},
        "summary": _summary(task, placing[-1] if placing else None),
        "stalled": task_stalled(store, task),
        "decisions": len(decisions),
        "events": steps,
    }


def _mark_versions(store: Store, steps: list[dict[str, Any]], created_under: int | None) -> None:
    """Give each decision taken under another version than the task's own that version's workflow name
    (``workflow``) and number (``workflow_version``): a version applied while the task was open, of the same
    workflow or, applied with ``--replace``, of another."""
    from .versions import VersionsAt

    versions, rows = VersionsAt(store), {}
    for step in steps:
        if step.get("decision") is None:
            continue
        version_id = versions.at(step["event"])
        if version_id is None or version_id == created_under:
            continue
        if version_id not in rows:
            rows[version_id] = store.workflow_version(version_id)
        row = rows[version_id]
        step["decision"]["workflow"] = None if row is None else row["name"]
        step["decision"]["workflow_version"] = None if row is None else row["version"]


def _trace_creation(task: Any, version: Any, decision: dict[str, Any]) -> None:
    """Fill in an on_create decision's condition and trace by deciding again on the task's input."""
    from .context import NEW_TASK_STATE, creation_context, stored_prediction

    if version is None:
        return
    try:
        from .engine import compile_stored

        workflow, _ = compile_stored(loads(version["spec"]))
        created = task["created_at"]
        row = {**dict(task), **NEW_TASK_STATE, "updated_at": created, "stage_at": created}
        again = workflow.decide("on_create", creation_context(row, stored_prediction(task), created))
    except Exception as exc:  # noqa: BLE001 - explain still shows what was recorded
        decision["traced_again"] = f"could not trace again: {exc}"
        return
    if again.rule != decision["rule"]:
        decision["traced_again"] = f"could not trace again: rule `{again.rule}` matches the input now"
        return
    decision["condition"], decision["trace"], decision["traced_again"] = again.condition, again.trace, True


def _step(row: Any) -> dict[str, Any]:
    detail = loads(row["detail"]) or {}
    step: dict[str, Any] = {
        "event": row["id"], "kind": row["kind"], "at": clock.iso(row["at"]), "actor": row["actor"],
    }
    if isinstance(detail, dict) and "section" in detail:
        step["decision"] = {
            "section": detail["section"],
            "rule": row["rule"],
            "action": row["action"],
            "target": detail.get("target"),
            "values": detail.get("values") or {},
            "condition": detail.get("condition"),
            "trace": detail.get("trace") or [],
            "reason": detail.get("reason"),
        }
        if "votes" in detail:
            step["decision"]["votes"] = detail["votes"]
        for key in ("corrections", "left_out"):  # a return's, each voter in their vote's queue
            if key in detail:
                step["decision"][key] = detail[key]
        if row["kind"] == "released" and "condition" not in detail:
            step["decision"]["condition_recorded"] = False  # released by a tick before ticks kept it
        if row["kind"] == "priority":
            step["decision"]["from"], step["decision"]["to"] = detail.get("from"), detail.get("to")
        for key in ("source", "line"):
            if key in detail:
                step[key] = detail[key]
    else:
        step["detail"] = detail
        if row["rule"] is not None or row["action"] is not None:
            step["rule"], step["action"] = row["rule"], row["action"]
    return step


def _places(step: dict[str, Any]) -> bool:
    """Whether the event put the task where it is (a worker rule's never does)."""
    if step["kind"] not in PLACING_KINDS:
        return False
    if step["kind"] == "gold_updated":
        return "queue" in (step.get("detail") or {})
    d = step.get("decision")
    return d is None or d["section"] != "on_worker"


def _since(step: dict[str, Any]) -> str:
    """Who put the task where it is, for the summary: a rule, or a person by name."""
    d = step.get("decision")
    actor = one_line(step.get("actor") or "someone")  # a name an older version stored may hold a line break
    if d is None:
        return f"{actor} {DONE_BY.get(step['kind'], step['kind'])}"
    if d["section"] == "lead":
        where = f" to `{d['target']}`" if d.get("target") else ""
        return f"{actor} {_past(d['action'])} it{where}"
    by = f"rule `{d['rule']}`" if d["rule"] else "no rule matching"
    return f"{by} in {d['section']}"


def _past(action: str | None) -> str:
    return {"escalate": "escalated", "hold": "held", "reject": "rejected", "annotate": "sent",
            "review": "sent"}.get(action or "", action or "acted on")


def _summary(task: Any, last: dict[str, Any] | None) -> str:
    status = task["status"]
    if status == "done":
        text = f"done: final label {_show(loads(task['final_label']))} by {one_line(str(task['final_by']))}"
        if task["final_rule"]:
            text += f" (rule `{task['final_rule']}`)"
        return text
    if status == "open":
        text = f"open: waiting in `{task['queue']}` for {task['stage']}" + (
            f" ({task['needed']} more submission{'s' if task['needed'] != 1 else ''})" if task["needed"] else "")
    elif status == "held":
        text = f"held: {one_line(task['reason'] or 'by a lead')}"  # the summary is one line
    elif status == "invalid":
        text = f"invalid: {one_line(task['reason'] or 'rejected')}"
    else:
        text = status
    if last is not None:
        text += f", since {_since(last)} ({last['at']})"
    return text


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _outcome(d: dict[str, Any]) -> str:
    if d["action"] == "priority" and "to" in d:  # a timer's reprioritise: same stage and queue
        return f"priority {_num(d['from'])} → {_num(d['to'])} (stays in {d.get('target')})"
    text = d["action"] or "?"
    if d.get("target") is not None:
        text += f" {d['target']}"
    values = {k: v for k, v in (d.get("values") or {}).items() if k != "reason"}
    if values:
        text += " (" + ", ".join(f"{k} {_num(v)}" for k, v in values.items()) + ")"
    return text


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return _show(value)


def _other(step: dict[str, Any]) -> str:
    detail = step.get("detail") or {}
    kind = step["kind"]
    if not isinstance(detail, dict):
        return ""
    if kind == "claimed":
        where = f" in {detail['queue']}" if detail.get("queue") else ""
        return f"{detail.get('stage', '')} slot{where} (assignment {detail.get('assignment')})"
    if kind == "submitted":
        parts = []
        if detail.get("label") is not None:
            parts.append(f"label {_show(detail['label'])}")
        if detail.get("verdict"):
            parts.append(detail["verdict"])
        if detail.get("comment"):
            parts.append(f"comment {_show(detail['comment'])}")
        return ", ".join(parts)
    shown = {k: v for k, v in detail.items() if v not in (None, "", [], {})
             and k not in ("offered", "corrections", "left_out")}
    text = ", ".join(f"{k} {_show(v)}" for k, v in shown.items())
    if detail.get("corrections"):  # an unhold of a correction round: each voter in their vote's queue
        text += f"; corrections: {described(detail['corrections'])}"
    if detail.get("left_out"):
        text += f"; {described([], detail['left_out'])}"
    elif detail.get("offered") and not detail.get("corrections"):
        text += f", offered {_show(detail['offered'])}"  # an event written before corrections were recorded
    return text


def _who(d: dict[str, Any], step: dict[str, Any]) -> str:
    """The rule that decided, or the lead who acted."""
    if d["rule"]:
        return f"rule `{d['rule']}`"
    if d["section"] == "lead":
        return f"{_past(d['action'])} by {one_line(step.get('actor') or 'a lead')}"
    return "no rule matched"


def _names_needed(created: dict[str, Any] | None, later: list[tuple[str | None, int]]) -> bool:
    """Whether a version must be shown with its workflow's name: versions of more than one workflow took
    the task's decisions (one applied with ``--replace``), or the task's own version is not known."""
    names = {name for name, _ in later}
    if created is None:
        return bool(later)
    return bool(names - {created["name"]})


def _version(name: str | None, number: int, named: bool) -> str:
    """``v2``, or ``u v2`` when ``named``."""
    return f"{name} v{number}" if named and name else f"v{number}"


def render_explanation(data: dict[str, Any]) -> list[str]:
    """The explanation as lines of text for a terminal."""
    t = data["task"]
    lines = [f"task {t['id']} ({t['external_id']}): {data['summary']}"]
    if data.get("stalled"):
        lines.append(f"stalled: {data['stalled']}")
    later = list(dict.fromkeys((d["workflow"], d["workflow_version"]) for s in data["events"]
                               if (d := s.get("decision")) and d.get("workflow_version") is not None))
    named = _names_needed(data["workflow"], later)
    if data["workflow"]:
        line = f"created under workflow {data['workflow']['name']} v{data['workflow']['version']}"
        if later:
            line += f"; later decisions under {', '.join(_version(n, v, named) for n, v in later)}"
        lines.append(line)
    lines.append("")
    for step in data["events"]:
        head = f"{step['at']}  {step['kind']}"
        if step.get("actor"):
            head += f" by {one_line(step['actor'])}"
        d = step.get("decision")
        if d is None:
            extra = _other(step)
            if step.get("rule"):
                extra = f"rule `{step['rule']}` → {step.get('action')}" + (f"; {extra}" if extra else "")
            elif step.get("action"):
                extra = f"{step['action']}" + (f"; {extra}" if extra else "")
            lines.append(head + (f": {extra}" if extra else ""))
            continue
        lines.append(head)
        under = (f" (workflow {_version(d.get('workflow'), d['workflow_version'], named)})"
                 if d.get("workflow_version") is not None else "")
        lines.append(f"    {d['section']}: {_who(d, step)} → {_outcome(d)}{under}")
        if d.get("condition"):
            again = " (traced again from the task's input)" if d.get("traced_again") is True else ""
            lines.append(f"      when {d['condition']}{again}")
            for trace in d.get("trace") or []:
                lines.append(f"        {trace}")
        elif isinstance(d.get("traced_again"), str):
            lines.append(f"      ({d['traced_again']})")
        elif d.get("condition_recorded") is False:
            lines.append("      (condition not recorded: released by an older labelyard)")
        elif d["rule"]:
            lines.append("      (no condition: always matches)")
        if d.get("reason"):
            lines.append(f"      reason: {one_line(d['reason'])}")
        if d.get("corrections"):
            lines.append(f"      corrections: {described(d['corrections'])}")
        if d.get("left_out"):
            lines.append(f"      {described([], d['left_out'])}")
        votes = d.get("votes")
        if votes:
            lines.append(f"      votes: {votes.get('count')}, top {_show(votes.get('top'))}, "
                         f"agreement {_num(votes.get('agreement'))}")
    return lines
