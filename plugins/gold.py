"""Automatic reviewer ``gold``: compares the label under review with the known answer.

The known answer is the task data field named by ``field`` (default
``gold``). (A gold question of ``labelyard gold add`` is scored, never
reviewed; should a reviewed task have a gold label, that label is taken.)
A field that is text is read as JSON where the workflow's labels are not text
(``multi_choice``, ``spans``, ``boxes``, ``number``): a CSV column is text, so
``["a", "b"]`` there is the list, however it is spaced; text that is not JSON
stays text. Same label, as the workflow compares labels (``run.same_label``):
approve. Different: reject with both labels in the reason (and, when the known
answer is no label of the workflow, why: a choice as written, spaces and all,
is no choice, as ``ingest`` refuses such a ``prediction_label``). No known
answer (no field, or one that is empty or only spaces: an empty CSV cell), or
no consensus to compare (a tie): abstain.
"""

from __future__ import annotations

import json
from typing import Any

from router import hookimpl
from router.plugin_api import PluginRun, ReviewItem, Verdict, approve, reject

READ_AS_JSON = ("multi_choice", "spans", "boxes", "number")
"""Label types whose known answer, given as text, is read as JSON (``choice`` and ``text`` labels are text)."""


@hookimpl
def register_reviewers(register):
    register("gold", review, settings={"field": str})


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is no JSON value")


def known_answer(run: PluginRun, value: Any) -> Any:
    """A data field's known answer as a label: text read as JSON for :data:`READ_AS_JSON` types;
    ``None`` for text that is empty or only white space (an empty CSV cell: no answer is known)."""
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, str) and run.label_type in READ_AS_JSON:
        try:
            return json.loads(value, parse_constant=_no_constant)
        except (ValueError, RecursionError):  # not JSON: the text itself, which no such label is
            return value
    return value


def review(run: PluginRun, item: ReviewItem) -> Verdict | None:
    known: Any = item.gold
    if known is None:
        known = known_answer(run, item.data.get(run.setting("field") or "gold"))
    if known is None or item.consensus is None:
        return None
    if run.same_label(item.consensus, known):
        return approve("matches the known answer")
    reason = f"label {json.dumps(item.consensus)} differs from the known answer {json.dumps(known)}"
    problem = run.label_problem(known)
    return reject(f"{reason}, which is no label of this workflow ({problem})" if problem else reason)
