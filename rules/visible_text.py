"""Text from a file, a database or a plugin, written so that a terminal shows it as it is.

An ESC in a rule's name, a YAML key or a task's id would reach the terminal as an escape
sequence (retitle the window, clear the screen) if printed raw, and a line break in a name
would print a line of its own that looks like another message. Messages quote such names
through :func:`quoted` when they are built, so a diagnostic says the same thing on a
terminal, in a pipe and in ``--json``.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL and C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# The same with tab and newline, and the Unicode line and paragraph separators.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """``text`` with control characters written as ``\\xNN``, safe to print to a terminal
    (line breaks and tabs kept: a message of several lines)."""
    return _CONTROL.sub(_escape, text)


def one_line(text: str) -> str:
    """``text`` as :func:`visible` writes it, line breaks and tabs too: for a name printed within
    one line (a file name may hold a line break, which would print as a line of its own)."""
    return _LINE_BREAKING.sub(_escape, text)


def quoted(name: object) -> str:
    """``name`` in backquotes, on one line: ```ann\\x1b]0;x\\x07otate``` for a key holding an ESC."""
    return f"`{one_line(str(name))}`"
