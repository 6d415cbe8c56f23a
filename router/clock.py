"""The one clock. ``LABELYARD_NOW`` (ISO 8601 or epoch seconds) overrides it."""

from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone

from .errors import LabelyardError


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
        return value
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise LabelyardError(
            f"LABELYARD_NOW={text!r} is neither epoch seconds nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


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
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="seconds")
