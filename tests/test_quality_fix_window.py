"""``queue.kappa`` is what ``labelyard agreement --queue Q --latest N`` prints, and a statistic at a
band's threshold falls on the side the arithmetic says.

Rules read the tasks of the queue's latest ``quality.agreement.window`` votes (whole tasks: a task on
the boundary counted with only some of its votes before); the command shows the same window with
``--latest``. Fleiss' kappa of exactly 3/5 came out as 0.5999999999999996 and was banded `alert`
under "alert < 0.6" (and failed a rule's ``queue.kappa >= 0.6``).
"""

from __future__ import annotations

import json

import pytest

# votes of (w1, w2) on T1..T9; their Fleiss' kappa is exactly 3/5
PAIRS = ["bb", "ab", "bb", "aa", "bb", "bb", "bb", "bb", "bb"]


def workflow(window: int | None) -> str:
    setting = f", window: {window}" if window else ""
    return f"""workflow: k
labels: {{type: choice, choices: [a, b]}}
queues:
  q: {{roles: [annotator]}}
  parked: {{roles: [nobody]}}
quality: {{agreement: {{excellent: 0.8, alert: 0.6{setting}}}}}
on_create: [{{name: default, do: {{annotate: q, overlap: 2}}}}]
on_quorum:
  - {{name: park, when: task.data.probe, do: {{annotate: parked, priority: queue.kappa}}}}
  - {{name: sure, when: "queue.kappa >= 0.6", do: accept}}
  - {{name: unsure, do: {{hold: low agreement}}}}
"""


@pytest.fixture
def voted(run, tmp_path):
    def vote(pairs: list[str], window: int | None = None, probe: str | None = None):
        (tmp_path / "k.workflow.yaml").write_text(workflow(window), encoding="utf-8")
        run.ok("init")
        run.ok("apply", "k.workflow.yaml")
        for worker in ("w1", "w2"):
            run.ok("workers", "add", worker, "--role", "annotator")
        rows = [{"id": f"T{i + 1}", "data": {}} for i in range(len(pairs))]
        if probe:
            rows.append({"id": "P", "data": {"probe": True}})
            pairs = [*pairs, probe]
        (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        run.ok("ingest", "t.jsonl")
        for pair in pairs:  # each task in turn: w1's vote, then w2's
            for worker, label in zip(("w1", "w2"), pair):
                claim = run.json("claim", "--as", worker, "--json")
                run.ok("submit", claim["assignment"], "--as", worker, "--label", label)
        return run
    return vote


def test_a_kappa_of_exactly_three_fifths_is_at_the_alert_threshold_not_below(voted):
    run = voted(PAIRS)
    report = run.json("agreement", "--json")
    assert (report["queues"]["q"]["fleiss_kappa"], report["queues"]["q"]["band"]) == (0.6, "ok")
    line = [ln for ln in run.ok("agreement").stdout.splitlines() if ln.startswith("q ")][0]
    assert (line.split()[3], line.split()[-1]) == ("0.600", "ok")  # queue, tasks, items, kappa, alpha, band
    # the last task's rule saw the same 0.6: `queue.kappa >= 0.6` accepted it
    assert run.json("show", "T9", "--json")["task"]["final_rule"] == "sure"


def test_rules_read_whole_tasks_of_the_latest_votes_as_agreement_latest_shows(voted):
    # the latest 5 votes: P's two, T9's two and one of T8's (a split vote), so T8 counts whole
    run = voted(["bb"] * 7 + ["ab", "bb"], window=5, probe="aa")
    seen_by_rule = run.json("show", "P", "--json")["task"]["priority"]
    windowed = run.json("agreement", "--queue", "q", "--latest", "5", "--json")
    assert windowed["latest"] == 5
    assert windowed["queues"]["q"]["tasks"] == 3  # T8, T9 and P
    assert seen_by_rule == windowed["queues"]["q"]["fleiss_kappa"] == pytest.approx(1 / 3)
    everything = run.json("agreement", "--queue", "q", "--json")
    assert everything["queues"]["q"]["fleiss_kappa"] != seen_by_rule
    assert "over the tasks of the latest 5 votes in q" in run.ok("agreement", "--queue", "q", "--latest", "5").stdout
