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


def test_ingest_through_a_source_that_fails_after_a_part_tells_what_went_in_and_names_its_sources(project):
    """`ingest flaky:x` dropped the first part's counts (it went in) and said only that it failed."""
    project.plugin("flaky", FLAKY)
    project.use()
    proc = project("ingest", "flaky:x", "--json")
    assert proc.returncode == 4, proc.stderr  # as `run` exits when a plugin failed
    assert json.loads(proc.stdout) == {
        "ingested": 1, "duplicates": 0, "rejected": 1, "routed": {"confident": 1}, "sources": ["flaky"],
        "failed": "source `flaky` failed: ConnectionError: the API hung up (flaky.py:13)"}
    assert "the rows it gave before that went in" in proc.stderr
    text = project("ingest", "flaky:x")  # the same part again: a duplicate and its reject again
    assert text.returncode == 4 and text.stdout.splitlines()[0] == "ingested 0, duplicates 1, rejected 1"
    assert "--source flaky" in text.stderr  # the one source its rejects are kept under
    assert [r["source"] for r in project.json("rejects", "--json")] == ["flaky"]


# -- 3: rejects of plugin rows: lines numbered per page, or no lines ----------------------------------
PAGES = """
    import json
    from router import hookimpl
    from router.plugin_api import SourcePart, check_row

    @hookimpl
    def register_sources(register):
        register("pages", read)

    def read(run):
        with open(run.path("pages.json"), encoding="utf-8") as handle:
            pages = json.load(handle)
        for page in range((run.state or 0) + 1, len(pages) + 1):  # each page's rows numbered from 1
            rows = [check_row(record, n) for n, record in enumerate(pages[page - 1], 1)]
            yield SourcePart("https://api.example.com/items", rows, cursor=page)
"""

NO_LINES = """
    from router import hookimpl
    from router.plugin_api import RowProblem, SourcePart, TaskInput

    @hookimpl
    def register_sources(register):
        register("nolines", read)

    def read(run):  # no cursor, no lines: every run reads it all again
        yield SourcePart("queue", [
            TaskInput(0, "n1", {}, label="bug", confidence=0.95),
            TaskInput(0, "n2", "not an object"),
            TaskInput(0, "n3", {}, label="cat"),
            RowProblem(0, "not JSON", "{oops"),
            RowProblem(0, "not JSON", "{oops"),  # the same bad message twice: two rows all the same
            RowProblem(0, "not JSON", "{worse"),
        ])
"""


def test_page_numbered_lines_keep_every_page_s_rejects(project, tmp_path):
    project.plugin("pages", PAGES)
    project.use("sources: [{plugin: pages}]\n")
    page1 = [{"id": "p1a", "data": {}, "prediction": {"label": "cat"}},  # refused when routed: no raw text
             {"id": "p1b", "data": 5},
             {"id": "p1c", "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}]
    page2 = [{"id": "p2a", "data": {}, "prediction": {"label": "cat"}},
             {"id": "p2b", "data": "five"}]
    page3 = [{"id": "p3a", "data": {}, "prediction": {"label": "bug", "confidence": 2}}]
    (tmp_path / "pages.json").write_text(json.dumps([page1]), encoding="utf-8")
    first = project.json("run", "--json")["sources"]["pages"]
    assert (first["ingested"], first["rejected"]) == (1, 2)
    (tmp_path / "pages.json").write_text(json.dumps([page1, page2, page3]), encoding="utf-8")
    second = project.json("run", "--json")["sources"]["pages"]
    assert (second["ingested"], second["rejected"]) == (0, 3)

    listed = project.json("rejects", "--json", "--source", "https://api.example.com/items")
    assert len(listed) == first["rejected"] + second["rejected"] == project.json("status", "--json")["rejects"]
    cat = '`prediction.label`: label "cat" is not one of bug, spam'
    assert rejects(project) == [(1, "`prediction.confidence` 2 is outside 0..1"), (1, cat), (1, cat),
                                (2, "`data` must be an object"), (2, "`data` must be an object")]


def test_rows_without_lines_are_each_a_reject_and_a_read_again_adds_none(project):
    project.plugin("nolines", NO_LINES)
    project.use("sources: [{plugin: nolines}]\n")
    for _ in range(2):  # the second run reads the same rows again: the same rejects, none added
        report = project.json("run", "--json")["sources"]["nolines"]
        assert report["rejected"] == 5
        assert rejects(project) == [
            (0, "`data` must be an object"), (0, '`prediction.label`: label "cat" is not one of bug, spam'),
            (0, "not JSON"), (0, "not JSON"), (0, "not JSON")]
    assert sorted(r["raw"] for r in project.json("rejects", "--json") if r["reason"] == "not JSON") == [
        "{oops", "{oops", "{worse"]


def test_a_file_source_read_again_from_the_start_replaces_its_rejects(project, tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "in").mkdir()
    project.use('sources: [{plugin: csv, path: r/in.csv}, {plugin: folder, path: r/in, pattern: "*.txt", '
                'max_text_bytes: 4, finished_after: 0}]\n')
    (tmp_path / "r" / "in.csv").write_text("id,text,prediction_confidence\nc1,a,0.5\nc2,b,high\n", encoding="utf-8")
    (tmp_path / "r" / "in" / "m.txt").write_text("too long", encoding="utf-8")
    project.ok("run")
    assert rejects(project) == [(1, "m.txt: text file larger than 4 bytes"),
                                (3, '`prediction_confidence` "high" is not a number')]
    (tmp_path / "r" / "in.csv").write_text("id,text,prediction_confidence\nc1,a,0.5\nc2,b,0.7\n", encoding="utf-8")
    (tmp_path / "r" / "in" / "a.txt").write_text("ok", encoding="utf-8")  # m.txt moves to line 2
    report = project.json("run", "--json")["sources"]
    assert (report["csv:r/in.csv"]["ingested"], report["folder:r/in"]["rejected"]) == (1, 1)
    assert rejects(project) == [(2, "m.txt: text file larger than 4 bytes")]


def test_m008_keeps_the_rejects_of_an_older_database_and_file_rejects_stay_one_per_line(tmp_path):
    from sqlite_utils import Database

    from router import migrations
    from router.store import Store

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrations.apply(Database(conn), stop_before="m008_plugin_reject_keys")
    conn.execute("INSERT INTO rejects (id, source, line, reason, raw, at) VALUES (7, '/in.jsonl', 3, 'bad', '{', 1.0)")
    conn.close()
    store, applied = Store.init(str(path))
    assert applied[0] == "m008_plugin_reject_keys"  # and the migrations after it
    assert [tuple(r) for r in store.rejects()] == [(7, "/in.jsonl", 3, "bad", "{", 1.0)]
    with store.transaction():
        store.add_rejects([("/in.jsonl", 3, "worse", "{{", 2.0)])  # a file's line: replaced, as before
        store.add_keyed_rejects([("queue", 0, "a", None, 2.0, "k1"), ("queue", 0, "b", None, 2.0, "k2")])
    assert sorted((r["source"], r["line"], r["reason"]) for r in store.rejects()) == [
        ("/in.jsonl", 3, "worse"), ("queue", 0, "a"), ("queue", 0, "b")]
    store.close()


# -- 4: the version of a workflow module's distribution ---------------------------------------------
def installed_package(site: Path, module: str, dist: str, version: str, body: str = "") -> None:
    """``module`` in ``site`` as a distribution ``dist`` installs it: the package and its ``.dist-info``."""
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(textwrap.dedent(body), encoding="utf-8")
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "RECORD").write_text(f"{module}/__init__.py,,\n{info.name}/METADATA,,\n{info.name}/RECORD,,\n",
                                 encoding="utf-8")


SHOUT = """
    from router import hookimpl

    __version__ = "0.0.0"  # the distribution's version comes first

    @hookimpl
    def register_functions(register):
        register("shout", lambda text: str(text).upper())
"""


def test_plugins_shows_the_version_of_a_workflow_module_s_distribution(project, tmp_path):
    import os

    site = tmp_path / "site"
    installed_package(site, "ly_shout", "labelyard-shout", "2.5.1", SHOUT)
    project.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), project.env.get("PYTHONPATH")]))
    project.use("plugins: [ly_shout]\n")
    listed = {p["name"]: p for p in project.json("plugins", "--json")}
    assert (listed["ly_shout"]["origin"], listed["ly_shout"]["version"]) == ("workflow", "2.5.1")
    lines = project.ok("plugins").stdout.splitlines()
    assert any(line.startswith("ly_shout") and line.endswith("ly_shout  version 2.5.1") for line in lines), lines


def test_a_workflow_module_s_distribution_is_looked_up_once_and_only_when_asked(tmp_path, monkeypatch):
    import importlib.metadata
    import sys

    from router import plugins

    site = tmp_path / "site"
    installed_package(site, "ly_lazy", "labelyard-lazy", "1.2", SHOUT.replace("shout", "lazy_shout"))
    installed_package(site, "ly_plain", "labelyard-plain", "3.0", "__version__ = '0.1'\n")
    (site / "ly_bare.py").write_text("__version__ = '0.7'\n", encoding="utf-8")  # in no distribution
    monkeypatch.syspath_prepend(str(site))
    for name in ("ly_lazy", "ly_plain", "ly_bare"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    calls = []
    real = importlib.metadata.packages_distributions
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: calls.append(1) or real())
    forget = getattr(plugins, "_distributions_by_package", None)
    forget = forget.cache_clear if forget is not None else lambda: None
    forget()  # what this process read before: without the site above
    try:
        loaded = plugins.load_plugins(["ly_lazy", "ly_plain", "ly_bare"])
        assert loaded.functions["lazy_shout"]("a") == "A" and calls == []  # loading alone reads no metadata
        versions = {i.name: i.version for i in loaded.infos if i.origin == "workflow"}
        assert versions == {"ly_lazy": "1.2", "ly_plain": "3.0", "ly_bare": "0.7"}
        assert calls == [1]
    finally:
        forget()  # nor may later tests read this site's


# -- 5: the labelstudio sink's temp file, the csv sink's formula cells ----------------------------------
LONG_NAME = "x" * 246 + ".json"  # 251 bytes: a valid name (NAME_MAX is 255), too long for NAME.labelyard-tmp


def formula_rows() -> str:
    rows = [{"id": '=HYPERLINK("http://x")', "data": {}, "category": "@risk",
             "prediction": {"label": "bug", "confidence": 0.95}},
            {"id": "plain", "data": {}, "prediction": {"label": "spam", "confidence": 0.95}}]
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_the_labelstudio_sink_writes_a_target_whose_name_is_as_long_as_allowed(project, tmp_path):
    project.use(f"sinks: [{{plugin: labelstudio, path: out/{LONG_NAME}}}]\n")
    (tmp_path / "in.jsonl").write_text(formula_rows(), encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    proc = project("run")
    assert proc.returncode == 0, proc.stderr
    assert "delivered 2" in proc.stdout
    written = json.loads((tmp_path / "out" / LONG_NAME).read_text(encoding="utf-8"))
    assert sorted(t["meta"]["labelyard"]["id"] for t in written) == ['=HYPERLINK("http://x")', "plain"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [LONG_NAME]


def test_the_csv_sink_neutralises_formula_cells_with_spreadsheet_safe(project, tmp_path):
    project.use("sinks: [{plugin: csv, path: out/safe.csv, spreadsheet_safe: true}, {plugin: csv, path: out/raw.csv}]\n")
    (tmp_path / "in.jsonl").write_text(formula_rows(), encoding="utf-8")
    project.ok("ingest", "in.jsonl")
    proc = project("run")
    assert proc.returncode == 0 and "no setting" not in proc.stderr, proc.stderr
    safe = (tmp_path / "out" / "safe.csv").read_text(encoding="utf-8").splitlines()
    raw = (tmp_path / "out" / "raw.csv").read_text(encoding="utf-8").splitlines()
    assert safe[0] == raw[0] == "id,label,final_by,rule,final_at,category,agreement"
    assert safe[1].startswith('"\'=HYPERLINK(""http://x"")",bug,model,confident,') and safe[1].endswith(",'@risk,")
    assert raw[1].startswith('"=HYPERLINK(""http://x"")",bug,model,confident,') and raw[1].endswith(",@risk,")
    assert safe[2] == raw[2]  # nothing to neutralise: as written

    (tmp_path / "bad.workflow.yaml").write_text(
        BASE + "sinks: [{plugin: csv, path: out/safe.csv, spreadsheet_safe: yes please}]\n", encoding="utf-8")
    proc = project("validate", "bad.workflow.yaml")
    assert proc.returncode != 0
    assert "setting `spreadsheet_safe:` must be true or false, not 'yes please'" in proc.stdout + proc.stderr
