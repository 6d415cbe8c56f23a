"""Instants as Labelyard reads them, wherever they are written: ``LABELYARD_NOW`` and a rule test's
``now``. Epoch seconds (``1764264000``, ``1764264000.5``, ``1.7e9``; a number or its text) or ISO 8601
(UTC when it names no zone), within the range Labelyard keeps. Pure: ``router.clock`` reads the
environment and uses this.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

# The instants Labelyard keeps: a day inside the years 1 to 9999 UTC at either end, so that every
# date function can show them in any time zone and every platform's time_t holds them. A time
# outside them would be stored, then break every command that shows it.
EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc).timestamp()
LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc).timestamp()
KEPT = "0001-01-02T00:00:00Z to 9999-12-30T00:00:00Z"
"""The range, as messages name it."""


# Epoch seconds as text: ASCII digits, a point, an exponent (as CSV cells are read, router.ingest)
_EPOCH = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class InstantError(ValueError):
    """Why a value is no instant Labelyard keeps: ``str`` is the problem alone (``not a time…``),
    for the caller to name the value (``LABELYARD_NOW='…' is …``)."""


def parse_instant(value: Any) -> float:
    """Epoch seconds from epoch seconds (a number, or its text) or an ISO 8601 time (UTC if no zone).

    Raises :class:`InstantError` for anything else (text, ``nan``, ``inf``, ``true``…), and for an
    instant outside :data:`EARLIEST` … :data:`LATEST`.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InstantError("neither epoch seconds nor an ISO 8601 time")
    if isinstance(value, int):
        return _kept(float(value) if abs(value) <= 10**20 else math.inf)  # a 5,000-digit int: no float
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InstantError("not a time; give epoch seconds or an ISO 8601 time")
        return _kept(value)
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):  # "nan", "inf", 1e400: no instant, and NaN never compares
            raise InstantError("not a time; give epoch seconds or an ISO 8601 time")
        if not _EPOCH.fullmatch(text):  # float() takes `1_700_000_000` and any script's digits (`١٧`)
            raise InstantError("not epoch seconds as Labelyard reads them: ASCII digits without `_` "
                               "(1700000000, 1.7e9), or an ISO 8601 time")
        return _kept(seconds)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InstantError("neither epoch seconds nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        seconds = moment.timestamp()
    except (OverflowError, ValueError):  # e.g. 0001-01-01T00:30+01:00 is in year 0 UTC
        seconds = -math.inf
    return _kept(seconds)


def _kept(seconds: float) -> float:
    if not EARLIEST <= seconds <= LATEST:
        raise InstantError(f"outside {KEPT}, the times Labelyard keeps")
    return seconds
