"""Lead actions and what annotators meet around them, through the CLI: priorities, late
submissions, numeric external ids and the reason a rule's action turned into a hold."""

from __future__ import annotations

import json

from test_flows_claims import claim, mini


# -- 6. priorities are finite and within the rule language's bounds -------------------------


def test_priority_refuses_nan_infinities_and_numbers_past_1e15(run):
    mini(run)
    for args in (("B", "nan"), ("--where", "true", "nan"), ("C", "inf"), ("C", "-inf"), ("C", "2e15"),
                 ("C", "--", "-1.5e15")):
        proc = run("priority", *args)
        assert proc.returncode == 2, args
        assert "from -1e15 to 1e15" in proc.stderr, proc.stderr
    shown = json.loads(run.ok("show", "C", "--json").stdout)  # strict JSON: no Infinity / NaN
    assert shown["task"]["priority"] == 1
    assert run.json("priority", "C", "1e15", "--json")["done"][0]["priority"] == 1e15
    assert run.json("priority", "--json", "C", "--", "-1e15")["done"][0]["priority"] == -1e15


# -- 8. late submissions are kept, decide nothing ------------------------------------------


def late(run, assignment: int, worker: str, label: str) -> str:
    """Submit to a slot that was taken back: exit 1 with a message; returns it."""
    proc = run("submit", assignment, "--as", worker, "--label", label)
    assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
    return proc.stderr


def test_late_submissions_after_hold_or_escalate_are_kept_and_decide_nothing(run):
    mini(run, workers={"ann": ["--role", "annotator"], "sen": ["--role", "senior"]})
    a = claim(run, "ann")
    b = claim(run, "ann")
    assert (a["external_id"], b["external_id"]) == ("A", "B")
    run.ok("hold", "A")
    run.ok("escalate", "B", "--to", "rev")

    message = late(run, a["assignment"], "ann", "b")
    assert f"assignment {a['assignment']} is released, not active" in message
    assert "kept in the history of task A (`labelyard explain id:1`)" in message and "decides nothing" in message
    assert "is expired, not active" in late(run, b["assignment"], "ann", "c")
    assert "already kept" in late(run, a["assignment"], "ann", "a")
    wrong = run("submit", b["assignment"], "--as", "ann", "--label", "zebra")
    assert wrong.returncode == 1 and "already kept" not in wrong.stderr  # a mistake is still a mistake

    for ref, kept, status in (("A", "b", "held"), ("B", "c", "open")):
        shown = run.json("show", ref, "--json")
        events = [e for e in shown["events"] if e["kind"] == "late_submission"]
        assert [(e["actor"], e["detail"]["label"], e["detail"]["stage"]) for e in events] == [("ann", kept, "annotate")]
        assert shown["annotations"] == [] and shown["task"]["status"] == status  # no vote, no decision
    assert run.json("show", "B", "--json")["task"]["stage"] == "escalated"
    assert 'late_submission by ann "b"' in run.ok("show", "A").stdout  # the text view shows the kept label


# -- 9. numeric external ids never pass for internal ids ------------------------------------


def test_numeric_external_ids_are_addressed_with_ext_and_ids_with_id(run):
    mini(run, rows=[{"id": 10, "data": {}}, {"id": "20", "data": {}}, {"id": 1, "data": {}},
                    {"id": "007", "data": {}}, {"id": 7, "data": {}}])
    ids = {t: run.json("show", f"ext:{t}", "--json")["task"]["id"] for t in ("10", "20", "1", "007", "7")}
    assert ids == {"10": 1, "20": 2, "1": 3, "007": 4, "7": 5}

    for command in (("show", "1", "--json"), ("hold", "1"), ("explain", "1")):
        proc = run(*command)
        assert (proc.returncode, proc.stdout) == (1, ""), command
        assert proc.stderr == ("labelyard: task `1` is ambiguous: id:1 is the task with external id `10`, "
                               "ext:1 is the task with id 3; write id:1 or ext:1\n")
    assert run.json("show", "id:1", "--json")["task"]["external_id"] == "10"
    assert run.json("explain", "ext:1", "--json")["task"]["external_id"] == "1"

    assert run.ok("hold", "ext:1").stdout.strip() == "held 1 (id:3)"
    assert run.json("show", "ext:1", "--json")["task"]["status"] == "held"
    assert run.json("show", "id:1", "--json")["task"]["status"] == "open"
    out = run.ok("priority", "id:3", "id:1", "5").stdout.splitlines()
    assert out == ["priority of 1 (id:3): 0 → 5", "priority of 10 (id:1): 0 → 5"]

    # a bare reference that can only mean one task still works
    assert run.json("show", "007", "--json")["task"]["id"] == 4
    assert run.json("show", "20", "--json")["task"]["id"] == 2
    assert run.json("show", "7", "--json")["task"]["id"] == 5  # no task has the id 7
    missing = run("show", "ext:5", "--json")
    assert missing.returncode == 1 and "no task `ext:5`" in missing.stderr


# -- 10. a return that finds no annotators says why it held the task ------------------------


def test_submit_prints_why_a_return_held_the_task(run):
    mini(run, workers={"sen": ["--role", "senior"]})
    run.ok("escalate", "A", "--to", "rev")
    review = claim(run, "sen")
    assert (review["external_id"], review["kind"]) == ("A", "escalated")
    out = run.ok("submit", review["assignment"], "--as", "sen", "--reject", "--comment", "unclear").stdout
    assert out.strip() == (f"submitted assignment {review['assignment']}; rule `rejected` → hold "
                           "(return: no annotators to return the task to)")
    full = run.json("show", "A", "--json")
    shown = full["task"]
    assert (shown["status"], shown["reason"]) == ("held", "return: no annotators to return the task to")
    held = [e for e in full["events"] if e["kind"] == "held"][-1]
    assert (held["action"], "target" in held["detail"]) == ("hold", False)  # held, not sent to `annotators`
