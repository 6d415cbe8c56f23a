"""What ``show``, ``explain`` and ``gold list`` give of gold questions, and to whom.

A gold question measures annotators only while they cannot tell it from other
work: nothing in a claim says it is gold (``docs/design.md``). So ``show`` and
``explain`` give its answer, its gold events and how every answer to it scored
to a lead alone; anyone else gets it as their claim did — the task, its data and
their own slots and events, nothing that says it is gold (the database is a
shared file: this keeps the answer out of sight, it does not lock it away).

A lead's view and ``gold list`` score each answer as the workers' counters are
scored: :func:`router.consensus.gold_answer_right` (as submit scores them) by the active version's labels.
Reads only.
"""

from __future__ import annotations

from typing import Any

from .consensus import gold_answer_right
from .store import loads

GOLD_EVENTS = ("gold_added", "gold_updated", "gold_retired", "gold_rescored")
WORKER_KINDS = ("claimed", "submitted", "released", "expired", "late_submission")  # a worker's own slot's events


def sees_gold(store, viewer: str | None) -> bool:
    """Whether ``viewer`` may be shown that a task is gold: a worker with the lead role (``None``: a
    caller inside Labelyard, which sees everything)."""
    if viewer is None:
        return True
    from .lead import LEAD_ROLE

    row = store.worker(viewer)
    return row is not None and LEAD_ROLE in (loads(row["roles"]) or [])


def state(question: Any) -> str:
    """``open`` (served), ``held`` (``apply`` held it: its answer is no label of the version) or
    ``retired`` (a lead retired it: not served, its answers not scored)."""
    return {"open": "open", "invalid": "retired"}.get(question["status"], "held")


def scored_answers(store, spec: Any, task_ids: list[int] | None = None) -> dict[int, list[dict[str, Any]]]:
    """Every answer given to these gold questions (``None``: to all), by question: ``annotation``,
    ``worker``, ``label`` and ``right`` (judged against the question's answer now)."""
    answers = {q["id"]: loads(q["answer"]) for q in store.gold_questions(task_ids)}
    scored: dict[int, list[dict[str, Any]]] = {task_id: [] for task_id in answers}
    for row in store.gold_question_answers(task_ids):
        label = loads(row["label"])
        scored[row["task_id"]].append({"annotation": row["annotation"], "worker": row["worker"], "label": label,
                                       "right": gold_answer_right(label, answers[row["task_id"]], spec)})
    return scored


def question(row: Any, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """One gold question as ``gold list --json`` gives it."""
    right = sum(1 for a in answers if a["right"])
    return {"id": row["external_id"], "task": row["id"], "answer": loads(row["answer"]), "queue": row["queue"],
            "state": state(row), "reason": row["reason"], "answered": len(answers), "right": right,
            "wrong": len(answers) - right}


def gold_list(store, spec: Any) -> list[dict[str, Any]]:
    """Every gold question (:func:`question`), by id: what ``gold list`` gives a lead."""
    scored = scored_answers(store, spec)
    return [question(row, scored[row["id"]]) for row in store.gold_questions()]


def gold_show(store, spec: Any, data: dict[str, Any], viewer: str | None) -> dict[str, Any]:
    """``show``'s view of a gold question: with its answer and each answer's score for a lead, else
    as the viewer's claim gave it (:func:`blind_show`)."""
    if not sees_gold(store, viewer):
        return blind_show(data, viewer)
    task_id = data["task"]["id"]
    rows = store.gold_questions([task_id])
    if not rows:
        return data
    answers = scored_answers(store, spec, [task_id])[task_id]
    right = {a["annotation"]: a["right"] for a in answers}
    for annotation in data["annotations"]:
        if annotation["id"] in right:
            annotation["gold_right"] = right[annotation["id"]]
    data["gold"] = {key: value for key, value in question(rows[0], answers).items() if key not in ("id", "task")}
    return data


def blind_show(data: dict[str, Any], viewer: str | None) -> dict[str, Any]:
    """A gold question as a worker who is not a lead sees it: the task without ``is_gold`` (nor a
    reason, which names the answer when ``apply`` held it), and only their own slots, answers and events."""
    task = {key: value for key, value in data["task"].items() if key != "is_gold"}
    task["reason"] = None
    return {**data, "task": task,
            "assignments": [a for a in data["assignments"] if a["worker"] == viewer],
            "annotations": [a for a in data["annotations"] if a["worker"] == viewer],
            "events": _own_events(data["events"], viewer), "stalled": None}


def blind_explain(data: dict[str, Any], viewer: str | None, summary: str) -> dict[str, Any]:
    """``explain``'s view of a gold question for a worker who is not a lead (as :func:`blind_show`):
    ``summary`` says where it is without saying since when or who put it there."""
    steps = _own_events(data["events"], viewer)
    return {**data, "task": {**data["task"], "reason": None}, "summary": summary, "stalled": None,
            "decisions": 0, "events": steps}


def _own_events(events: list[dict[str, Any]], viewer: str | None) -> list[dict[str, Any]]:
    return [e for e in events if e["actor"] == viewer and e["kind"] in WORKER_KINDS]
