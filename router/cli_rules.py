"""CLI commands about rules: explain, test, replay (registered by ``router.cli``).

Each command parses its arguments and calls the core (``rules.testing``,
``router.explain``, ``router.replay``); heavy modules load inside the commands.
"""

from __future__ import annotations

import sys
from typing import Any

import click


def _emit_json(data: Any) -> None:
    from .output_text import json_document

    click.echo(json_document(data))


def _db_option(func):
    from .cli import db_option

    return db_option(func)


def _as_option(func):
    from .cli import as_option

    return as_option(func)


def register(main: click.Group) -> None:
    """Add this module's commands to the ``labelyard`` group."""
    from .cli_types import WholeNumber

    @main.command("test")
    @click.argument("paths", nargs=-1, type=click.Path())
    @click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
    @click.option("--strict", is_flag=True, help="Rules that no case exercises fail the run too.")
    @click.option("--verbose", "-v", is_flag=True, help="Show the trace of every case, not only failures.")
    def test_command(paths: tuple[str, ...], as_json: bool, strict: bool, verbose: bool) -> None:
        """Run rule tests: NAME.test.yaml cases beside NAME.workflow.yaml (default folder: workflows/).

        Prints PASS/FAIL/ERROR per case with what differed, and the rules no
        case exercised. Exit 1 when any case does not pass.
        """
        from rules.testing import run_paths

        from .context import case_votes_facts
        from .function_hints import explained_in
        from .plugins import workflow_functions_for_text

        report = run_paths(paths or ("workflows",), functions_for=workflow_functions_for_text,
                           votes_for=case_votes_facts, explain=explained_in)
        uncovered = report.counts()["uncovered_rules"]
        failed = not report.ok or (strict and uncovered > 0)
        if as_json:
            _emit_json({**report.as_dict(), "ok": not failed})
        else:
            _print_test_report(report, verbose, strict)
        if failed:
            sys.exit(1)

    @main.command("explain")
    @click.argument("task")
    @_db_option
    @_as_option
    @click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
    def explain_command(task: str, db: str | None, worker: str | None, as_json: bool) -> None:
        """Why a task is where it is: every decision of its life, with the values its rules saw.

        A gold question is explained whole to a lead; to anyone else as their claim showed it."""
        from .cli import _worker
        from .explain import explain_task, render_explanation
        from .store import Store

        viewer = _worker(worker)
        store = Store.open(db)
        try:
            store.read_only()
            data = explain_task(store, task, viewer)
        finally:
            store.close()
        if as_json:
            _emit_json(data)
        else:
            from .render import visible

            for line in render_explanation(data):
                click.echo(visible(line))  # rule names, reasons and worker names are the user's text

    @main.command("replay")
    @click.argument("file", type=click.Path(dir_okay=False))
    @_db_option
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @click.option("--sample", "sample_size", default=5, show_default=True, type=WholeNumber(min=0),
                  help="Distinct task ids shown per change (0: none).")
    def replay_command(file: str, db: str | None, as_json: bool, sample_size: int) -> None:
        """What a candidate workflow would have decided differently over the recorded history.

        The database is opened read-only: nothing is changed.
        """
        from rules.diagnostics import WorkflowInvalid
        from rules.source import read_source
        from rules.workflow import compile_workflow

        from .errors import LabelyardError
        from .replay import render_replay, replay
        from .store import Store

        try:
            text = read_source(file)
        except OSError as exc:
            raise LabelyardError(f"{file}: {exc.strerror}") from None
        from .plugins import workflow_functions_for_text

        workflow, diagnostics = compile_workflow(text, file, workflow_functions_for_text(text))
        if workflow is None:
            from .function_hints import explained_in

            raise WorkflowInvalid(explained_in(diagnostics, text, file))
        store = Store.open(db)
        try:
            store.read_only()
            result = replay(store, workflow, sample_size=sample_size)
        finally:
            store.close()
        result["candidate"]["file"] = file
        if as_json:
            _emit_json(result)
        else:
            from .render import one_line

            for line in render_replay(result):
                click.echo(one_line(line))  # rule names, workflow names and task ids are the user's text


def _print_test_report(report, verbose: bool, strict: bool) -> None:
    from rules.testing import Report

    from .render import continued, one_line, visible

    def echo(line: str) -> None:  # case names, rule names and values are the files' text: one line each
        click.echo(one_line(line))

    def say(message: str, indent: str = "", err: bool = False) -> None:  # a message may have lines of its own
        click.echo(indent + visible(continued(str(message), indent + "    ")), err=err)

    assert isinstance(report, Report)
    for problem in report.errors:
        say(f"labelyard: {problem}", err=True)
    for suite in report.suites:
        title = suite.test_file or f"{suite.workflow_file} (no test file)"
        echo(f"{title}" + (f"  [{suite.workflow}]" if suite.workflow else ""))
        for diagnostic in suite.errors:
            say(f"ERROR {diagnostic}")
        for case in suite.cases:
            echo(f"{case.status:<5} {case.file}:{case.line}: {case.name}")
            if case.status == "ERROR" and case.message:
                say(case.message, "      ")
            if case.status == "FAIL":
                for line in case.diff:
                    echo(f"      {line}")
                if case.message:
                    say(f"({case.message})", "      ")
            if case.status == "FAIL" or (verbose and case.trace):
                got = case.got or {}
                if case.trace:
                    echo(f"      trace of `{got.get('rule')}`:")
                    for line in case.trace:
                        echo(f"        {line}")
                for i, line in enumerate(case.expected_trace):
                    echo(f"      {'  ' if i else ''}{line}")
        if suite.uncovered:
            word = "FAIL" if strict else "note"
            echo(f"{word}: {len(suite.uncovered)} of {suite.rules} rules not exercised by any case:")
            for rule in suite.uncovered:
                echo(f"      {suite.workflow_file}:{rule['line']}: {rule['section']} `{rule['rule']}`")
        elif suite.rules:
            echo(f"coverage: all {suite.rules} rules exercised")
    counts = report.counts()
    files = counts["file_errors"]
    echo(f"{counts['pass']} passed, {counts['fail']} failed, {counts['error']} errors"
         f" ({counts['cases']} cases, {counts['uncovered_rules']} rules not exercised)"
         + (f"; {files} {'error' if files == 1 else 'errors'} outside the cases" if files else ""))
