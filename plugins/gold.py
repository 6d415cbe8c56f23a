"""Automatic reviewer ``gold``: compares the label under review with the known answer.

The known answer is the task data field named by ``field`` (default
``gold``). (A gold question of ``labelyard gold add`` is scored, never
reviewed; should a reviewed task have a gold label, that label is taken.)
Same label, as the workflow compares labels (``run.same_label``): approve.
Different: reject with both labels in the reason. No known answer, or no
consensus to compare (a tie): abstain.
"""

from __future__ import annotations

import json
from typing import Any

from router import hookimpl
from router.plugin_api import PluginRun, ReviewItem, Verdict, approve, reject


@hookimpl
def register_reviewers(register):
    register("gold", review, settings={"field": str})


def review(run: PluginRun, item: ReviewItem) -> Verdict | None:
    known: Any = item.gold
    if known is None:
        known = item.data.get(run.setting("field") or "gold")
    if known is None or item.consensus is None:
        return None
    if run.same_label(item.consensus, known):
        return approve("matches the known answer")
    return reject(f"label {json.dumps(item.consensus)} differs from the known answer {json.dumps(known)}")
