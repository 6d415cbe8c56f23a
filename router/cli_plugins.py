"""CLI commands about plugins: ``plugins``, ``run``, and ``ingest PLUGIN:ARG`` (registered by ``router.cli``).

Importing this module is cheap (click only): the plugin manager is built by
the commands that need it, never for ``claim`` or ``submit``. Commands that
plugins add (``register_commands``) are loaded only when the command name is
not a built-in one, or for ``labelyard --help``.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import click

EXIT_PLUGIN_FAILED = 4
EXIT_RUN_STUCK = 5  # another run has held the run lock for over STUCK_AFTER_S: nothing done
STUCK_AFTER_S = 3600.0
SOURCE_SPEC = re.compile(r"([A-Za-z][A-Za-z0-9_.-]+):(.*)\Z", re.S)

PLUGINS_DIR = {"default": None, "metavar": "DIR", "type": click.Path(file_okay=False),
               "help": "Also load every .py file in DIR as a plugin (default: $LABELYARD_PLUGINS_DIR)."}
plugins_dir_option = click.option("--plugins-dir", "plugins_dir", **PLUGINS_DIR)


def split_source(source: str) -> tuple[str | None, str]:
    """``labelstudio:export.json`` -> ``("labelstudio", "export.json")``; a plain path -> ``(None, path)``.

    An existing file wins over the ``name:`` reading, and a one-letter prefix
    (``C:\\data.jsonl``) is a drive, not a plugin.
    """
    match = SOURCE_SPEC.match(source)
    if match is None or os.path.exists(source):
        return None, source
    return match.group(1), match.group(2)


def register(main: click.Group) -> None:
    """Add this module's commands to the ``labelyard`` group."""
    from .cli import _emit_json, db_option

    @main.command("plugins")
    @db_option
    @plugins_dir_option
    @click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
    def plugins_command(db: str | None, plugins_dir: str | None, as_json: bool) -> None:
        """List loaded plugins: where each came from, its hooks, what it registered, its error.

        With a database, the workflow's `plugins:` modules are loaded too;
        one named (--db, $LABELYARD_DB) that cannot be opened is an error.
        Exits 1 when a plugin failed to load.
        """
        from .plugins import load_plugins
        from .render import continued

        loaded = load_plugins(_workflow_modules(db), plugins_dir)
        loaded.add_commands(click.Group())  # a `register_commands` that raises is an error to list too
        if as_json:
            _emit_json(loaded.as_list())
        else:
            width = max((len(i.name) for i in loaded.infos), default=8)
            for info in loaded.infos:
                what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in info.registered.items())
                hooks = ", ".join(info.hooks) or "-"
                version = f"  version {info.version}" if info.version else ""
                click.echo(f"{info.name:<{width}}  {info.origin:<12} {info.location}{version}")
                click.echo(f"{'':<{width}}  hooks: {hooks}" + (f"  ({what})" if what else ""))
                if info.error:
                    click.echo(f"{'':<{width}}  ERROR: " + continued(info.error, " " * (width + 9)))
            if not loaded.infos:
                click.echo("no plugins loaded", err=True)
        for info in loaded.errors:
            click.echo(f"labelyard: plugin {info.name}: {continued(info.error or 'failed')}", err=True)
        if loaded.errors:
            sys.exit(1)

    @main.command("run")
    @db_option
    @plugins_dir_option
    @click.option("--quiet", "-q", is_flag=True, help="Print nothing but failures.")
    @click.option("--json", "as_json", is_flag=True, help="Print what the run did as JSON.")
    def run_command(db: str | None, plugins_dir: str | None, quiet: bool, as_json: bool) -> None:
        """The cron job: sources, automatic reviewers, timers, sinks, notifications, in that order.

        A run that finds another one in progress exits 0 and does nothing;
        when that one has been running for over an hour (stuck in a plugin
        call?), it says so on stderr, even with --quiet, and exits 5.
        Exit 4 when a plugin failed (one line per failure on stderr); what
        the others did is kept. See docs/cron.md.
        """
        from . import clock
        from .plugin_calls import command_stdout, stdout_on_stderr
        from .runner import Runner, base_dir_of, open_for_run, run_lock
        from .store import Store, database_path

        path = database_path(db)
        Store.open(path).close()  # a missing or old database is reported before anything else
        with run_lock(path) as holder:
            if holder is not None:
                where, started = _where_running(path, holder)
                message = f"another labelyard run is in progress ({holder}{where}); nothing done"
                stuck = started is not None and clock.now() - started > STUCK_AFTER_S
                if stuck:  # said even under --quiet, and not exit 0: cron mails it
                    message += stuck_hint(holder, clock.now() - started)
                if as_json:
                    _emit_json({"ok": not stuck, "skipped": message, **({"stuck": True} if stuck else {})})
                elif not quiet and not stuck:
                    click.echo(message)
                if stuck:
                    click.echo(f"labelyard run: {message}", err=True)
                    sys.exit(EXIT_RUN_STUCK)
                return
            engine, plugins = open_for_run(path, plugins_dir)
            echo = None if (quiet or as_json) else click.echo
            # What the run does is told after it (--json, --quiet), or as it goes on standard output kept for
            # it: either way a subprocess a rule function starts writes to standard error (plugin_calls)
            with stdout_on_stderr() if echo is None else command_stdout():
                report = Runner(engine, plugins, base_dir_of(engine.store), echo=echo).run()
            engine.close()
        if as_json:
            _emit_json(report.as_dict())
        elif not quiet:
            state = "ok" if report.ok else f"{len(report.failures)} failure(s)"
            click.echo(f"run {report.run_id}: {state}")
        from .render import continued, visible

        for failure in report.failures:  # a plugin's own words, every line of them
            click.echo(f"labelyard run: {visible(continued(failure.line()))}", err=True)
        if not report.ok:
            sys.exit(EXIT_PLUGIN_FAILED)

    _wrap_ingest(main, db_option, _emit_json)
    _lazy_plugin_commands(main)


def _where_running(path: str, holder: str) -> tuple[str, float | None]:
    """``(", at source `scanner` since …", started)``: where the run in progress is and when it
    started, as its record says (``("", None)`` when it says nothing, is another process's — a
    run killed earlier — or cannot be read)."""
    from .errors import LabelyardError
    from .runner import in_progress_text
    from .store import Store, loads

    try:
        store = Store.open(path)
    except LabelyardError:
        return "", None
    try:
        row = store.last_plugin_run()
        if row is None or row["finished_at"] is not None or holder != f"pid {row['pid']}":
            return "", None
        return in_progress_text(loads(row["summary"])), row["started_at"]
    finally:
        store.close()


def stuck_hint(holder: str, seconds: float) -> str:
    """What a run says of one that has held the run lock past :data:`STUCK_AFTER_S`."""
    from .queries import duration

    return (f"; it has been running for {duration(seconds)}, over the hour a run may take: a plugin call that "
            f"never returns (a receiver without a timeout) keeps every later run out. See which with "
            f"LABELYARD_TRACE_PLUGINS=1, stop {holder}, and see docs/cron.md")


def _workflow_modules(db: str | None) -> list[str]:
    """The active workflow's ``plugins:`` list, when there is a database with one. A database named
    (``--db``, ``LABELYARD_DB``) that cannot be opened is the error ``Store.open`` raises, as for
    ``run``: a mistyped path must not look like a cron environment where every plugin loads. Only
    the default ``./labelyard.db``, when there is none, means no workflow."""
    from .store import Store, database_path, loads

    path = database_path(db)
    if db is None and not os.path.exists(path):
        return []
    store = Store.open(path)
    try:
        row = store.active_workflow()
        return list(loads(row["spec"]).get("plugins") or []) if row else []
    finally:
        store.close()


def _wrap_ingest(main: click.Group, db_option: Any, emit_json: Any) -> None:
    """Let ``ingest`` take ``PLUGIN:ARG``; a plain file still goes the direct, fast way.

    The command keeps every option of the plain ``ingest`` (it reuses its
    parameters and calls its own callback for a file) and adds ``--plugins-dir``.
    """
    plain = main.commands.get("ingest")
    if plain is None or plain.callback is None:
        return

    @db_option
    def through_plugin(source: str, db: str | None, as_json: bool, quiet: bool, plugins_dir: str | None) -> None:
        plugin, arg = split_source(source)
        from .errors import LabelyardError
        from .ingest import IgnoredKeys
        from .plugin_calls import stdout_on_stderr
        from .plugins import describe_error
        from .render import continued
        from .runner import checked_part, ingest_parts, make_run, open_for_run, prior_votes_said

        engine, plugins = open_for_run(db, plugins_dir)
        found = plugins.get("sources", plugin)
        if found is None:
            known = ", ".join(sorted(plugins.registry["sources"])) or "none"
            raise LabelyardError(f"no source plugin `{plugin}` (sources: {known}; see `labelyard plugins`)")
        run = make_run(engine, {"plugin": plugin, "path": arg}, f"{plugin}:{arg}", None, os.getcwd())
        run.one_shot = True  # no later run reads on from a cursor: a last line is read as it is
        origins: list[str] = []  # what `rejects --source` takes: each origin a part came from, in order

        def parts() -> Any:
            for part in found.func(run):
                part = checked_part(part)  # a dict, say, is told as such, not as a missing `origin`
                if part.origin not in origins:
                    origins.append(part.origin)
                yield part

        result: dict[str, Any] = {}
        ignored = IgnoredKeys()
        failed = None
        try:
            with stdout_on_stderr():  # what went in is told after: standard output is the command's alone
                ingest_parts(engine, parts(), counts=result, ignored=ignored)
        except Exception as exc:  # noqa: BLE001 - the plugin's failure, told with what went in before it
            failed = f"source `{plugin}` failed: {describe_error(exc)}"
            if not any(result.get(k) for k in ("ingested", "duplicates", "changed", "rejected", "prior_votes")):
                raise LabelyardError(continued(failed)) from None
        result["sources"] = origins
        for line in ignored.warnings():
            click.echo(line, err=True)
        if result.get("changed"):  # the plugin's line numbers are its own: counted, not listed
            click.echo(f"warning: {result['changed']} row(s) give an id already stored with other content: the "
                       "stored tasks were kept, as ingest never changes a task; to add such a row as a task of its "
                       "own, give it a new id", err=True)
        if as_json:
            emit_json({**result, **({"failed": failed} if failed else {})})
        else:
            changed = f", changed {result['changed']}" if result.get("changed") else ""
            click.echo(f"ingested {result['ingested']}, duplicates {result['duplicates']}{changed}, "
                       f"rejected {result['rejected']}" + prior_votes_said(result))
            for rule, n in sorted(result["routed"].items(), key=lambda kv: -kv[1]):
                click.echo(f"  {n:>8}  {rule}")
            if result["rejected"]:
                from .os_text import shell_word

                only = f" --source {shell_word(origins[0])}" if len(origins) == 1 else ""
                click.echo("rejected rows are kept with their reasons: "
                           f"labelyard rejects --db {shell_word(engine.store.shown_path)}{only}", err=True)
        if failed:  # the parts before the failure went in and stay: said, then exit 4 as `run` does
            click.echo(f"labelyard: {continued(failed)}\n    (the rows it gave before that went in)"
                       if "\n" in failed else f"labelyard: {failed}; the rows it gave before that went in", err=True)
            sys.exit(4)

    def callback(**kwargs: Any) -> Any:
        plugins_dir = kwargs.pop("plugins_dir", None)
        if split_source(kwargs["source"])[0] is None:
            return plain.callback(**kwargs)
        if kwargs.get("fmt"):
            from .errors import LabelyardError

            raise LabelyardError("--format is for files and standard input; a source plugin reads its own format")
        return through_plugin(source=kwargs["source"], db=kwargs.get("db"), as_json=bool(kwargs.get("as_json")),
                              quiet=bool(kwargs.get("quiet")), plugins_dir=plugins_dir)

    plugins_dir_param = click.Option(["--plugins-dir", "plugins_dir"], **PLUGINS_DIR)
    main.add_command(click.Command(
        "ingest", callback=callback, params=[*plain.params, plugins_dir_param], short_help=None,
        help="Ingest tasks from a .jsonl, .json (an array) or .csv file, `-` (standard input, with --format), "
             "or through a source plugin: `labelstudio:export.json`, "
             "`folder:inbox/`, `csv:data/*.csv`. Bad rows are quarantined, known ids skipped.",
    ))


def _lazy_plugin_commands(main: click.Group) -> None:
    """Plugin commands, loaded on first need: an unknown command name, or the full list for --help."""
    builtin_get, builtin_list = main.get_command, main.list_commands
    state: dict[str, Any] = {"loaded": False, "plugins": None}

    def load() -> None:
        if state["loaded"]:
            return
        state["loaded"] = True
        from .plugins import load_plugins

        state["plugins"] = load_plugins()
        for plugin, name, earlier in state["plugins"].add_commands(main):  # a plugin adds commands, never replaces one
            kept = "the built-in" if earlier is None else f"plugin {earlier}'s"
            click.echo(f"labelyard: plugin {plugin} tried to replace the `{name}` command; kept {kept}", err=True)

    def get_command(ctx: click.Context, name: str) -> click.Command | None:
        command = builtin_get(ctx, name)
        if command is None and not state["loaded"]:
            load()
            command = builtin_get(ctx, name)
            if command is None:  # the command may be a broken plugin's: say why each one failed
                from .render import continued

                for info in state["plugins"].errors:
                    click.echo(f"labelyard: plugin {info.name}: {continued(info.error or 'failed')}", err=True)
        return command

    def list_commands(ctx: click.Context) -> list[str]:
        load()
        return builtin_list(ctx)

    main.get_command = get_command  # type: ignore[method-assign]
    main.list_commands = list_commands  # type: ignore[method-assign]
