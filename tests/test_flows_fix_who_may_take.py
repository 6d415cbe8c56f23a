"""Who may take work, said right: capacity refusals, reassign after a given-up slot, `work
--queue`, work nobody can take (status, explain, show) and roles or skills no queue uses.

Each was wrong before: a capacity refusal named the capacity as the number of slots held; a
reassign refused a worker who had only claimed and given up a slot as one who "annotated this
task"; `work --queue` with a queue the worker may not take opened a screen that waited forever;
a task no registered worker could take counted as plainly "waiting"; and a misspelt role was
registered without a word, so later claims only said "no work".
"""

from __future__ import annotations

from test_tui_fix_work_command import in_terminal
from w1_support import W1, w1


def claim(run, worker: str) -> dict:
    return run.json("claim", "--as", worker, "--json")


# -- 2. a capacity refusal says how many slots are held, and the capacity --------------------


def test_capacity_refusals_name_the_slots_held_and_the_capacity(run):
    w1(run, W1, {"al": ["--role", "annotator", "--capacity", "3"]},
       [{"id": x, "data": {"p": p}} for x, p in (("A", 5), ("B", 4), ("C", 3), ("D", 2), ("E", 1))])
    assert [claim(run, "al")["external_id"] for _ in range(3)] == ["A", "B", "C"]
    run.ok("workers", "set", "al", "--capacity", "1")

    said = "al already holds 3 active assignment(s); their capacity is 1"
    refused = run("claim", "--as", "al")
    assert refused.returncode == 3 and said in refused.stderr
    reassign = run("reassign", "E", "--to", "al")
    assert reassign.returncode == 1 and said in reassign.stderr and "--force" in reassign.stderr


# -- 3. reassign refuses one who annotated, not one who only held a slot ---------------------


def test_reassign_gives_an_escalated_task_to_a_worker_who_only_gave_its_slot_up(run):
    both = ["--role", "annotator", "--role", "expert", "--skill", "law"]
    w1(run, W1, {"al": both, "bo": both, "sr": ["--role", "senior"]}, [{"id": "A", "data": {"p": 1}}])
    assert claim(run, "al")["external_id"] == "A"
    run.ok("release", "A")  # al never submitted
    bo = claim(run, "bo")
    run.ok("submit", bo["assignment"], "--as", "bo", "--label", "a")
    run.ok("escalate", "A", "--to", "exp")

    # the claim path: never the review of one's own task (bo), nor a slot given up (al)
    for worker in ("al", "bo"):
        assert run("claim", "--as", worker).returncode == 3
    refused = run("reassign", "A", "--to", "bo")
    assert refused.returncode == 1 and "bo annotated this task" in refused.stderr

    done = run.json("reassign", "A", "--to", "al", "--json")["done"][0]
    assert (done["to"], done.get("forced")) == ("al", None)
    assert run.json("claim", "--as", "al", "--resume", "--json")["kind"] == "escalated"


# -- 4. `work --queue Q` refuses a queue the worker may not take, as `claim --queue Q` ----------


def test_work_refuses_a_queue_the_worker_may_not_take_as_claim_does(run):
    w1(run, W1, {"al": ["--role", "annotator"]}, [{"id": "A", "data": {"q": "q2", "p": 1}}])
    claimed = run("claim", "--as", "al", "--queue", "q2")
    said = "labelyard: al may not take work from `q2` (roles or skills do not match)\n"
    assert (claimed.returncode, claimed.stderr) == (3, said)
    without_terminal = run("work", "--as", "al", "--queue", "q2")
    assert (without_terminal.returncode, without_terminal.stderr) == (3, said)
    on_terminal = in_terminal(run, "work", "--as", "al", "--queue", "q2")
    assert (on_terminal.returncode, on_terminal.stderr) == (3, said)


# -- 5. work nobody can take is said: status, explain, show ---------------------------------


def test_status_explain_and_show_say_when_nobody_can_take_a_tasks_slots(run):
    w1(run, W1, {"al": ["--role", "annotator", "--role", "expert", "--skill", "law"], "sr": ["--role", "senior"],
                 "pa": ["--role", "annotator2"]},
       [{"id": "D", "data": {"ov": 3, "p": 9}}, {"id": "A", "data": {"p": 1}}, {"id": "B", "data": {"p": 0}},
        {"id": "Q", "data": {"q": "q2", "p": 0}}])
    run.ok("workers", "pause", "pa")
    assert claim(run, "al")["external_id"] == "D"  # one of its three slots
    a = claim(run, "al")
    assert a["external_id"] == "A"
    run.ok("submit", a["assignment"], "--as", "al", "--label", "a")
    run.ok("escalate", "A", "--to", "exp")  # al may take `exp`, but annotated A
    run.ok("workers", "add", "ex", "--role", "expert", "--skill", "law")
    run.ok("workers", "pause", "ex")

    status = run.json("status", "--json")
    assert {q: v["eligible_workers"] for q, v in status["queues"].items()} == {"q1": 1, "q2": 0, "rev": 1, "exp": 1}
    paused = "1 task waits in `q2`, and every worker who may take it is paused (pa)"
    assert status["warnings"] == [paused]
    assert f"warning: {paused}" in run.ok("status").stdout.splitlines()

    run.ok("escalate", "B", "--to", "rev")
    run.ok("workers", "set", "sr", "--role", "annotator")  # now nobody may take `rev`
    status = run.json("status", "--json")
    assert (status["queues"]["rev"]["eligible_workers"], status["queues"]["q1"]["eligible_workers"]) == (0, 2)
    nobody = "1 task waits in `rev`, which no registered worker may take (it needs the role senior)"
    assert status["warnings"] == [paused, nobody]
    assert f"warning: {nobody}" in run.ok("status").stdout.splitlines()

    stalled = {
        "D": "only 1 worker may take `q1` (sr) but it needs 2 more distinct annotators; al holds a slot of it",
        "A": "no worker may take it from `exp`: al annotated it; ex is paused",
        "B": "no registered worker may take `rev` (it needs the role senior)",
        "Q": "every worker who may take `q2` is paused (pa)",
    }
    for task, reason in stalled.items():
        assert run.json("explain", task, "--json")["stalled"] == reason, task
        assert run.ok("explain", task).stdout.splitlines()[1] == f"stalled: {reason}"
        assert run.json("show", task, "--json")["stalled"] == reason
        assert f"stalled: {reason}" in run.ok("show", task).stdout.splitlines()

    run.ok("workers", "resume", "ex")
    run.ok("workers", "add", "cy", "--role", "annotator")
    for task in ("A", "D"):
        assert run.json("explain", task, "--json")["stalled"] is None
        assert run.json("show", task, "--json")["stalled"] is None
        assert "stalled" not in run.ok("explain", task).stdout + run.ok("show", task).stdout
    assert run.json("status", "--json")["warnings"] == [paused, nobody]


# -- 6. a role or skill no queue uses is warned of ------------------------------------------


def test_workers_add_and_set_warn_of_roles_and_skills_no_queue_uses(run):
    w1(run, W1, {}, [])
    added = run("workers", "add", "al", "--role", "anotator", "--role", "senior", "--skill", "lwa")
    assert (added.returncode, added.stdout) == (0, "added al\n")
    assert added.stderr == ("warning: no queue of workflow `w1` takes the role `anotator` (did you mean "
                            "`annotator`?)\n"
                            "warning: no queue of workflow `w1` asks for the skill `lwa` (did you mean `law`?)\n")
    al = next(w for w in run.json("workers", "list", "--json") if w["id"] == "al")
    assert (al["roles"], al["skills"]) == (["anotator", "senior"], ["lwa"])  # registered as given

    fine = run("workers", "add", "bo", "--role", "annotator", "--role", "lead", "--skill", "law")
    assert (fine.returncode, fine.stderr) == (0, "")
    changed = run("workers", "set", "bo", "--role", "expert", "--role", "reviewer")
    assert changed.returncode == 0
    assert changed.stderr == "warning: no queue of workflow `w1` takes the role `reviewer`\n"
    assert run("workers", "set", "bo", "--capacity", "2").stderr == ""  # roles and skills kept, not checked again
