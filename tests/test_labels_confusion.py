"""``labelyard agreement``'s confusion table is readable for every label type: boxes and spans are
counted per object by class, and names too long for a column become keys with a legend, never cut.
Through the CLI on a real database, plus the pure table function."""

from __future__ import annotations

import json

import pytest

from lead_support import Project

WORKFLOW = """\
workflow: c
labels: {labels}
queues:
  q: {{roles: [annotator]}}
on_create:
  - do: {{annotate: q, overlap: 2}}
on_quorum:
  - name: unanimous
    when: votes.unanimous
    do: accept
  - name: take the first
    do: {{accept: {{label: "votes.labels[0]"}}}}
"""


def voted(tmp_path, labels: str, plan: dict[str, tuple]) -> Project:
    p = Project(tmp_path, WORKFLOW.format(labels=labels))
    for name in ("u1", "u2"):
        p.worker(name, "annotator")
    p.ingest([{"id": ref} for ref in plan])
    for ref, pair in plan.items():
        for name, label in zip(("u1", "u2"), pair):
            view = p.claim(name)
            assert view["external_id"] == ref
            p.submit(view["assignment"], name, "--value", json.dumps(label))
    return p


def box(x, cls=None):
    return {"x": x, "y": 0, "width": 10, "height": 10, **({"label": cls} if cls is not None else {})}


def confusion_lines(out: str) -> list[str]:
    return out[out.index("confusion"):].splitlines()


BOX_PLAN = {
    "T1": ([box(0, "car"), box(50, "person")], [box(1, "car"), box(50, "person")]),  # agree
    "T2": ([box(0, "car")], [box(0, "truck"), box(50, "car")]),  # u2: another class, and an extra box
    "T3": ([box(0, "car"), box(50)], [box(0, "car")]),  # u2 misses the unclassed box
}


def test_boxes_are_confused_per_object_by_class(tmp_path):
    p = voted(tmp_path, "{type: boxes}", BOX_PLAN)
    lines = confusion_lines(p.run_ok("agreement").stdout)
    assert lines[0].startswith("confusion per object")
    assert lines[1].split() == ["(no", "class)", "car", "person", "(none)"]  # "no object" last
    assert '[{"' not in "\n".join(lines)
    rows = {line[:16].strip(): line[16:].split() for line in lines[2:]}
    assert list(rows) == ["(no class)", "car", "person", "truck", "(none)"]
    assert rows == {"(no class)": ["1", "0", "0", "0"], "car": ["0", "5", "0", "1"], "person": ["0", "0", "2", "0"],
                    "truck": ["0", "1", "0", "0"], "(none)": ["1", "0", "0", "0"]}
    report = p.json("agreement")
    assert report["confusion_of"] == "objects"
    # finals (the first vote where they differ): T1 car and person, T2 car, T3 car and an unclassed box
    assert report["confusion"] == {
        "(none)": {"(no class)": 1},  # u2 missed T3's unclassed box
        "(no class)": {"(no class)": 1},
        "car": {"car": 5, "(none)": 1},  # u2's extra car in T2 matches nothing final
        "person": {"person": 2},
        "truck": {"car": 1},
    }


def test_spans_are_confused_per_object_by_class(tmp_path):
    a, b = {"start": 0, "end": 10, "label": "name"}, {"start": 20, "end": 30, "label": "date"}
    p = voted(tmp_path, "{type: spans}", {"T1": ([a, b], [a, {**b, "label": "name"}]), "T2": ([a], [a])})
    report = p.json("agreement")
    assert report["confusion_of"] == "objects"
    assert report["confusion"] == {"date": {"date": 1}, "name": {"date": 1, "name": 4}}


def test_long_labels_are_named_by_keys_with_a_legend(tmp_path):
    long_a = "the customer wants a refund for the order"
    long_b = "the customer reports a bug in the app\x1b[31m"
    p = voted(tmp_path, "{type: text}", {"T1": (long_a, long_a), "T2": (long_b, long_a), "T3": ("ok", "ok")})
    lines = confusion_lines(p.run_ok("agreement").stdout)
    assert lines[0] == "confusion (annotator label → final label)"
    assert lines[1].split() == ["#1", "#2", "#3"]  # every final label: ok, bug…, refund… (sorted)
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:5]}
    # T2's final is u1's bug report: u2's refund counts under it
    assert rows == {"#1": ["2", "0", "0"], "#2": ["0", "1", "0"], "#3": ["0", "1", "2"]}
    assert lines[5] == "labels:"
    legend = dict(line.split(maxsplit=1) for line in lines[6:])
    assert legend == {"#1": "ok", "#2": "the customer reports a bug in the app\\x1b[31m", "#3": long_a}
    assert p.json("agreement")["confusion_of"] == "labels"


@pytest.mark.parametrize("names, keyed", [(["a" * 24], False), (["a" * 25], True)])
def test_names_up_to_24_characters_are_shown_in_full(names, keyed):
    from router.agreement import confusion_table

    lines = confusion_table({"confusion": {names[0]: {"b": 3}}, "confusion_of": "labels"})
    assert (f"  #1  {names[0]}" in lines) == keyed
    assert (names[0] in lines[2]) != keyed


def test_classes_that_are_different_json_values_are_different_rows(tmp_path):
    """A class is a JSON value (workflow-language.md): ``1`` and ``"1"``, ``true`` and ``"true"`` are
    two classes, and a class spelt like a placeholder is not the placeholder."""
    plan = {
        "T1": ([box(0, 1)], [box(0, "1")]),  # the final label is u1's: class 1
        "T2": ([box(0, True)], [box(0, "true")]),  # final: class true
        # final: a box of class "(none)" and an unclassed one; u2 calls the first "(no class)", misses the second
        "T3": ([box(0, "(none)"), box(50)], [box(0, "(no class)")]),
    }
    p = voted(tmp_path, "{type: boxes}", plan)
    report = p.json("agreement")
    assert report["confusion"] == {
        "1": {"1": 1}, '"1"': {"1": 1},
        "true": {"true": 1}, '"true"': {"true": 1},
        '"(none)"': {'"(none)"': 1}, '"(no class)"': {'"(none)"': 1},
        "(no class)": {"(no class)": 1}, "(none)": {"(no class)": 1},
    }
    assert {a["worker"]: a["matched"] for a in report["annotators"]} == {"u1": 3, "u2": 0}
    lines = confusion_lines(p.run_ok("agreement").stdout)
    header = lines[1].replace("(no class)", "(no-class)").split()
    assert header == ['"(none)"', "(no-class)", "1", "true"]  # finals; (none) would be last
    rows = {line[:16].strip(): line[16:].split() for line in lines[2:]}
    assert rows == {'"(no class)"': ["1", "0", "0", "0"], '"(none)"': ["1", "0", "0", "0"],
                    '"1"': ["0", "0", "1", "0"], '"true"': ["0", "0", "0", "1"],
                    "(no class)": ["0", "1", "0", "0"], "1": ["0", "0", "1", "0"],
                    "true": ["0", "0", "0", "1"], "(none)": ["0", "1", "0", "0"]}


def test_text_labels_that_read_as_other_values_are_quoted():
    from router.agreement import _shown

    assert [_shown(v) for v in ("car", "1", 1, 1.0, "true", True, "null", "", "(none)", " car ", "[1]")] == [
        "car", '"1"', "1", "1", '"true"', "true", '"null"', '""', '"(none)"', '" car "', '"[1]"']
    assert _shown(["y", "x", "x"]) == '["x", "y"]' and _shown('["x", "y"]') == '"[\\"x\\", \\"y\\"]"'
