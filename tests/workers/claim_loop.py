"""A worker process for tests/test_concurrency.py: claim and submit until there is no work.

Run as ``python claim_loop.py --db DB --worker W --out OUT.json --mode api|cli [--log LOG.jsonl]``.

It prints ``ready`` once it is set up and then waits for one line on standard
input, so that the test can start every worker at the same moment without
sleeping. Then it loops: claim a slot, submit a label for it, until the claim
says there is nothing to do.

- ``api``: through :class:`router.engine.Engine` in this process.
- ``cli``: through ``labelyard claim --json`` / ``labelyard submit``
  subprocesses (no shell), checking their exit codes.

Each claim and each submission is appended to ``--log`` as one JSON line as
soon as it happened (written straight to the file, so a ``kill -9`` keeps
what was logged). At the end the whole record goes to ``--out``. Only
:class:`router.errors.NothingToDo` (exit 3) ends the loop; any other error
escapes with a traceback and a non-zero exit code, which the test sees.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys


def choose_label(task: int, worker: str) -> str:
    """A stable, mixed vote: the same (task, worker) always gives the same label."""
    return random.Random(f"{task}:{worker}").choice(["a", "b"])


class Log:
    """Appends one JSON line per operation with a single unbuffered write."""

    def __init__(self, path: str | None):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if path else None

    def write(self, record: dict) -> None:
        if self.fd is not None:
            os.write(self.fd, (json.dumps(record) + "\n").encode())


def labelyard_command() -> list[str]:
    """The ``labelyard`` script of this interpreter's environment, else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "labelyard")
    if os.path.exists(beside):
        return [beside]
    return ["labelyard"]


def run_api(db: str, worker: str, log: Log, record: dict) -> None:
    from router.engine import Engine
    from router.errors import NothingToDo

    engine = Engine.open(db)
    engine.workflow  # noqa: B018 - compile before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        try:
            view = engine.claim(worker)
        except NothingToDo as exc:
            record["nothing_to_do"] = str(exc)
            break
        claimed = [view["assignment"], view["task"], view["kind"]]
        record["claimed"].append(claimed)
        log.write({"op": "claimed", "assignment": claimed[0], "task": claimed[1], "kind": claimed[2]})
        label = choose_label(view["task"], worker)
        result = engine.submit(view["assignment"], worker, label=label)
        assert result["status"] == "submitted", result
        record["submitted"].append([view["assignment"], view["task"], label])
        log.write({"op": "submitted", "assignment": view["assignment"], "task": view["task"], "label": label})
    engine.close()


def run_cli(db: str, worker: str, log: Log, record: dict) -> None:
    command = labelyard_command()
    print("ready", flush=True)
    sys.stdin.readline()
    while True:
        claim = subprocess.run([*command, "claim", "--json", "--as", worker, "--db", db],
                               capture_output=True, text=True)
        if claim.returncode == 3:
            record["nothing_to_do"] = claim.stderr.strip()
            break
        if claim.returncode != 0:
            raise SystemExit(f"claim exited {claim.returncode}: {claim.stderr}")
        if claim.stderr:
            raise SystemExit(f"claim wrote to stderr: {claim.stderr}")
        view = json.loads(claim.stdout)
        claimed = [view["assignment"], view["task"], view["kind"]]
        record["claimed"].append(claimed)
        log.write({"op": "claimed", "assignment": claimed[0], "task": claimed[1], "kind": claimed[2]})
        label = choose_label(view["task"], worker)
        submit = subprocess.run([*command, "submit", str(view["assignment"]), "--as", worker, "--label", label,
                                 "--json", "--db", db], capture_output=True, text=True)
        if submit.returncode != 0 or submit.stderr:
            raise SystemExit(f"submit exited {submit.returncode}: {submit.stderr}")
        result = json.loads(submit.stdout)
        assert result["status"] == "submitted", result
        record["submitted"].append([view["assignment"], view["task"], label])
        log.write({"op": "submitted", "assignment": view["assignment"], "task": view["task"], "label": label})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--mode", choices=["api", "cli"], default="api")
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    record: dict = {"worker": args.worker, "claimed": [], "submitted": [], "nothing_to_do": None}
    log = Log(args.log)
    if args.mode == "api":
        run_api(args.db, args.worker, log, record)
    else:
        run_cli(args.db, args.worker, log, record)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
