"""CLI commands for leads and timers: restore, tick, reassign, escalate, hold, unhold, release, priority, gold, agreement.

Thin: each command parses its arguments and calls ``router.lead``,
``router.timers``, ``router.gold`` (``gold_view``, ``gold_retire``) or ``router.agreement`` (imported inside
the command, so ``labelyard claim`` does not pay for them).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import click

# A priority as typed: ASCII digits, a point, an exponent (as LABELYARD_NOW and CSV confidences).
PRIORITY_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _lead(db: str | None, worker: str | None):
    from .cli import _engine, _worker
    from .lead import Lead

    return Lead(_engine(db), _worker(worker))


def _bulk_options(func: Callable) -> Callable:
    from .cli import as_option, db_option

    func = click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")(func)
    func = click.option("--dry-run", is_flag=True,
                        help="Say what would be done, skipped or refused (the same checks); change nothing.")(func)
    func = click.option("--where", default=None, metavar="FILTER",
                        help='Every task for which this rule expression holds, e.g. '
                             '\'task.queue == "triage" and task.age > 2h\' (task.*, prediction.*, now).')(func)
    return db_option(as_option(func))


def _name(item: dict[str, Any]) -> str:
    """A task as the user may write it back: external id, then its id (they can differ: `7 (id:5)`)."""
    return f"{item['external_id']} (id:{item['task']})"


def escalated_line(item: dict[str, Any]) -> str:
    """What an escalation did (a queue that left the workflow meanwhile refuses it: never held)."""
    return f"escalated {_name(item)} to {item['target']}"


class _TextOutput:
    """A bulk action's tasks printed as each page's transaction ends: done on standard output, skipped
    (with why) on standard error."""

    def __init__(self, dry_run: bool, say: Callable[[dict[str, Any]], str], searching=None):
        self.dry, self.say = "dry run: " if dry_run else "", say
        self.searching = searching  # the progress line of a --where search, on a terminal

    def matched(self, report) -> None:
        if self.searching is not None:
            self.searching.close()  # the search ended: what it found is printed as it is done

    def item(self, kind: str, item: dict[str, Any]) -> None:
        if kind == "done":
            click.echo(self.dry + self.say(item))
        else:
            click.echo(f"{self.dry}skipped {_name(item)}: {item['reason']}", err=True)

    def finish(self, report) -> None:
        done, skipped = report.done_count, report.skipped_count
        if report.dry_run:
            click.echo(f"{report.action}: dry run, {done} would be done, {skipped} skipped "
                       f"of {report.matched} matching; nothing changed", err=True)
        elif done != 1 or skipped:
            click.echo(f"{report.action}: {done} done, {skipped} skipped of {report.matched} matching", err=True)


class _JsonOutput:
    """A bulk action's JSON document written as it goes: ``done`` streamed page by page, ``skipped``
    spooled to a temporary file and written after it, so neither list is held in memory."""

    def __init__(self) -> None:
        import tempfile

        self.skipped = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.first = {"done": True, "skipped": True}

    def matched(self, report) -> None:
        from .output_text import json_document

        click.echo(f'{{"action": {json_document(report.action)}, "matched": {report.matched}, "done": [', nl=False)

    def item(self, kind: str, item: dict[str, Any]) -> None:
        from .output_text import json_document

        text = ("" if self.first[kind] else ", ") + json_document(item)
        self.first[kind] = False
        if kind == "done":
            click.echo(text, nl=False)
        else:
            self.skipped.write(text)

    def finish(self, report) -> None:
        click.echo('], "skipped": [', nl=False)
        self.skipped.seek(0)
        while chunk := self.skipped.read(1 << 16):
            click.echo(chunk, nl=False)
        self.skipped.close()
        click.echo(f'], "dry_run": {"true" if report.dry_run else "false"}}}')


def _bulk(lead, action: str, tasks, where, dry_run: bool, as_json: bool, say: Callable[[dict[str, Any]], str],
          **options: Any) -> None:
    """Run a lead action and print its tasks as they are done (a page at a time with ``--where``); on
    a terminal, a ``--where`` search shows how far it is on standard error until the matches are found.
    A rule function that runs meanwhile (``on_quorum`` after a released correction is dropped)
    may start a subprocess: file descriptor 1 is on standard error throughout, once
    (:func:`~router.plugin_calls.command_stdout`), and what is printed here goes to standard output."""
    from .plugin_calls import command_stdout

    searching = None
    if where and not as_json and sys.stderr.isatty():
        from .progress import SearchLine

        searching = SearchLine()
    out = _JsonOutput() if as_json else _TextOutput(dry_run, say, searching)
    with command_stdout():
        try:
            report = lead.run(action, tasks, where, dry_run=dry_run, out=out, progress=searching, **options)
        finally:
            if searching is not None:
                searching.close()
        out.finish(report)


def register(main: click.Group) -> None:
    """Add this module's commands to the ``labelyard`` group."""
    from .cli import AN_ID, _emit_json, _engine, as_option, db_option
    from .cli_types import WholeNumber

    @main.command()
    @click.argument("backup", type=click.Path())
    @db_option
    @click.option("--json", "as_json", is_flag=True)
    @as_option
    def restore(backup: str, db: str | None, as_json: bool, worker: str | None) -> None:
        """Put BACKUP (a copy `labelyard backup` made) back as the database (a lead's action, audited).

        Stop every labelyard process that uses the database first: restore refuses while one has it
        open. The copy is written into the database file through SQLite, so a -wal a killed process
        left beside it cannot undo the restore; a copy an older Labelyard made is migrated as `init` does.
        """
        from .cli import _worker
        from .restore import restore as run_restore

        result = run_restore(db, backup, _worker(worker))
        if as_json:
            _emit_json(result)
            return
        migrated = f"; migrated ({', '.join(result['migrations'])})" if result["migrations"] else ""
        click.echo(f"restored {result['restored']} from {backup} (schema {result['schema']}){migrated}")

    @main.command()
    @db_option
    @click.option("--json", "as_json", is_flag=True)
    def tick(db: str | None, as_json: bool) -> None:
        """Run the workflow's on_timer rules once (from cron); LABELYARD_NOW sets the time."""
        from .plugin_calls import stdout_on_stderr
        from .timers import tick as run_tick

        engine = _engine(db)
        with stdout_on_stderr():  # what the tick did is told after: standard output is the command's alone
            report = run_tick(engine)
        if as_json:
            _emit_json(report.as_dict())
            return
        actions = ", ".join(f"{n} {a}" for a, n in sorted(report.actions.items())) or "no task actions"
        click.echo(f"checked {report.assignments} assignments and {report.tasks} tasks: "
                   f"released {report.released}, {actions}")

    @main.command()
    @click.argument("tasks", nargs=-1)
    @click.option("--to", "to", required=True, metavar="W", help="The worker who gets the slot.")
    @click.option("--from", "from_worker", default=None, metavar="W", help="Take only this worker's slot.")
    @click.option("--force", is_flag=True,
                  help="Even if the queue does not admit W, W is paused or at capacity, or W annotated the task.")
    @_bulk_options
    def reassign(tasks, to, from_worker, force, db, worker, where, dry_run, as_json) -> None:
        """Give TASK(s) to worker W (ends the current holders' slots)."""
        _bulk(_lead(db, worker), "reassign", tasks, where, dry_run, as_json,
              lambda i: f"reassigned {_name(i)} to {i['to']} (assignment {i['assignment']})",
              to=to, force=force, from_worker=from_worker)

    @main.command()
    @click.argument("tasks", nargs=-1)
    @click.option("--to", "queue", required=True, metavar="Q", help="The queue of experts.")
    @click.option("--reason", default=None)
    @_bulk_options
    def escalate(tasks, queue, reason, db, worker, where, dry_run, as_json) -> None:
        """Send TASK(s) to an expert queue for adjudication."""
        _bulk(_lead(db, worker), "escalate", tasks, where, dry_run, as_json, escalated_line, queue=queue,
              reason=reason)

    @main.command()
    @click.argument("tasks", nargs=-1)
    @click.option("--reason", default=None)
    @_bulk_options
    def hold(tasks, reason, db, worker, where, dry_run, as_json) -> None:
        """Hold TASK(s): no one gets them until `unhold`."""
        _bulk(_lead(db, worker), "hold", tasks, where, dry_run, as_json, lambda i: f"held {_name(i)}", reason=reason)

    @main.command()
    @click.argument("tasks", nargs=-1)
    @_bulk_options
    def unhold(tasks, db, worker, where, dry_run, as_json) -> None:
        """Reopen held TASK(s) in their stage with their slots."""
        _bulk(_lead(db, worker), "unhold", tasks, where, dry_run, as_json,
              lambda i: f"reopened {_name(i)}: {i['stage']} in {i['queue']}")

    @main.command()
    @click.argument("tasks", nargs=-1)
    @click.option("--assignment", "assignment_id", type=AN_ID, default=None, metavar="ID",
                  help="Release this one assignment.")
    @_bulk_options
    def release(tasks, assignment_id, db, worker, where, dry_run, as_json) -> None:
        """Release the active assignment(s) of TASK(s) (or --assignment ID): the slot goes back to the queue."""
        lead = _lead(db, worker)
        if assignment_id is not None:
            if tasks or where:
                raise click.UsageError("give --assignment, or task ids / --where, not both")
            from .plugin_calls import stdout_on_stderr

            with stdout_on_stderr():  # a rule function's subprocess writes to stderr, not into the result
                result = lead.release_assignment(assignment_id, dry_run=dry_run)
            if as_json:  # the task by the id a user writes too, as the bulk forms give it
                task = lead.store.task(result["task"])
                _emit_json({**result, "external_id": task["external_id"] if task else None, "dry_run": dry_run})
            else:
                dry = "dry run: " if dry_run else ""
                from .render import listed_name

                click.echo(f"{dry}released assignment {assignment_id} of {listed_name(result['worker'])} "
                           f"({result['status']})")
            return
        _bulk(lead, "release", tasks, where, dry_run, as_json,
              lambda i: f"released {_name(i)}: assignment(s) {', '.join(map(str, i['released']))}")

    @main.command(context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, required=True)
    @_bulk_options
    def priority(args, db, worker, where, dry_run, as_json) -> None:
        """Set the priority of TASK(s): `priority TASK… N` or `priority --where FILTER N` (higher first)."""
        from .lead import priority_problem
        from .render import number_text

        *tasks, value = args
        try:
            number = float(value)
        except ValueError:
            raise click.UsageError(f"the priority is a number, not {value!r} (priority TASK… N)") from None
        problem = priority_problem(number)  # NaN, infinities and numbers past the rules' bounds
        if problem:
            raise click.UsageError(problem)
        if not PRIORITY_NUMBER.fullmatch(value.strip()):  # float() also takes `1_0` and any script's digits
            raise click.UsageError(f"the priority is a number in ASCII digits, without `_`, not {value!r} "
                                   "(priority TASK… N)")
        _bulk(_lead(db, worker), "priority", tasks, where, dry_run, as_json,
              lambda i: f"priority of {_name(i)}: {number_text(i['was'])} → {number_text(i['priority'])}",
              value=number)

    @main.group()
    def gold() -> None:
        """Gold questions: tasks with a known answer that measure annotators."""

    @gold.command("add")
    @click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
    @db_option
    @as_option
    @click.option("--json", "as_json", is_flag=True)
    def gold_add(file: str, db: str | None, worker: str | None, as_json: bool) -> None:
        """Add gold tasks from rows like `ingest` (JSON Lines, or a JSON array) plus "answer": LABEL (and "queue").

        FILE may be a pipe (`<(cmd)`, a fifo) or `-` for standard input. A lead's action: a
        changed answer scores again everyone who answered it."""
        from .cli import _stream_source
        from .gold import add_gold
        from .ingest import is_stream
        from .os_text import shell_word, stream_name

        lead = _lead(db, worker)  # the lead role, checked as for `hold`
        source = None  # a file's: its real path
        if file == "-" or is_stream(file):  # read once: this read's rejects get a name of their own
            source = _stream_source(lead.engine, "stdin" if file == "-" else stream_name(file))
        report = add_gold(lead.engine, file, lead.actor, source)
        for line in report.warnings():  # top-level keys rows with `data` left out: never without a word
            click.echo(line, err=True)
        if as_json:
            _emit_json(report.as_dict())
            return
        unchanged = f", unchanged {report.unchanged}" if report.unchanged else ""
        click.echo(f"gold: added {report.added}, updated {report.updated}{unchanged}, rejected {report.rejected}")
        if report.rejected:
            only = f" --source {shell_word(source)}" if source else ""
            click.echo(f"rejected rows are kept with their reasons: labelyard rejects{only}", err=True)

    @gold.command("list")
    @db_option
    @as_option
    @click.option("--json", "as_json", is_flag=True)
    def gold_list(db: str | None, worker: str | None, as_json: bool) -> None:
        """List the gold questions: answer, queue, state (open, held, retired) and how many answered right or wrong.

        A lead's command: it shows the answers."""
        from .gold_view import gold_list as listed

        lead = _lead(db, worker)
        questions = listed(lead.store, lead.engine.workflow.labels)
        if as_json:
            _emit_json({"questions": questions})
            return
        from .render import gold_table

        for line in gold_table(questions):
            click.echo(line)

    @gold.command("retire")
    @click.argument("tasks", nargs=-1, required=True)
    @click.option("--reason", default=None, help="Why (shown as the question's reason; default: retired as a "
                                                  "gold question).")
    @db_option
    @as_option
    @click.option("--json", "as_json", is_flag=True)
    def gold_retire(tasks: tuple[str, ...], reason: str | None, db: str | None, worker: str | None,
                    as_json: bool) -> None:
        """Retire gold question(s) TASK…: no longer served, and their answers no longer count in workers' gold accuracy.

        Each question in one transaction: its slots released, every worker who answered it
        scored again without it. `gold add` of its id is refused afterwards (use a new id)."""
        from .gold_retire import retire_gold
        from .render import listed_name

        lead = _lead(db, worker)
        results = retire_gold(lead.engine, list(tasks), lead.actor, reason)
        if as_json:
            _emit_json({"retired": results})
            return
        for r in results:
            if not r["retired"]:
                click.echo(f"{listed_name(r['id'])} was retired already")
                continue
            text = f"retired {listed_name(r['id'])}"
            if r["released"]:
                text += f": released assignment(s) {', '.join(map(str, r['released']))}"
            if r["rescored"]:
                text += "; gold accuracy scored again: " + ", ".join(
                    f"{listed_name(w)} {correct}/{answered}" for w, (answered, correct) in r["rescored"].items())
            click.echo(text)

    @main.command()
    @db_option
    @click.option("--queue", default=None, help="Only votes given in this queue.")
    @click.option("--latest", type=WholeNumber(1, 10**9), default=None, metavar="N",
                  help="Only the tasks of the latest N votes (with all their votes): with --queue, what "
                       "queue.kappa and queue.alpha read (N = quality.agreement.window, default 2000).")
    @click.option("--json", "as_json", is_flag=True)
    def agreement(db: str | None, queue: str | None, latest: int | None, as_json: bool) -> None:
        """Inter-annotator agreement per queue and overall, per annotator, and label confusion."""
        from .agreement import agreement_report

        data = agreement_report(_engine(db), queue, latest)
        if as_json:
            _emit_json(data)
            return
        _print_agreement(data)


def _print_agreement(data: dict[str, Any]) -> None:
    from .agreement import annotator_table, confusion_table, queue_table

    click.echo(f"headline metric: {data['metric']} (excellent ≥ {data['bands']['excellent']}, "
               f"alert < {data['bands']['alert']})")
    if data["latest"] is not None:
        click.echo(f"over the tasks of the latest {data['latest']} votes"
                   + (f" in {data['queue']}" if data["queue"] is not None else ""))
    click.echo("\n".join(queue_table(data)))
    if data["annotators"]:
        click.echo("\n" + "\n".join(annotator_table(data)))
    if data["confusion"]:
        click.echo("\n" + "\n".join(confusion_table(data)))
