"""The writer lock with real processes: first come, first served, and a dead holder or waiter never blocks it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from process_support import HANG_GUARD_S, child_env
from router.writer_lock import WriterLock

HOLDER = Path(__file__).parent / "workers" / "lock_holder.py"

# The queue is built on Linux's open-file-description locks, and these tests watch its tail
# counter to know who has joined; CI runs on Linux, so nothing here is skipped there.
# (Elsewhere writers fall back to flock, whose behaviour the rest of the suite exercises.)
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the FIFO queue needs Linux OFD locks")


class Holder:
    """One ``lock_holder.py`` process."""

    def __init__(self, db: Path, name: str, **extra_env: str):
        env = {**child_env(), **extra_env}
        env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")])
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(HOLDER), str(db), name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert self.line() == "joined"

    def line(self) -> str:
        return self.proc.stdout.readline().strip()

    def line_within(self, seconds: float) -> str | None:
        """The next line, or ``None`` when none comes within ``seconds`` (the holder hangs)."""
        import select

        ready, _, _ = select.select([self.proc.stdout], [], [], seconds)
        return self.line() if ready else None

    def release(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        self.proc.communicate(timeout=HANG_GUARD_S)


def queued(db: Path) -> int:
    """How many turns the queue has handed out (its tail counter)."""
    raw = Path(str(db) + ".lock").read_bytes()[:8]
    return int.from_bytes(raw, "little") if len(raw) == 8 else 0


def wait_until_queued(db: Path, turns: int) -> None:
    """Poll the tail counter (not a sleep of a guessed length): the holder has joined the queue."""
    import time

    deadline = time.monotonic() + HANG_GUARD_S
    while queued(db) < turns:
        assert time.monotonic() < deadline, "a holder never joined the queue"
        time.sleep(0.001)


def test_the_linux_queue_is_in_use(tmp_path):
    lock = WriterLock(str(tmp_path / "x.db"))
    assert lock.fifo
    lock.close()


def test_writers_are_served_in_the_order_they_came(tmp_path):
    db = tmp_path / "x.db"
    first = Holder(db, "first")
    assert first.line() == "first locked"
    later = []
    for n, name in enumerate(["b", "c", "d", "e"], start=2):
        later.append(Holder(db, name))
        wait_until_queued(db, n)
    order = []
    first.release()
    assert first.line() == "first released"
    for holder in later:
        line = holder.line()
        order.append(line)
        holder.release()
        assert holder.line() == f"{holder.name} released"
    assert order == ["b locked", "c locked", "d locked", "e locked"]
    for h in [first, *later]:
        h.finish()


def test_a_holder_killed_with_sigkill_lets_the_next_writer_in(tmp_path):
    db = tmp_path / "x.db"
    holder = Holder(db, "holder")
    assert holder.line() == "holder locked"
    waiter = Holder(db, "waiter")
    wait_until_queued(db, 2)
    os.kill(holder.proc.pid, signal.SIGKILL)
    holder.proc.wait(timeout=HANG_GUARD_S)
    assert waiter.line() == "waiter locked"
    waiter.release()
    assert waiter.line() == "waiter released"
    waiter.finish()


def test_a_waiter_killed_in_the_queue_does_not_strand_the_one_behind_it(tmp_path):
    db = tmp_path / "x.db"
    holder = Holder(db, "holder")
    assert holder.line() == "holder locked"
    doomed = Holder(db, "doomed")
    wait_until_queued(db, 2)
    behind = Holder(db, "behind")
    wait_until_queued(db, 3)
    os.kill(doomed.proc.pid, signal.SIGKILL)
    doomed.proc.wait(timeout=HANG_GUARD_S)
    holder.release()
    assert holder.line() == "holder released"
    assert behind.line() == "behind locked"
    behind.release()
    assert behind.line() == "behind released"
    for h in (holder, behind):
        h.finish()


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    """Open-file-description locks belong to each open file, not the process: two stores in one process queue too."""
    import threading

    db = str(tmp_path / "x.db")
    one, two = WriterLock(db), WriterLock(db)
    got = threading.Event()
    with one:
        thread = threading.Thread(target=lambda: (two.__enter__(), got.set(), two.__exit__()))
        thread.start()
        assert not got.wait(0.2)  # still waiting behind `one` (a bound on the check, not a timing claim)
    thread.join(HANG_GUARD_S)
    assert got.is_set()
    one.close()
    two.close()


def test_the_lock_kind_is_chosen_by_environment_and_a_wrong_name_is_a_clear_error(run, monkeypatch, tmp_path):
    from router import writer_lock

    monkeypatch.setenv("LABELYARD_WRITER_LOCK", "flock")
    assert not WriterLock(str(tmp_path / "x.db")).fifo
    monkeypatch.setenv("LABELYARD_WRITER_LOCK", "none")
    assert writer_lock.chosen_kind() == "none"
    monkeypatch.delenv("LABELYARD_WRITER_LOCK")
    monkeypatch.setenv("LABELYARD_NO_WRITER_LOCK", "1")
    assert writer_lock.chosen_kind() == "none"
    run.ok("init")
    result = run("status", env={"LABELYARD_WRITER_LOCK": "fifo-please"})
    assert result.returncode == 1
    assert "LABELYARD_WRITER_LOCK='fifo-please': use one of queue, flock, none" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_forked_child_of_a_killed_holder_does_not_keep_the_lock(tmp_path):
    """Locks of an open file description last while any process keeps a descriptor of it: a
    routing child that outlived its killed ingest kept every writer waiting until it ended."""
    db = tmp_path / "x.db"
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent.parent), env.get("PYTHONPATH", "")])
    forker = subprocess.Popen([sys.executable, str(Path(__file__).parent / "workers" / "lock_forker.py"), str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    child = int(forker.stdout.readline().split()[1])
    try:
        forker.kill()
        forker.wait(timeout=HANG_GUARD_S)
        waiter = Holder(db, "next")
        assert waiter.line() == "next locked"  # while the orphaned child still lives
        os.kill(child, 0)
        waiter.release()
        assert waiter.line() == "next released"
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- a writer that makes no progress (stopped with SIGSTOP, e.g. Ctrl-Z) ------------------------
def test_a_stopped_waiter_holds_up_the_one_behind_it_only_for_its_patience(tmp_path):
    db = tmp_path / "x.db"
    holder = Holder(db, "holder")
    assert holder.line() == "holder locked"
    stopped = Holder(db, "stopped")
    wait_until_queued(db, 2)
    os.kill(stopped.proc.pid, signal.SIGSTOP)
    behind = Holder(db, "behind", LABELYARD_QUEUE_WAIT_S="1")
    wait_until_queued(db, 3)
    holder.release()
    assert holder.line() == "holder released"
    assert behind.line_within(HANG_GUARD_S) == "behind locked"  # before: never, while `stopped` stayed stopped
    behind.release()
    assert behind.line() == "behind released"
    os.kill(stopped.proc.pid, signal.SIGCONT)
    assert stopped.line() == "stopped locked"
    stopped.release()
    for h in (holder, stopped, behind):
        h.finish()


def test_a_stopped_holder_is_waited_for_only_as_long_as_the_patience(tmp_path):
    db = tmp_path / "x.db"
    holder = Holder(db, "holder")
    assert holder.line() == "holder locked"
    os.kill(holder.proc.pid, signal.SIGSTOP)
    waiter = Holder(db, "waiter", LABELYARD_QUEUE_WAIT_S="1")
    assert waiter.line_within(HANG_GUARD_S) == "waiter locked"  # unqueued: SQLite's own lock still guards writes
    waiter.release()
    assert waiter.line() == "waiter released"
    os.kill(holder.proc.pid, signal.SIGCONT)
    holder.release()
    for h in (holder, waiter):
        h.finish()


def test_a_claim_behind_a_stopped_writer_goes_on_and_says_why(run, tmp_path):
    run.ok("init")
    (run.folder / "w.yaml").write_text(
        "workflow: w\nlabels: {type: choice, choices: [a, b]}\nqueues: {q: {roles: [annotator]}}\n"
        "on_create: [{name: d, do: {annotate: q}}]\n", encoding="utf-8")
    run.ok("apply", "w.yaml")
    run.ok("workers", "add", "ann", "--role", "annotator")
    (run.folder / "t.jsonl").write_text('{"id": "t1"}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    holder = Holder(run.db, "holder")
    assert holder.line() == "holder locked"
    os.kill(holder.proc.pid, signal.SIGSTOP)  # a labelyard process stopped with Ctrl-Z between its writes
    try:
        proc = subprocess.run([*run.command, "claim", "--as", "ann", "--json"], capture_output=True, text=True,
                              env={**run.env, "LABELYARD_QUEUE_WAIT_S": "1"}, timeout=HANG_GUARD_S)
    finally:
        os.kill(holder.proc.pid, signal.SIGCONT)
        holder.release()
        holder.finish()
    assert proc.returncode == 0, proc.stderr
    assert '"external_id": "t1"' in proc.stdout
    assert "waited 1 s for a turn behind a writer that makes no progress" in proc.stderr


@pytest.mark.parametrize("junk", [b"stale \xc3\xa9 lock\n", b"\xff" * 8, (2**63 - 4097).to_bytes(8, "little")])
def test_a_lock_file_overwritten_with_other_bytes_starts_the_queue_over(run, junk):
    """A counter no database reaches (the file overwritten) was a traceback on every write."""
    run.ok("init")
    lock = Path(str(run.db) + ".lock")
    lock.write_bytes(junk)
    added = run("workers", "add", "bob", "--role", "annotator")
    assert added.returncode == 0 and "Traceback" not in added.stderr, added.stderr
    assert int.from_bytes(lock.read_bytes()[:8], "little") == 1  # the queue started over at 1
    run.ok("workers", "add", "carol", "--role", "annotator")
    assert int.from_bytes(lock.read_bytes()[:8], "little") == 2
