"""Lead actions that would change nothing write nothing: `priority` to the priority a task has,
`gold add` of an answer a gold question has (a run again after one was killed, a file added twice)."""

from __future__ import annotations

from lead_support import Project


def events(project: Project, ref: str) -> list[str]:
    return [e["kind"] for e in project.show(ref)["events"]]


def test_priority_to_the_priority_a_task_has_is_skipped_without_an_event(tmp_path):
    p = Project(tmp_path)
    p.ingest([{"id": "T1", "data": {}}, {"id": "T2", "data": {}}, {"id": "T3", "data": {}}])
    p.run_ok("priority", "T1", "7")
    again = p.run_ok("priority", "T1", "7")
    assert again.stdout == ""
    assert again.stderr == "skipped T1 (id:1): its priority is 7 already\npriority: 0 done, 1 skipped of 1 matching\n"
    assert events(p, "T1") == ["created", "priority"]
    # among task ids the others are still done (ids are otherwise all or nothing)
    both = p.json("priority", "T1", "T2", "7")
    assert [d["external_id"] for d in both["done"]] == ["T2"]
    assert both["skipped"] == [{"task": 1, "external_id": "T1", "reason": "its priority is 7 already"}]
    # a --where run again after one was killed acts on the rest only
    where = p.json("priority", "--where", 'task.queue == "triage"', "7")
    assert ([d["external_id"] for d in where["done"]], len(where["skipped"])) == (["T3"], 2)
    assert events(p, "T1") == events(p, "T2") == events(p, "T3") == ["created", "priority"]


def test_gold_add_of_an_unchanged_file_updates_nothing(tmp_path):
    p = Project(tmp_path)
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "G1", "data": {}, "answer": "cat"}\n{"id": "G2", "data": {}, "answer": "dog"}\n')
    assert p.run_ok("gold", "add", gold).stdout == "gold: added 2, updated 0, rejected 0\n"
    assert p.run_ok("gold", "add", gold).stdout == "gold: added 0, updated 0, unchanged 2, rejected 0\n"
    gold.write_text('{"id": "G1", "data": {}, "answer": "cat"}\n{"id": "G2", "data": {}, "answer": "bird"}\n')
    assert p.json("gold", "add", gold) == {"added": 0, "updated": 1, "unchanged": 1, "rejected": 0,
                                           "source": str(gold)}
    assert events(p, "G1") == ["gold_added"]
    assert events(p, "G2") == ["gold_added", "gold_updated"]
