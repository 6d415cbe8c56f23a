"""``labelyard run``: sources, automatic reviewers, timers, sinks, notifications — as real subprocesses.

Everything runs on a real database file in ``tmp_path`` through the
``labelyard`` command (the ``run`` fixture); plugins under test are ``.py``
files in a plugins folder, as a user would write them.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import textwrap
from pathlib import Path

import pytest

WORKFLOW = """\
workflow: pets
labels: {type: choice, choices: [cat, dog, bird]}
queues:
  triage: {roles: [annotator]}
  senior: {roles: [senior]}
on_create:
  - name: confident
    when: prediction.confidence >= 0.9
    do: accept
  - name: default
    do: {annotate: triage, overlap: 1}
on_quorum:
  - name: check
    do: {review: senior}
on_timer:
  - name: stale
    when: assignment.age > 1h
    do: release
sources: [{plugin: jsonl, path: "inbox/*.jsonl"}]
reviewers: [{plugin: strict}, {plugin: prediction_agreement}]
sinks:
  - {plugin: jsonl, path: out/final.jsonl}
  - {plugin: csv, path: out/final.csv}
  - {plugin: labelstudio, path: out/labelstudio.json}
notify: [{plugin: collector, events: [done, returned]}]
"""

TEST_PLUGINS = {
    "strict": """
        from router import hookimpl
        from router.plugin_api import reject

        @hookimpl
        def register_reviewers(register):
            register("strict", review)

        def review(run, item):
            return reject("marked bad at the source") if item.data.get("bad") else None
    """,
    "collector": """
        import json
        from router import hookimpl

        @hookimpl
        def register_notifiers(register):
            register("collector", send)

        def send(run, note):
            with open(run.path("notes.jsonl"), "a") as handle:
                handle.write(json.dumps({"event": note.event, "task": note.payload["task"]["id"]}) + "\\n")
    """,
}


def row(ident: str, label: str | None = None, confidence: float | None = None, **data) -> str:
    item = {"id": ident, "data": {"text": f"text of {ident}", **data}}
    if label is not None:
        item["prediction"] = {"label": label, "confidence": confidence}
    return json.dumps(item) + "\n"


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@pytest.fixture
def project(run, tmp_path):
    """A database with WORKFLOW applied, an annotator and a plugins folder (via LABELYARD_PLUGINS_DIR)."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    for name, body in TEST_PLUGINS.items():
        (plugins / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    run.env["LABELYARD_PLUGINS_DIR"] = str(plugins)
    (tmp_path / "inbox").mkdir()
    (tmp_path / "pets.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("init")
    run.ok("apply", "pets.workflow.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    return run


def label_all(run, labels: dict[str, str]) -> None:
    for _ in labels:
        slot = run.json("claim", "--as", "ann", "--json")
        run.ok("submit", slot["assignment"], "--as", "ann", "--label", labels[slot["external_id"]])


def test_a_run_does_sources_reviewers_sinks_and_notifications_in_that_order(project, tmp_path):
    (tmp_path / "inbox" / "a.jsonl").write_text(
        row("t1", "cat", 0.95) + row("t2", "cat", 0.3) + row("t3", "dog", 0.3, bad=True) + row("t4"), encoding="utf-8")
    first = project.json("run", "--json")
    assert first["ok"] and list(first)[2:] == ["sources", "reviewers", "timers", "sinks", "notify", "failures"]
    assert first["sources"]["jsonl:inbox/*.jsonl"]["ingested"] == 4
    # t1 was final at ingest, so the sinks and the notifier heard of it in the same run
    assert first["sinks"]["jsonl:out/final.jsonl"] == {"delivered": 1}
    assert [n["task"] for n in lines(tmp_path / "notes.jsonl")] == ["t1"]

    label_all(project, {"t2": "cat", "t3": "dog", "t4": "bird"})
    second = project.json("run", "--json")
    assert second["reviewers"]["strict"] == {"reject": 1, "→ return": 1, "abstain": 2}
    assert second["reviewers"]["prediction_agreement"] == {"approve": 1, "→ accept": 1, "abstain": 1}
    assert second["sinks"]["jsonl:out/final.jsonl"] == {"delivered": 1}  # t2, approved in this very run
    assert lines(tmp_path / "notes.jsonl")[1:] == [{"event": "returned", "task": "t3"}, {"event": "done", "task": "t2"}]

    t2 = project.json("show", "t2", "--json")
    assert (t2["task"]["status"], t2["task"]["final_by"]) == ("done", "reviewer")
    auto = [a for a in t2["annotations"] if a["stage"] == "review"]
    assert [(a["worker"], a["verdict"]) for a in auto] == [("auto:prediction_agreement", "approve")]
    final = [e for e in t2["events"] if e["kind"] == "final"][0]
    assert final["actor"] == "auto:prediction_agreement" and final["detail"]["facts"]["review"]["automatic"] is True
    t3 = project.json("show", "t3", "--json")["task"]
    assert (t3["stage"], t3["reason"]) == ("correct", "marked bad at the source")

    third = project.json("run", "--json")  # nothing new: nothing judged, delivered or sent twice
    assert third["reviewers"] == {"strict": {}, "prediction_agreement": {}}
    assert all(s == {"delivered": 0} for s in third["sinks"].values())
    assert [r["id"] for r in lines(tmp_path / "out" / "final.jsonl")] == ["t1", "t2"]
    with open(tmp_path / "out" / "final.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["id", "label", "final_by", "rule", "final_at", "category", "agreement"]
    assert [r[:3] for r in table[1:]] == [["t1", "cat", "model"], ["t2", "cat", "reviewer"]]
    studio = json.loads((tmp_path / "out" / "labelstudio.json").read_text(encoding="utf-8"))
    assert [t["annotations"][0]["result"][0]["value"] for t in studio] == [{"choices": ["cat"]}, {"choices": ["cat"]}]
    assert studio[1]["meta"]["labelyard"]["votes"] == [{"worker": "ann", "label": "cat"}]
    assert studio[1]["meta"]["labelyard"]["agreement"] == 1.0
    assert len(lines(tmp_path / "notes.jsonl")) == 3


def test_sources_resume_from_their_cursor(project, tmp_path):
    inbox = tmp_path / "inbox" / "a.jsonl"
    inbox.write_text(row("a1") + row("a2"), encoding="utf-8")
    assert project.json("run", "--json")["sources"]["jsonl:inbox/*.jsonl"]["ingested"] == 2
    with open(inbox, "a", encoding="utf-8") as handle:
        handle.write(row("a3") + '{"id": "a4", "data": {"text": "still being wr')  # no newline yet
    grown = project.json("run", "--json")["sources"]["jsonl:inbox/*.jsonl"]
    assert (grown["ingested"], grown["duplicates"]) == (1, 0)  # a1 and a2 were not read again
    with open(inbox, "a", encoding="utf-8") as handle:
        handle.write('itten"}}\n')
    done = project.json("run", "--json")["sources"]["jsonl:inbox/*.jsonl"]
    assert (done["ingested"], done["duplicates"], done["rejected"]) == (1, 0, 0)
    assert project.json("status", "--json")["total"] == 4


def test_timers_fire_during_a_run(project, tmp_path):
    (tmp_path / "inbox" / "a.jsonl").write_text(row("s1"), encoding="utf-8")
    project.ok("run")
    project.json("claim", "--as", "ann", "--json")
    report = project.json("run", "--json", env={"LABELYARD_NOW": "2025-03-01T11:30:00Z"})
    assert report["timers"]["released"] == 1
    assert project.json("status", "--json")["queues"]["triage"]["waiting"] == 1


def test_an_overlapping_run_exits_0_and_does_nothing(project, tmp_path):
    (tmp_path / "inbox" / "a.jsonl").write_text(row("o1"), encoding="utf-8")
    fd = os.open(f"{project.db}.run-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        proc = project("run")
        assert proc.returncode == 0
        assert proc.stdout == "another labelyard run is in progress (pid 4242); nothing done\n"
        assert project.json("run", "--json")["skipped"].startswith("another labelyard run")
        assert project.json("status", "--json")["total"] == 0
    finally:
        os.close(fd)
    assert project.json("run", "--json")["sources"]["jsonl:inbox/*.jsonl"]["ingested"] == 1


def test_a_failing_plugin_makes_the_run_exit_4_and_the_others_go_on(project, tmp_path):
    plugins = tmp_path / "plugins"
    (plugins / "flaky.py").write_text(textwrap.dedent("""
        from router import hookimpl
        from router.plugin_api import SourcePart, TaskInput

        @hookimpl
        def register_sources(register):
            register("flaky", read)

        @hookimpl
        def register_sinks(register):
            register("broken", write)

        def read(run):
            yield SourcePart("flaky", [TaskInput(1, "f1", {"text": "kept"})], {"part": 1})
            def rows():
                yield TaskInput(2, "f2", {"text": "lost with its part"})
                raise RuntimeError("upstream API timed out")
            yield SourcePart("flaky", rows(), {"part": 2})

        def write(run, tasks):
            raise OSError(28, "No space left on device")
    """), encoding="utf-8")
    (tmp_path / "pets.workflow.yaml").write_text(WORKFLOW.replace(
        'sources: [{plugin: jsonl, path: "inbox/*.jsonl"}]',
        'sources: [{plugin: flaky}, {plugin: jsonl, path: "inbox/*.jsonl"}]').replace(
        "  - {plugin: jsonl, path: out/final.jsonl}", "  - {plugin: broken}\n  - {plugin: jsonl, path: out/final.jsonl}"),
        encoding="utf-8")
    project.ok("apply", "pets.workflow.yaml")
    (tmp_path / "inbox" / "a.jsonl").write_text(row("g1", "dog", 0.99), encoding="utf-8")
    proc = project("run")
    assert proc.returncode == 4
    assert proc.stderr.splitlines() == [
        "labelyard run: flaky: sources failed: RuntimeError: upstream API timed out (flaky.py:17)",
        "labelyard run: broken: sinks failed: OSError: [Errno 28] No space left on device (flaky.py:21)",
    ]
    assert "sink jsonl:out/final.jsonl: delivered 1" in proc.stdout  # the other sink went on
    assert project("show", "f1").returncode == 0
    assert project("show", "f2").returncode == 1  # nothing of the failed part was kept
    status = project.json("status", "--json")
    assert [(f["plugin"], f["step"]) for f in status["last_run"]["failures"]] == [("flaky", "sources"), ("broken", "sinks")]
    assert "broken: sinks failed: OSError" in project.ok("status").stdout


def test_a_run_killed_during_a_sink_loses_nothing_and_sends_nothing_twice(project, tmp_path):
    (tmp_path / "plugins" / "crashy.py").write_text(textwrap.dedent("""
        import os, signal
        from router import hookimpl
        from plugins import jsonl

        CALLS = []

        @hookimpl
        def register_sinks(register):
            register("crashy", write)

        def write(run, tasks):
            state = jsonl.write(run, tasks)
            CALLS.append(len(tasks))
            marker = run.path("crash-at")
            if tasks and os.path.exists(marker) and len(CALLS) == int(open(marker).read()):
                os.remove(marker)
                with open(run.path(run.config["path"]), "ab") as handle:
                    handle.truncate(handle.seek(0, 2) - 40)   # a torn write (its end never written), then the kill
                os.kill(os.getpid(), signal.SIGKILL)
            return state
    """), encoding="utf-8")
    (tmp_path / "pets.workflow.yaml").write_text(WORKFLOW.replace(
        "  - {plugin: jsonl, path: out/final.jsonl}", "  - {plugin: crashy, path: out/crashy.jsonl, batch: 2}"),
        encoding="utf-8")
    project.ok("apply", "pets.workflow.yaml")
    (tmp_path / "inbox" / "a.jsonl").write_text("".join(row(f"k{n}", "cat", 0.99) for n in range(1, 8)), encoding="utf-8")
    (tmp_path / "crash-at").write_text("3")  # the empty start call, batch 1 (k1, k2), then die in batch 2
    killed = project("run")
    assert killed.returncode == -9
    assert project.json("status", "--json")["last_run"]["finished"] is False
    written = (tmp_path / "out" / "crashy.jsonl").read_text(encoding="utf-8")
    assert written.count("\n") == 3 and not written.endswith("\n")  # k3 and most of k4 written, not recorded
    assert project.json("run", "--json")["sinks"]["crashy:out/crashy.jsonl"] == {"delivered": 5}
    delivered = [r["id"] for r in lines(tmp_path / "out" / "crashy.jsonl")]
    assert delivered == [f"k{n}" for n in range(1, 8)]
    assert project.json("run", "--json")["sinks"]["crashy:out/crashy.jsonl"] == {"delivered": 0}


def test_run_needs_an_applied_workflow(run):
    run.ok("init")
    proc = run("run")
    assert proc.returncode == 1 and "no workflow applied yet" in proc.stderr


def test_quiet_run_prints_only_failures(project, tmp_path):
    (tmp_path / "inbox" / "a.jsonl").write_text(row("q1", "cat", 0.99), encoding="utf-8")
    proc = project("run", "--quiet")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert project.ok("run").stdout.endswith("run 2: ok\n")


def test_a_sinks_batch_reads_on_from_the_last_one_whatever_the_backlog(run, tmp_path):
    """Each batch of undelivered final tasks reads from the previous batch's last id: the SQLite
    work of one batch does not grow with the done tasks behind it (it sorted every done task at
    each batch, so a backlog of 200,000 took 37 s). Measured in SQLite VM steps, not time."""
    from router.store import Store

    accept_all = ("workflow: acc\nlabels: {type: choice, choices: [bug, spam]}\nqueues: {q: {roles: [annotator]}}\n"
                  "on_create: [{name: all, do: accept}]\n")
    (run.folder / "acc.workflow.yaml").write_text(accept_all, encoding="utf-8")
    run.ok("init")
    run.ok("apply", "acc.workflow.yaml")

    def ingest(first: int, count: int) -> None:
        rows = "".join(json.dumps({"id": f"T{i}", "prediction": {"label": "bug", "confidence": 0.9}}) + "\n"
                       for i in range(first, first + count))
        (run.folder / "t.jsonl").write_text(rows, encoding="utf-8")
        run.ok("ingest", "t.jsonl")

    def batch_steps() -> tuple[int, int]:
        store = Store.open(str(run.db))
        count = [0]

        def step() -> int:
            count[0] += 1
            return 0
        store.conn.set_progress_handler(step, 1)
        rows = store.undelivered_final_tasks("jsonl:out", 0, 10)
        store.close()
        return len(rows), count[0]

    ingest(0, 200)
    small = batch_steps()
    ingest(200, 3000)
    large = batch_steps()
    assert small[0] == large[0] == 10
    assert large[1] < 2 * small[1]  # before: ~15x, one step or more per done task
