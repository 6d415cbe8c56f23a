"""A second store closing in a process keeps the first one's SQLite locks (real processes).

`labelyard run` keeps the engine's store open while each source part is written through
a second store, which it then closes. That close used to close a plain descriptor of
the database's ``-shm`` file (the checkpoint peek), and closing any descriptor of a file
drops every POSIX lock the process holds on it: SQLite's own locks on the WAL index went
with it. The next process to open the database found the index unowned, rebuilt it, and
the run died of SIGBUS (no message) when it touched the index again.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from router.store import Store

CHILD = textwrap.dedent("""
    import os, sys
    from router.store import Store

    def shm_locks():
        \"\"\"This process's POSIX locks on the -shm file, from /proc/locks (Linux).\"\"\"
        inode = os.stat(sys.argv[1] + "-shm").st_ino
        with open("/proc/locks") as table:
            rows = [line.replace("->", "").split() for line in table]
        return sum(1 for r in rows if r[1] == "POSIX" and r[4] == str(os.getpid())
                   and r[5].endswith(":" + str(inode)))

    main = Store.open(sys.argv[1])              # the engine's store, open for the whole run
    main.query("SELECT count(*) FROM cursors")
    second = Store.open(sys.argv[1])            # a source part's writer
    with second.transaction():
        second.conn.execute("INSERT INTO cursors (name, value, updated_at) VALUES ('part', '1', 0)")
    second.close()
    print("locks", shm_locks() if os.path.exists("/proc/locks") else "unknown", flush=True)
    for n in range(3000):                       # meanwhile another process opens the database
        with main.transaction():
            main.conn.execute("INSERT OR REPLACE INTO cursors (name, value, updated_at) VALUES ('run', ?, 0)", (n,))
        main.query("SELECT count(*) FROM cursors")
    print("done", flush=True)
""")


def test_closing_a_second_store_keeps_the_first_ones_locks_on_the_wal_index(tmp_path: Path):
    db = tmp_path / "lab.db"
    Store.init(str(db))[0].close()
    root = Path(__file__).resolve().parent.parent
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db)], cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    locks = child.stdout.readline().split()
    assert locks[0] == "locks", child.stderr.read()
    assert locks[1] != "0", "the main store lost its locks on the WAL index"  # "unknown" off Linux
    for _ in range(20):  # claims and statuses in another process: each opens, reads, closes
        other = sqlite3.connect(db, timeout=30)
        other.execute("SELECT count(*) FROM cursors").fetchall()
        other.close()
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, f"exit {child.returncode} (-7 is SIGBUS): {err}"
    assert out == "done\n"
    with sqlite3.connect(db) as check:
        assert check.execute("SELECT value FROM cursors WHERE name = 'run'").fetchone() == ("2999",)
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_ingest_refuses_the_database_and_its_files(run, write_workflow):
    """Reading them as rows would open and close them beside the engine's connection."""
    run.ok("init")
    run.ok("apply", write_workflow())
    for name, what in (("labelyard.db", "the database itself"), ("labelyard.db-shm", "the database's shared-memory index")):
        proc = run("ingest", name, "--format", "jsonl")
        assert (proc.returncode, proc.stderr) == (
            1, f"labelyard: {name} is {what} ({run.db.resolve()}), not a file of tasks\n")
