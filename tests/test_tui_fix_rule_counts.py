"""The Workflow screen's "fired" counts are per rule identity, not per shown name.

An unnamed ``on_timer`` rule is shown by its place (``on_timer[2]``) but known by its ``when`` and
``do``. ``rule_counts`` counted by the shown name, so after a new version inserted a rule first, the
new ``on_timer[1]`` showed the old rule's count added to its own, and the old rule, now
``on_timer[2]``, showed 0. Migration ``m009`` counts by the key the events carry, and counts a
database's existing events again that way (an older event without a key is read by its place in
the version active when it was written).

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW``; the screen's data
from :meth:`router.queries.Queries.workflow_rules`, which the TUI shows.
"""

from __future__ import annotations

import sqlite3

import pytest

from lead_support import Project
from router.queries import Queries

HEAD = """\
workflow: t
labels: {type: choice, choices: [a, b, c]}
queues:
  triage: {roles: [annotator]}
on_create: [{name: all, do: {annotate: triage, overlap: 2}}]
on_quorum: [{name: any, do: accept}]
on_timer:
"""
HOLD = "  - {when: task.age > 1h and task.data.n <= 3, do: {hold: stale}}\n"
BUMP = "  - {when: task.age > 1h, do: {annotate: triage, priority: 7}}\n"


def fired(db) -> tuple[dict[tuple[str, str], int], list[dict]]:
    q = Queries.open(str(db))
    try:
        rules = q.workflow_rules()
    finally:
        q.close()
    counts = {(s["section"], r["name"]): r["fired"] for s in rules["sections"] for r in s["rules"]}
    return counts, rules["retired"]


def inserted_before(tmp_path) -> Project:
    """v1's unnamed hold rule holds X1-X3 at 1.5h; v2 inserts an unnamed bump first, which bumps the
    other 7 at 2.5h, and again the 3 held ones after a lead unholds them."""
    p = Project(tmp_path, workflow=HEAD + HOLD)
    p.ingest([{"id": f"X{n}", "data": {"n": n}} for n in range(1, 11)])
    assert p.json("tick", hours=1.5)["actions"] == {"hold": 3}
    (tmp_path / "v2.workflow.yaml").write_text(HEAD + BUMP + HOLD)
    p.run_ok("apply", tmp_path / "v2.workflow.yaml", hours=2)
    assert p.json("tick", hours=2.5)["actions"] == {"priority": 7}
    return p


def test_an_unnamed_timer_rule_keeps_its_own_count_when_a_rule_is_inserted_before_it(tmp_path):
    p = inserted_before(tmp_path)
    counts, retired = fired(p.db)
    assert counts[("on_timer", "on_timer[1]")] == 7  # the new bump rule: its own decisions only
    assert counts[("on_timer", "on_timer[2]")] == 3  # the hold rule it was in v1
    assert counts[("on_create", "all")] == 10
    assert retired == []


def test_a_rule_gone_from_the_version_is_retired_with_its_own_count(tmp_path):
    p = inserted_before(tmp_path)
    (tmp_path / "v3.workflow.yaml").write_text(HEAD + BUMP)
    p.run_ok("apply", tmp_path / "v3.workflow.yaml", hours=3)
    counts, retired = fired(p.db)
    assert counts[("on_timer", "on_timer[1]")] == 7
    # shown by the name it had when it last fired (v1's on_timer[1]), apart from v3's on_timer[1]
    assert [(r["section"], r["rule"], r["fired"]) for r in retired] == [("on_timer", "on_timer[1]", 3)]
    assert retired[0]["rule_key"].startswith("on_timer#")


def as_before_m009(db, keyed: bool) -> None:
    """The database as a Labelyard before ``m009`` left it: ``rule_counts`` by shown name, kept by the
    ``m007`` trigger; ``keyed=False`` also drops the timer events' keys, as one before keys wrote them."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript("""
        BEGIN;
        DROP TRIGGER rule_counts_insert;
        DROP TABLE rule_counts;
        CREATE TABLE rule_counts (section TEXT NOT NULL, rule TEXT NOT NULL, n INTEGER NOT NULL, last_at REAL,
                                  PRIMARY KEY (section, rule)) WITHOUT ROWID;
        CREATE TRIGGER rule_counts_insert AFTER INSERT ON events
        WHEN NEW.rule IS NOT NULL AND NEW.kind != 'created' BEGIN
            INSERT INTO rule_counts (section, rule, n, last_at)
            VALUES (coalesce(CASE WHEN json_valid(NEW.detail) THEN json_extract(NEW.detail, '$.section') END, ''),
                    NEW.rule, 1, NEW.at)
            ON CONFLICT (section, rule) DO UPDATE SET n = n + 1, last_at = max(last_at, excluded.last_at);
        END;
        INSERT INTO rule_counts (section, rule, n, last_at)
        SELECT CASE WHEN kind = 'created' THEN 'on_create' ELSE coalesce(json_extract(detail, '$.section'), '') END,
               rule, count(*), max(at) FROM events WHERE rule IS NOT NULL GROUP BY 1, 2;
        DELETE FROM _sqlite_migrations WHERE name = 'm009_rule_counts_by_identity';
        -- and before m010, which came after it
        ALTER TABLE annotations DROP COLUMN agrees;
        ALTER TABLE workers DROP COLUMN final_votes;
        ALTER TABLE workers DROP COLUMN final_agreed;
        DELETE FROM _sqlite_migrations WHERE name = 'm010_final_vote_marks';
        DELETE FROM _sqlite_migrations WHERE name = 'm011_json_value_classes';  -- data only: nothing to undo
        COMMIT;
    """)
    conn.execute("UPDATE schema_version SET version = 8")
    if not keyed:
        conn.execute("UPDATE events SET detail = json_remove(detail, '$.rule_key') "
                     "WHERE json_extract(detail, '$.section') = 'on_timer'")
    assert conn.execute("SELECT n FROM rule_counts WHERE rule = 'on_timer[1]'").fetchone()[0] == 10  # the bug
    conn.close()


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed-events", "older-events"])
def test_init_counts_an_older_database_again_by_rule_identity(tmp_path, keyed):
    p = inserted_before(tmp_path)
    as_before_m009(p.db, keyed)
    assert "applied m009_rule_counts_by_identity" in p.run_ok("init").stdout
    counts, retired = fired(p.db)
    assert (counts[("on_timer", "on_timer[1]")], counts[("on_timer", "on_timer[2]")]) == (7, 3)
    assert retired == []
    # and the trigger m009 left counts the next decisions by identity too
    p.run_ok("unhold", "X1", hours=3)
    assert p.json("tick", hours=4)["actions"] == {"priority": 1}
    counts, _ = fired(p.db)
    assert (counts[("on_timer", "on_timer[1]")], counts[("on_timer", "on_timer[2]")]) == (8, 3)


def test_the_counters_rebuilt_from_the_events_agree_with_the_kept_ones(tmp_path):
    p = inserted_before(tmp_path)
    query = "SELECT section, rule_key, rule, n, last_at FROM rule_counts ORDER BY 1, 2"
    conn = sqlite3.connect(p.db)
    kept = conn.execute(query).fetchall()
    conn.close()
    from router.store import Store

    store = Store.open(str(p.db))
    store.recount_counters()
    store.close()
    conn = sqlite3.connect(p.db)
    assert conn.execute(query).fetchall() == kept
    conn.close()
