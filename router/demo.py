"""``labelyard demo``: a small project that shows routing end to end.

It writes a folder with the sample workflow, a JSONL file of generated
support tickets with model predictions, and a database; routes the tickets;
then simulated annotators, reviewers and an expert work for a while so that
tasks stand in every state.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from .engine import Engine
from .errors import LabelyardError, NothingToDo
from .ingest import read_file
from .os_text import escaped, shell_word, source_name
from .render import visible
from .store import Store, who_wrote

WORKFLOW_FILE = "ticket-triage.workflow.yaml"
# The demo writes this file into its folder before anything else. A later demo clears and rewrites only
# a folder that holds it, or a new or empty one: `--dir` naming a real project is refused, not emptied.
MARKER = ".labelyard-demo"
MARKER_TEXT = ("This folder was made by `labelyard demo`. Running the demo here again deletes its labelyard.db "
               "and rewrites its workflow and tickets; delete this file and the demo will leave the folder alone.\n")
REPLACED = ("labelyard.db", WORKFLOW_FILE, "workflow.schema.json", "tickets.jsonl")
# What a demo older than MARKER (before 44ed456) left: exactly REPLACED, with the files SQLite and
# Labelyard put beside its database (any command run on it leaves DB.lock), and a database of schema
# BEFORE_MARKER or older (a Labelyard that writes the marker makes or migrates it to a later one) that
# holds only what the demo put there (_holds_only_the_demos).
BEFORE_MARKER = 7
BESIDE_DB = tuple(f"labelyard.db{end}" for end in ("-wal", "-shm", "-journal", ".lock", ".run-lock"))
CATEGORIES = ["billing", "bug", "feature", "spam"]
SUBJECTS = {
    "billing": ["Charged twice this month", "Refund for annual plan", "Invoice shows wrong VAT"],
    "bug": ["App crashes on login", "Export button does nothing", "Search returns stale results"],
    "feature": ["Please add dark mode", "Bulk edit for tags", "API for audit logs"],
    "spam": ["You won a prize!!!", "Cheap followers here", "Crypto opportunity"],
}
WORKERS = [
    ("alice", ["annotator"], [], 0.92),
    ("bob", ["annotator"], [], 0.85),
    ("carol", ["annotator"], ["legal"], 0.88),
    ("dave", ["annotator"], ["legal"], 0.7),
    ("erin", ["senior"], [], 0.95),
    ("frank", ["expert"], [], 0.98),
]


@contextmanager
def _named(path: str) -> Iterator[None]:
    """A failed write to ``path`` (a full disk) names it: ``handle.write``'s ``OSError`` names no file."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            exc.filename = path
        raise


def sample_workflow_text() -> str:
    """The bundled sample workflow's YAML text."""
    return resources.files("workflows").joinpath(WORKFLOW_FILE).read_text(encoding="utf-8")


def generate_tasks(path: str, count: int, rng: random.Random) -> dict[str, str]:
    """Write ``count`` tickets as JSONL; returns each ticket's true label."""
    truth: dict[str, str] = {}
    with _named(path), open(path, "w", encoding="utf-8") as handle:
        for i in range(count):
            label = rng.choice(CATEGORIES)
            category = "legal" if rng.random() < 0.08 else "support"
            correct = rng.random() < 0.8
            predicted = label if correct else rng.choice([c for c in CATEGORIES if c != label])
            confidence = round(rng.uniform(0.7, 0.999) if correct else rng.uniform(0.3, 0.9), 3)
            ext = f"T-{i + 1:05d}"
            truth[ext] = label
            data: dict[str, Any] = {"subject": rng.choice(SUBJECTS[label]), "customer": f"cust-{rng.randint(1, 60)}"}
            odd = rng.random()
            if odd < 0.02:
                data["subject"] = ""
            elif odd < 0.04:
                del data["customer"]
            row = {
                "id": ext,
                "category": category,
                "data": data,
                "prediction": {"label": predicted, "confidence": confidence, "model": "triage-bert-v3"},
            }
            handle.write(json.dumps(row) + "\n")
    return truth


def run_demo(folder: str, *, tasks: int = 300, steps: int = 350, seed: int = 7,
             echo: Callable[[str], Any] | None = print) -> dict[str, Any]:
    """Build and run the demo in ``folder``; returns the final status."""
    say = echo or (lambda _msg: None)
    rng = random.Random(seed)
    _claim_folder(folder)
    db = os.path.join(folder, "labelyard.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    workflow_path = os.path.join(folder, WORKFLOW_FILE)
    with _named(workflow_path), open(workflow_path, "w", encoding="utf-8") as handle:
        handle.write(sample_workflow_text().replace("../rules/workflow.schema.json", "workflow.schema.json"))
    from rules.schema import schema_text

    schema_path = os.path.join(folder, "workflow.schema.json")
    with _named(schema_path), open(schema_path, "w", encoding="utf-8") as handle:
        handle.write(schema_text())
    inbox = os.path.join(folder, "tickets.jsonl")
    truth = generate_tasks(inbox, tasks, rng)

    store, _ = Store.init(db)
    engine = Engine(store)
    engine.apply(sample_workflow_text(), escaped(workflow_path), actor="demo")
    accuracy: dict[str, float] = {}
    for name, roles, skills, acc in WORKERS:
        engine.add_worker(name, roles, skills, capacity=3, actor="demo")
        accuracy[name] = acc
    report = engine.ingest(read_file(inbox, engine.workflow.labels.choices), source_name(inbox))
    say(f"demo project in {os.path.abspath(folder)}")
    say(f"ingested {report.ingested} tickets: " + ", ".join(f"{rule} {n}" for rule, n in report.routed.most_common()))

    submitted = 0
    idle: set[str] = set()  # the workers whose claim found nothing since the last claim that found work
    for step in range(steps):
        name, _roles, _skills, _acc = rng.choice(WORKERS)
        try:
            view = engine.claim(name)
        except NothingToDo:
            idle.add(name)
            if len(idle) == len(WORKERS):
                break  # nothing changes without a claim: every later claim would find nothing too
            continue
        idle.clear()
        if step > steps * 0.9 and rng.random() < 0.3:
            continue  # left active: someone is still working on it
        submitted += 1
        _simulate_submit(engine, view, name, truth, accuracy[name], rng)

    status = engine.status()
    say(f"simulated {submitted} submissions by {len(WORKERS)} workers")
    say("tasks: " + ", ".join(f"{k} {v}" for k, v in status["tasks"].items()))
    for queue, q in status["queues"].items():
        say(f"  queue {queue:<8} waiting {q['waiting']:>4}  active {q['active']:>3}")
    quoted = shell_word(db)  # to be copied into a shell: a folder may have spaces
    say(f"next: labelyard status --db {quoted}   |   labelyard claim --db {quoted} --as alice")
    engine.close()
    return {"folder": os.path.abspath(folder), "db": db, "ingested": report.ingested, "submitted": submitted,
            "status": status}


def _made_by_an_older_demo(folder: str, entries: list[str]) -> bool:
    """Whether ``folder`` holds what a demo that wrote no :data:`MARKER` left there, and nothing else:
    every file of :data:`REPLACED`, perhaps the files beside its database (:data:`BESIDE_DB`), and a
    database such a demo made that nobody went on working in (:func:`_holds_only_the_demos`). A folder
    a newer demo made, whose marker someone deleted to keep their work, fails the last test."""
    names = set(entries)
    return (set(REPLACED) <= names <= set(REPLACED + BESIDE_DB)
            and all(os.path.isfile(os.path.join(folder, name)) for name in REPLACED)
            and _holds_only_the_demos(os.path.join(folder, "labelyard.db")))


def _holds_only_the_demos(db: str) -> bool:
    """Whether ``db`` is a Labelyard database of schema :data:`BEFORE_MARKER` or older (a newer one was
    made, or migrated, by a Labelyard whose demo marks its folders) whose workers are the demo's and
    whose events are all by the demo, its routing and its simulated workers."""
    found = who_wrote(db)
    if found is None:
        return False
    version, workers, actors = found
    names = {name for name, *_ in WORKERS}
    return version <= BEFORE_MARKER and workers <= names and actors <= names | {"demo", "labelyard"}


def _claim_folder(folder: str) -> None:
    """Make ``folder`` the demo's: a new folder, an empty one, or one an earlier demo made (it holds
    :data:`MARKER`, or, made by a demo before the marker, the demo's files alone with a database only
    that demo wrote in: :func:`_made_by_an_older_demo`). Any other folder is
    refused before anything in it is touched, since the demo deletes the database there and rewrites
    the workflow and the tickets."""
    if not folder:
        raise LabelyardError("--dir is empty: name a new folder for the demo project")
    shown = visible(escaped(folder))
    if os.path.isdir(folder):
        entries = sorted(os.listdir(folder))
        if entries and MARKER not in entries and not _made_by_an_older_demo(folder, entries):
            listed = ", ".join(visible(escaped(name)) for name in entries[:5])
            more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
            kept = (f" (a demo folder without its {MARKER}, deleted to keep the work done there, is left alone)"
                    if set(REPLACED) <= set(entries) else "")
            raise LabelyardError(
                f"{shown}: not a folder the demo made (it holds {listed}{more}); the demo would replace "
                f"{', '.join(REPLACED[:-1])} and {REPLACED[-1]} there: give --dir a new or empty folder{kept}")
    elif os.path.lexists(folder):
        raise LabelyardError(f"{shown}: exists and is not a folder; give --dir a new folder")
    else:
        os.makedirs(folder)
    marker = os.path.join(folder, MARKER)
    with _named(marker), open(marker, "w", encoding="utf-8") as handle:  # first: a demo cut short is redone
        handle.write(MARKER_TEXT)


def _simulate_submit(engine: Engine, view: dict[str, Any], worker: str, truth: dict[str, str], accuracy: float,
                     rng: random.Random) -> None:
    correct = truth.get(view["external_id"])
    right = rng.random() < accuracy
    label = correct if right else rng.choice([c for c in CATEGORIES if c != correct])
    try:
        if view["kind"] == "review":
            if rng.random() < 0.2:
                engine.submit(view["assignment"], worker, verdict="reject", comment="re-read the ticket body")
            elif right:
                engine.submit(view["assignment"], worker, label=correct)
            else:
                engine.submit(view["assignment"], worker, verdict="approve")
        else:
            engine.submit(view["assignment"], worker, label=label)
    except LabelyardError:
        pass  # the simulation does not care about a slot that moved on
