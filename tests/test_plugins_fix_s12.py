"""The twelfth session's plugin fixes: the validity reviewer's wording, the webhook's User-Agent, file
sources and an unterminated last line, file sinks killed in their first batch, and rule functions'
subprocess output under ``run --json``."""

from __future__ import annotations

import pytest

from router.plugin_api import PluginRun, ReviewItem
from router.plugins import load_plugins
from rules.workflow import LabelSpec


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)


# -- 1. validity says a refused label as the router does -----------------------------------------------
def _item(label):
    return ReviewItem(1, "t", "q", {"width": 10, "height": 10, "text": "some text"}, None, [], {},
                      [{"worker": "w", "label": label}], label, 1.0)


def test_validity_names_the_kind_of_a_label_outside_the_choices_as_submit_does(clean_env):
    review = load_plugins().get("reviewers", "validity").func
    choice = PluginRun("validity", "v", label_type="choice", choices=("1", "cat"))
    assert review(choice, _item(1)).reason == 'consensus: label 1 (a number) is not one of "1", "cat"'
    assert review(choice, _item(1)).reason == f"consensus: {LabelSpec(type='choice', choices=('1', 'cat')).problem(1)}"
    assert review(choice, _item("dog")).reason == 'consensus: label "dog" is not one of 1, cat'


def test_validity_names_the_kind_of_a_box_span_or_multi_choice_label(clean_env):
    review = load_plugins().get("reviewers", "validity").func
    boxes = PluginRun("validity", "v", label_type="boxes", choices=("1",))
    box = {"x": 0, "y": 0, "width": 1, "height": 1, "label": 1}
    assert review(boxes, _item([box])).reason == 'consensus: box 1: 1 (a number) is not one of "1"'
    assert LabelSpec(type="boxes", choices=("1",)).problem([box]) == '1 (a number) is not one of "1"'
    spans = PluginRun("validity", "v", label_type="spans", choices=("1", "x"))
    assert review(spans, _item([{"start": 0, "end": 2, "label": True}])).reason == \
        'consensus: span 1: true (true or false) is not one of "1", "x"'
    multi = PluginRun("validity", "v", label_type="multi_choice", choices=("1", "é"))
    assert review(multi, _item(["ö"])).reason == 'consensus: "ö" not among 1, é'
    assert review(multi, _item([1])).reason == 'consensus: 1 (a number) not among "1", "é"'
    assert LabelSpec(type="multi_choice", choices=("1", "é")).problem(["ö"]) == '"ö" not among 1, é'


def test_the_formatters_are_part_of_the_plugin_api():
    import router.plugin_api as api

    assert {"not_one_of", "not_among"} <= set(api.__all__)
    assert api.not_one_of(1, ["1"]) == '1 (a number) is not one of "1"'
