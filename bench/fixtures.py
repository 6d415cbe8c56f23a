"""Workflows, input files and prepared databases for the benches.

The input rows are the peers' rows (``peers_raw.make_rows``: 32-hex random
external ids, a ~200-byte JSON payload), written as Labelyard JSONL rows with
a model prediction, so both sides load the same ids and the same payload.
"""

from __future__ import annotations

import os
import random

from . import peers_raw
from .common import checkpoint

CHOICES = ("billing", "bug", "feature", "spam")

# Several on_create rules, evaluated in order, one with an expression priority.
# The share of rows each rule takes (with the confidences generated below):
# confident 7%, legal ~8%, uncertain ~52%, default ~33%.
INGEST_WORKFLOW = """\
workflow: bench-ingest
description: Ingest benchmark - several on_create rules, expression priorities
labels:
  type: choice
  choices: [billing, bug, feature, spam]
queues:
  triage: {roles: [annotator]}
  legal:  {roles: [annotator], skills: [legal]}
  senior: {roles: [senior]}
on_create:
  - name: empty text
    when: len(task.data.text) == 0
    do: {reject: "empty text"}
  - name: not english
    when: task.data.lang != "en"
    do: {hold: "needs a translator"}
  - name: confident model
    when: prediction.confidence >= 0.95
    do: accept
  - name: legal
    when: task.category == "legal"
    do: {annotate: legal, overlap: 2}
  - name: uncertain
    when: prediction.confidence < 0.7
    do: {annotate: triage, overlap: 3, priority: 1 - prediction.confidence}
  - name: default
    do: {annotate: triage, overlap: 1, priority: task.data.score}
"""

# One queue, overlap 1, every annotator eligible: the peer claim loop's shape.
# A single submission settles a task (the peer's submit marks it done).
CLAIM_WORKFLOW = """\
workflow: bench-claim
description: Claim benchmark - one queue, overlap 1
labels:
  type: choice
  choices: [billing, bug, feature, spam]
queues:
  work: {roles: [annotator]}
on_create:
  - name: route
    do: {annotate: work, overlap: 1, priority: task.data.score}
on_quorum:
  - name: single vote
    do: accept
"""


def write_workflow(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, f"{name}.workflow.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def write_jsonl(path: str, rows: list[tuple], seed: int = 7) -> int:
    """Write peer rows as Labelyard JSONL (id, category, data = the peer payload, prediction)."""
    rng = random.Random(seed)
    rnd, randrange = rng.random, rng.randrange
    fmt = '{"id":"%s","category":"%s","data":%s,"prediction":{"label":"%s","confidence":%.3f,"model":"bench-v1"}}\n'
    with open(path, "w", encoding="utf-8") as handle:
        write = handle.write
        for ext, _queue, _state, _prio, payload, _created in rows:
            category = "legal" if randrange(12) == 0 else "support"
            write(fmt % (ext, category, payload, CHOICES[randrange(4)], 0.3 + 0.7 * rnd()))
    return len(rows)


def init_db(path: str, workflow_text: str, workflow_file: str, annotators: int = 0,
            extra_workers: tuple[tuple[str, list[str], list[str]], ...] = ()):
    """Create a Labelyard database with the workflow applied and ``annotators`` workers (a0000, ...)."""
    from router.engine import Engine
    from router.store import Store

    store, _ = Store.init(path)
    engine = Engine(store)
    engine.apply(workflow_text, workflow_file, actor="bench")
    for i in range(annotators):
        engine.add_worker(worker_name(i), ["annotator"], [], None, actor="bench")
    for name, roles, skills in extra_workers:
        engine.add_worker(name, roles, skills, None, actor="bench")
    return engine


def worker_name(i: int) -> str:
    return f"a{i:04d}"


# Annotators registered in every claim fixture (the largest default K), so the
# claim bench and the ingest-during-claims bench can share one fixture.
CLAIM_FIXTURE_WORKERS = 64

# Set by `python -m bench all`: a folder where fixtures outlive one bench.
SHARED_DIR: str | None = None


def build_claim_db(folder: str, n: int, workers: int, seed: int = 42) -> str:
    """A Labelyard database with ``n`` open tasks in one queue (overlap 1), checkpointed for copying.

    Tasks go in through ``Engine.ingest`` (the product's own path), from the
    same rows as the peer's claim fixture. ``max(workers, 64)`` annotators are
    registered. Under ``bench all`` the file is built once and shared.
    """
    from router.ingest import read_file

    workers = max(workers, CLAIM_FIXTURE_WORKERS)
    if SHARED_DIR is not None:
        folder = SHARED_DIR
    path = os.path.join(folder, f"claim-fixture-{n}-{workers}.db")
    if os.path.exists(path):
        return path
    wf = write_workflow(folder, "bench-claim", CLAIM_WORKFLOW)
    src = os.path.join(folder, f"claim-fixture-{n}.jsonl")
    write_jsonl(src, peers_raw.make_rows(n, seed=seed))
    building = path + ".building"
    engine = init_db(building, CLAIM_WORKFLOW, wf, annotators=workers)
    report = engine.ingest(read_file(src, engine.workflow.labels.choices), os.path.abspath(src))
    assert report.ingested == n, report.as_dict()
    engine.close()
    os.remove(src)
    checkpoint(building)
    os.replace(building, path)
    return path
