"""Take Labelyard's writer lock, fork a child that outlives us, and wait to be killed.

``lock_forker.py DB``: prints ``forked PID`` once it holds the lock and its child
(which inherited the lock's descriptor, as ingest's routing process does) is running.
"""

from __future__ import annotations

import os
import signal
import sys

from router.writer_lock import WriterLock


def main() -> None:
    lock = WriterLock(sys.argv[1])
    with lock:
        child = os.fork()
        if child == 0:  # the routing child: blocked on something else until the test kills it
            signal.pause()
            os._exit(0)
        print(f"forked {child}", flush=True)
        sys.stdin.readline()  # killed here, holding the lock


if __name__ == "__main__":
    main()
