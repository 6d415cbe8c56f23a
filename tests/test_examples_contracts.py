"""workflows/contract-escalation: gold questions grant the `contracts` skill, as its description says.

Before, the only annotator queue (`paralegals`) asked for the skill, so an annotator without it
never got any work, gold included: `proven on gold` could never match, and one `slipping` lost
the skill for good. Now every annotator works `probation` (standard forms and the gold questions).
The example runs as shipped on a real database: set up and checked through the CLI, the two
hundred claims of a newcomer's probation through router's API (the same calls `claim` and
`submit` make).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router.engine import Engine
from router.errors import NothingToDo
from router.gold import gold_fraction
from test_flows_claims import claim

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "workflows" / "contract-escalation.workflow.yaml"
NOW = "2025-03-03T09:00:00Z"  # a Monday morning: no timer is due


def project(run) -> dict:
    """The example applied; nia, an annotator without `contracts`; 30 gold questions (no queue
    given: `gold add` puts them in the first annotator queue); 240 standard forms and one
    contract for the paralegals."""
    run.ok("init")
    run.ok("apply", str(EXAMPLE))
    run.ok("workers", "add", "nia", "--role", "annotator")
    gold = [{"id": f"G{i}", "data": {"doc_type": "contract", "text": f"clause {i}"}, "answer": ["liability"]}
            for i in range(30)]
    (run.folder / "gold.jsonl").write_text("".join(json.dumps(g) + "\n" for g in gold), encoding="utf-8")
    assert run.json("gold", "add", "gold.jsonl", "--json")["added"] == 30
    rows = [{"id": f"S{i}", "tags": ["standard"], "data": {"doc_type": "contract"}} for i in range(240)]
    rows.append({"id": "C1", "data": {"doc_type": "contract"}})
    (run.folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return run.json("ingest", "docs.jsonl", "--json")


def test_a_newcomer_without_the_skill_reads_probation_and_earns_contracts_through_gold(run, monkeypatch):
    ingested = project(run)
    refused = run("claim", "--as", "nia", "--queue", "paralegals", "--json")
    assert refused.returncode == 3 and "nia may not take work from `paralegals`" in refused.stderr
    first = claim(run, "nia")  # before: exit 3, "no work for nia", whatever was waiting
    assert first["queue"] == "probation"
    assert ingested["routed"] == {"standard form": 240, "first read": 1}
    assert run.json("show", "G0", "--json")["task"]["queue"] == "probation"

    monkeypatch.setenv("LABELYARD_NOW", NOW)
    engine = Engine.open(str(run.db))
    try:
        engine.submit(first["assignment"], "nia", label=["liability"])
        claims = 1
        while "contracts" not in json.loads(engine.store.worker("nia")["skills"]):
            assert claims < 240, "nia never earned the skill"
            view = engine.claim("nia")
            assert view["queue"] == "probation"
            engine.submit(view["assignment"], "nia", label=["liability"])
            claims += 1
        nia = engine.store.worker("nia")
        assert (nia["gold_answered"], nia["gold_correct"]) == (20, 20)  # `proven on gold`: twenty, right
        expected = next(n for n in range(1, 240) if sum(gold_fraction("nia", k) < 0.1 for k in range(n)) == 20)
        assert claims == expected  # the gold rate of the example (0.1) decided which claims were gold
    finally:
        engine.close()

    assert "contracts" in next(w for w in run.json("workers", "list", "--json") if w["id"] == "nia")["skills"]
    read = claim(run, "nia", "--queue", "paralegals")
    assert (read["external_id"], read["queue"]) == ("C1", "paralegals")


def test_an_annotator_who_lost_the_skill_still_gets_gold_to_win_it_back(run, monkeypatch):
    """`slipping` takes `contracts` away; probation still serves them, gold included."""
    project(run)
    run.ok("workers", "add", "pat", "--role", "annotator", "--skill", "contracts")
    run.ok("workers", "set", "pat", "--no-skills")  # as `slipping` leaves them
    monkeypatch.setenv("LABELYARD_NOW", NOW)
    engine = Engine.open(str(run.db))
    try:
        with pytest.raises(NothingToDo, match="may not take work from `paralegals`"):
            engine.claim("pat", "paralegals")
        gold = 0
        for _ in range(30):
            view = engine.claim("pat")  # before: NothingToDo, "no work for pat", for good
            gold += view["external_id"].startswith("G")
            engine.submit(view["assignment"], "pat", label=["liability"])
        assert gold == engine.store.worker("pat")["gold_answered"] > 0
    finally:
        engine.close()
