"""``labelyard agreement`` text output and ``validate`` of ``quality.agreement`` bands."""

from __future__ import annotations

import json

from conftest import Runner
from lead_support import Project

TWO_QUEUES = """\
workflow: t
labels: {labels}
queues:
  q1: {{roles: [annotator]}}
  q2: {{roles: [annotator]}}
on_create:
  - name: second
    when: task.category == "two"
    do: {{annotate: q2, overlap: 2}}
  - do: {{annotate: q1, overlap: 2}}
on_quorum:
  - do: accept
"""


def voted(tmp_path, labels: str, plan: dict[str, tuple]) -> Project:
    p = Project(tmp_path, TWO_QUEUES.format(labels=labels))
    for name in ("u1", "u2"):
        p.worker(name, "annotator")
    p.ingest([{"id": ref, **({"category": "two"} if ref.startswith("Q2") else {})} for ref in plan])
    for ref, pair in plan.items():
        for name, label in zip(("u1", "u2"), pair):
            view = p.claim(name)
            assert view["external_id"] == ref
            p.submit(view["assignment"], name, "--value", json.dumps(label))
    return p


def test_each_queue_says_why_its_values_are_missing(tmp_path):
    p = voted(tmp_path, "{type: choice, choices: [a, b]}",
              {"T1": ("a", "b"), "T2": ("b", "b"), "Q2-1": ("a", "a")})
    out = p.run_ok("agreement").stdout
    assert [line for line in out.splitlines() if "note" in line] == ["  note (q2): only one task has two votes yet"]


def test_confusion_rows_are_canonical_and_show_control_characters(tmp_path):
    p = voted(tmp_path, "{type: text}",
              {"T1": ("\x1b[31mRED\x1b[0m", "\x1b[31mRED\x1b[0m"), "T2": ("two\nlines", "two\nlines")})
    out = p.run_ok("agreement").stdout
    confusion = out[out.index("confusion"):]
    assert "\x1b" not in out and "\\x1b[31mRED" in confusion and "two\\x0alines" in confusion
    assert len(confusion.splitlines()) == 4  # title, header, one line per label
    numbers = voted(tmp_path / "n", "{type: number}", {"T1": (4, 4.0), "T2": (2.5, 3)})
    assert sorted(numbers.json("agreement")["confusion"]) == ["2.5", "3", "4"]


def test_validate_refuses_inverted_agreement_bands(tmp_path):
    run = Runner(tmp_path)
    path = tmp_path / "bands.workflow.yaml"
    path.write_text(TWO_QUEUES.format(labels="{type: choice, choices: [a, b]}")
                    + "quality:\n  agreement:\n    excellent: 0.05\n    alert: 0.9\n")
    proc = run("validate", path)
    assert proc.returncode == 1
    assert f"{path}:16:12: quality.agreement: alert (0.9) is above excellent (0.05)" in proc.stdout + proc.stderr
    path.write_text(path.read_text().replace("    alert: 0.9\n", ""))
    proc = run("validate", path)
    assert proc.returncode == 1 and "alert (0.6, the default) is above excellent (0.05)" in proc.stdout + proc.stderr
    path.write_text(path.read_text().replace("excellent: 0.05", "excellent: 0.6"))
    assert run("validate", path).returncode == 0
