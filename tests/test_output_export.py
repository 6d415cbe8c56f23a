"""``labelyard export -o FILE``: never over the database, and an existing target keeps what it is.

Real subprocesses on a real database file (see ``conftest.run``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from conftest import SMALL_WORKFLOW

HEADER = "id,label,final_by,rule,final_at,category"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """Run the subprocesses started meanwhile with ``mask`` (they inherit it)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def accepted_project(run, write_workflow) -> None:
    """A project with one final task (`T1`, accepted from a confident prediction)."""
    run.ok("init")
    run.ok("apply", write_workflow(SMALL_WORKFLOW))
    row = {"id": "T1", "data": {}, "prediction": {"label": "cat", "confidence": 0.95}}
    (run.folder / "t.jsonl").write_text(json.dumps(row) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")


def test_export_refuses_the_database_and_its_companion_files(run, write_workflow, tmp_path):
    accepted_project(run, write_workflow)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.db").symlink_to("labelyard.db")
    os.link(tmp_path / "labelyard.db", tmp_path / "hard.db")
    before = (tmp_path / "labelyard.db").read_bytes()
    cases = {
        "labelyard.db": "is the database itself", "./labelyard.db": "is the database itself",
        "sub/../labelyard.db": "is the database itself", str(tmp_path / "labelyard.db"): "is the database itself",
        "link.db": "is the database itself", "hard.db": "is the database itself",
        "labelyard.db-wal": "is the database's write-ahead log",
        "labelyard.db-shm": "is the database's shared-memory index",
        "labelyard.db.lock": "is the database's writer lock", "labelyard.db.run-lock": "is the database's run lock",
    }
    for target, what in cases.items():
        proc = run("export", "--db", "labelyard.db", "-o", target)
        assert proc.returncode == 1, (target, proc.stderr)
        assert proc.stderr == f"labelyard: {target} {what} ({tmp_path / 'labelyard.db'}): export somewhere else\n"
    assert (tmp_path / "labelyard.db").read_bytes() == before
    assert (tmp_path / "link.db").is_symlink() and not list(tmp_path.glob("*.tmp-*"))
    assert run.json("status", "--json")["total"] == 1  # still the project
    assert run.ok("export").stdout.count("\n") == 1


def test_an_export_keeps_the_mode_of_the_file_it_replaces(run, write_workflow, tmp_path):
    accepted_project(run, write_workflow)
    for name, mode in (("private.csv", 0o600), ("shared.csv", 0o660)):
        target = tmp_path / name
        target.write_text("old\n", encoding="utf-8")
        target.chmod(mode)
        with umask(0o022):
            run.ok("export", "--format", "csv", "-o", name)
        assert stat.S_IMODE(target.stat().st_mode) == mode, name
        assert target.read_text(encoding="utf-8").splitlines()[0] == HEADER
    with umask(0o022):
        run.ok("export", "--format", "csv", "-o", "new.csv")
    assert stat.S_IMODE((tmp_path / "new.csv").stat().st_mode) == 0o644  # a new file: the umask decides


def test_an_export_through_a_symlink_replaces_its_target_and_keeps_the_link(run, write_workflow, tmp_path):
    accepted_project(run, write_workflow)
    (tmp_path / "shared").mkdir()
    real = tmp_path / "shared" / "final.jsonl"
    real.write_text("old\n", encoding="utf-8")
    real.chmod(0o640)
    link = tmp_path / "final.jsonl"
    link.symlink_to(real)
    with umask(0o022):
        run.ok("export", "-o", "final.jsonl")
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert [json.loads(x)["id"] for x in real.read_text(encoding="utf-8").splitlines()] == ["T1"]
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in (tmp_path / "shared").iterdir()) == ["final.jsonl"]  # no temporary left
    dangling = tmp_path / "later.jsonl"
    dangling.symlink_to(tmp_path / "shared" / "later.jsonl")  # points at a file not made yet
    run.ok("export", "-o", "later.jsonl")
    assert dangling.is_symlink() and (tmp_path / "shared" / "later.jsonl").read_text(encoding="utf-8").count("\n") == 1


def test_an_export_to_a_fifo_writes_into_it(run, write_workflow, tmp_path):
    accepted_project(run, write_workflow)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there: the export's open does not wait
    try:
        run.ok("export", "--format", "csv", "-o", "pipe")
        received = os.read(reader, 65536).decode("utf-8")
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # not replaced by a regular file
    assert received.splitlines()[0] == HEADER and received.splitlines()[1].startswith("T1,cat,model")

