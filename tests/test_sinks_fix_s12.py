"""The twelfth session's sink and export fixes: a file sink's first row after a file without a final
line break, a file shared by two projects' sinks, a csv file under another header, a name added to a
sink, ``export -o`` to a pipe given through a link or an empty ``-o``, and big integer number labels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Runner
from test_plugins_fix_s12 import KILLED_RUN, SINK_WORKFLOW, output_ids


def project(folder: Path, sinks: str) -> Runner:
    """An initialised project in ``folder`` whose workflow has ``sinks: [SINKS]``; ``final(*ids)``
    ingests tasks accepted at once, ``killed(mode)`` runs a run killed as ``KILLED_RUN`` says."""
    folder.mkdir(parents=True, exist_ok=True)
    run = Runner(folder)
    run.ok("init")
    (folder / "s.workflow.yaml").write_text(SINK_WORKFLOW + f"sinks: [{sinks}]\n", encoding="utf-8")
    run.ok("apply", "s.workflow.yaml")

    def final(*ids: str) -> None:
        rows = "".join(json.dumps({"id": i, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"
                       for i in ids)
        (folder / "in.jsonl").write_text(rows, encoding="utf-8")
        run.ok("ingest", "in.jsonl")

    def killed(mode: str) -> None:
        proc = subprocess.run([sys.executable, "-c", KILLED_RUN, mode], env=run.env, cwd=folder,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, proc.stderr

    run.final, run.killed = final, killed
    return run


# -- F1: a file without a final line break gets one before the first row ----------------------------
def test_a_jsonl_sink_starts_a_new_line_after_a_file_without_a_final_line_break(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "final.jsonl").write_bytes(b'{"id": "old", "label": "pos"}')
    run = project(tmp_path, "{plugin: jsonl, path: out/final.jsonl}")
    run.final("A")
    run.ok("run")
    lines = (tmp_path / "out" / "final.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0]) == {"id": "old", "label": "pos"}
    assert [json.loads(line)["id"] for line in lines[1:]] == ["A"]


def test_a_csv_sink_starts_a_new_row_after_a_spreadsheets_file_without_a_final_line_break(tmp_path):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "final.csv"
    out.write_bytes(b"id,label,final_by,rule,final_at,category,agreement\r\nold,pos,model,x,2020,,")
    run = project(tmp_path, "{plugin: csv, path: out/final.csv}")
    run.final("A", "B")
    run.ok("run")
    assert out.read_bytes().startswith(b"id,label,final_by,rule,final_at,category,agreement\r\nold,pos,model,x,2020,,"
                                       b"\r\nA,bug,")
    assert output_ids(out) == ["old", "A", "B"]


# -- F11: two projects' sinks on one file keep each other's rows -------------------------------------
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_two_projects_sinks_on_one_file_keep_each_others_rows(tmp_path, suffix):
    plugin = "csv" if suffix == "csv" else "jsonl"
    entry = f"{{plugin: {plugin}, path: ../shared/final.{suffix}}}"
    a, b = project(tmp_path / "a", entry), project(tmp_path / "b", entry)
    a.final("A1")
    a.ok("run")
    b.final("B1")
    b.ok("run")
    a.final("A2")
    a.ok("run")
    b.final("B2")
    b.ok("run")
    assert output_ids(tmp_path / "shared" / f"final.{suffix}") == ["A1", "B1", "A2", "B2"]


@pytest.mark.parametrize("mode", ["record", "torn"])
def test_a_killed_batch_after_another_projects_rows_is_cut_and_theirs_kept(tmp_path, mode):
    entry = "{plugin: jsonl, path: ../shared/final.jsonl}"
    a, b = project(tmp_path / "a", entry), project(tmp_path / "b", entry)
    a.final("A1")
    a.ok("run")
    b.final("B1")
    b.ok("run")
    a.final("A2", "A3")
    a.killed(mode)
    assert a.json("run", "--json")["sinks"]["jsonl:../shared/final.jsonl"] == {"delivered": 2}
    assert output_ids(tmp_path / "shared" / "final.jsonl") == ["A1", "B1", "A2", "A3"]
    b.final("B2")
    b.ok("run")
    assert output_ids(tmp_path / "shared" / "final.jsonl") == ["A1", "B1", "A2", "A3", "B2"]


def test_a_whole_unrecorded_batch_followed_by_another_writers_rows_is_not_written_twice(tmp_path):
    run = project(tmp_path, "{plugin: jsonl, path: out.jsonl}")
    run.final("t1")
    run.ok("run")
    run.final("t2", "t3")
    run.killed("record")  # t2, t3 written, not recorded
    with open(tmp_path / "out.jsonl", "a", encoding="utf-8") as log:
        log.write('{"id": "theirs"}\n')
    run.ok("run")
    assert output_ids(tmp_path / "out.jsonl") == ["t1", "t2", "t3", "theirs"]
    run.final("t4")
    run.ok("run")
    assert output_ids(tmp_path / "out.jsonl") == ["t1", "t2", "t3", "theirs", "t4"]


# -- F12: a csv sink refuses a file under another header ---------------------------------------------
def test_a_csv_sink_refuses_to_append_under_another_header_and_the_other_sinks_deliver(tmp_path):
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "final.csv"
    foreign = "id,label,final_by,rule,final_at,category\r\nA,bug,model,c,2020,\r\n"
    out.write_text(foreign, encoding="utf-8", newline="")
    run = project(tmp_path, "{plugin: csv, path: out/final.csv}, {plugin: jsonl, path: out/final.jsonl}")
    run.final("B")
    proc = run("run", "--json")
    assert proc.returncode == 4
    report = json.loads(proc.stdout)
    (failure,) = report["failures"]
    assert str(out) in failure["error"]
    assert "'id,label,final_by,rule,final_at,category'" in failure["error"]
    assert "'id,label,final_by,rule,final_at,category,agreement'" in failure["error"]
    assert out.read_bytes() == foreign.encode()  # untouched
    assert output_ids(tmp_path / "out" / "final.jsonl") == ["B"]


# -- F9 / F13: export -o to a pipe through a link, and an empty -o ----------------------------------
def test_export_to_dev_stdout_through_a_pipe_writes_the_rows(run, tmp_path):
    project(tmp_path, "{plugin: jsonl, path: out.jsonl}").final("A")
    command = " ".join(run.command)
    proc = subprocess.run(["bash", "-c", f"{command} export -o /dev/stdout | cat; "
                                         f"{command} export -o >(cat > piped.jsonl); wait"],
                          capture_output=True, text=True, env=run.env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and "cannot write" not in proc.stderr, proc.stderr
    assert json.loads(proc.stdout)["id"] == "A"
    assert json.loads((tmp_path / "piped.jsonl").read_text(encoding="utf-8"))["id"] == "A"


def test_export_with_an_empty_output_says_so(run, tmp_path):
    project(tmp_path, "{plugin: jsonl, path: out.jsonl}")
    proc = run("export", "-o", "")
    assert proc.returncode == 1
    assert proc.stderr.strip() == "labelyard: -o is empty: name a file, or leave -o out for standard output"
