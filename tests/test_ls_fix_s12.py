"""The twelfth session's Label Studio fixes: lone surrogate escapes quarantined, labels written by their
own shape, boxes converted between pixels and percentages, several values for one refused, the sink's
output read back, and the sink's file keeping its mode and symlink."""

from __future__ import annotations

import json
import os
import textwrap

CHOICE_SOURCE = """\
workflow: lsin
labels: {type: choice, choices: [pos, neg]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: one
    do: {annotate: q}
sources:
  - {plugin: labelstudio, path: inbox/*.json}
"""


def _project(run, tmp_path, text):
    (tmp_path / "wf.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    run.ok("init")
    run.ok("apply", "wf.yaml")


# -- F3 / F4: a lone surrogate escape quarantines its task, the others go in ----------------------------------
def test_a_lone_surrogate_in_a_prediction_quarantines_that_task_and_the_rest_goes_in(run, tmp_path):
    _project(run, tmp_path, CHOICE_SOURCE)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox" / "export.json").write_text(
        '[{"id": 1, "data": {"text": "fine"}},\n'
        ' {"id": 2, "data": {"text": "ok"}, "predictions": [{"result": [{"value": {"choices": ["p\\ud800"]}}]}]},\n'
        ' {"id": "4\\udc805", "data": {"text": "bad id"}},\n'
        ' {"id": 6, "data": {"text": "x"}, "annotations": [{"completed_by": 1, "result": [{"value": {"choices": ["p\\udfff"]}}]}]},\n'
        ' {"id": 3, "data": {"text": "fine too"}}]', encoding="ascii")
    (tmp_path / "inbox" / "z.json").write_text('[{"id": 9, "data": {"t": 1}}]', encoding="ascii")
    assert run("run").returncode == 0
    assert run("run").returncode == 0
    status = run.json("status", "--json")
    assert status["total"] == 3, status
    for ident in ("1", "3", "9"):
        run.ok("explain", f"ext:{ident}")
    rejects = run.json("rejects", "--json")
    reasons = {r["line"]: r["reason"] for r in rejects}
    assert reasons[2] == ("the lone UTF-16 surrogate escape `\\ud800` in `predictions[1].result[1].value.choices[1]` "
                          "is not text (a surrogate escape needs its pair)")
    assert "`\\udc80` in `id`" in reasons[3]
    assert "`\\udfff` in `annotations[1].result[1].value.choices[1]`" in reasons[4]
    assert all("\\ud800" in r["raw"] for r in rejects if r["line"] == 2)


def test_a_lone_low_surrogate_in_data_is_said_as_an_escape_at_its_field_not_a_byte(run, tmp_path):
    _project(run, tmp_path, CHOICE_SOURCE.split("sources:")[0])
    (tmp_path / "one.json").write_text('[{"id": 101, "data": {"text": "fine"}},\n'
                                       ' {"id": 102, "data": {"text": "bad \\udc80 here"}}]', encoding="ascii")
    run.ok("ingest", "labelstudio:one.json")
    (reject,) = run.json("rejects", "--json")
    assert "byte 0x80" not in reject["reason"]
    assert reject["reason"].startswith("the lone UTF-16 surrogate escape `\\udc80` in `data.text`")
    assert reject["line"] == 2


# -- F7: the sink writes a label by its own shape, not the current version's type -------------------------------
SINK_V1 = """\
workflow: vt
labels: {type: choice, choices: [pos, neg]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: c
    do: accept
sinks:
  - {plugin: labelstudio, path: out/ls.json}
"""


def _results(tmp_path, name="out/ls.json"):
    return [task["annotations"][0]["result"] if task["annotations"] else None
            for task in json.loads((tmp_path / name).read_text(encoding="utf-8"))]


def test_a_choice_made_final_before_a_type_change_is_written_as_its_choice(run, tmp_path):
    for new_type in ("multi_choice, choices: [pos, neg]", "spans", "boxes, choices: [car]"):
        for leftover in tmp_path.iterdir():
            if leftover.is_file():
                leftover.unlink()
        if (tmp_path / "out").exists():
            for f in (tmp_path / "out").iterdir():
                f.unlink()
        _project(run, tmp_path, SINK_V1)
        (tmp_path / "in.jsonl").write_text('{"id":"A","data":{"n":1},"prediction":{"label":"pos"}}\n')
        run.ok("ingest", "-q", "in.jsonl")
        (tmp_path / "v2.yaml").write_text(SINK_V1.replace("choice, choices: [pos, neg]", new_type))
        run.ok("apply", "v2.yaml")
        run.ok("run")
        run.ok("run")
        (result,) = _results(tmp_path)
        assert [(r["type"], r["value"]) for r in result] == [("choices", {"choices": ["pos"]})], new_type


def test_a_label_of_no_label_studio_form_goes_without_annotation_and_is_said_once():
    from plugins._labelstudio_sink import finish, ls_task, write
    from router.plugin_api import FinalTask, PluginError, PluginRun

    import tempfile
    folder = tempfile.mkdtemp()
    run = PluginRun("labelstudio", "ls", {"path": "ls.json"}, base_dir=folder, label_type="spans")
    good = FinalTask(1, "A", [{"start": 0, "end": 2, "label": "x"}], "model", "c", None, None, [], {}, {}, [], None)
    odd = FinalTask(2, "B", {"odd": 1}, "model", "c", None, None, [], {}, {}, [], None)
    item = ls_task(odd, run)
    assert item["annotations"] == [] and item["meta"]["labelyard"]["label"] == {"odd": 1}
    run.state = write(run, [good, odd])
    try:
        finish(run)
    except PluginError as exc:
        assert "task B written without its label" in str(exc) and "the other tasks are written" in str(exc)
    else:
        raise AssertionError("not said")
    written = json.load(open(os.path.join(folder, "ls.json")))
    assert [t["meta"]["labelyard"]["id"] for t in written] == ["A", "B"]
    assert written[0]["annotations"][0]["result"][0]["type"] == "labels"
    assert finish(run)["pending"] == 0  # said once: the journal is written out


# -- F14: boxes are pixels in Labelyard, percent of the image in Label Studio ----------------------------------
BOXES = """\
workflow: boxes
labels: {type: boxes, choices: [car]}
queues:
  q: {roles: [annotator]}
on_create:
  - name: model
    do: accept
sinks:
  - {plugin: labelstudio, path: out/ls.json, to_name: image}
"""


def test_the_sink_writes_boxes_in_percent_with_the_image_size_or_says_it_is_unknown(run, tmp_path):
    _project(run, tmp_path, BOXES)
    (tmp_path / "in.jsonl").write_text(
        '{"id":"img1","data":{"image":"a.jpg","width":640,"height":480},"prediction":{"label":'
        '[{"x":320,"y":240,"width":64,"height":48,"label":"car"}]}}\n'
        '{"id":"img2","data":{"image":"b.jpg"},"prediction":{"label":[{"x":1,"y":1,"width":2,"height":2}]}}\n')
    run.ok("ingest", "-q", "in.jsonl")
    first = run("run")
    assert first.returncode == 4 and "task img2 written without its label" in first.stderr
    assert "`width` and `height`" in first.stderr
    assert run("run").returncode == 0  # said once
    one, two = json.loads((tmp_path / "out" / "ls.json").read_text())
    (result,) = one["annotations"][0]["result"]
    assert result["value"] == {"x": 50.0, "y": 50.0, "width": 10.0, "height": 10.0, "rotation": 0,
                               "rectanglelabels": ["car"]}
    assert (result["original_width"], result["original_height"]) == (640, 480)
    assert two["annotations"] == [] and two["meta"]["labelyard"]["label"][0]["x"] == 1


def test_the_source_reads_label_studio_percent_as_pixels_and_refuses_rotated_or_unsized_boxes(run, tmp_path):
    _project(run, tmp_path, BOXES.split("sinks:")[0])

    def task(ident, value, sizes=True, data=None):
        result = {"type": "rectanglelabels", "value": {**value, "rectanglelabels": ["car"]}}
        if sizes:
            result.update(original_width=640, original_height=480)
        return {"id": ident, "data": data or {"image": "b.jpg"}, "predictions": [{"score": 0.9, "result": [result]}]}

    centre = {"x": 50, "y": 50, "width": 10, "height": 10, "rotation": 0}
    tasks = [task(7, centre), task(8, {**centre, "rotation": 30}), task(9, centre, sizes=False),
             task(10, centre, sizes=False, data={"width": 200, "height": 100})]
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    run.ok("ingest", "labelstudio:ls.json")
    labels = {row["id"]: row["label"] for row in map(json.loads, run.ok("export").stdout.splitlines())}
    assert labels == {"7": [{"x": 320, "y": 240, "width": 64, "height": 48, "label": "car"}],
                      "10": [{"x": 100, "y": 50, "width": 20, "height": 10, "label": "car"}]}
    reasons = {r["line"]: r["reason"] for r in run.json("rejects", "--json")}
    assert "rotation` is 30: a rotated box" in reasons[2]
    assert "the image size is unknown" in reasons[3]
