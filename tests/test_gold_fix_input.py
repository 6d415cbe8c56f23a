"""`gold add` reads its whole input and replaces all of that input's rejects; it reads pipes and `-`.

- Rejects: `gold add` deleted its file's earlier rejects only on lines 1..N of the file as it is now,
  so a bad line removed from the end of the file (or every line: N = 0) stayed listed.
- Input: `gold add <(cmd)` said "/dev/fd/63: no such file" and `gold add -` "-: no such file";
  both are read as `ingest` reads them, each read's rejects under a name of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pytest

STAMP = "2025-03-01T09:00:00Z"  # conftest's LABELYARD_NOW
WORKFLOW = """\
workflow: g
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
on_create: [{name: all, do: {annotate: q}}]
on_quorum: [{name: ok, do: accept}]
"""
GOOD = json.dumps({"id": "G1", "data": {}, "answer": "a"})
BAD = json.dumps({"id": "G2", "data": {}, "answer": "zzz"})  # no choice


@pytest.fixture
def project(run, tmp_path):
    run.ok("init")
    (tmp_path / "g.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    run.ok("apply", "g.workflow.yaml")
    return run


def rejects(run) -> list[tuple[str, int]]:
    return sorted((r["source"], r["line"]) for r in run.json("rejects", "--json"))


def gold_count(run) -> int:
    return run.json("status", "--json")["gold"]


@pytest.mark.parametrize("rewrite", [GOOD + "\n", ""], ids=["bad-line-cut-off", "emptied"])
def test_rejects_of_lines_gone_from_the_file_go_with_them(project, tmp_path, rewrite):
    gold = tmp_path / "gold.jsonl"
    other = tmp_path / "other.jsonl"
    other.write_text("{broken\n", encoding="utf-8")
    project.ok("ingest", "other.jsonl")  # another source's reject: kept
    gold.write_text(f"{GOOD}\n{BAD}\n{BAD.replace('G2', 'G3')}\n", encoding="utf-8")
    assert project.json("gold", "add", "gold.jsonl", "--json")["rejected"] == 2
    assert rejects(project) == [(str(gold), 2), (str(gold), 3), (str(other), 1)]
    gold.write_text(rewrite, encoding="utf-8")
    assert project.json("gold", "add", "gold.jsonl", "--json")["rejected"] == 0
    assert rejects(project) == [(str(other), 1)]


def test_gold_rows_from_a_pipe_and_from_standard_input(project, tmp_path):
    reading, writing = os.pipe()
    os.write(writing, f"{GOOD}\n{BAD}\n".encode())  # what `<(printf ...)` hands over: /dev/fd/N
    os.close(writing)
    try:
        proc = subprocess.run([*project.command, "gold", "add", f"/dev/fd/{reading}"], pass_fds=(reading,),
                              capture_output=True, text=True, env=project.env, cwd=tmp_path, timeout=120)
    finally:
        os.close(reading)
    assert "Traceback" not in proc.stderr and proc.returncode == 0, proc.stderr
    piped = f"</dev/fd/{reading} {STAMP}>"
    assert proc.stdout == "gold: added 1, updated 0, rejected 1\n"
    assert proc.stderr == f"rejected rows are kept with their reasons: labelyard rejects --source '{piped}'\n"
    assert rejects(project) == [(piped, 2)]

    read = project.ok("gold", "add", "-", input=BAD.replace("G2", "G4") + "\n" + GOOD.replace("G1", "G5") + "\n")
    assert read.stdout == "gold: added 1, updated 0, rejected 1\n"
    assert rejects(project) == [(piped, 2), (f"<stdin {STAMP}>", 1)]
    again = project.json("gold", "add", "-", "--json", input=f"{BAD}\n")  # a read of its own: the first stays
    assert again == {"added": 0, "updated": 0, "unchanged": 0, "rejected": 1,
        "source": f"<stdin {STAMP} #2>"}
    assert rejects(project) == sorted([(piped, 2), (f"<stdin {STAMP}>", 1), (f"<stdin {STAMP} #2>", 1)])

    fifo = tmp_path / "gold.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_text, args=(GOOD.replace("G1", "G6") + "\n",), daemon=True)
    writer.start()  # opening a fifo waits for the other end: the gold add below
    assert project.json("gold", "add", "gold.fifo", "--json") == {
        "added": 1, "updated": 0, "unchanged": 0, "rejected": 0,
        "source": f"<{fifo} {STAMP}>"}
    writer.join()
    assert gold_count(project) == 3  # G1, G5, G6


def test_a_missing_file_or_a_folder_is_named(project, tmp_path):
    missing = project("gold", "add", "nope.jsonl")
    assert (missing.returncode, missing.stderr) == (1, "labelyard: nope.jsonl: no such file\n")
    (tmp_path / "folder").mkdir()
    folder = project("gold", "add", "folder")
    assert folder.returncode != 0 and "folder" in folder.stderr and "directory" in folder.stderr
