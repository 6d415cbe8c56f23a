"""Plugins written from docs/plugins.md by a tester, and what they found.

- `check_row` builds a `TaskInput` or a `RowProblem`, as the docs say: a source that
  follows them quarantines its bad rows instead of failing every run.
- A source that fails after some parts still reports what those parts ingested.
- The rejects of a plugin's rows are never merged or deleted by other rows of the
  same origin: page-numbered lines, or no lines at all.
- `labelyard plugins` shows the version of a `plugins:` module's distribution.
- The `labelstudio` sink writes a target with a long name; the `csv` sink can write
  spreadsheet-safe cells.

Real `labelyard` subprocesses, plugins in a plugins folder, a real database file.
"""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
workflow: r
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
on_quorum: [{name: acc, do: accept}]
"""


@pytest.fixture
def project(run, tmp_path):
    """``init`` done; ``plugin(name, code)`` writes a plugin file, ``use(extra)`` applies BASE plus ``extra``."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    run.env["LABELYARD_PLUGINS_DIR"] = str(folder)
    run.ok("init")

    def plugin(name: str, code: str) -> None:
        (folder / f"{name}.py").write_text(textwrap.dedent(code), encoding="utf-8")

    def use(extra: str = "") -> None:
        (tmp_path / "r.workflow.yaml").write_text(BASE + extra, encoding="utf-8")
        run.ok("apply", "r.workflow.yaml")

    run.plugin, run.use = plugin, use
    return run


def rejects(run) -> list[tuple[int, str]]:
    """``(line, reason)`` of every reject ``labelyard rejects`` lists, sorted."""
    return sorted((r["line"], r["reason"]) for r in run.json("rejects", "--json", "--limit", "1000"))


def doc_example(first_line: str) -> str:
    """The code block of docs/plugins.md that starts with ``first_line``."""
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"docs/plugins.md has no example starting {first_line!r}")


# -- 1: check_row as the docs show it ------------------------------------------------------------
def test_the_documented_check_row_example_quarantines_bad_rows_and_ingests_the_rest(project, tmp_path):
    project.plugin("inbox_api", doc_example("# plugins/inbox_api.py"))
    project.use("sources: [{plugin: inbox_api, path: inbox.json}]\n")
    records = [
        {"id": "a1", "data": {"text": "fine"}, "prediction": {"label": "bug", "confidence": 0.95}},
        {"id": "a2", "data": 5},
        {"id": "a3", "data": {}, "prediction": {"label": "cat"}},
        {"id": "a4", "text": "no data object: the other keys are its data"},
    ]
    (tmp_path / "inbox.json").write_text(json.dumps(records), encoding="utf-8")
    proc = project("run", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["sources"]["inbox_api:inbox.json"]
    assert (report["ingested"], report["rejected"]) == (2, 2)
    assert rejects(project) == [(2, "`data` must be an object"), (3, '`prediction.label` "cat" is not one of bug, spam')]
    raws = {r["line"]: json.loads(r["raw"]) for r in project.json("rejects", "--json")}
    assert raws[2] == records[1]
    task = project.json("show", "a4", "--json")
    assert task["task"]["data"] == {"text": "no data object: the other keys are its data"}

    records.append({"id": "a5", "data": {}})  # the cursor: the next run reads only what is new
    (tmp_path / "inbox.json").write_text(json.dumps(records), encoding="utf-8")
    report = project.json("run", "--json")["sources"]["inbox_api:inbox.json"]
    assert (report["ingested"], report["duplicates"], report["rejected"]) == (1, 0, 0)


def test_check_row_takes_choices_and_reserved_as_optional_and_never_raises():
    from router.plugin_api import RowProblem, TaskInput, check_row

    good = check_row({"id": 7, "data": {"x": 1}, "prediction": {"label": "cat", "confidence": 0.5}}, 3)
    assert isinstance(good, TaskInput) and (good.line, good.external_id, good.label) == (3, "7", "cat")
    assert isinstance(check_row({"id": "a", "data": {}, "prediction": {"label": "cat"}}, 1, ("bug",)), RowProblem)
    bad = check_row({"id": "b", "data": 5}, 4)
    assert bad == RowProblem(4, "`data` must be an object", '{"id": "b", "data": 5}', "b")
    assert check_row(["not", "a", "dict"], 9) == RowProblem(9, "a row must be a JSON object", '["not", "a", "dict"]')
    assert check_row({"id": "c", "text": "t", "lang": "en"}, 1, reserved={"id", "lang"}).data == {"text": "t"}


# -- 2: a source that fails after some parts ------------------------------------------------------
FLAKY = """
    from router import hookimpl
    from router.plugin_api import SourcePart, TaskInput

    @hookimpl
    def register_sources(register):
        register("flaky", read)

    def read(run):
        start = run.state or 0
        yield SourcePart("flaky", [TaskInput(start + 1, f"f{start + 1}", {}, label="bug", confidence=0.95),
                                   TaskInput(start + 2, f"f{start + 2}", 5)], cursor=start + 2)
        raise ConnectionError("the API hung up")
"""


def test_a_source_failing_after_a_part_reports_what_that_part_ingested(project, tmp_path):
    project.plugin("flaky", FLAKY)
    project.use("sources: [{plugin: flaky}]\n")
    proc = project("run")
    assert proc.returncode == 4
    assert "source flaky: ingested 1, duplicates 0, rejected 1" in proc.stdout.splitlines()
    assert proc.stderr.splitlines() == [
        "labelyard run: flaky: sources failed: ConnectionError: the API hung up (flaky.py:13)"]

    proc = project("run", "--json")  # the cursor moved past the first part: the next one is new
    assert proc.returncode == 4
    report = json.loads(proc.stdout)
    assert report["sources"]["flaky"] == {"ingested": 1, "duplicates": 0, "rejected": 1, "routed": {"confident": 1}}
    assert [f["step"] for f in report["failures"]] == ["sources"]
    assert sorted(t["id"] for t in map(json.loads, project.ok("export").stdout.splitlines())) == ["f1", "f3"]

    with sqlite3.connect(tmp_path / "labelyard.db") as conn:
        stored = [json.loads(summary)["sources"]["flaky"]
                  for (summary,) in conn.execute("SELECT summary FROM plugin_runs ORDER BY id")]
    assert [s["ingested"] for s in stored] == [1, 1] and [s["rejected"] for s in stored] == [1, 1]
