"""Output on a standard output that is not UTF-8 (a Latin-1 or ASCII locale, ``PYTHONIOENCODING``).

Real subprocesses on a real database file whose ids, data, labels, worker names and
rejects are not ASCII. Standard output is read as bytes: what the command wrote in the
locale's encoding is checked as such.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

WORKFLOW = """\
workflow: pets
labels: {type: choice, choices: [cat, dog, chién]}
queues: {triage: {roles: [annotator]}}
on_create: [{name: one vote, do: {annotate: triage, overlap: 1}}]
on_quorum: [{name: agreed, do: accept}]
"""

ROWS = [{"id": "🐱", "data": {"note": "é🐱"}}, {"id": "ünï", "data": {"note": "naïve 🐶"}}]

# Standard output's encoding, as the user's environment sets it. LC_ALL=C without Python's
# UTF-8 mode is a real ASCII locale (arguments that are not ASCII then do not reach Python as
# text, so the commands below name tasks by id).
LATIN1 = {"latin-1": {"PYTHONIOENCODING": "latin-1"}, "cp1252": {"PYTHONIOENCODING": "cp1252"}}
ASCII = {"ascii": {"PYTHONIOENCODING": "ascii"},
         "C locale": {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}}
ENCODINGS = {**LATIN1, **ASCII}

COMMANDS = [
    ("show", "id:1"), ("show", "id:1", "--json"), ("show", "id:2"), ("show", "id:2", "--json"),
    ("status",), ("status", "--json"), ("workers", "list"), ("workers", "list", "--json"),
    ("rejects",), ("rejects", "--json"), ("explain", "id:2"), ("explain", "id:2", "--json"),
    ("export",), ("export", "--format", "csv"), ("agreement",), ("agreement", "--json"),
    ("claim", "--as", "bob", "--resume"), ("claim", "--as", "bob", "--resume", "--json"),
]


@pytest.fixture
def project(run, write_workflow):
    """Task 🐱 (id:1) final with the label `chién` by worker `ånn`; `bob` holds ünï (id:2); one reject."""
    run.ok("init")
    run.ok("apply", write_workflow(WORKFLOW))
    run.ok("workers", "add", "ånn", "--role", "annotator")
    run.ok("workers", "add", "bob", "--role", "annotator")
    lines = [json.dumps(row, ensure_ascii=False) for row in ROWS] + ['{"id": "böse", "prediction": 7}']
    (run.folder / "t.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    first = run.json("claim", "--as", "ånn", "--json")
    assert first["external_id"] == "🐱"
    run.ok("submit", first["assignment"], "--as", "ånn", "--label", "chién")
    assert run.json("claim", "--as", "bob", "--json")["external_id"] == "ünï"
    return run


def run_bytes(run, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``labelyard ARGS`` with ``env`` added, its output as bytes."""
    environ = {**run.env, **env}
    return subprocess.run([*run.command, *args], capture_output=True, env=environ, cwd=run.folder, timeout=120)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_no_command_fails_on_text_the_locale_cannot_encode(project, encoding):
    for args in COMMANDS:
        proc = run_bytes(project, *args, env=ENCODINGS[encoding])
        assert b"Traceback" not in proc.stderr, (args, proc.stderr.decode("utf-8", "replace"))
        assert proc.returncode == 0, (args, proc.stderr.decode("utf-8", "replace"))


@pytest.mark.parametrize("encoding", list(LATIN1))
def test_json_output_is_ascii_where_the_locale_is_not_utf8(project, encoding):
    expected = project.json("show", "id:1", "--json")
    proc = run_bytes(project, "show", "id:1", "--json", env=ENCODINGS[encoding])
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert proc.stdout.isascii()  # the same bytes in UTF-8 and in the locale's encoding
    shown = json.loads(proc.stdout)
    assert shown == expected
    assert shown["task"]["external_id"] == "🐱" and shown["task"]["final_label"] == "chién"
    assert "\\ud83d\\udc31" in proc.stdout.decode("ascii")  # JSON's own escape, not Python's
    listed = run_bytes(project, "rejects", "--json", env=ENCODINGS[encoding])
    assert listed.stdout.isascii() and "böse" in json.loads(listed.stdout)[0]["raw"]


@pytest.mark.parametrize("encoding", [*ASCII, "utf-8"])
def test_json_output_is_utf8_on_a_utf8_or_ascii_locale(project, encoding):
    expected = project.json("show", "id:1", "--json")
    proc = run_bytes(project, "show", "id:1", "--json", env=ENCODINGS.get(encoding, {"PYTHONIOENCODING": "utf-8"}))
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert "🐱".encode() in proc.stdout and "chién".encode() in proc.stdout
    assert json.loads(proc.stdout) == expected


def test_text_a_latin1_terminal_cannot_show_is_escaped(project):
    proc = run_bytes(project, "show", "ünï", env={"PYTHONIOENCODING": "latin-1"})
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    text = proc.stdout.decode("latin-1")
    assert "(ünï)" in text  # what Latin-1 has is written in Latin-1
    assert "naïve \\U0001f436" in text  # what it has not, as Python escapes it
    listed = run_bytes(project, "workers", "list", env={"PYTHONIOENCODING": "latin-1"})
    assert "ånn" in listed.stdout.decode("latin-1")


@pytest.mark.parametrize("encoding", list(ASCII))
def test_an_ascii_locale_is_written_utf8_by_tables_and_messages_alike(project, encoding):
    shown = run_bytes(project, "show", "id:2", env=ENCODINGS[encoding])
    assert shown.returncode == 0, shown.stderr.decode("utf-8", "replace")
    assert "(ünï)" in shown.stdout.decode("utf-8") and "naïve 🐶" in shown.stdout.decode("utf-8")
    listed = run_bytes(project, "workers", "list", env=ENCODINGS[encoding])
    assert "ånn" in listed.stdout.decode("utf-8")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_export_to_standard_output_is_the_utf8_file_it_writes(project, encoding, fmt):
    project.ok("export", "--format", fmt, "-o", f"final.{fmt}")
    written = (project.folder / f"final.{fmt}").read_bytes()
    assert "🐱".encode() in written and "chién".encode() in written
    proc = run_bytes(project, "export", "--format", fmt, env=ENCODINGS[encoding])
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert proc.stdout == written


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_export_into_a_closed_pipe_is_success_whatever_the_locale(project, encoding):
    read, write = os.pipe()
    os.close(read)  # `| head -0`, made certain: the reader is gone before the command starts
    try:
        proc = subprocess.run([*project.command, "export"], stdout=write, stderr=subprocess.PIPE,
                              env={**project.env, **ENCODINGS[encoding]}, cwd=project.folder, timeout=120)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (0, b"")
