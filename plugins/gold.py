"""Automatic reviewer ``gold``: compares the label under review with the known answer.

The known answer is the task's gold label (``labelyard gold add``) or, when
it has none, the task data field named by ``field`` (default ``gold``).
Equal: approve. Different: reject with both labels in the reason. No known
answer, or no consensus to compare (a tie): abstain.
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
    if _same(item.consensus, known):
        return approve("matches the known answer")
    return reject(f"label {json.dumps(item.consensus)} differs from the known answer {json.dumps(known)}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list) and all(isinstance(x, str) for x in a + b):
        return sorted(a) == sorted(b)  # multi_choice: order does not matter
    return a == b
