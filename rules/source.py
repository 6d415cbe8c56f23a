"""Text that people wrote: UTF-8, with or without the byte-order mark that Windows
editors and Excel's "CSV UTF-8" put first, and a position for the first byte that is
not UTF-8 instead of a traceback or a silent replacement character."""

from __future__ import annotations

from .diagnostics import Diagnostic, WorkflowInvalid

BOM = b"\xef\xbb\xbf"


class NotUtf8(ValueError):
    """Bytes that are not UTF-8; ``line`` and ``col`` (1-based, ``col`` in characters)
    point at the first bad ``byte``."""

    def __init__(self, line: int, col: int, byte: int):
        self.line, self.col, self.byte = line, col, byte
        super().__init__(f"not valid UTF-8 (byte 0x{byte:02x})")


def decode_text(data: bytes) -> str:
    """``data`` as text, a leading byte-order mark dropped; :class:`NotUtf8` otherwise."""
    if data.startswith(BOM):
        data = data[len(BOM):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[line_start:exc.start].decode("utf-8")) + 1  # all good bytes before the bad one
        raise NotUtf8(data.count(b"\n", 0, exc.start) + 1, col, data[exc.start]) from None


def read_source(path: str) -> str:
    """A workflow or rule-test file as text. Raises ``OSError`` when it cannot be read and
    :class:`WorkflowInvalid` (``file:line:col``) when it is not UTF-8."""
    with open(path, "rb") as handle:
        data = handle.read()
    try:
        return decode_text(data)
    except NotUtf8 as exc:
        raise WorkflowInvalid([Diagnostic(path, exc.line, exc.col, f"{exc}; save the file as UTF-8")]) from None
