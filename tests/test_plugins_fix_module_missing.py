"""A workflow whose `plugins:` module imports when it is applied, then not (cron runs the
commands without the PYTHONPATH the lead had), through the CLI on a real database."""

from __future__ import annotations

import os

WORKFLOW = """\
workflow: w
labels: {type: choice, choices: [a, b]}
queues: {q: {roles: [annotator]}}
plugins: [mymod.fns]
on_create:
  - {name: weekend, when: is_weekend(now), do: {hold: weekend}}
  - {name: default, do: {annotate: q}}
"""
MODULE = """\
from router import hookimpl


@hookimpl
def register_functions(register):
    register("is_weekend", lambda now: False)
"""


def test_a_command_names_the_plugin_module_that_no_longer_loads_and_status_still_counts(run, tmp_path):
    (tmp_path / "mods" / "mymod").mkdir(parents=True)
    (tmp_path / "mods" / "mymod" / "fns.py").write_text(MODULE, encoding="utf-8")
    (run.folder / "w.workflow.yaml").write_text(WORKFLOW, encoding="utf-8")
    (run.folder / "t.jsonl").write_text('{"id": "T1", "data": {}}\n', encoding="utf-8")
    with_module = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "mods"), run.env.get("PYTHONPATH")]))}
    run.ok("init")
    run.ok("apply", "w.workflow.yaml", env=with_module)
    run.ok("ingest", "t.jsonl", env=with_module)

    for args in (("ingest", "t.jsonl"), ("claim", "--as", "lead-lucy"), ("tick",)):
        failed = run(*args)
        assert failed.returncode == 1, (args, failed.stderr)
        # before: "<stored workflow>:1:1: unknown function `is_weekend` (functions: abs, ...)"
        assert "plugin module `mymod.fns`, which does not load here: ModuleNotFoundError" in failed.stderr
        assert "PYTHONPATH" in failed.stderr and "<stored workflow>" not in failed.stderr

    counted = run.json("status", "--json")  # counting work needs no rule function
    assert counted["tasks"]["open"] == 1 and counted["queues"]["q"]["waiting"] == 1
