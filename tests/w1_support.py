"""The workflow of the tenth session's worker and claim fixes, and a project built on it (a plain
import, not a conftest)."""

from __future__ import annotations

import json

W1 = """\
workflow: w1
labels: {type: choice, choices: [a, b, c]}
queues:
  q1: {roles: [annotator]}
  q2: {roles: [annotator2]}
  rev: {roles: [senior]}
  exp: {roles: [expert], skills: [law]}
on_create:
  - {name: hi,  when: 'task.data.q == "q2"', do: {annotate: q2, overlap: 1, priority: task.data.p}}
  - {name: ov,  when: task.data.ov != null,  do: {annotate: q1, overlap: task.data.ov, priority: task.data.p}}
  - {name: def, do: {annotate: q1, overlap: 1, priority: task.data.p}}
on_quorum:
  - {name: to review, do: {review: rev}}
on_review:
  - {name: rejected, when: 'review.verdict == "reject"', do: {return: annotators}}
  - {name: approved, do: accept}
"""


def w1(run, workflow: str, workers: dict[str, list[str]], rows: list[dict]) -> None:
    """init (the runner's worker is the lead), apply, add ``workers``, ingest ``rows``."""
    run.ok("init")
    (run.folder / "w1.workflow.yaml").write_text(workflow, encoding="utf-8")
    run.ok("apply", "w1.workflow.yaml")
    for name, args in workers.items():
        run.ok("workers", "add", name, *args)
    (run.folder / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    run.ok("ingest", "t.jsonl")
