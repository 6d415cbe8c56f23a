"""Each annotator's agreement with final labels, kept as tasks finish (``worker.agreement``).

A vote is an annotator's latest annotate/correct submission on a task (as
``votes.*`` counts them). When its task is finished and not gold, the vote is
marked in ``annotations.agrees``: 1 when it agrees with the final label, as
``router.consensus.agrees_with_final`` judges it for the label type (a number
within the tolerance consensus's ``top_count`` counts), else 0. Every
other submission is unmarked (NULL). The worker row keeps the sums
(``final_votes``, ``final_agreed``), so ``worker.agreement`` and the TUI's
roster read two numbers, whatever the worker's history.

:func:`mark_task` brings one task's marks (and their workers' sums) up to
date; the engine calls it in the transaction of each decision that finishes a
task or moves a finished one, so a path that relabels or reopens a finished
task keeps the sums exact by calling it too. :func:`rejudge` marks every
counted vote again when a new workflow version changes how labels compare.
Migration ``m010`` marks the votes of an existing database (:func:`task_marks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .consensus import agrees_with_final
from .store import loads

Mark = tuple[int, str, int | None, int | None]
"""A vote whose mark changes: ``(annotation id, worker, old mark, new mark)``."""


def task_marks(votes: Sequence[tuple[int, str, str | None, int | None]], final_label: str | None, spec: Any,
               *, counted: bool) -> list[Mark]:
    """The marks that change among one task's annotate/correct submissions.

    ``votes``: ``(annotation id, worker, label JSON, current mark)``, oldest
    first; ``final_label`` the task's (JSON); ``counted``: whether the task
    counts (finished, not gold). Only each worker's latest submission is
    marked, and only on a counted task.
    """
    latest = {worker: vote_id for vote_id, worker, _label, _mark in votes}
    changes: list[Mark] = []
    final = loads(final_label) if counted else None
    for vote_id, worker, label, mark in votes:
        new = None
        if counted and latest[worker] == vote_id:
            new = int(agrees_with_final(loads(label), final, spec))
        if new != mark:
            changes.append((vote_id, worker, mark, new))
    return changes


def mark_task(store, task_id: int, spec: Any, version_id: int | None = None, *,
              now_as: tuple[str, str | None, bool] | None = None) -> None:
    """Bring a task's vote marks and their workers' sums up to date, inside the caller's transaction.

    ``spec`` is the ``labels`` (a ``rules.workflow.LabelSpec``) of workflow
    version ``version_id``, the one the caller loaded; when another process has
    applied a newer version since, the active version's labels judge, as
    :func:`rejudge` judged every other vote when it was applied. Costs one read
    of the task's submissions (and of the task, unless ``now_as`` gives its status,
    final label and whether it is gold), and a write only for a mark that changes.
    """
    if version_id is not None and store.active_workflow_id() != version_id:
        from rules.workflow import LabelSpec  # loaded already: the caller compiled its version

        spec = LabelSpec.from_spec(loads(store.active_workflow()["spec"]).get("labels"))
    if now_as is None:
        task = store.task(task_id)
        now_as = (task["status"], task["final_label"], bool(task["is_gold"]))
    status, final_label, is_gold = now_as  # the task as the caller just wrote it: not read again
    counted = status == "done" and not is_gold
    votes = [(r["id"], r["worker"], r["label"], r["agrees"]) for r in store.vote_marks(task_id)]
    changes = task_marks(votes, final_label, spec, counted=counted)
    if changes:
        store.set_vote_marks(changes)


def judged_alike(old: Any, new: Any) -> bool:
    """Whether two ``labels`` specs compare labels alike (``agrees_with_final`` reads the type, IoU for
    boxes, and ``min`` and ``max`` for numbers, whose range sets the tolerance)."""
    if getattr(old, "type", None) != getattr(new, "type", None):
        return False
    if new.type == "number":
        return (old.min, old.max) == (new.min, new.max)
    return new.type != "boxes" or old.iou == new.iou


def rejudge(store, spec: Any) -> int:
    """Mark every counted vote again by ``spec`` (a new version's ``labels``); returns how many changed."""
    changes: list[Mark] = []
    for row in store.marked_votes():
        new = int(agrees_with_final(loads(row["label"]), loads(row["final_label"]), spec))
        if new != row["agrees"]:
            changes.append((row["id"], row["worker"], row["agrees"], new))
    store.set_vote_marks(changes)
    return len(changes)


def compares_otherwise(previous_spec: dict[str, Any] | None, labels: Any) -> bool:
    """Whether a new version's ``labels`` compare labels unlike the previous version's
    (``previous_spec``: its stored spec; ``None`` for the first version, which has no votes to judge)."""
    from rules.workflow import LabelSpec  # loaded already: `apply` compiled the version

    return previous_spec is not None and not judged_alike(LabelSpec.from_spec(previous_spec.get("labels")), labels)

