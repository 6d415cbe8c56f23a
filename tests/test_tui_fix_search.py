"""The task list's search (`/`) over a task's data: the values as text, case-folded.

Before, it was SQLite ``LIKE`` over the stored JSON text: a `"`, a `\\`, a tab or a newline in a
value (escaped in the JSON) was never found, a key name (`text`) found every task that had that
key, and case was ignored for ASCII only (`CAFÉ` did not find `Café`). Checked through
``Store.task_page`` (what ``Queries.task_page`` runs) on a real SQLite file, through the pilot in
the TUI, and on :func:`router.task_search.matches` itself.
"""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input

from router.engine import Engine
from router.ingest import read_file
from router.store import Store, dumps
from router.task_search import fold, matches
from test_tui import LEAD, NOW, anyio_backend, open_tasks_on, settle  # noqa: F401
from tui.app import LabelyardApp
from tui.widgets.modals import InputModal

pytestmark = pytest.mark.anyio

WORKFLOW = """\
workflow: search
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - do: {annotate: q, overlap: 1}
"""

DATA = {
    "quote": {"text": 'she said "refund now"'},
    "slash": {"path": "C:\\temp\\new"},
    "tab": {"cells": "left\tright"},
    "lines": {"body": "first line\nsecond line"},
    "cafe": {"shop": "Café Ölmühle"},
    "street": {"addr": "Hauptstraße 5"},
    "kelvin": {"temp": "300 \u212a"},  # KELVIN SIGN, which folds to k
    "number": {"amount": 4.50, "count": 1e3},
    "flag": {"urgent": True, "note": None},
    "nested": {"items": [{"sku": "AB-1"}, ["deep", {"x": "needle in a list"}]]},
    "keys": {"text": "plain", "customer": "nobody"},
    "Mixed-Case-ID": {"text": "other"},
}


@pytest.fixture
def searchable(tmp_path, monkeypatch) -> str:
    """A project with one task per entry of ``DATA`` (external id = the entry's name)."""
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    path = str(tmp_path / "s.db")
    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(WORKFLOW, "w.workflow.yaml", actor=LEAD)
    engine.add_worker(LEAD, ["lead"], [], None, actor="test")
    inbox = tmp_path / "in.jsonl"
    inbox.write_text("".join(json.dumps({"id": name, "data": data}) + "\n" for name, data in DATA.items()))
    engine.ingest(read_file(str(inbox), engine.workflow.labels.choices), str(inbox))
    engine.close()
    return path


def found(path: str, text: str) -> list[str]:
    store = Store.open(path)
    try:
        return sorted(r["external_id"] for r in store.task_page(text=text, limit=100))
    finally:
        store.close()


@pytest.mark.parametrize("text, expected", [
    ('"refund now"', ["quote"]),
    ('said "REFUND', ["quote"]),
    ("C:\\temp\\new", ["slash"]),
    ("\\temp", ["slash"]),
    ("left\tright", ["tab"]),
    ("line\nsecond", ["lines"]),
    ("CAFÉ", ["cafe"]),
    ("ölmühle", ["cafe"]),
    ("STRASSE", ["street"]),
    ("300 k", ["kelvin"]),
    ("4.5", ["number"]),  # numbers as the store wrote them (and the screens show them): 4.50 is 4.5
    ("1000.0", ["number"]),
    ("true", ["flag"]),
    ("null", []),
    ("needle in", ["nested"]),
    ("ab-1", ["nested"]),
    ("mixed-case", ["Mixed-Case-ID"]),
])
def test_search_finds_the_data_values_as_text_case_folded(searchable, text, expected):
    assert found(searchable, text) == expected


@pytest.mark.parametrize("text", ["text", "customer", "TEXT", "path", "urgent", "sku", '"text"', "text:"])
def test_search_does_not_match_key_names(searchable, text):
    assert found(searchable, text) == []  # before: every task with that key


def test_search_still_finds_by_id_and_takes_like_wildcards_as_text(searchable):
    assert found(searchable, "12") == ["Mixed-Case-ID"]  # task id 12
    assert found(searchable, "%") == [] and found(searchable, "_") == []
    assert found(searchable, "\\") == ["slash"]


def test_search_reads_data_a_bulk_load_wrote_with_other_escapes(searchable):
    """A database filled around the store (plain SQL, another JSON encoder) may write `\\u00e9` and `\\/`."""
    store = Store.open(searchable)
    try:
        with store.transaction():
            store.conn.execute("UPDATE tasks SET data = ? WHERE external_id = 'keys'",
                               (json.dumps({"shop": "CAFÉ du Nord", "url": "a/b"}).replace("/", "\\/"),))
    finally:
        store.close()
    assert found(searchable, "café du") == ["keys"]
    assert found(searchable, "café") == ["cafe", "keys"]
    assert found(searchable, "A/B") == ["keys"]


def test_matches_decides_on_values_not_on_the_json_text():
    data = dumps({"title": 'a "b" \\ c', "body": "x\ny", "text": "text"})
    assert matches("E-1", data, fold('"B" \\'))
    assert matches("E-1", data, fold("x\ny"))
    assert not matches("E-1", data, fold('title":'))  # across a key and its value
    assert matches("E-1", data, fold("text"))  # a value that reads `text`
    assert not matches("E-1", dumps({"text": "t"}), fold("text"))
    assert matches("E-1", dumps({"t": ["ſ"]}), fold("S"))  # LATIN SMALL LETTER LONG S folds to s
    assert matches("e-1", None, fold("E-1")) and not matches("E-1", None, fold("x"))
    assert matches("E-1", "not json: Text", fold("TEXT"))  # text a hand-made row holds, as it is


async def test_the_tui_search_finds_a_quoted_value_and_not_a_key_name(searchable):
    app = LabelyardApp(searchable, LEAD, poll_interval=None)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_tasks_on(app, pilot)
        for text, expected in (('"refund now"', ["quote"]), ("text", []), ("CAFÉ", ["cafe"])):
            await pilot.press("slash")
            await pilot.pause()
            assert isinstance(app.screen, InputModal)
            app.screen.query_one(Input).value = text
            await pilot.press("enter")
            await settle(app, pilot)
            assert sorted(r["external_id"] for r in screen.rows) == expected, text
