"""A worker process for tests/test_concurrency_review.py: annotate, review, adjudicate or tick.

Run as ``python review_loop.py --db DB --worker W --role annotate|review|expert|tick --out OUT.json
[--log LOG.jsonl] [--announce]``.

It prints ``ready`` once set up and waits for one line on standard input, so
the test starts every process at the same moment. Then:

- ``annotate`` / ``review`` / ``expert``: claim through :class:`router.engine.Engine`
  and submit — annotators give a stable label per (task, worker) and take back
  returned work (``correct`` slots) first, as ``claim`` hands it out; reviewers
  reject a task the first time it is reviewed for about a third of the tasks
  (with a comment; ``on_review`` returns it to its annotators), and otherwise
  approve (with a corrected label when the votes are split, so the approval
  always has a label to accept); experts give the final label.
- ``tick``: ``labelyard tick --json`` subprocesses one after another (``--mode cli``),
  or :func:`router.timers.tick` in a loop in this process (``--mode api``, many
  more ticks, so ticks race claims, submissions and each other).

Every process runs until no task is open. ``claim`` saying there is nothing
to do while tasks are still open (work held by others, or coming back after a
review) makes the worker check again after a short back-off, as a terminal
client polling for work does. A submission for a slot that a tick released or
an escalation expired meanwhile is refused by the engine (``AssignmentError``);
the worker logs it as ``lost`` and goes on.

Each claim, submission and loss is appended to ``--log`` as one JSON line as
soon as it happened (one unbuffered write, so ``kill -9`` keeps what was
logged); ``--announce`` also prints ``claimed KIND`` on standard output after
each claim, for a test that waits for a point to kill the process. The whole
record goes to ``--out`` at the end. Any other error escapes with a traceback
and a non-zero exit code, which the test sees.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

IDLE_BACKOFF_S = 0.02  # a polling client's pause when others hold the remaining work


def share(*parts: object) -> float:
    """A stable fraction in [0, 1) from the parts."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def annotation_label(task: int, worker: str, kind: str) -> str:
    if kind == "correct":
        return "a"  # after a rejection, everybody agrees
    return "a" if share("label", task, worker) < 0.6 else "b"


class Log:
    def __init__(self, path: str | None):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if path else None

    def write(self, record: dict) -> None:
        if self.fd is not None:
            os.write(self.fd, (json.dumps(record) + "\n").encode())


def open_tasks(engine) -> int:
    return engine.store.one("SELECT count(*) FROM tasks WHERE status = 'open'")[0]


def run_worker(db: str, worker: str, role: str, log: Log, record: dict, announce: bool) -> None:
    from router.engine import Engine
    from router.errors import AssignmentError, NothingToDo

    engine = Engine.open(db)
    engine.workflow  # noqa: B018 - compile before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        try:
            view = engine.claim(worker)
        except NothingToDo:
            if open_tasks(engine) == 0:
                break
            record["idle"] += 1
            time.sleep(IDLE_BACKOFF_S)
            continue
        a, task, kind = view["assignment"], view["task"], view["kind"]
        record["claimed"].append([a, task, kind])
        log.write({"op": "claimed", "assignment": a, "task": task, "kind": kind})
        if announce:
            print(f"claimed {kind}", flush=True)
        options: dict = {}
        if kind in ("annotate", "correct"):
            assert role == "annotate", (role, kind)
            options["label"] = annotation_label(task, worker, kind)
        elif kind == "review":
            assert role == "review", (role, kind)
            if not view["reviews"] and share("reject", task) < 0.35:
                options.update(verdict="reject", comment=f"task {task}: look again")
            else:
                labels = {json.dumps(v["label"]) for v in view["votes"]}
                options["verdict"] = "approve"
                if len(labels) > 1:
                    options["label"] = "b"
        else:
            assert (role, kind) == ("expert", "escalated"), (role, kind)
            options["label"] = "b"
        try:
            result = engine.submit(a, worker, **options)
        except AssignmentError as exc:
            record["lost"].append([a, task, str(exc)])
            log.write({"op": "lost", "assignment": a, "task": task, "error": str(exc)})
            continue
        assert result["status"] == "submitted", result
        record["submitted"].append([a, task, kind, options.get("label"), options.get("verdict")])
        log.write({"op": "submitted", "assignment": a, "task": task, "kind": kind,
                   "label": options.get("label"), "verdict": options.get("verdict")})
    engine.close()


def labelyard_command() -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "labelyard")
    return [beside] if os.path.exists(beside) else ["labelyard"]


def run_ticker(db: str, log: Log, record: dict, mode: str) -> None:
    from router.engine import Engine
    from router.timers import tick

    command = [*labelyard_command(), "tick", "--json", "--db", db]
    engine = Engine.open(db)
    engine.workflow  # noqa: B018 - compile before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        finished = open_tasks(engine) == 0
        if mode == "cli":
            ticked = subprocess.run(command, capture_output=True, text=True)
            if ticked.returncode != 0 or ticked.stderr:
                raise SystemExit(f"tick exited {ticked.returncode}: {ticked.stderr}")
            report = json.loads(ticked.stdout)
        else:
            report = tick(engine).as_dict()
        record["ticks"] += 1
        record["released"] += report["released"]
        for action, n in report["actions"].items():
            record["actions"][action] = record["actions"].get(action, 0) + n
        if report["released"] or report["actions"]:
            log.write({"op": "tick", **report})
        if finished:
            break  # one more tick after the end: nothing left to do, nothing done
    engine.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--role", choices=["annotate", "review", "expert", "tick"], required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--log", default=None)
    parser.add_argument("--announce", action="store_true")
    parser.add_argument("--mode", choices=["cli", "api"], default="cli", help="tick: `labelyard tick` or the API")
    args = parser.parse_args()
    log = Log(args.log)
    if args.role == "tick":
        record: dict = {"worker": args.worker, "role": "tick", "ticks": 0, "released": 0, "actions": {}}
        run_ticker(args.db, log, record, args.mode)
    else:
        record = {"worker": args.worker, "role": args.role, "claimed": [], "submitted": [], "lost": [], "idle": 0}
        run_worker(args.db, args.worker, args.role, log, record, args.announce)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
