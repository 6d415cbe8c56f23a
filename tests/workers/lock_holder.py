"""Take Labelyard's writer lock, say so, hold it until told, release it.

``lock_holder.py DB NAME``: prints ``joined`` once it has asked for the lock,
``NAME locked`` when it holds it, then waits for a line on standard input
before releasing it and printing ``NAME released``.
"""

from __future__ import annotations

import sys

from router.writer_lock import WriterLock


def main() -> None:
    db, name = sys.argv[1], sys.argv[2]
    lock = WriterLock(db)
    print("joined", flush=True)
    with lock:
        print(f"{name} locked", flush=True)
        sys.stdin.readline()
    print(f"{name} released", flush=True)


if __name__ == "__main__":
    main()
