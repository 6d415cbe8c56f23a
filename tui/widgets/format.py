"""Small text helpers for tables: ages, labels, numbers, bands."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

from router.queries import duration

BAND_STYLE = {"excellent": "green", "ok": "yellow", "alert": "bold red"}


def age(seconds: float | None) -> str:
    return "-" if seconds is None else duration(seconds)


def label(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def banded(value: float | None, band: str | None) -> Text:
    return Text(num(value), style=BAND_STYLE.get(band or "", ""))


def count(n: int, style_if_nonzero: str = "") -> Text:
    return Text(f"{n:,}", style=style_if_nonzero if n else "dim")
