"""Calling plugin code: what it prints goes to standard error, and it cannot end the command.

Standard output belongs to the command (``labelyard run --json`` is one JSON
document, ``--quiet`` prints nothing but failures), so while plugin code runs
— imported, registering, or called as a source, sink, reviewer or notifier —
both ``sys.stdout`` and file descriptor 1 (a subprocess the plugin starts
inherits it) are pointed at standard error.

Rule functions (``register_functions``) run once per task routed, so they
get the cheap part of it (:func:`printing_to_stderr`): ``print()`` goes to
standard error. Moving file descriptor 1 around each call too costs about
1.7 µs a call (measured: +10% of the CPU time of an ingest whose workflow
calls a function twice per task), so the commands that route in bulk or for
a machine — ``run`` with ``--json`` or ``--quiet``, ``ingest``, ``tick``,
``submit`` — do their work inside :func:`stdout_on_stderr` instead, once,
and print what they did after it; those that print as they go — a plain
``run``, the bulk lead commands (``reassign``, ``escalate``, ``hold``,
``unhold``, ``release``, ``priority``) — do it inside :func:`command_stdout`,
once, which moves file descriptor 1 the same way but keeps ``sys.stdout`` on
the command's output. Either way a subprocess a rule function starts writes
to standard error, never into the command's output.

A plugin that calls ``sys.exit()`` (or raises ``SystemExit``,
``GeneratorExit`` or another ``BaseException`` that is not an ``Exception``)
has failed like one that raised ``ValueError``: it becomes a
:class:`PluginExit`, which every handler of plugin failures catches, and the
command goes on with the other plugins. ``KeyboardInterrupt`` is the user's:
it still stops the command. A call over its time limit in ``labelyard run`` is stopped
(:mod:`router.plugin_time`) and fails as :class:`~router.plugin_time.PluginTimeout`.

The working folder is Labelyard's too: a plugin that calls ``os.chdir()``
finds it put back when its call returns (or between two parts a source
yields), so the paths the command was given (``--db lab.db``, ``ingest
jsonl:inbox/a.jsonl``) still name the same files.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .plugin_time import PluginTimedOut, call_limit


class PluginExit(Exception):
    """Plugin code raised ``raised``, a ``BaseException`` that is neither an ``Exception`` nor
    ``KeyboardInterrupt`` (``sys.exit()`` raises ``SystemExit``): a failure of that plugin."""

    def __init__(self, raised: BaseException):
        super().__init__(exit_text(raised))
        self.raised = raised


def exit_text(raised: BaseException) -> str:
    """``SystemExit: exit code 3``, ``SystemExit: bye``, ``GeneratorExit``: what a plugin's exit says."""
    name = type(raised).__name__
    if isinstance(raised, SystemExit):
        code = raised.code
        if code is None:
            return f"{name}: the plugin called sys.exit()"
        return f"{name}: exit code {code}" if isinstance(code, int) else f"{name}: {code}"
    try:
        message = str(raised)
    except Exception:  # noqa: BLE001 - a broken exception: its name will do
        message = ""
    return f"{name}: {message}" if message else name


@contextlib.contextmanager
def plugin_code() -> Iterator[None]:
    """Run plugin code inside: its prints go to standard error, and an exit is a :class:`PluginExit`."""
    with stdout_on_stderr(), _same_folder():
        try:
            with call_limit():
                yield
        except (Exception, KeyboardInterrupt, PluginTimedOut):  # a time-out: the call whose timer is set tells it
            raise
        except BaseException as exc:  # noqa: BLE001 - sys.exit() in a plugin fails the plugin, not the run
            raise PluginExit(exc) from exc


@contextlib.contextmanager
def _same_folder() -> Iterator[None]:
    """The working folder put back after plugin code moved it (``os.chdir(run.path("work"))``)."""
    try:
        before = os.getcwd()
    except OSError:  # the folder was removed under us: nothing to put back
        before = None
    try:
        yield
    finally:
        if before is not None:
            try:
                if os.getcwd() != before:
                    os.chdir(before)
            except OSError:  # the plugin removed the folder it left: go back all the same
                try:
                    os.chdir(before)
                except OSError:
                    pass


@contextlib.contextmanager
def stdout_on_stderr() -> Iterator[None]:
    """``sys.stdout`` and file descriptor 1 on standard error while inside (put back after): around
    plugin code, and around a whole command's work that prints its own output after it."""
    saved = None
    _flush(sys.stdout)  # what the command printed so far goes where it was meant to
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptor 1 or 2 (closed by the caller): Python's prints are moved anyway
        if saved is not None:
            os.close(saved)
            saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _flush(sys.stderr)
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def command_stdout() -> Iterator[None]:
    """File descriptor 1 on standard error while inside, as :func:`stdout_on_stderr` has it, but
    ``sys.stdout`` a stream of its own on the command's standard output (put back after): around
    the work of a command that prints as it goes while rules run, once per command. What the
    command prints (``print``, ``click.echo``) goes where it always went; what a subprocess writes
    to file descriptor 1 (``os.system`` in a rule function) goes to standard error."""
    stream = sys.stdout
    _flush(stream)
    try:
        ours = stream is not None and stream.fileno() == 1  # else it writes elsewhere already (a test's capture)
    except (OSError, ValueError, AttributeError):  # no file behind it
        ours = False
    try:
        saved = os.dup(1)
    except OSError:  # no file descriptor 1 (closed by the caller): nothing a subprocess could write into
        yield
        return
    try:
        os.dup2(2, 1)
    except OSError:  # no file descriptor 2: standard output stays as it is
        os.close(saved)
        yield
        return
    own = None
    if ours:
        own = open(saved, "w", encoding=getattr(stream, "encoding", None) or "utf-8",  # noqa: SIM115
                   errors=getattr(stream, "errors", None), closefd=False)
        own.reconfigure(line_buffering=bool(getattr(stream, "line_buffering", False)))
        sys.stdout = own
    try:
        yield
    finally:
        if own is not None:
            if sys.stdout is own:
                sys.stdout = stream
            try:
                own.close()  # what it holds is written now, or never (a reader gone): not later, into another file
            except (OSError, ValueError):
                pass
        os.dup2(saved, 1)
        os.close(saved)


def _flush(stream: Any) -> None:
    try:
        if stream is not None:
            stream.flush()
    except (OSError, ValueError):  # a closed pipe or stream: nothing more can go there anyway
        pass


def called_safely(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a sink's, reviewer's or notifier's callable) run as :func:`plugin_code`."""

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        with plugin_code():
            return func(*args, **kwargs)

    return call


def printing_to_stderr(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a rule function) with what it prints sent to standard error.

    Rule functions run inside routing, once per task and rule (a million times for an ingest
    of a million rows), so this is the cheap part of :func:`plugin_code`: ``sys.stdout`` alone
    is pointed at ``sys.stderr`` for the call (no file descriptor is moved: a subprocess has no
    place in a rule function), and what it raises is left as it is (``rules.expr`` holds the
    task with it, ``sys.exit()`` too). Inside plugin code already, or in a thread while another
    call holds the swap, it is called as it is; a swap is put back only by the call that made it.
    """

    @functools.wraps(func)  # `rules.expr` checks the arguments of a call against its signature
    def call(*args: Any) -> Any:
        saved = sys.stdout
        if saved is sys.stderr:
            return func(*args)
        sys.stdout = sys.stderr
        try:
            return func(*args)
        finally:
            if sys.stdout is sys.stderr:
                sys.stdout = saved

    return call


def read_safely(func: Callable[..., Iterable[Any]]) -> Callable[..., Iterator[Any]]:
    """``func`` (a source's ``read``) with its call and each step of what it yields run as
    :func:`plugin_code`; the parts are handed on outside it, so ingesting them prints as usual."""

    @functools.wraps(func)
    def read(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with plugin_code():
            parts = iter(func(*args, **kwargs))
        while True:
            with plugin_code():
                try:
                    part = next(parts)
                except StopIteration:
                    return
            yield part

    return read
