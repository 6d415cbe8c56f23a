"""Automatic reviewer ``prediction_agreement``: compares the label under review with the model's prediction.

Agreeing with a prediction whose confidence is at least ``min_confidence``
(default 0; with a threshold above 0, a prediction without a confidence
does not reach it): approve. Labels are compared as the workflow compares
them (``run.same_label``: a ``multi_choice`` as a set, boxes whatever their
order). Disagreeing: abstain, so a human looks (or reject, with
``on_disagree: reject``). No prediction or no consensus: abstain.
"""

from __future__ import annotations

import json

from router import hookimpl
from router.plugin_api import PluginRun, ReviewItem, Setting, Verdict, approve, reject


ON_DISAGREE = Setting(str, choices=("abstain", "reject"))


@hookimpl
def register_reviewers(register):
    register("prediction_agreement", review, settings={"on_disagree": ON_DISAGREE,
                                                       "min_confidence": Setting(float, min=0, max=1)})


def review(run: PluginRun, item: ReviewItem) -> Verdict | None:
    on_disagree = run.setting("on_disagree", "abstain", kind=ON_DISAGREE)
    predicted = item.prediction.get("label")
    confidence = item.prediction.get("confidence")
    if predicted is None or item.consensus is None:
        return None
    least = run.setting("min_confidence", 0.0, kind=float)
    if least > 0 and (confidence is None or confidence < least):
        return None  # a prediction without confidence does not reach any threshold
    if run.same_label(item.consensus, predicted):
        return approve(f"agrees with the model ({confidence if confidence is not None else 'no confidence'})")
    if on_disagree == "reject":
        return reject(f"label {json.dumps(item.consensus)} disagrees with the model's {json.dumps(predicted)}")
    return None
