"""Text written to standard output and standard error, whatever encoding the locale gave them.

A Latin-1 locale (or ``PYTHONIOENCODING``) gives Python streams that cannot encode every
character a task may hold: ``🐱`` written to them was a ``UnicodeEncodeError`` and a
traceback, after the command had done its work (a ``claim`` had taken its slot). So, once,
as a command starts (:func:`fit_standard_streams`):

- an ASCII stream (``LC_ALL=C`` without Python's UTF-8 mode, ``PYTHONIOENCODING=ascii``) is
  taken for a UTF-8 terminal whose locale is misconfigured, as Python does for the C locale
  (PEP 538, PEP 540) and click did already for every ``click.echo``: it writes UTF-8;
- any other stream that is not UTF-8 writes what its encoding lacks as Python escapes it
  (``\\U0001f431``), ``--json`` is ASCII there (JSON's own escapes, ``\\ud83d\\udc31``: the
  same bytes in UTF-8 and in the locale's encoding, :func:`json_document`), and ``export``'s data is UTF-8, the
  bytes ``-o FILE`` writes (:func:`utf8_stdout`).
"""

from __future__ import annotations

import codecs
import json
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
    choice for standard error)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None or is_utf8(stream) or not hasattr(stream, "reconfigure"):
            continue
        if _codec(stream) == "ascii":
            stream.reconfigure(encoding="utf-8")
        else:
            stream.reconfigure(errors="backslashreplace")


def json_document(data: Any) -> str:
    """``data`` as one line of JSON for standard output: UTF-8 text there, else ASCII."""
    return json.dumps(data, ensure_ascii=not is_utf8(sys.stdout), default=str)


class _Utf8Writer:
    """Text written to a binary stream as UTF-8."""

    def __init__(self, binary: IO[bytes]):
        self._binary = binary

    def write(self, text: str) -> int:
        self._binary.write(text.encode("utf-8"))
        return len(text)


def utf8_stdout() -> Any:
    """Something with ``write(text)`` that puts UTF-8 on standard output, whatever its encoding."""
    if is_utf8(sys.stdout) or not hasattr(sys.stdout, "buffer"):
        return sys.stdout
    sys.stdout.flush()  # what was written before comes first
    return _Utf8Writer(sys.stdout.buffer)
