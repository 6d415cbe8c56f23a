"""The one clock. ``LABELYARD_NOW`` (ISO 8601 or epoch seconds) overrides it."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from rules.instants import InstantError
from rules.instants import parse_instant as _parse

from .errors import LabelyardError


def parse_instant(text: str) -> float:
    """Epoch seconds from ``1764264000``, ``1764264000.5`` or an ISO 8601 time (UTC if no zone), as
    :func:`rules.instants.parse_instant` reads them (a rule test's ``now`` too); a user error naming
    ``LABELYARD_NOW`` for anything else."""
    try:
        return _parse(text)
    except InstantError as exc:
        raise LabelyardError(f"LABELYARD_NOW={text.strip()!r} is {exc}") from None


def now() -> float:
    """The current time in epoch seconds, from ``LABELYARD_NOW`` when it is set."""
    override = os.environ.get("LABELYARD_NOW")
    if override:
        return parse_instant(override)
    return time.time()


def file_stamp(epoch: float) -> str:
    """``YYYYMMDDTHHMMSSZ`` (UTC), for file names: the year has its four digits (``%Y`` drops the
    leading zeros of a year under 1000 on glibc), so names sort by date."""
    t = time.gmtime(epoch)
    return f"{t.tm_year:04d}{t.tm_mon:02d}{t.tm_mday:02d}T{t.tm_hour:02d}{t.tm_min:02d}{t.tm_sec:02d}Z"


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC, for output."""
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):  # a time stored by an older version, out of range
        return f"@{epoch:g}"
