"""The actions a rule may take: where each is allowed and what it accepts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSpec:
    """One action: its sections, what its main value names, and its extra parameters."""

    name: str
    sections: frozenset[str]
    description: str
    target: str | None = None  # "queue", "return_to", "worker", "skill", "reason", "accept" or None
    params: tuple[str, ...] = ()
    expression_params: tuple[str, ...] = ()

    @property
    def needs_value(self) -> bool:
        """Whether the action needs its main value (a queue, a skill): then it cannot be written bare."""
        return self.target in ("queue", "skill")


TASK_SECTIONS = frozenset({"on_create", "on_quorum", "on_review", "on_timer"})
WORKER_SECTIONS = frozenset({"on_worker"})

ACTIONS: dict[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        ActionSpec(
            "accept",
            TASK_SECTIONS - {"on_timer"},
            "Make the label final: the prediction (on_create), the consensus (on_quorum), "
            "the reviewer's corrected label or else the consensus (on_review); `{accept: {label: EXPR}}` sets it.",
            target="accept",
            expression_params=("label",),
        ),
        ActionSpec(
            "annotate",
            TASK_SECTIONS,
            "Send the task to a queue for annotation; `overlap` is how many votes the stage wants in all "
            "(default 1), `priority` orders the queue (higher first).",
            target="queue",
            params=("overlap", "priority"),
            expression_params=("overlap", "priority"),
        ),
        ActionSpec(
            "review",
            TASK_SECTIONS,
            "Send the task to a queue of reviewers, who see the votes and approve, reject or correct.",
            target="queue",
            params=("priority",),
            expression_params=("priority",),
        ),
        ActionSpec(
            "escalate",
            TASK_SECTIONS,
            "Send the task to an expert queue for adjudication; the expert's label is final.",
            target="queue",
            params=("reason", "priority"),
            expression_params=("priority",),
        ),
        ActionSpec(
            "return",
            frozenset({"on_review", "on_quorum"}),
            "Give the task back to the annotators who submitted, with the reviewer's comment, for correction.",
            target="return_to",
        ),
        ActionSpec("release", frozenset({"on_timer"}), "Release the assignment so someone else can take the slot."),
        ActionSpec("hold", TASK_SECTIONS, "Pause the task until a lead looks at it.", target="reason", params=("reason",)),
        ActionSpec("reject", TASK_SECTIONS, "Mark the task invalid, with a reason.", target="reason", params=("reason",)),
        ActionSpec("pause", WORKER_SECTIONS, "Pause the worker: they get no new work.", target="worker", params=("reason",)),
        ActionSpec("flag", WORKER_SECTIONS, "Flag the worker; on_quorum sees `votes.any_flagged`.", params=("reason",)),
        ActionSpec("unflag", WORKER_SECTIONS, "Clear the worker's flag."),
        ActionSpec("add_skill", WORKER_SECTIONS, "Give the worker a skill.", target="skill"),
        ActionSpec("remove_skill", WORKER_SECTIONS, "Take a skill from the worker.", target="skill"),
    )
}

SECTIONS: dict[str, str] = {
    "on_create": "A new task arrived; the first matching rule decides where it goes.",
    "on_quorum": "The stage has all the submissions it asked for; decide on the votes.",
    "on_review": "A reviewer or expert gave a verdict.",
    "on_worker": "After each submission, about the worker who made it.",
    "on_timer": "Checked by `labelyard tick` / `labelyard run` for open tasks and active assignments.",
}

STAGE_OF_ACTION = {"annotate": "annotate", "review": "review", "escalate": "escalated", "return": "correct"}
