"""Registering and changing workers through the CLI: re-adding keeps what is not named, and
only a lead may add or change workers once the project has one."""

from __future__ import annotations

from conftest import LEAD


def listed(run) -> dict:
    return {w["id"]: w for w in run.json("workers", "list", "--json")}


# -- 5. adding again keeps what the command does not name; `workers set` changes ------------


def test_adding_a_worker_again_keeps_capacity_and_skills_not_given(run):
    run.ok("init")
    assert run.ok("workers", "add", "a1", "--role", "annotator", "--capacity", "2").stdout.strip() == "added a1"
    assert run.ok("workers", "add", "a1", "--role", "annotator", "--skill", "legal").stdout.strip() == "updated a1"
    a1 = listed(run)["a1"]
    assert (a1["roles"], a1["skills"], a1["capacity"]) == (["annotator"], ["legal"], 2)
    run.ok("workers", "add", "a1", "--role", "annotator", "--role", "senior")
    a1 = listed(run)["a1"]
    assert (a1["roles"], a1["skills"], a1["capacity"]) == (["annotator", "senior"], ["legal"], 2)

    out = run.ok("workers", "set", "a1", "--no-capacity", "--no-skills").stdout
    assert out.strip() == "a1: roles=annotator,senior skills=- capacity=-"
    run.ok("workers", "set", "a1", "--capacity", "4", "--skill", "vet")
    a1 = listed(run)["a1"]
    assert (a1["roles"], a1["skills"], a1["capacity"]) == (["annotator", "senior"], ["vet"], 4)

    for args in (("a1",), ("a1", "--capacity", "1", "--no-capacity"), ("a1", "--skill", "x", "--no-skills")):
        proc = run("workers", "set", *args)
        assert proc.returncode == 2, args
    missing = run("workers", "set", "nobody", "--capacity", "1")
    assert missing.returncode == 1 and "no worker `nobody`" in missing.stderr
    assert "nobody" not in listed(run)


# -- 7. workers are added and changed by a lead ---------------------------------------------


def test_only_a_lead_adds_changes_pauses_or_resumes_workers(run):
    run.ok("init")  # registers LEAD, who runs the commands below unless --as says otherwise
    run.ok("workers", "add", "mallory", "--role", "annotator")
    for args in (("add", "eve", "--role", "lead"), ("add", "mallory", "--role", "lead"),
                 ("set", "mallory", "--capacity", "9"), ("pause", "mallory"), ("resume", "mallory")):
        proc = run("workers", *args, "--as", "mallory")
        assert proc.returncode == 1, args
        assert proc.stderr == (f"labelyard: mallory needs the lead role to add or change workers; "
                               f"run it --as a lead ({LEAD})\n")
    workers = listed(run)
    assert set(workers) == {LEAD, "mallory"}
    assert (workers["mallory"]["roles"], workers["mallory"]["capacity"]) == (["annotator"], None)

    run.ok("workers", "pause", "mallory", "--reason", "break", "--as", LEAD)
    assert listed(run)["mallory"]["paused"]
    run.ok("workers", "resume", "mallory")
    run.ok("workers", "add", "eve", "--role", "lead")
    run.ok("workers", "add", "bob", "--role", "annotator", "--as", "eve")  # any lead will do

    run.ok("workers", "set", "eve", "--role", "senior")
    last = run("workers", "set", LEAD, "--role", "annotator")
    assert last.returncode == 1 and f"{LEAD} is the only lead" in last.stderr
    assert listed(run)[LEAD]["roles"] == ["lead"]


def test_the_readme_flow_and_the_first_lead_of_a_project_without_one(run, tmp_path):
    # README: `init` makes whoever runs it a lead, and they add workers without --as.
    run.ok("init", env={"LABELYARD_WORKER": None})
    run.ok("workers", "add", "alice", "--role", "annotator", env={"LABELYARD_WORKER": None})
    assert "alice" in listed(run)

    # A database made without `init` (the demo's, run without a terminal) has no lead yet:
    # anyone may register the first one; after that it takes a lead.
    demo = run.json("demo", "--dir", str(tmp_path / "demo"), "--tasks", "10", "--steps", "5", "--json")
    env = {"LABELYARD_DB": demo["db"]}
    run.ok("workers", "add", "boss", "--role", "lead", "--as", "someone", env=env)
    proc = run("workers", "add", "zed", "--role", "annotator", "--as", "someone", env=env)
    assert proc.returncode == 1 and "needs the lead role" in proc.stderr
    run.ok("workers", "add", "zed", "--role", "annotator", "--as", "boss", env=env)
