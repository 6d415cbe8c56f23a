"""``worker.fast_submits`` counts submissions made less than 5 s after their slot was created — not
ones timed before it, as a clock stepped back between claim and submit makes them. Before, a
negative duration was "less than 5 s", so a worker who submitted after a step back was paused.

Real SQLite files, the real ``labelyard`` command, time set with ``LABELYARD_NOW`` (hours after T0).
"""

from __future__ import annotations

from lead_support import Project

WORKFLOW = """\
workflow: pace
labels: {type: choice, choices: [a, b]}
queues: {triage: {roles: [annotator]}}
on_create: [{name: default, do: {annotate: triage}}]
on_quorum: [{name: any, do: accept}]
on_worker: [{name: too fast, when: worker.fast_submits >= 1, do: {pause: worker, reason: x}}]
"""


def paused(p: Project, name: str) -> bool:
    return {w["id"]: w for w in p.json("workers", "list")}[name]["paused"]


def test_a_submission_timed_before_its_claim_is_not_fast(tmp_path):
    p = Project(tmp_path, WORKFLOW)
    p.worker("alice", "annotator")
    p.ingest([{"id": "T1"}, {"id": "T2"}])
    slot = p.claim("alice", hours=12)
    p.submit(slot["assignment"], "alice", "--label", "a", hours=11 + 50 / 60)  # the clock went back 10 minutes
    assert not paused(p, "alice")
    slot = p.claim("alice", hours=13)
    p.submit(slot["assignment"], "alice", "--label", "a", hours=13 + 2 / 3600)  # 2 s: fast
    assert paused(p, "alice")
