"""The one clock. ``LABELYARD_NOW`` (ISO 8601 or epoch seconds) overrides it."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone

from .errors import LabelyardError


# The instants Labelyard keeps: years 1 to 9999 UTC, which every date function can show and
# every platform's time_t holds. A time outside them would be stored, then break every
# command that shows it.
EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc).timestamp()
LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc).timestamp()


def parse_instant(text: str) -> float:
    """Epoch seconds from ``1764264000``, ``1764264000.5`` or an ISO 8601 time (UTC if no zone)."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):  # "nan", "inf", 1e400: no instant, and NaN never compares
            raise LabelyardError(f"LABELYARD_NOW={text!r} is not a time; give epoch seconds or an ISO 8601 time")
        return _in_range(value, text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LabelyardError(
            f"LABELYARD_NOW={text!r} is neither epoch seconds nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        value = moment.timestamp()
    except (OverflowError, ValueError):  # e.g. 0001-01-01T00:30+01:00 is in year 0 UTC
        value = -math.inf
    return _in_range(value, text)


def _in_range(value: float, text: str) -> float:
    if not EARLIEST <= value <= LATEST:
        raise LabelyardError(f"LABELYARD_NOW={text!r} is outside the years 1 to 9999 that Labelyard keeps")
    return value


def now() -> float:
    """The current time in epoch seconds, from ``LABELYARD_NOW`` when it is set."""
    override = os.environ.get("LABELYARD_NOW")
    if override:
        return parse_instant(override)
    return time.time()


def iso(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC, for output."""
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):  # a time stored by an older version, out of range
        return f"@{epoch:g}"
