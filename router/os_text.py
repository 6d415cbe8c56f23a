"""Text the operating system hands over: arguments, environment variables, file names.

Bytes that are not UTF-8 reach Python as lone surrogates (``surrogateescape``:
``$'Zo\\xeb'`` is ``'Zo\\udceb'``). Such a string opens the file it names, but no
database row, JSON document or UTF-8 output can hold it. A name is either
refused (:func:`utf8_problem`) or, when it names a file that is read anyway,
stored with its bad bytes written out (:func:`escaped`, :func:`source_name`).
"""

from __future__ import annotations

import os


def is_utf8(text: str) -> bool:
    """Whether ``text`` (as the operating system gave it) is UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def escaped(text: str) -> str:
    """``text`` with the bytes that are not UTF-8 written out (``caf\\xe9.csv``); UTF-8 text unchanged."""
    if is_utf8(text):
        return text
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a surrogate no byte became (from JSON's \\ud83d, not from the OS)
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def shell_word(text: str) -> str:
    """``text`` as one word to paste into a POSIX shell in a printed command: quoted as
    :func:`shlex.quote` does; a file name that is not UTF-8 as ``$'caf\\xe9.db'``, which bash,
    zsh and ksh read back as the same bytes (its ``\\udce9`` was no name anyone could type)."""
    import shlex

    if is_utf8(text):
        return shlex.quote(text)
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:  # a surrogate no byte became: no file has that name
        return shlex.quote(escaped(text))
    return "$'" + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b"\\'" else f"\\x{b:02x}" for b in raw) + "'"


def utf8_problem(text: str) -> str | None:
    """Why ``text`` is not UTF-8 (``byte 0xeb is not UTF-8``), ``None`` when it is."""
    if is_utf8(text):
        return None
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte smuggled in by surrogateescape
            return f"byte 0x{code - 0xDC00:02x} is not UTF-8"
        if 0xD800 <= code <= 0xDFFF:
            return f"a lone UTF-16 surrogate (\\u{code:04x}) is not text"
    return None


def source_name(path: str) -> str:
    """The name a file of tasks is kept under (its rejects, its cursor): its real path (symlinks
    resolved, as the database's lock files are named), so the same file read through a link or by
    its real path is one source, with the bytes of a name that is not UTF-8 written out, as the
    folder source names such files."""
    return escaped(os.path.realpath(path))


def source_names(path: str) -> tuple[str, ...]:
    """:func:`source_name` of ``path``, then the name an earlier Labelyard kept it under when that
    differs (its absolute path, links not resolved), whose rejects are the same file's."""
    real, given = source_name(path), stream_name(path)
    return (real,) if real == given else (real, given)


def stream_name(path: str) -> str:
    """The name a pipe given as a path (``/dev/fd/63``, a fifo) is read under: its absolute path,
    links not resolved (a pipe's link leads to ``pipe:[…]``), bytes that are not UTF-8 written out."""
    return escaped(os.path.abspath(path))
