"""Time limits on plugin calls: a call that never returns is stopped, and fails like one that raised.

``labelyard run`` holds its run lock while it runs; a source's read, a
reviewer, a sink or a notifier that never returns (a socket read without a
timeout, a loop waiting for a file that never comes) held it for ever, and
kept every later run out. So the run gives each of its entries a time limit
(:func:`time_limit`, the entry's ``time_limit:`` setting, else
:data:`DEFAULT_LIMIT_S`), and every plugin call made under it
(:func:`router.plugin_calls.plugin_code`: a source's call and each step of
what it yields, a reviewer's verdict on one task, a sink's batch or
``finish``, a notifier's delivery) is stopped once it has run that long.

How: ``SIGALRM`` (``signal.setitimer``) set for the call; its handler raises
:class:`PluginTimedOut` inside the plugin's code, a ``BaseException``, so a
plugin's ``except Exception`` does not swallow it. When the call ends the
timer and the handler that were there before are put back (a timer someone
else set keeps what was left of its time). Leaving the call, it becomes
:class:`PluginTimeout`, an ordinary failure of the plugin ("`slow` timed out
after 600 s and was stopped at slow.py:12 (…)"): the run records it against the entry
and goes on with the other entries, as for a plugin that raised.

Not stopped: a call made outside the main thread, or where there is no
``SIGALRM`` (Windows); a call blocked in C code that does not let Python
handle signals until it returns (Python's own ``time.sleep``, socket and
file reads do); rule functions, which run inside routing; a plugin that
catches ``BaseException`` and goes on, or sets ``SIGALRM`` itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

DEFAULT_LIMIT_S = 600.0  # ten minutes a call: a batch of 500 final tasks, a slow API page, with room to spare
MIN_LIMIT_S = 0.1
MAX_LIMIT_S = 86400.0  # a day: past that a run every few minutes is no longer one


class PluginTimedOut(BaseException):
    """Raised inside plugin code when its call is over its time limit (a ``BaseException``: a
    plugin's ``except Exception`` lets it through)."""


class PluginTimeout(Exception):
    """A plugin call stopped at its time limit: a failure of the plugin, its message saying so whole
    (:func:`router.plugins.describe_error` tells it as it is, as a ``PluginError``)."""


@dataclass
class _Limit:
    seconds: float
    plugin: str


_state = threading.local()  # .limit: the _Limit of the calls made now; .armed: a call's timer is set


@contextlib.contextmanager
def time_limit(seconds: float, plugin: str) -> Iterator[None]:
    """Plugin calls made inside (through :func:`call_limit`) are stopped after ``seconds`` each;
    ``plugin`` names the plugin in the failure."""
    before = getattr(_state, "limit", None)
    _state.limit = _Limit(float(seconds), plugin)
    try:
        yield
    finally:
        _state.limit = before


@contextlib.contextmanager
def call_limit() -> Iterator[None]:
    """One plugin call, stopped at the limit :func:`time_limit` set (nothing when none is set, when
    a call around it has its timer set already, outside the main thread, or without ``SIGALRM``)."""
    limit = getattr(_state, "limit", None)
    if (limit is None or getattr(_state, "armed", False) or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    fired = False

    def stop(signum: int, frame: object) -> None:
        nonlocal fired
        if _state.armed:  # not once the call is over: the alarm came as it returned
            fired = True
            raise PluginTimedOut()

    try:
        old_handler = signal.signal(signal.SIGALRM, stop)
    except ValueError:  # not the main interpreter's main thread after all
        yield
        return
    started = time.monotonic()
    _state.armed = True
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, limit.seconds)
    try:
        yield
    except PluginTimedOut as exc:
        if not fired:  # a plugin raised it itself: its own failure
            raise PluginTimeout(f"{limit.plugin} raised {type(exc).__name__} itself") from None
        raise PluginTimeout(f"{limit.plugin} timed out after {_seconds(limit.seconds)} s and was stopped"
                            f"{_stopped_at(exc)} (each call may take the entry's `time_limit:` seconds, "
                            f"{_seconds(DEFAULT_LIMIT_S)} unless set)") from None
    finally:
        _state.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
        if old_delay > 0:  # someone else's timer: what was left of it, at least a moment
            left = old_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001), old_interval)


def _seconds(value: float) -> str:
    return f"{value:g}"


def _stopped_at(exc: BaseException) -> str:
    """`` at slow.py:12``: the line of plugin code the call was at when stopped."""
    here = os.path.abspath(__file__)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.abspath(f.filename) != here and not f.filename.startswith("<frozen")]
    if not frames:
        return ""
    last = frames[-1]
    return f" at {os.path.basename(last.filename)}:{last.lineno}"
