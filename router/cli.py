"""The ``labelyard`` command: a thin click group over the engine.

Exit codes: 0 ok, 1 user error (message on stderr, no traceback), 2 usage,
3 nothing to do (claim). Heavy modules (YAML, jsonschema, rich, Textual) are
imported only by the commands that use them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

import click

from .cli_types import WholeNumber
from .errors import LabelyardError
from .os_text import escaped, shell_word, utf8_problem
from .output_text import STANDARD_OUTPUT, fit_standard_streams, json_document, standard_input


# Ids and counts the database holds are SQLite integers: a larger number typed on the command line is
# a usage error here, not an OverflowError where it meets SQLite.
SQLITE_INT_MAX = 2**63 - 1
AN_ID = WholeNumber(1, SQLITE_INT_MAX)
A_COUNT = WholeNumber(0, SQLITE_INT_MAX)


def _emit_json(data: Any) -> None:
    click.echo(json_document(data))


def _stdout_to_devnull() -> None:
    """Standard output's reader left: what is still buffered goes nowhere, not into a second error at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class LabelyardGroup(click.Group):
    """Turns user errors into a message and an exit code instead of a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        fit_standard_streams()  # a Latin-1 locale: `\U0001f431`, not a traceback (router.output_text)
        try:
            return super().main(*args, **kwargs)
        finally:
            _flush_standard_output()

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:  # `labelyard --help | head -0` (click would exit 1): as for any command
            _stdout_to_devnull()
            raise click.exceptions.Exit(0) from None
        except OSError as exc:  # `labelyard --help > /dev/full`: the help could not be written
            _say_os_error(exc)
            _stdout_to_devnull()  # what is still buffered goes nowhere, not into a second error at exit
            raise click.exceptions.Exit(1) from None

    def invoke(self, ctx: click.Context) -> Any:
        from rules.diagnostics import WorkflowInvalid

        try:
            return super().invoke(ctx)
        except LabelyardError as exc:
            if str(exc):  # a name or reason in it is the user's text: no escape sequence reaches the terminal
                from .render import visible

                click.echo(f"labelyard: {visible(str(exc))}", err=True)
            ctx.exit(exc.exit_code)
        except WorkflowInvalid as exc:
            for diagnostic in exc.diagnostics:
                click.echo(str(diagnostic), err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("labelyard: interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # `labelyard export | head`: the reader had enough (rich's tables too, render.py)
            _stdout_to_devnull()
            ctx.exit(0)
        except OSError as exc:  # the machine said no (a full disk, a missing folder): no traceback
            _say_os_error(exc)
            if exc.filename == STANDARD_OUTPUT:
                _stdout_to_devnull()
            ctx.exit(1)
        except UnicodeEncodeError as exc:  # text that is not UTF-8 got past the checks (TEXT, _worker)
            if not isinstance(exc.object, str) or utf8_problem(exc.object) is None:
                raise
            click.echo(f"labelyard: {_not_utf8('text', exc.object)}", err=True)
            ctx.exit(1)
        except Exception as exc:
            message = database_file_message(exc, ctx.meta.get(DB_META))
            if message is None:
                raise
            click.echo(f"labelyard: {message}", err=True)
            ctx.exit(1)


def _flush_standard_output() -> None:
    """Write what standard output still buffers before the exit status is settled: a write that
    fails there (``export > /dev/full``) is exit 1 with its one line, not Python's "Exception
    ignored" at exit and status 120."""
    if sys.stdout is None:
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
    except OSError as exc:
        _say_os_error(exc)
        _stdout_to_devnull()
        raise SystemExit(1) from None


def _say_os_error(exc: OSError) -> None:
    """``labelyard: FILE: reason`` on standard error (``standard output: No space left on device``)."""
    where = f"{exc.filename}: " if exc.filename else ""
    click.echo(f"labelyard: {where}{exc.strerror or exc}", err=True)


DB_META = "labelyard.db"  # ctx.meta key: the database a command was given (shared by nested contexts)


def database_file_message(exc: BaseException, db: str | None) -> str | None:
    """What to tell a user whose database file is damaged (SQLite found it malformed), may not be
    written (read-only, mid-command: SQLite opens a file it may only read and fails at the first
    write), has no room to grow (a full disk) or stays locked by another program, else ``None``."""
    sqlite3 = sys.modules.get("sqlite3")  # not loaded: the error cannot be SQLite's
    if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
        return None
    path = db or os.environ.get("LABELYARD_DB") or "labelyard.db"
    from .store import access_problem, disk_full_problem, is_busy, locked_message

    problem = access_problem(exc, path) or disk_full_problem(exc, path)
    if problem is not None:
        return problem
    if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):  # a read past SQLite's busy wait
        return locked_message(path, exc)
    text = str(exc)
    if "malformed" not in text and "not a database" not in text:
        return None
    from .store import damaged_message

    return damaged_message(path, text)


TIME_FIELDS = frozenset({"at", "created_at", "updated_at", "stage_at", "final_at"})


def iso_times(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with its times (:data:`TIME_FIELDS`, stored as epoch seconds) in ISO 8601, as
    ``status --json``, ``explain --json`` and ``export`` give every time."""
    from .clock import iso

    return {key: iso(value) if key in TIME_FIELDS and isinstance(value, (int, float)) else value
            for key, value in row.items()}


def _shown(text: str) -> str:
    """``text`` quoted for a message, its bytes that are not UTF-8 and its control characters written out."""
    from .render import visible

    return f"'{visible(escaped(text))}'"


def _not_utf8(what: str, text: str) -> str:
    """The message for ``text`` that is not UTF-8: ``argument TASK 'Zo\\xeb' is not valid UTF-8; …``."""
    return f"{what} {_shown(text)} is not valid UTF-8; Labelyard keeps text as UTF-8: type it in UTF-8"


class Utf8Text(click.ParamType):
    """Text typed on the command line (a name, an id, a reason, an expression), refused when it is not
    UTF-8 (a Latin-1 terminal, a pasted file name): ``argument NAME 'Zo\\xeb' is not valid UTF-8``,
    exit 1, rather than a traceback where SQLite or JSON meets it. Paths are not this type: a file
    whose name is not UTF-8 can still be read (see :data:`PATH_PARAMETERS`)."""

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            if utf8_problem(value) is not None:
                what = "value" if param is None else (f"option {param.opts[0]}" if isinstance(param, click.Option)
                                                      else f"argument {param.human_readable_name}")
                raise LabelyardError(_not_utf8(what, value))
        return value


TEXT = Utf8Text()
# Text parameters that name files: any bytes are a path (ingest stores the source's name with its bad
# bytes written out, router.os_text.source_name). click.Path parameters are paths too.
PATH_PARAMETERS = frozenset({"db", "output", "folder", "source"})


def check_text_parameters(group: click.Group) -> None:
    """Make every plain text parameter of ``group``'s commands (and their subcommands') :data:`TEXT`,
    but paths: done once, so a new option is checked without anyone remembering to."""
    for command in group.commands.values():
        for param in command.params:
            if param.type is click.STRING and param.name not in PATH_PARAMETERS:
                param.type = TEXT
        if isinstance(command, click.Group):
            check_text_parameters(command)


def db_option(func: Callable) -> Callable:
    """``--db PATH`` on every command (also accepted before the command name)."""

    @click.option("--db", "db", envvar="LABELYARD_DB", default=None, metavar="PATH",
                  help="Database file (default: $LABELYARD_DB or ./labelyard.db).")
    @click.pass_context
    @wraps(func)
    def wrapper(ctx: click.Context, *args: Any, db: str | None = None, **kwargs: Any) -> Any:
        root = ctx.find_root()
        given_here = db is not None and ctx.get_parameter_source("db") == click.core.ParameterSource.COMMANDLINE
        # `labelyard --db X cmd` wins over LABELYARD_DB (which also fills this command's --db)
        before = root.params.get("db") if root.params else None
        chosen = db if given_here else (db if before is None else before)
        if chosen == "":  # typed, or a variable that expanded to nothing: never the default's database
            raise LabelyardError("--db is empty: name the database file, or leave --db out for $LABELYARD_DB "
                                 "or ./labelyard.db")
        ctx.meta[DB_META] = chosen  # named if the file turns out damaged or read-only (LabelyardGroup.invoke)
        return ctx.invoke(func, *args, db=chosen, **kwargs)

    return wrapper


def as_option(func: Callable) -> Callable:
    return click.option("--as", "worker", default=None, metavar="W",
                        help="Who acts (default: $LABELYARD_WORKER, else your user name).")(func)


def _worker(name: str | None) -> str:
    """Who acts: ``--as``, else ``LABELYARD_WORKER``, else the user name; a blank name is refused,
    with where it came from."""
    from .engine import current_user, current_user_source

    chosen, source = (name, "--as") if name is not None else (current_user(), current_user_source())
    if not chosen.strip():
        raise LabelyardError(f"{source} is {chosen!r}: a worker needs a name")
    if utf8_problem(chosen) is not None:  # LABELYARD_WORKER or the user name: the environment's bytes
        raise LabelyardError(_not_utf8(source, chosen))
    return chosen


def _first_lead() -> str:
    """Whoever runs ``init``, checked as a new worker's name before any file is made."""
    from .engine import current_user_source, name_problem

    user = _worker(None)
    problem = name_problem(user)
    if problem is not None:
        raise LabelyardError(f"{current_user_source()} is {user!r}, which cannot name a worker: {problem}")
    return user


def _engine(db: str | None):
    from .engine import Engine

    return Engine.open(db)


@click.group(cls=LabelyardGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", envvar="LABELYARD_DB", default=None, metavar="PATH",
              help="Database file (default: $LABELYARD_DB or ./labelyard.db).")
@click.version_option(package_name="labelyard")
def main(db: str | None) -> None:
    """Labelyard: a rule-driven workflow router for human labeling work."""


@main.command()
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def init(db: str | None, as_json: bool) -> None:
    """Create the database (or migrate it); running it again is harmless."""
    from .engine import Engine
    from .store import Store, database_path, empty_file_mode

    user = _first_lead()
    taken = empty_file_mode(database_path(db))  # an empty file the user made keeps its mode
    store, applied = Store.init(db)
    if taken is not None and taken & 0o007:
        click.echo(f"warning: {escaped(store.shown_path)}: mode {taken:04o} lets users outside its group open it "
                   f"(kept: the file is yours); `chmod 660 {shell_word(store.shown_path)}` makes it 0660, as `init` "
                   "makes a new one",
                   err=True)
    engine = Engine(store)
    # The first lead of a project is whoever creates it; once it has one, only a lead adds workers.
    leads = store.leads()
    if not leads:
        known = store.worker(user)
        roles = sorted({*json.loads(known["roles"]), "lead"}) if known is not None else ["lead"]
        engine.add_worker(user, roles, None, None, actor=user)
        leads = [user]
    result = {"db": store.shown_path, "migrations_applied": applied, "leads": leads, "lead": user if user in leads else None}
    if as_json:
        _emit_json(result)
    else:
        state = f"applied {', '.join(applied)}" if applied else "already up to date"
        from .render import listed_name, name_list

        who = f"{listed_name(user)} is a lead" if user in leads else f"leads: {name_list(leads)}"
        click.echo(f"{escaped(store.shown_path)}: {state}; {who}")


@main.command()
def schema() -> None:
    """Print the workflow JSON Schema (for editors: yaml-language-server)."""
    from rules.schema import schema_text

    click.echo(schema_text(), nl=False)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print diagnostics as a JSON list.")
@click.option("--strict", is_flag=True, help="Warnings fail too.")
def validate(files: tuple[str, ...], as_json: bool, strict: bool) -> None:
    """Check workflow files; every mistake as file:line:col: message."""
    from rules.diagnostics import Diagnostic, WorkflowInvalid
    from rules.source import read_source

    all_diagnostics = []
    failed = False
    for path in files:
        try:
            text = read_source(path)
        except OSError as exc:  # one unreadable file is one mistake: the others are still checked
            workflow, diagnostics = None, [Diagnostic(path, 1, 1, f"cannot read the file: {exc.strerror}")]
        except WorkflowInvalid as exc:  # not UTF-8: reported like any other mistake
            workflow, diagnostics = None, exc.diagnostics
        else:
            from .plugins import check_workflow_text  # loads plugins, as apply and run would

            workflow, diagnostics = check_workflow_text(text, path)
        all_diagnostics += diagnostics
        if workflow is None or (strict and diagnostics):
            failed = True
        if not as_json:
            for d in diagnostics:
                click.echo(str(d), err=True)
            if workflow is not None and not (strict and diagnostics):
                click.echo(f"{path}: ok ({workflow.name})")
    if as_json:
        _emit_json([d.as_dict() for d in all_diagnostics])
    if failed:
        sys.exit(1)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False))
@db_option
@click.option("--replace", is_flag=True, help="Replace a workflow of another name.")
@click.option("--hold-orphans", is_flag=True,
              help="Hold the open tasks of queues this version drops, for a lead to route on.")
@click.option("--json", "as_json", is_flag=True)
@as_option
def apply(file: str, db: str | None, replace: bool, hold_orphans: bool, as_json: bool, worker: str | None) -> None:
    """Check a workflow and make it the active version (a lead's action: --as, else $LABELYARD_WORKER)."""
    from rules.source import read_source

    from .entry_renames import carried_line

    try:
        text = read_source(file)
    except OSError as exc:
        raise LabelyardError(f"{file}: {exc.strerror}") from None
    engine = _engine(db)
    from rules.diagnostics import WorkflowInvalid

    from .lead import require_lead

    actor = _worker(worker)
    require_lead(engine, actor)  # the project's rules, and holding its tasks, are a lead's to change
    try:
        _refuse_sinks_into_database(text, file, engine.store.path)
        result = engine.apply(text, escaped(file), replace=replace, actor=actor, hold_orphans=hold_orphans)
    except WorkflowInvalid as exc:
        if as_json:  # the mistakes as `validate --json` gives them, and on standard error as ever
            _emit_json({"changed": False, "diagnostics": [d.as_dict() for d in exc.diagnostics]})
        raise
    if as_json:
        _emit_json(result)
        return
    for warning in result["warnings"]:
        click.echo(warning, err=True)
    if result["changed"]:
        click.echo(f"applied {result['workflow']} version {result['version']}")
        for item in result["carried"]:
            click.echo(carried_line(item))
        if result["held_orphans"]:
            click.echo(f"held {result['held_orphans']} open task(s) of dropped queues: labelyard status, then "
                       "labelyard escalate TASK… --to QUEUE")
        for ext, problem in result["held_gold"].items():
            click.echo(f"held gold question {ext}: its answer is no label of this version ({problem}); "
                       "`labelyard gold add` it again with a valid answer", err=True)
        for queue, n in sorted(result["gold_in_dropped_queues"].items()):
            click.echo(f"{n} gold question(s) wait unused in dropped queue `{queue}`: `labelyard gold add` "
                       "their file again with a `queue` of this version", err=True)
        from .render import listed_name

        for d in result["dropped_corrections"]:
            click.echo(f"dropped the correction of {d['external_id']} (id:{d['task']}) offered to "
                       f"{listed_name(d['worker'])}, "
                       f"who no longer works `{d['queue']}` in this version", err=True)
        for queue, n in sorted(result["votes_in_dropped_queues"].items()):
            click.echo(f"warning: {n} open task(s) wait for a review with votes cast in dropped queue `{queue}`: "
                       "a `return` would hold them, since no correction can be offered there", err=True)
    else:
        click.echo(f"{result['workflow']} version {result['version']} is already active (unchanged)")


def _refuse_sinks_into_database(text: str, file: str, db_path: str) -> None:
    """A sink whose path is one of the database's files is a mistake of the workflow, at its ``path:``;
    refused with every other mistake ``validate`` finds in the file, so that one go shows them all."""
    from rules.diagnostics import WorkflowInvalid

    from .plugins import check_workflow_text, database_entry_diagnostics

    clashes = database_entry_diagnostics(text, file, db_path)
    if clashes:
        _, found = check_workflow_text(text, file)
        raise WorkflowInvalid(sorted(set(found + clashes)))


@main.command()
@click.argument("source")
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print counts as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv"]), default=None,
              help="Read SOURCE in this format whatever its name; needed for `-` (standard input).")
def ingest(source: str, db: str | None, as_json: bool, quiet: bool, fmt: str | None) -> None:
    """Ingest tasks from a .jsonl, .json (an array) or .csv file, or `-` for standard input;
    bad rows are quarantined, known ids skipped."""
    import os

    from .ingest import is_stream, read_file, read_stream

    if source == "-" and fmt is None:
        raise LabelyardError("reading standard input (`-`) needs --format jsonl, json or csv")
    engine = _engine(db)
    choices, label_type = engine.workflow.labels.choices, engine.workflow.labels.type  # CSV label cells by type
    stream = source == "-" or is_stream(source)  # a pipe (`<(cmd)`, a fifo) is read once, like `-`
    if source == "-":
        # A copy of the descriptor: the forked reader's multiprocessing start-up closes fd 0.
        rows = read_stream(os.fdopen(os.dup(standard_input().fileno()), "rb"), fmt, choices, label_type=label_type)
        source_name, also = _stream_source(engine, "stdin"), ()
    else:
        from .export import database_file

        what = database_file(source, engine.store.path)
        if what is not None:  # no rows there, and reading it beside the open connection drops SQLite's locks
            raise LabelyardError(f"{source} is {what} ({os.path.realpath(engine.store.path)}), not a file of tasks")
        rows = read_file(source, choices, fmt, label_type=label_type)
        source_name, also = _file_source(engine, source, stream)
    if stream:  # rows read before a pause are committed then, not when the next row comes
        from .engine import INGEST_PAUSE_SECONDS
        from .ingest import with_pauses

        rows = with_pauses(rows, INGEST_PAUSE_SECONDS)
    show_progress = not (as_json or quiet) and sys.stderr.isatty() and not stream  # a pipe cannot be counted first
    from .plugin_calls import stdout_on_stderr

    with stdout_on_stderr():  # what went in is told after: standard output is the command's alone
        if show_progress:
            from .progress import line_progress

            with line_progress(source, "ingest") as advance:
                report = engine.ingest(rows, source_name, progress=advance, fork=True, whole=True, also=also)
        else:
            report = engine.ingest(rows, source_name, fork=True, whole=True, also=also)
    result = {**report.as_dict(), "source": source_name}  # what `rejects --source` takes, a stream's name too
    for line in report.ignored.warnings():  # top-level keys rows with `data` left out: never without a word
        click.echo(line, err=True)
    changed = report.changed_warning()  # rows whose id is stored with other content: kept apart from duplicates
    if changed is not None:
        click.echo(changed, err=True)
    if as_json:
        _emit_json(result)
    else:
        changed_rows = f", changed {report.changed}" if report.changed else ""
        click.echo(f"ingested {report.ingested}, duplicates {report.duplicates}{changed_rows}, rejected {report.rejected}")
        from .render import visible

        for rule, n in sorted(report.routed.items(), key=lambda kv: -kv[1]):
            click.echo(f"  {n:>8}  {visible(rule)}")
        if report.rejected:
            only = f" --source {shell_word(source_name)}" if stream else ""
            click.echo("rejected rows are kept with their reasons: "
                       f"labelyard rejects --db {shell_word(engine.store.shown_path)}{only}", err=True)


def _file_source(engine, path: str, stream: bool) -> tuple[str, tuple[str, ...]]:
    """The source a file's rejects are kept under: its real path (symlinks resolved; bytes of a name
    that is not UTF-8 written out, as the folder source writes them), or for a pipe, this one read of
    it; and the other names whose rejects the read replaces (the absolute path through a link, under
    which an earlier Labelyard kept them)."""
    from .os_text import source_names, stream_name  # not at the top: `ingest` names its result `source_name`

    if stream:  # named as given (`/dev/fd/63`): resolved, a pipe's link is `pipe:[…]`
        return _stream_source(engine, stream_name(path)), ()
    names = source_names(path)
    return names[0], names[1:]


def _stream_source(engine, name: str) -> str:
    """The source of one read of a stream (``name``: ``stdin`` or a pipe's path), which no other
    read replaces the rejects of: ``<stdin 2026-11-28T06:01:02Z>``, then `` #2``, `` #3``… when
    rejects already carry that name (a pipe read in the same second, or under ``LABELYARD_NOW``).
    The name is reserved in the database, so two reads at the same moment never share it."""
    from . import clock

    now = clock.now()
    stamp = clock.iso(now).replace("+00:00", "Z")
    source, n = f"<{name} {stamp}>", 1
    while engine.store.rejects(1, source) or not engine.store.reserve_cursor(f"stream:{source}", None, now):
        n += 1
        source = f"<{name} {stamp} #{n}>"
    return source


@main.command()
@db_option
@click.option("--limit", type=A_COUNT, default=50, show_default=True,
              help="List the newest N; --limit 0 lists them all. When there are more, standard error says how many.")
@click.option("--source", default=None, metavar="FILE",
              help="Only the rows of this input file (even one deleted since), of one read of standard "
                   "input or a pipe (`<stdin 2026-11-28T06:01:02Z>` as listed), or of a plugin source's origin.")
@click.option("--clear", is_flag=True,
              help="Forget every reject of --source, or all of them without it (a lead's action, audited).")
@click.option("--json", "as_json", is_flag=True)
@as_option
@click.pass_context
def rejects(ctx: click.Context, db: str | None, limit: int, source: str | None, clear: bool, as_json: bool,
            worker: str | None) -> None:
    """List quarantined input rows with their reasons; --clear forgets them.

    Ingesting a fixed file again removes the rows that now go in by itself."""
    if clear and ctx.get_parameter_source("limit") is not click.core.ParameterSource.DEFAULT:
        # "the 2 listed" would be a guess at which: the rows of one read of a stream are its only copy
        raise click.UsageError("--clear forgets every reject of --source (or all of them), not the --limit listed; "
                               "give --source FILE to forget one file's")
    engine = _engine(db)
    if source is not None:
        source = _stored_source(engine.store, source)
    if clear:
        from .lead import Lead

        cleared = Lead(engine, _worker(worker)).clear_rejects(source)
        if as_json:
            _emit_json({"cleared": cleared})
        else:
            click.echo(f"cleared {cleared} reject(s)" + (f" of {source}" if source else ""))
        return
    rows = engine.store.iter_rejects(limit, source)  # streamed: a million rejects never sit in memory at once
    listed = 0
    if as_json:
        click.echo("[", nl=False)
        for listed, r in enumerate(rows, 1):
            click.echo(("," if listed > 1 else "") + json_document(iso_times(dict(r))), nl=False)
        click.echo("]")
    else:
        from .render import one_line  # a file name may hold a line break or an escape sequence

        for listed, r in enumerate(rows, 1):
            click.echo(f"{one_line(r['source'])}:{r['line']}: {one_line(r['reason'])}")
    if limit and listed == limit:  # there may be more: counted only then
        more = engine.store.reject_count(source) - listed
        if more > 0:
            click.echo(f"… {more} more; --limit to see them (--limit 0: all)", err=True)


def _stored_source(store, source: str) -> str:
    """The source ``--source`` names: a file's real path, as ingest stores it, whether or not the file
    still exists; else the first name with rejects of: its absolute path through a link (as an earlier
    Labelyard stored it), the name as given (``<stdin …>``, a plugin's origin)."""
    from .os_text import source_names

    names = source_names(source)
    return next((name for name in (*names, escaped(source)) if store.rejects(1, name)), names[0])


@main.group()
def workers() -> None:
    """Register, change and list workers (a lead's action once the project has a lead)."""


def _workers_engine(db: str | None, worker: str | None):
    """The engine, after checking that ``--as`` may add or change workers."""
    from .lead import require_lead_for_workers

    engine = _engine(db)
    require_lead_for_workers(engine, _worker(worker))
    return engine


def _describe_worker(w: dict[str, Any]) -> str:
    from .render import name_list

    cap = "-" if w["capacity"] is None else w["capacity"]
    return f"roles={name_list(w['roles'])} skills={name_list(w['skills'], '-')} capacity={cap}"


@workers.command("add")
@click.argument("name")
@db_option
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeatable): annotator, senior, expert, lead…")
@click.option("--skill", "skills", multiple=True, help="A skill (repeatable).")
@click.option("--capacity", type=int, default=None, help="Most active assignments at once.")
@as_option
def workers_add(name: str, db: str | None, roles: tuple[str, ...], skills: tuple[str, ...], capacity: int | None,
                worker: str | None) -> None:
    """Add a worker. Adding one again replaces the roles; skills and capacity not given keep their values."""
    engine = _workers_engine(db, worker)
    done = engine.add_worker(name, list(roles), list(skills) or None, capacity, actor=_worker(worker))
    from .render import listed_name

    shown = listed_name(name)
    click.echo(f"{shown} unchanged; nothing changed" if done == "unchanged" else f"{done} {shown}")
    _warn_unused(engine, roles, skills)


def _warn_unused(engine: Any, roles: tuple[str, ...], skills: tuple[str, ...]) -> None:
    """Name on standard error each role and skill given that no queue uses (a typo would only show
    later, as claims that find no work)."""
    for warning in engine.worker_warnings(roles, skills):
        click.echo(f"warning: {warning}", err=True)


@workers.command("set")
@click.argument("name")
@db_option
@click.option("--role", "roles", multiple=True, help="Replace the roles (repeatable).")
@click.option("--skill", "skills", multiple=True, help="Replace the skills (repeatable).")
@click.option("--no-skills", is_flag=True, help="Remove every skill.")
@click.option("--capacity", type=int, default=None, help="Most active assignments at once.")
@click.option("--no-capacity", is_flag=True, help="No limit on active assignments.")
@click.option("--flag/--unflag", "flagged", default=None,
              help="Flag the worker (their votes show as votes.any_flagged), or clear the flag.")
@as_option
def workers_set(name: str, db: str | None, roles: tuple[str, ...], skills: tuple[str, ...], no_skills: bool,
                capacity: int | None, no_capacity: bool, flagged: bool | None, worker: str | None) -> None:
    """Change a worker's roles, skills, capacity or flag; what is not given keeps its value."""
    if skills and no_skills:
        raise click.UsageError("give --skill or --no-skills, not both")
    if capacity is not None and no_capacity:
        raise click.UsageError("give --capacity or --no-capacity, not both")
    if not (roles or skills or no_skills or capacity is not None or no_capacity or flagged is not None):
        raise click.UsageError("nothing to change: give --role, --skill, --no-skills, --capacity, --no-capacity, "
                               "--flag or --unflag")
    engine = _workers_engine(db, worker)
    was = next((w for w in engine.workers() if w["id"] == name), None)
    dropped = engine.update_worker(name, roles=list(roles) or None,
                                   skills=[] if no_skills else (list(skills) or None),
                                   capacity=capacity, no_capacity=no_capacity, flagged=flagged,
                                   actor=_worker(worker))
    changed = next(w for w in engine.workers() if w["id"] == name)
    from .render import listed_name

    if flagged is not None and was is not None and was["flagged"] == flagged:
        click.echo(f"{listed_name(name)} is {'already' if flagged else 'not'} flagged; the flag is unchanged")
    click.echo(f"{listed_name(name)}: {_describe_worker(changed)}{_worker_state(changed)}")
    for d in dropped:
        click.echo(f"dropped the correction of {d['external_id']} (id:{d['task']}) offered to {listed_name(name)}, "
                   f"who no longer works `{d['queue']}`")
    _warn_unused(engine, roles, skills)


@workers.command("list")
@db_option
@click.option("--json", "as_json", is_flag=True)
def workers_list(db: str | None, as_json: bool) -> None:
    """List workers with roles, skills, capacity and load."""
    from .render import listed_name

    rows = _engine(db).workers()
    if as_json:
        _emit_json(rows)
        return
    for w in rows:
        click.echo(f"{listed_name(w['id']):<16} {_describe_worker(w)} active={w['active']}{_worker_state(w)}")


def _worker_state(w: dict[str, Any]) -> str:
    """`` paused``, `` flagged`` (an ``on_worker`` rule or a lead flagged them), both, or nothing."""
    return ("" if not w["paused"] else " paused") + ("" if not w["flagged"] else " flagged")


@workers.command("pause")
@click.argument("name")
@db_option
@click.option("--reason", default=None)
@as_option
def workers_pause(name: str, db: str | None, reason: str | None, worker: str | None) -> None:
    """Pause a worker: no new work."""
    from .render import listed_name, one_line

    if _workers_engine(db, worker).set_worker_paused(name, True, reason, actor=_worker(worker)):
        click.echo(f"paused {listed_name(name)}")
    else:
        click.echo(f"{listed_name(name)} is already paused" + (f" ({one_line(reason)})" if reason else "")
                   + "; nothing changed")


@workers.command("resume")
@click.argument("name")
@db_option
@as_option
def workers_resume(name: str, db: str | None, worker: str | None) -> None:
    """Resume a paused worker."""
    from .render import listed_name

    if _workers_engine(db, worker).set_worker_paused(name, False, actor=_worker(worker)):
        click.echo(f"resumed {listed_name(name)}")
    else:
        click.echo(f"{listed_name(name)} is not paused; nothing changed")


@main.command()
@db_option
@as_option
@click.option("--queue", default=None, help="Only this queue.")
@click.option("--resume", is_flag=True,
              help="Show again the oldest slot you still hold (a claim whose output was lost) instead of taking one.")
@click.option("--json", "as_json", is_flag=True)
def claim(db: str | None, worker: str | None, queue: str | None, resume: bool, as_json: bool) -> None:
    """Take the next slot of work (exit 3 when there is none)."""
    if resume:
        view = _resumed(_engine(db), _worker(worker), queue)
    else:
        view = _engine(db).claim(_worker(worker), queue)
    try:
        if as_json:
            _emit_json(view)
        else:
            from .render import claim_lines

            for line in claim_lines(view):
                click.echo(line)
        if sys.stdout is not None:
            sys.stdout.flush()
    except OSError as exc:
        if exc.filename != STANDARD_OUTPUT:
            raise
        raise LabelyardError(f"{STANDARD_OUTPUT}: {exc.strerror}; the slot is taken all the same: "
                             "`labelyard claim --resume` shows it again") from None


def _resumed(engine: Any, worker: str, queue: str | None) -> dict:
    """The worker's oldest active slot as ``claim`` shows it; exit 3 when they hold none."""
    from .errors import NothingToDo
    from .work import resume

    engine._require_worker(worker)
    if queue is not None and queue not in engine.workflow.queues:
        raise LabelyardError(f"no queue `{queue}` in workflow `{engine.workflow.name}`")
    view = resume(engine, worker, queue)
    if view is None:
        raise NothingToDo(f"{worker} holds no active slot" + (f" in `{queue}`" if queue else ""))
    return view


@main.command()
@click.argument("assignment", type=AN_ID)
@db_option
@as_option
@click.option("--label", default=None, help="The label as text (choice and text labels; the others are JSON: --value).")
@click.option("--value", default=None, help="A structured label as JSON (several choices, spans, boxes, numbers).")
@click.option("--approve", is_flag=True, help="Approve (review slots); with --label or --value, a correction.")
@click.option("--reject", is_flag=True, help="Reject (review slots); say why with --comment.")
@click.option("--comment", default=None)
@click.option("--json", "as_json", is_flag=True)
def submit(assignment: int, db: str | None, worker: str | None, label: str | None, value: str | None,
           approve: bool, reject: bool, comment: str | None, as_json: bool) -> None:
    """Submit a label or a verdict for an assignment."""
    verdict = _verdict(label, value, approve, reject)
    engine = _engine(db)
    if label is not None and engine.load_workflow():
        _refuse_text_for_json(engine.workflow.labels, label)
    parsed: Any = label
    if value is not None:
        from .ingest import RowError, load_json_line  # the checks of an input row: long numbers, nesting

        try:
            parsed = load_json_line(value.encode("utf-8", "surrogatepass"))
        except RowError as exc:
            raise LabelyardError(f"--value: {exc}") from None
        _refuse_number_past_float(engine, value, parsed)
    from .plugin_calls import stdout_on_stderr

    with stdout_on_stderr():  # a rule function's subprocess writes to stderr, not into the result
        result = engine.submit(assignment, _worker(worker), label=parsed, verdict=verdict, comment=comment)
    if as_json:
        _emit_json(result)
        return
    line = f"submitted assignment {assignment}"
    decision = result.get("decision")
    if decision:
        rule = f"rule `{decision['rule']}`" if decision.get("rule") else "no rule matched"
        line += f"; {rule} → {decision['action']}"
        if decision["action"] in ("hold", "reject"):  # the rule's target was not reached: say why
            line += f" ({decision['reason']})" if decision.get("reason") else ""
        elif decision.get("target"):
            line += f" {decision['target']}"
    click.echo(line)


_JSON_LABEL_EXAMPLES: dict[str, Any] = {
    "number": 4.5,
    "multi_choice": ["a", "b"],
    "spans": [{"start": 0, "end": 12}],
    "boxes": [{"x": 10, "y": 20, "width": 40, "height": 80}],
}
"""For the label types that are no text, a label as ``--value`` takes it (JSON)."""


def _refuse_number_past_float(engine: Any, text: str, parsed: Any) -> None:
    """``--value 1e400`` for a number label: the number written, too large, as an integer of 310
    digits is (JSON reads ``1e400`` as infinity, which the label's check would name ``inf``)."""
    import math

    from rules.label_text import TOO_LARGE

    from .errors import AssignmentError

    written = text.strip()
    if (isinstance(parsed, float) and math.isinf(parsed) and written.lstrip("-") != "Infinity"
            and engine.load_workflow() and engine.workflow.labels.type == "number"):
        shown = written if len(written) <= 40 else written[:37] + "..."
        raise AssignmentError(f"label {shown} {TOO_LARGE}")


def _refuse_text_for_json(labels: Any, text: str) -> None:
    """``--label`` gives text; a number, multi_choice, spans or boxes label is JSON, given with ``--value``.

    The refusal says how: the text itself when it is such a label as JSON (``--value 5``), a
    choice as a list of one, else an example of the type.
    """
    import shlex

    from rules.workflow import finite_number

    from .errors import AssignmentError

    example = _JSON_LABEL_EXAMPLES.get(labels.type)
    problem = labels.problem(text)
    if example is None or problem is None:
        return
    try:
        as_json = json.loads(text)
    except ValueError:
        as_json = None
    if as_json is not None and (labels.problem(as_json) is None or labels.type == "number"
                                and finite_number(as_json)):  # a number out of range: the text meant it
        example = as_json
    elif labels.type == "number":
        example = next((n for n in (labels.min, labels.max) if n is not None), example)
    elif labels.type == "multi_choice" and labels.problem([text]) is None:
        example = [text]
    elif labels.type == "multi_choice" and labels.choices:
        example = list(labels.choices[:2])
    shown = json.dumps(example, ensure_ascii=False, separators=(", ", ": "))
    raise AssignmentError(f"{problem} (--label gives text); {labels.type} labels are given as JSON with "
                          f"--value {shlex.quote(shown)}")


def _verdict(label: str | None, value: str | None, approve: bool, reject: bool) -> str | None:
    """The verdict ``submit`` was given; options that contradict each other are a usage error (exit 2)."""
    if label is not None and value is not None:
        raise click.UsageError("give either --label or --value")
    if approve and reject:
        raise click.UsageError("give either --approve or --reject")
    if reject and (label is not None or value is not None):
        raise click.UsageError("--reject takes no --label or --value (a rejection has no label; say why with "
                               "--comment); to approve with a corrected label, give --approve or the label alone")
    return "approve" if approve else "reject" if reject else None


@main.command()
@db_option
@click.option("--json", "as_json", is_flag=True)
def status(db: str | None, as_json: bool) -> None:
    """Task counts and queues at a glance."""
    data = _engine(db).status()
    if as_json:
        _emit_json(data)
        return
    from .render import print_status

    print_status(data)
    if data.get("gold"):
        idle = ", ".join(f"{n} {state}" for state, n in (("held", data.get("gold_held")),
                                                         ("retired", data.get("gold_retired"))) if n)
        idle = f"; {idle}: labelyard gold list" if idle else ""
        click.echo(f"gold questions: {data['gold']} (not counted in tasks or queues{idle})")


@main.command()
@click.argument("task")
@db_option
@as_option
@click.option("--json", "as_json", is_flag=True)
def show(task: str, db: str | None, worker: str | None, as_json: bool) -> None:
    """Everything about one task (by id or external id).

    A gold question is shown whole, with its answer and how each answer to it scored, to a lead;
    to anyone else as their claim showed it."""
    data = _engine(db).show(task, _worker(worker))
    if as_json:
        _emit_json({key: ([iso_times(row) for row in value] if isinstance(value, list) else
                          iso_times(value) if key == "task" else value) for key, value in data.items()})
        return
    from .render import print_task

    print_task(data)


@main.command()
@db_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default=None,
              help="jsonl or csv (default: what -o's name ends with, .csv or .jsonl/.ndjson/.json; else jsonl).")
@click.option("-o", "--output", default="-", help="Output file (default: standard output).")
@click.option("--spreadsheet-safe", "safe", is_flag=True,
              help="CSV for spreadsheets: a ' before every cell that starts with = + - @, a tab or a CR, so none "
                   "runs as a formula (the file is then for reading, not for ingesting again).")
def export(db: str | None, fmt: str, output: str, safe: bool) -> None:
    """Export final labels (gold tasks left out)."""
    from .export import export_format, write_export

    fmt = export_format(fmt, output)
    if safe and fmt != "csv":
        raise click.UsageError("--spreadsheet-safe is for --format csv")
    engine = _engine(db)
    not_finite: list[tuple[str, list[str]]] = []
    count = write_export(engine.export_rows(), fmt, output, db_path=engine.store.path, safe=safe,
                         not_finite=not_finite)
    if not_finite:  # NaN or Infinity an early Labelyard stored: written as null, never without a word
        from .finite_json import warning

        click.echo(warning(not_finite, csv=fmt == "csv"), err=True)
    if output != "-":
        click.echo(f"exported {count} tasks to {escaped(output)}", err=True)


@main.command()
@click.argument("dest", type=click.Path())
@db_option
@click.option("--force", is_flag=True, help="Replace DEST if it exists (a symlink's target, as export -o does).")
@click.option("--json", "as_json", is_flag=True)
def backup(dest: str, db: str | None, force: bool, as_json: bool) -> None:
    """Copy the database to DEST (a file, or a folder for a dated file) while others keep working.

    A DEST ending with / is a folder: made if missing (not its parents). A database an older
    Labelyard made is copied as it is: back it up before `labelyard init` migrates it.
    """
    from . import clock
    from .export import refuse_database_file
    from .store import Store, database_path

    if not dest.strip():
        raise LabelyardError("backup needs a file or a folder to write to")
    # not over the database or a file beside it: a copy written over its -wal is deleted when SQLite closes
    # the database, one over its .lock swaps the file running writers queue on
    refuse_database_file(dest, database_path(db), "back it up")
    # A path ending with a slash names a folder: a missing one is made (its parent must exist), so
    # `backup backups/` from cron works on the first night too.
    make_folder = dest.endswith(os.sep) and not os.path.isdir(dest)
    if make_folder and os.path.lexists(dest.rstrip(os.sep)):
        raise LabelyardError(f"{dest}: exists and is not a folder")
    given = dest
    numbered = make_folder or os.path.isdir(dest)  # a dated name, -2, -3… if taken (never replaced)
    if numbered:
        dest = os.path.join(dest, f"labelyard-{clock.file_stamp(clock.now())}.db")
    elif os.path.exists(dest) and not force:
        raise LabelyardError(f"{dest} exists: pass --force to replace it")
    # A link is followed, as `export -o` follows one: the file it names gets the copy, so a
    # `backups/latest.db -> /mnt/offsite/lab.db` keeps pointing at an updated copy.
    target = os.path.realpath(dest) if not numbered and os.path.islink(dest) else dest
    folder = os.path.dirname(os.path.abspath(target))
    # the folder's parent, when the folder is to be made
    named, checked = (given, os.path.dirname(folder)) if make_folder else (dest, folder)
    if not os.path.isdir(checked):
        raise LabelyardError(f"{named}: folder {checked} does not exist")
    if not os.access(checked, os.W_OK):
        raise LabelyardError(f"{named}: folder {checked} is not writable")
    store = Store.open_to_copy(db)  # an older schema too: the copy to keep before `init` migrates it
    if make_folder:  # only once the database opened: a failed backup leaves no empty folder behind
        try:
            os.mkdir(folder)
        except FileExistsError:  # made meanwhile (another backup into the same new folder)
            pass
        except OSError as exc:
            store.close()
            raise LabelyardError(f"{given}: cannot make folder {folder}: {exc.strerror or exc}") from None
    try:
        final, size = store.backup_to(target, replace=force and not numbered, numbered=numbered)
    finally:
        store.close()
    if as_json:
        _emit_json({"backup": final if target == dest else dest, "bytes": size})
    else:
        shown = final if target == dest else f"{dest} -> {final}"
        click.echo(f"backed up {escaped(store.shown_path)} to {escaped(shown)} ({size:,} bytes)")


@main.command()
@click.option("--dir", "folder", default="labelyard-demo", show_default=True,
              help="Folder for the demo project: a new or empty one, or one an earlier demo made (rebuilt).")
@click.option("--tasks", default=300, show_default=True, type=WholeNumber(1, 1_000_000),
              help="How many tasks to generate (1 to 1,000,000).")
@click.option("--steps", default=350, show_default=True, type=WholeNumber(0, 10_000_000),
              help="How many claims the simulated annotators make at most (0 to 10,000,000); they "
                   "stop sooner when none of them can get work.")
@click.option("--seed", default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def demo(folder: str, tasks: int, steps: int, seed: int, as_json: bool) -> None:
    """Build a demo project, route generated tasks, simulate annotators, show the status."""
    from .demo import run_demo

    result = run_demo(folder, tasks=tasks, steps=steps, seed=seed, echo=None if as_json else click.echo)
    if as_json:
        _emit_json(result)
    elif sys.stdout.isatty() and sys.stdin.isatty():  # on a terminal, the demo opens the TUI
        from .cli_tui import open_tui
        from .engine import Engine

        user = _worker(None)
        engine = Engine.open(result["db"])
        if engine.store.worker(user) is None:
            engine.add_worker(user, ["lead"], [], None, actor="demo")  # so the demo's lead actions work
        engine.close()
        open_tui(result["db"], user)


def _register_extra_commands() -> None:
    """Commands kept in their own modules (each exposes ``register(main)``)."""
    from . import cli_lead, cli_plugins, cli_rules, cli_tui

    for module in (cli_rules, cli_lead, cli_plugins, cli_tui):
        module.register(main)


_register_extra_commands()
check_text_parameters(main)


if __name__ == "__main__":  # pragma: no cover
    main()
