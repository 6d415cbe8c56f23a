"""The kinds of event Labelyard records, and the names a ``notify:`` entry's ``events:`` chooses them by.

``validate`` and ``apply`` refuse any other name in ``events:`` (``dnoe`` would
make the entry hear nothing, silently). ``tests/test_plugins_fix_9.py`` keeps
:data:`KINDS` equal to the kinds the code records.
"""

from __future__ import annotations

# Names that gather events of several kinds (router.runner.event_names says which).
NAMED = ("done", "escalated", "returned", "held", "invalid")

KINDS = (
    "created", "routed", "final", "held", "invalid", "submitted", "claimed", "released", "reassigned",
    "unheld", "priority", "late_submission", "correction_dropped", "gold_added", "gold_updated", "gold_retired",
    "gold_rescored", "workflow_applied", "worker_added", "worker_updated", "worker_paused", "worker_resumed",
    "worker_flagged", "worker_unflagged", "worker_skill_added", "worker_skill_removed", "worker_rule_failed",
    "outbox_dropped", "rejects_cleared", "restored",
)

ALL = "*"

# What `events:` may hold, the usual names first (a message lists the first few).
CHOICES = tuple(dict.fromkeys((*NAMED, ALL, *KINDS)))
