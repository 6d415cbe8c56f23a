"""`labelyard work --queue Q` with a queue the workflow does not have: one line and exit 1, as
`labelyard claim --queue Q` says it. Before, on a terminal, the work screen opened and waited
forever ("no work right now: no queue `nope` …"). Run as a real subprocess on a pseudo-terminal,
so the command passes its terminal check exactly as it does for a person."""

from __future__ import annotations

import os
import subprocess

import pytest

from test_cli import SMALL_WORKFLOW, project


def in_terminal(run, *args: str) -> subprocess.CompletedProcess:
    """``labelyard ARGS`` with a pseudo-terminal as standard input and output (standard error piped).
    A TUI that opens instead of refusing never exits by itself: it is killed and the test fails."""
    main, side = os.openpty()
    proc = subprocess.Popen([*run.command, *args], stdin=side, stdout=side, stderr=subprocess.PIPE, text=True,
                            env={**run.env, "TERM": "xterm"}, cwd=run.folder)
    os.close(side)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"`labelyard {' '.join(args)}` opened the work screen instead of refusing")
    finally:
        os.close(main)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", err)


@pytest.mark.parametrize("queue", ["nope", ""])
def test_work_with_an_unknown_queue_is_one_line_and_exit_1_on_a_terminal(run, write_workflow, queue):
    project(run, write_workflow, SMALL_WORKFLOW, workers={"ann": ["--role", "annotator"]})
    claim = run("claim", "--as", "ann", "--queue", queue)
    proc = in_terminal(run, "work", "--as", "ann", "--queue", queue)
    assert proc.returncode == claim.returncode == 1
    assert proc.stderr == claim.stderr == f"labelyard: no queue `{queue}` in workflow `pets`\n"


def test_work_with_an_unknown_queue_says_so_before_asking_for_a_terminal(run, write_workflow):
    project(run, write_workflow, SMALL_WORKFLOW, workers={"ann": ["--role", "annotator"]})
    proc = run("work", "--as", "ann", "--queue", "nope")
    assert (proc.returncode, proc.stderr) == (1, "labelyard: no queue `nope` in workflow `pets`\n")
    known = run("work", "--as", "ann", "--queue", "triage")  # a known queue: only the terminal is missing
    assert known.returncode == 1 and "needs a terminal" in known.stderr
