"""Fixes of the fourteenth session's lead findings: `--where` judges a value as a rule's `when`
does, a task already where an action would put it is skipped, `show` writes priorities whole and
says what each lead action did, the "needs the lead role" hint keeps the worker's roles,
`reassign --where --from W` walks W's slots, `status` points a held correction round nobody can
take back to `escalate`, and reasons print on one line.

Every test runs the real ``labelyard`` command in a subprocess on a real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3

from lead_support import Project
from test_flows_claims import claim
from test_flows_returns import reject, voted


def kinds(p: Project, ref: str) -> list[str]:
    return [e["kind"] for e in p.show(ref)["events"]]


def history(p: Project, ref: str) -> list[str]:
    text = p.run_ok("show", ref).stdout.splitlines()
    return [line.strip() for line in text[text.index("history:") + 1:]]


# -- F1: `--where` judges `{}` false, as a rule's `when` does -------------------------------------


def test_where_treats_an_empty_object_as_false_as_a_rule_condition_does(tmp_path):
    workflow = """\
workflow: w
labels: {type: choice, choices: [a, b]}
queues:
  triage: {roles: [annotator]}
  meta:   {roles: [annotator]}
on_create:
  - {name: with meta, when: task.data.meta, do: {annotate: meta}}
  - {name: default, do: {annotate: triage}}
"""
    p = Project(tmp_path, workflow=workflow)
    p.ingest([{"id": "A1", "data": {"meta": {}}}, {"id": "A2", "data": {"meta": {"x": 1}}},
              {"id": "A3", "data": {"meta": []}}, {"id": "A4", "data": {}}])
    routed = {ref: p.show(ref)["task"]["queue"] for ref in ("A1", "A2", "A3", "A4")}
    assert routed == {"A1": "triage", "A2": "meta", "A3": "triage", "A4": "triage"}
    out = p.json("priority", "--where", "task.data.meta", "--dry-run", "3")
    assert [d["external_id"] for d in out["done"]] == ["A2"]  # A1's `{}` matched too
    assert out["matched"] == 1


# -- F2: a task already in the target state is skipped, the others done ---------------------------


def test_escalate_hold_and_unhold_skip_a_task_already_so_and_do_the_others(tmp_path):
    p = Project(tmp_path)
    p.ingest([{"id": f"T{i}", "data": {}} for i in range(1, 5)])
    p.run_ok("escalate", "T4", "--to", "experts")
    before = kinds(p, "T4")
    out = p.run("escalate", "T4", "T3", "--to", "experts")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "escalated T3 (id:3) to experts\n"
    assert out.stderr == ("skipped T4 (id:4): task T4 is already escalated to experts\n"
                          "escalate: 1 done, 1 skipped of 2 matching\n")
    assert kinds(p, "T4") == before
    assert p.show("T3")["task"]["stage"] == "escalated"

    p.run_ok("hold", "T1")
    dry = p.json("hold", "T1", "T2", "--dry-run")
    assert ([d["external_id"] for d in dry["done"]], dry["skipped"]) == (
        ["T2"], [{"task": 1, "external_id": "T1", "reason": "task T1 is already held"}])
    assert p.show("T2")["task"]["status"] == "open"  # the dry run changed nothing
    held = p.json("hold", "T1", "T2")
    assert [d["external_id"] for d in held["done"]] == ["T2"]
    assert kinds(p, "T1") == ["created", "held"]

    p.run_ok("unhold", "T2")
    unheld = p.run_ok("unhold", "T2", "T1")
    assert unheld.stdout == "reopened T1 (id:1): annotate in triage\n"
    assert unheld.stderr == "skipped T2 (id:2): task T2 is already open\nunhold: 1 done, 1 skipped of 2 matching\n"
    assert kinds(p, "T2") == ["created", "held", "unheld"]

    # a task the action cannot apply to still refuses the whole list
    p.worker("ann1", "annotator")
    p.worker("ann2", "annotator")
    for worker in ("ann1", "ann2"):
        slot = p.claim(worker)
        assert slot["external_id"] == "T1"
        p.submit(slot["assignment"], worker, "--label", "cat")
    assert p.show("T1")["task"]["status"] == "done"
    refused = p.run("hold", "T2", "T1")
    assert (refused.returncode, refused.stderr) == (1, "labelyard: task T1 is done: only open tasks can be held\n")
    assert p.show("T2")["task"]["status"] == "open"


# -- F3: `show` writes a priority whole ------------------------------------------------------------


def test_show_and_priority_write_the_priority_as_it_is(tmp_path):
    p = Project(tmp_path)
    p.ingest([{"id": "T1", "data": {}}, {"id": "T2", "data": {}}])
    assert p.run_ok("priority", "T1", "1001").stdout == "priority of T1 (id:1): 0 → 1001\n"
    assert "priority=1001\n" in p.run_ok("show", "T1").stdout  # was priority=1e+03
    said = p.run_ok("priority", "T2", "1234567.5").stdout
    assert said == "priority of T2 (id:2): 0 → 1234567.5\n"  # was 1.23457e+06
    assert p.run_ok("show", "T2").stdout.splitlines()[0].endswith("priority=1234567.5")
    again = p.run_ok("priority", "T2", "1234567.5")
    assert again.stderr.startswith("skipped T2 (id:2): its priority is 1234567.5 already\n")


# -- F4: `show`'s history says what each lead action did ----------------------------------------


def test_show_history_names_what_each_lead_action_did(tmp_path):
    p = Project(tmp_path)
    for name in ("bo", "al"):
        p.worker(name, "annotator")
    p.ingest([{"id": "T1", "data": {}}, {"id": "T2", "data": {}}])
    p.run_ok("reassign", "T1", "--to", "bo")
    p.run_ok("reassign", "T1", "--to", "al", "--from", "bo")
    p.run_ok("priority", "T1", "1001")
    p.run_ok("release", "T1")
    p.run_ok("reassign", "T1", "--to", "bo")
    p.run_ok("hold", "T1", "--reason", "asked the customer")
    p.run_ok("unhold", "T1")
    p.run_ok("escalate", "T1", "--to", "experts", "--reason", "legal")
    lines = [line.split(" ", 1)[1] for line in history(p, "T1")]
    assert lines[1:] == [
        "reassigned → reassign by lena: to bo",
        "reassigned → reassign by lena: to al; released assignment 1 of bo",
        "priority → priority by lena: 0 → 1001",
        "released → release by lena: assignment 2 of al",
        "reassigned → reassign by lena: to bo",
        'held → hold by lena: reason "asked the customer"; released assignment 3',
        "unheld → unhold by lena: annotate in triage",
        'routed → escalate by lena: to experts; reason "legal"',
    ]
    # a rule's events keep their line: the rule names what decided
    assert lines[0] == "created rule `default` → annotate by labelyard"


# -- F5: the "needs the lead role" hint keeps the worker's roles ----------------------------------


def test_the_lead_role_hint_keeps_the_roles_the_worker_has(tmp_path):
    p = Project(tmp_path)
    p.worker("al", "annotator")
    p.ingest([{"id": "T1", "data": {}}, {"id": "T2", "data": {}}])
    refused = p.run("hold", "T1", "--as", "al")
    hint = "labelyard workers set al --role annotator --role lead"
    assert refused.returncode == 1
    assert refused.stderr == f"labelyard: al needs the lead role for this (`{hint}` by a lead)\n"
    p.run_ok(*hint.split()[1:])  # following it, as a lead
    p.run_ok("hold", "T1", "--as", "al")
    assert p.claim("al")["external_id"] == "T2"  # al is still an annotator
    # someone who is no worker at all is told to add themselves
    stranger = p.run("hold", "T2", "--as", "mary ann")
    assert "(`labelyard workers add 'mary ann' --role lead` by a lead)" in stranger.stderr


# -- F6: `reassign --where … --from W` reads W's slots, not every open task -----------------------


def test_reassign_where_from_a_worker_walks_only_the_tasks_they_hold(tmp_path):
    p = Project(tmp_path)
    for name in ("a1", "a3"):
        p.worker(name, "annotator")
    p.ingest([{"id": f"K{i}", "data": {}} for i in range(1, 8)])
    held = [p.claim("a1")["external_id"] for _ in range(2)]
    assert held == ["K1", "K2"]
    where = 'task.queue == "triage"'
    dry = p.run_ok("reassign", "--where", where, "--from", "a1", "--to", "a3", "--dry-run")
    assert dry.stdout.splitlines() == ["dry run: reassigned K1 (id:1) to a3 (assignment 3)",
                                       "dry run: reassigned K2 (id:2) to a3 (assignment 4)"]
    # no "a1 holds no active slot of task K3" line for each task a1 does not hold
    assert dry.stderr == "reassign: dry run, 2 would be done, 0 skipped of 2 matching; nothing changed\n"
    out = p.json("reassign", "--where", 'task.external_id == "K2"', "--from", "a1", "--to", "a3")
    assert (out["matched"], [d["external_id"] for d in out["done"]], out["skipped"]) == (1, ["K2"], [])
    assert p.json("reassign", "--where", where, "--from", "a3", "--to", "a1", "--dry-run")["matched"] == 1
    # named task ids are still refused when W holds no slot of them
    refused = p.run("reassign", "K3", "--from", "a1", "--to", "a3")
    assert refused.returncode == 1 and "a1 holds no active slot of task K3" in refused.stderr


# -- F7: `status` points a correction round nobody can take back to `escalate` -------------------


def test_status_says_escalate_for_a_correction_round_unhold_refuses(run):
    voted(run)
    reject(run)
    run.ok("workers", "set", "a1", "--role", "senior")
    run.ok("workers", "set", "a2", "--role", "senior")
    assert run.json("show", "T1", "--json")["task"]["status"] == "held"
    assert run("unhold", "id:1").returncode == 1
    said = run.ok("status").stdout
    assert "`labelyard escalate id:1 --to QUEUE` routes it" in said
    assert "`labelyard unhold id:1`" not in said
    assert run.json("status", "--json")["held"]["tasks"][0]["moved_by"] == "escalate"
    run.ok("workers", "set", "a1", "--role", "annotator")  # a1 may take theirs back: unhold reopens it
    assert "`labelyard unhold id:1` reopens it" in run.ok("status").stdout
    run.ok("unhold", "id:1")
    assert claim(run, "a1")["kind"] == "correct"


def test_status_says_escalate_for_corrections_in_a_queue_the_workflow_dropped(run):
    voted(run)
    reject(run)
    run.ok("hold", "T1")
    conn = sqlite3.connect(run.db)  # as a version applied with --force that dropped `triage`
    with conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec["queues"].pop("triage")
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()
    assert run.json("status", "--json")["held"]["tasks"][0]["moved_by"] == "escalate"


# -- F8: a reason's line break prints as \n, within its line --------------------------------------


def test_show_and_explain_print_a_reason_on_one_line(tmp_path):
    p = Project(tmp_path)
    p.ingest([{"id": "T1", "data": {}}])
    p.run_ok("hold", "T1", "--reason", "line1\nheld: task FAKE\u2028x")
    shown = p.run_ok("show", "T1").stdout.splitlines()
    assert "reason: line1\\x0aheld: task FAKE\\u2028x" in shown
    assert not any(line.startswith("held: task FAKE") for line in shown)
    assert shown[-1].endswith('held → hold by lena: reason "line1\\nheld: task FAKE\\u2028x"')
    explained = p.run_ok("explain", "T1").stdout.splitlines()
    assert explained[0].startswith("task 1 (T1): held: line1\\x0aheld: task FAKE\\u2028x, since lena held it")
    assert not any(line.startswith("held: task FAKE") for line in explained)
