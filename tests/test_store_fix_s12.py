"""The store's leftovers of the twelfth session, with real files and real processes.

- An `init` that failed once it had made the writer lock's file (a full disk while it created the
  tables) left the new database, its `-wal` and `-shm` and `DB.lock` behind: the user saw a
  `labelyard.db` that `status` called "not a Labelyard database".
- Where the queue's OFD locks are missing (not Linux), or with `LABELYARD_WRITER_LOCK=flock`, a
  writer waited for the `flock` without end behind a stopped or hung writer; the queue gave up after
  `LABELYARD_QUEUE_WAIT_S` and said so.
- NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR were line breaks to PyYAML (YAML 1.1) but not to
  editors: every file:line:col after one was a line off, a comment ended at one (the rest became a
  key), and a value was split there.
- `status` counted work nobody could take per queue only: a task whose own annotators were the
  only workers of its queue, one every worker had given up, and a held task (no rule moves one)
  were not named; a lead found them with `explain`, one task at a time, if they knew which.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from process_support import HANG_GUARD_S
from test_writer_lock import Holder, wait_until_queued

FILE_LIMIT = 20_000  # bytes any file this process writes may reach: the new tables' WAL grows past it


def limited_files() -> None:
    """In the child: no file it writes grows past ``FILE_LIMIT`` (EFBIG, as a full disk fails a write;
    Python ignores SIGXFSZ, so the write fails instead of killing the process)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


def init_on_a_full_disk(run, db: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([*run.command, "--db", str(db), "init"], capture_output=True, text=True, env=run.env,
                          cwd=run.folder, timeout=120, preexec_fn=limited_files)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def folder_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- a failed init leaves nothing it made ------------------------------------------------------
def test_an_init_that_fails_while_it_writes_a_new_database_removes_every_file_it_made(run):
    db = run.folder / "lab.db"
    proc = init_on_a_full_disk(run, db)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"labelyard: {db}: cannot initialise: "), proc.stderr
    assert proc.stderr.rstrip().endswith("; the files this init made are removed"), proc.stderr
    assert folder_files(run.folder) == []  # before: lab.db, lab.db-shm, lab.db-wal and lab.db.lock
    run.ok("--db", db, "init")  # once there is room, init makes the project as on the first day
    assert run.json("--db", db, "status", "--json")["total"] == 0


def test_an_init_that_fails_on_an_empty_file_keeps_the_file_and_leaves_no_lock(run):
    db = run.folder / "lab.db"
    db.write_bytes(b"")
    db.chmod(0o640)
    proc = init_on_a_full_disk(run, db)
    assert proc.returncode == 1
    assert "cannot initialise" in proc.stderr and "removed" not in proc.stderr  # the file was the user's
    assert folder_files(run.folder) == ["lab.db"]  # no lab.db.lock, -wal or -shm
    assert db.read_bytes() == b"" and db.stat().st_mode & 0o777 == 0o640



def test_an_init_that_made_the_project_behind_a_failed_one_keeps_it(run):
    """The failed init takes its files back under the writer lock, after the init queued behind it:
    that one made the project in the file, which stays, with its lock."""
    db = run.folder / "lab.db"
    holder = Holder(db, "holder")
    assert holder.line() == "holder locked"
    failing = subprocess.Popen([*run.command, "--db", str(db), "init"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=run.env, preexec_fn=limited_files)
    wait_until_queued(db, 2)  # it made lab.db, and waits for its turn
    second = subprocess.Popen([*run.command, "--db", str(db), "init"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=run.env)
    wait_until_queued(db, 3)
    holder.release()
    holder.finish()
    _, failed = failing.communicate(timeout=120)
    _, made = second.communicate(timeout=120)
    assert failing.returncode == 1 and "cannot initialise" in failed and "removed" not in failed, failed
    assert second.returncode == 0, made
    assert folder_files(run.folder) == ["lab.db", "lab.db.lock"]
    assert run.json("--db", db, "status", "--json")["total"] == 0


# -- the flock fallback waits as long as the queue, then says why ----------------------------------
def no_progress(db: Path, seconds: str) -> str:
    return (f"{db}: waited {seconds} s for a turn behind a writer that makes no progress (a stopped or hung "
            f"labelyard process holding {os.path.realpath(db)}.lock, or one waiting for another program's lock on "
            "the database?); writing without the queue")


@pytest.mark.parametrize("thread", ["main", "worker"])  # an interval timer, or polling (the TUI's workers)
def test_without_ofd_locks_a_writer_waits_for_the_flock_only_as_long_as_its_patience(tmp_path, monkeypatch,
                                                                                    capsys, thread):
    import fcntl

    from router.writer_lock import WriterLock

    monkeypatch.delattr(fcntl, "F_OFD_SETLK")  # as on macOS and the BSDs: the queue falls back to flock
    monkeypatch.setenv("LABELYARD_QUEUE_WAIT_S", "0.5")
    db = tmp_path / "x.db"
    holder = Holder(db, "holder", LABELYARD_WRITER_LOCK="flock")  # an flock held by a writer that never goes on
    assert holder.line() == "holder locked"
    guard = threading.Timer(HANG_GUARD_S, holder.release)  # before: the wait never ended; fail, not hang
    guard.start()
    lock = WriterLock(str(db))
    entered = []

    def write() -> None:
        with lock:
            entered.append(True)

    try:
        assert not lock.fifo
        if thread == "main":
            write()
        else:
            worker = threading.Thread(target=write)
            worker.start()
            worker.join()
        warned = capsys.readouterr().err
        assert entered == [True]
        assert guard.is_alive(), "the writer waited for the holder to let go"
        assert warned == f"labelyard: warning: {no_progress(db, '0.5')}\n"
    finally:
        guard.cancel()
        lock.close()
        holder.release()
        holder.finish()


def test_a_claim_behind_a_stopped_flock_holder_goes_on_and_names_the_database(run):
    run.ok("init")
    (run.folder / "w.yaml").write_text(
        "workflow: w\nlabels: {type: choice, choices: [a, b]}\nqueues: {q: {roles: [annotator]}}\n"
        "on_create: [{name: d, do: {annotate: q}}]\n", encoding="utf-8")
    run.ok("apply", "w.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    (run.folder / "t.jsonl").write_text('{"id": "t1"}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    holder = Holder(run.db, "holder", LABELYARD_WRITER_LOCK="flock")
    assert holder.line() == "holder locked"
    os.kill(holder.proc.pid, signal.SIGSTOP)  # a labelyard process stopped with Ctrl-Z between its writes
    try:
        proc = subprocess.run([*run.command, "claim", "--as", "ann", "--json"], capture_output=True, text=True,
                              env={**run.env, "LABELYARD_WRITER_LOCK": "flock", "LABELYARD_QUEUE_WAIT_S": "1"},
                              timeout=HANG_GUARD_S)  # before: it never ended
    finally:
        os.kill(holder.proc.pid, signal.SIGCONT)
        holder.release()
        holder.finish()
    assert proc.returncode == 0, proc.stderr
    assert '"external_id": "t1"' in proc.stdout
    assert proc.stderr == f"labelyard: warning: {no_progress(run.db, '1')}\n"


# -- NEL, LS and PS are characters, as in YAML 1.2 and in editors ----------------------------------
YAML_11_BREAKS = pytest.mark.parametrize("char", ["\x85", "\u2028", "\u2029"], ids=["NEL", "LS", "PS"])


@YAML_11_BREAKS
def test_a_mistake_after_a_line_separator_is_reported_where_an_editor_shows_it(run, char):
    path = run.folder / "w.workflow.yaml"
    path.write_text("workflow: w\n"
                    f"description: pasted{char}from a web page\n"
                    "labels: {type: choice, choices: [a, b]}\n"
                    "queues: {q: {roles: [annotator]}}\n"
                    "on_create:\n"
                    f"  - name: d  # a note{char}with the character\n"
                    "    when: task.data.x >\n"
                    "    do: {annotate: q}\n", encoding="utf-8")
    proc = run("validate", path)
    assert proc.returncode == 1
    # before: "w.workflow.yaml:4:1: YAML syntax: could not find expected ':' (in the simple key that starts
    # at 3:1)", a line below the character, which ended the description's line
    assert f"{path}:7:24: expected an expression, but the expression ends here" in proc.stderr.splitlines()


@YAML_11_BREAKS
def test_the_characters_stay_in_values_and_end_no_comment(char):
    from rules.loader import load_document

    doc = load_document(f"plain: a{char}  b\n"
                        f'double: "a{char}b"\n'
                        f"single: 'a{char}b'\n"
                        f"block: |\n  a{char}  b\n"
                        f"# a comment{char}hidden: 1\n"
                        f"last: c # note{char}more: 2\n", "f.yaml")
    assert doc.data == {"plain": f"a{char}  b", "double": f"a{char}b", "single": f"a{char}b",
                        "block": f"a{char}  b\n", "last": "c"}  # before: `hidden` and `more` were keys
    assert doc.where(("last",)).line == 7 and doc.where(("last",), key=True).col == 1


def test_a_message_that_quotes_such_a_character_shows_its_escape():
    from rules.diagnostics import WorkflowInvalid
    from rules.loader import load_document

    with pytest.raises(WorkflowInvalid) as caught:
        load_document("k\u2028: 1\nk\u2028: 2\n", "f.yaml")
    assert [str(d) for d in caught.value.diagnostics] == ["f.yaml:2:1: duplicate key `k\\u2028`"]


# -- status names the tasks that wait for ever -----------------------------------------------------
STALLS = """\
workflow: st
labels: {type: choice, choices: [a, b]}
queues:
  q: {roles: [annotator]}
on_create:
  - {name: routed, when: task.data.p != null, do: {annotate: q, overlap: task.data.ov, priority: task.data.p}}
"""


def test_status_names_open_tasks_nobody_may_take_and_held_tasks_with_what_moves_them(tmp_path):
    from lead_support import Project

    p = Project(tmp_path, workflow=STALLS)
    p.worker("al", "annotator")
    p.worker("bo", "annotator")
    p.ingest([{"id": "D", "data": {"p": 9, "ov": 3}}, {"id": "S", "data": {"p": 5, "ov": 1}},
              {"id": "N", "data": {"p": 1, "ov": 1}}, {"id": "H", "data": {"p": 0, "ov": 1}},
              {"id": "X", "data": {}}])  # no rule matches X: held at creation, in no queue
    for worker in ("al", "bo"):
        claimed = p.claim(worker)
        assert claimed["external_id"] == "D"
        p.submit(claimed["assignment"], worker, "--label", "a")  # D needs a third annotator: there is none
    for worker in ("al", "bo"):
        assert p.claim(worker)["external_id"] == "S"
        p.run_ok("release", "S")  # each gave S up
    p.run_ok("hold", "H", "--reason", "ask the client")

    status = p.json("status")
    assert status["warnings"] == []  # q has two workers: the per-queue count sees nothing amiss
    assert status["stalled"]["tasks"] == [
        {"id": 1, "external_id": "D", "queue": "q", "stage": "annotate", "since": "2026-01-01T00:00:00+00:00",
         "reason": "no worker may take it from `q`: al, bo annotated it"},
        {"id": 2, "external_id": "S", "queue": "q", "stage": "annotate", "since": "2026-01-01T00:00:00+00:00",
         "reason": "no worker may take it from `q`: al, bo gave their slots up or had them taken back"}]
    assert status["stalled"]["checked"] == {"q": 3}  # every open task of q: D, S and N
    assert [(t["external_id"], t["reason"], t["moved_by"]) for t in status["held"]["tasks"]] == [
        ("H", "ask the client", "unhold"), ("X", "no rule in on_create matched", "escalate")]
    assert status["held"]["more"] == 0

    lines = p.run_ok("status").stdout.splitlines()
    assert lines[-5:] == [
        "stalled: task D in `q` (annotate, since 2026-01-01T00:00:00+00:00): no worker may take it from `q`: "
        "al, bo annotated it",
        "stalled: task S in `q` (annotate, since 2026-01-01T00:00:00+00:00): no worker may take it from `q`: "
        "al, bo gave their slots up or had them taken back",
        "held: task H in `q` (annotate) since 2026-01-01T00:00:00+00:00: ask the client; "
        "`labelyard unhold id:4` reopens it",
        "held: task X (no queue) since 2026-01-01T00:00:00+00:00: no rule in on_create matched; "
        "`labelyard escalate id:5 --to QUEUE` routes it",
        "held: no rule moves a held task; a lead's `unhold` or `escalate` does"]

    p.worker("cy", "annotator")  # someone who may take them: nothing stalls any more
    status = p.json("status")
    assert status["stalled"]["tasks"] == []
    assert "stalled:" not in p.run_ok("status").stdout


def test_status_finds_a_stalled_task_at_the_head_and_the_oldest_at_a_cost_that_does_not_grow(tmp_path, monkeypatch):
    from lead_support import Project, engine_at
    from test_scale_paths import steps

    p = Project(tmp_path, workflow=STALLS)
    p.worker("al", "annotator")
    p.ingest([{"id": "old", "data": {"p": -1, "ov": 2}}], name="old.jsonl")  # the lowest priority, the oldest
    p.ingest([{"id": f"T{i}", "data": {"p": 1, "ov": 1}} for i in range(400)]
             + [{"id": "top", "data": {"p": 9, "ov": 2}}], name="first.jsonl")
    top = p.claim("al")
    assert top["external_id"] == "top"
    p.submit(top["assignment"], "al", "--label", "a")  # it needs another annotator: there is none
    p.run_ok("reassign", "old", "--to", "al")
    old = p.json("claim", "--as", "al", "--resume")
    assert old["external_id"] == "old"
    p.submit(old["assignment"], "al", "--label", "a")

    def measured() -> int:
        engine = engine_at(p.db, monkeypatch, 2)
        status = engine.status()
        assert [t["external_id"] for t in status["stalled"]["tasks"]] == ["top", "old"]
        assert status["stalled"]["checked"]["q"] <= 100  # 50 a claim hands out first, 50 longest waiting
        cost = steps(engine.store.conn, engine.status)
        engine.close()
        return cost

    at_400 = measured()
    p.ingest([{"id": f"U{i}", "data": {"p": 1, "ov": 1}} for i in range(3600)], name="more.jsonl")
    at_4000 = measured()
    assert at_4000 <= at_400 * 1.2 + 5, (at_400, at_4000)  # the same reads at ten times the tasks
