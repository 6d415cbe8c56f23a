"""Text written to standard output and standard error, whatever encoding the locale gave them.

A Latin-1 locale (or ``PYTHONIOENCODING``) gives Python streams that cannot encode every
character a task may hold: ``🐱`` written to them was a ``UnicodeEncodeError`` and a
traceback, after the command had done its work (a ``claim`` had taken its slot). So, once,
as a command starts (:func:`fit_standard_streams`):

- an ASCII stream (``LC_ALL=C`` without Python's UTF-8 mode, ``PYTHONIOENCODING=ascii``) is
  taken for a UTF-8 terminal whose locale is misconfigured, as Python does for the C locale
  (PEP 538, PEP 540) and click did already for every ``click.echo``: it writes UTF-8;
- any other stream that is not UTF-8 writes what its encoding lacks as Python escapes it
  (``\\U0001f431``), but for Labelyard's own signs, which it writes in ASCII (``→`` as ``->``,
  ``≥`` as ``>=``, ``…`` as ``...``: :data:`ASCII_SIGNS`), ``--json`` is ASCII there (JSON's own escapes, ``\\ud83d\\udc31``: the
  same bytes in UTF-8 and in the locale's encoding, :func:`json_document`), and ``export``'s data is UTF-8, the
  bytes ``-o FILE`` writes (:func:`utf8_stdout`).
"""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
from typing import IO, Any


def _codec(stream: Any) -> str | None:
    """The codec a text stream encodes with (``utf-8``, ``ascii``, ``iso8859-1``), if known."""
    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "").name
    except LookupError:
        return None


def is_utf8(stream: Any) -> bool:
    """Whether ``stream`` (a text stream) encodes as UTF-8."""
    return _codec(stream) == "utf-8"


def fit_standard_streams() -> None:
    """Standard output and error write UTF-8 for an ASCII locale; for another that is not UTF-8,
    a character their encoding lacks is a Python escape instead of an error (Python's own
    choice for standard error). A standard stream the command was started without (``>&-``)
    gets ``/dev/null`` on its descriptor, so that no file the command opens (a lock, an export)
    takes descriptor 0, 1 or 2 (``sys.stdin``/``sys.stdout`` stay ``None``: :func:`standard_input`,
    :func:`utf8_stdout`); a failed write to standard output names it (:class:`_StandardOutput`)."""
    _fill_closed_descriptors()
    _name_standard_output()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or is_utf8(stream) or not hasattr(stream, "reconfigure"):
            continue
        if _codec(stream) == "ascii":
            stream.reconfigure(encoding="utf-8")
        else:
            stream.reconfigure(errors=_register_fallbacks())


# Labelyard's own signs, as a stream whose encoding lacks them writes them (Latin-1 has none of
# these): `rule \`x\` -> annotate`, `excellent >= 0.8`, `(priority TASK... N)`, where Python's
# escapes (`\u2192`) read as noise. Any other character it lacks is escaped, as before.
ASCII_SIGNS = {"→": "->", "←": "<-", "≥": ">=", "≤": "<=", "≠": "!=", "…": "...", "—": "--", "–": "-",
               "↓": "v", "↑": "^", "×": "x", "·": "."}
FALLBACKS = "labelyard-fallbacks"


def _fallbacks(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    text = exc.object[exc.start:exc.end]
    return "".join(ASCII_SIGNS.get(ch) or ch.encode("ascii", "backslashreplace").decode("ascii")
                   for ch in text), exc.end


def _register_fallbacks() -> str:
    """The name of the error handler that writes :data:`ASCII_SIGNS` as ASCII, else Python's escape."""
    codecs.register_error(FALLBACKS, _fallbacks)
    return FALLBACKS


def _fill_closed_descriptors() -> None:
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            except OSError:
                return
            if null != fd:  # the lowest free number: a lower one was closed too, and is filled first
                os.dup2(null, fd)
                os.close(null)


STANDARD_OUTPUT = "standard output"


class _StandardOutput(io.FileIO):
    """Descriptor 1 whose failed writes name it: "standard output: No space left on device" (a
    ``> /dev/full``, a full disk under ``> file``), where an ``OSError`` of a write names no file."""

    def write(self, data: Any) -> int | None:
        try:
            return super().write(data)
        except OSError as exc:
            if exc.filename is None and not isinstance(exc, BrokenPipeError):
                exc.filename = STANDARD_OUTPUT
            raise


def _name_standard_output() -> None:
    """Put :class:`_StandardOutput` under Python's own standard output (not a stream a caller set:
    a test's capture, a plugin's redirection)."""
    stream = sys.stdout
    if stream is None or stream is not sys.__stdout__ or not isinstance(stream, io.TextIOWrapper):
        return
    binary = stream.buffer
    unbuffered = type(binary) is io.FileIO  # python -u, PYTHONUNBUFFERED: no buffer between
    raw = binary if unbuffered else getattr(binary, "raw", None)
    if type(raw) is not io.FileIO or raw.fileno() != 1:
        return
    stream.flush()
    named: Any = _StandardOutput(1, "w", closefd=False)
    sys.stdout = io.TextIOWrapper(named if unbuffered else io.BufferedWriter(named), encoding=stream.encoding,
                                  errors=stream.errors, line_buffering=stream.line_buffering,
                                  write_through=stream.write_through)


def standard_input() -> IO[bytes]:
    """Standard input's bytes, for ``-``: a user error when the command was started without it."""
    if sys.stdin is None:
        from .errors import LabelyardError

        raise LabelyardError("standard input is closed (`<&-`): `-` has nothing to read; name a file instead")
    return sys.stdin.buffer


def json_document(data: Any) -> str:
    """``data`` as one line of JSON for standard output: UTF-8 text there, else ASCII. A NaN or an
    infinity (an early Labelyard stored them) is written as ``null``, with a warning on standard
    error naming the task and field (:mod:`router.finite_json`): the document stays JSON."""
    ascii_only = not is_utf8(sys.stdout)
    try:
        return json.dumps(data, ensure_ascii=ascii_only, default=str, allow_nan=False)
    except ValueError:
        from .finite_json import task_fields, warning, without_non_finite

        data, found = without_non_finite(data)
        if not found:
            raise
        print(warning(task_fields(data, found)), file=sys.stderr)
        return json.dumps(data, ensure_ascii=ascii_only, default=str)


class _Utf8Writer:
    """Text written to a binary stream as UTF-8."""

    def __init__(self, binary: IO[bytes]):
        self._binary = binary

    def write(self, text: str) -> int:
        self._binary.write(text.encode("utf-8"))
        return len(text)


def utf8_stdout() -> Any:
    """Something with ``write(text)`` that puts UTF-8 on standard output, whatever its encoding; a
    user error when the command was started without standard output (``>&-``)."""
    if sys.stdout is None:
        from .errors import LabelyardError

        raise LabelyardError("standard output is closed (`>&-`): nowhere to write the data; give -o FILE")
    if is_utf8(sys.stdout) or not hasattr(sys.stdout, "buffer"):
        return sys.stdout
    sys.stdout.flush()  # what was written before comes first
    return _Utf8Writer(sys.stdout.buffer)
