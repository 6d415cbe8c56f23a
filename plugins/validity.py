"""Automatic reviewer ``validity``: rejects a label that cannot be right.

Checks the label under review (the consensus) and every vote: choices within
the workflow's choices; boxes of non-zero area inside the image (its size from
the data fields ``width_field``/``height_field``, default ``width`` and
``height``: a number, or text written as a number, as every CSV cell is,
``"100"``; unchecked when absent or empty; other text fails the task's review,
saying so, rather than leaving the bounds unchecked); spans with ``start < end`` inside the text
(data field ``text_field``, default ``text``). A problem: reject, naming it.
No problem: abstain (a valid label is not yet a right one), or approve with
``approve_valid: true``.
"""

from __future__ import annotations

import json
from typing import Any

from router import hookimpl
from router.plugin_api import (PluginError, PluginRun, ReviewItem, Verdict, approve, not_among, not_one_of,
                               number_cell, reject)


@hookimpl
def register_reviewers(register):
    register("validity", review, settings={
        "approve_valid": bool, "width_field": str, "height_field": str, "text_field": str})


def review(run: PluginRun, item: ReviewItem) -> Verdict | None:
    labels = [("consensus", item.consensus)] + [(f"vote of {v['worker']}", v["label"]) for v in item.votes]
    for who, label in labels:
        if label is None:
            continue
        problem = label_problem(label, run, item.data)
        if problem:
            return reject(f"{who}: {problem}")
    return approve("label is valid") if run.setting("approve_valid", False, kind=bool) else None


def label_problem(label: Any, run: PluginRun, data: dict[str, Any]) -> str | None:
    kind, choices = run.label_type, run.choices
    if kind == "choice":
        if choices and label not in choices:
            return f"label {not_one_of(label, choices)}"
    elif kind == "multi_choice":
        bad = [c for c in (label if isinstance(label, list) else [label]) if choices and c not in choices]
        if bad:
            return not_among(bad, choices)
    elif kind == "boxes":
        return _boxes_problem(label, run, data)
    elif kind == "spans":
        return _spans_problem(label, run, data)
    return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _image_side(run: PluginRun, data: dict[str, Any], setting: str, default: str) -> float | None:
    """The image's width or height from its data field: a number, or text written as one (a CSV
    cell); ``None`` when the field is absent or empty; a :class:`PluginError` when it holds
    something else, since boxes could then not be checked against the image."""
    name = run.setting(setting) or default
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    side = number_cell(value)
    if side is None:
        shown = json.dumps(value, ensure_ascii=False)
        raise PluginError(f"data field `{name}` ({setting}) is {shown if len(shown) <= 40 else shown[:37] + '...'}, "
                          "not a number: the boxes cannot be checked against the image")
    return float(side)


def _boxes_problem(boxes: Any, run: PluginRun, data: dict[str, Any]) -> str | None:
    width = _image_side(run, data, "width_field", "width")
    height = _image_side(run, data, "height_field", "height")
    for n, box in enumerate(boxes if isinstance(boxes, list) else [boxes], 1):
        if not isinstance(box, dict):
            return f"box {n} is not an object"
        x, y, w, h = (_number(box.get(k)) for k in ("x", "y", "width", "height"))
        if None in (x, y, w, h):
            return f"box {n} needs numeric x, y, width, height"
        if w <= 0 or h <= 0:
            return f"box {n} has zero area ({w:g}×{h:g})"
        if x < 0 or y < 0 or (width is not None and x + w > width) or (height is not None and y + h > height):
            return f"box {n} ({x:g}, {y:g}, {w:g}×{h:g}) is outside the image ({_side(width)}×{_side(height)})"
        if run.choices and box.get("label") is not None and box["label"] not in run.choices:
            return f"box {n}: {not_one_of(box['label'], run.choices)}"
    return None


def _side(side: float | None) -> str:
    return "?" if side is None else f"{side:g}"


def _spans_problem(spans: Any, run: PluginRun, data: dict[str, Any]) -> str | None:
    text = data.get(run.setting("text_field") or "text")
    length = len(text) if isinstance(text, str) else None
    for n, span in enumerate(spans if isinstance(spans, list) else [spans], 1):
        if not isinstance(span, dict):
            return f"span {n} is not an object"
        start, end = _number(span.get("start")), _number(span.get("end"))
        if start is None or end is None:
            return f"span {n} needs numeric start and end"
        if start < 0 or end <= start:
            return f"span {n} ({start:g}..{end:g}) is empty or reversed"
        if length is not None and end > length:
            return f"span {n} ({start:g}..{end:g}) ends after the text ({length} characters)"
        if run.choices and span.get("label") is not None and span["label"] not in run.choices:
            return f"span {n}: {not_one_of(span['label'], run.choices)}"
    return None
