"""Writing final labels as JSONL or CSV."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable
from typing import Any

from .errors import LabelyardError

CSV_FIELDS = ("id", "label", "final_by", "rule", "final_at", "category")


def write_export(rows: Iterable[dict[str, Any]], fmt: str, output: str) -> int:
    """Write ``rows`` to ``output`` (``-`` for standard output); returns how many were written.

    A file is written beside its target and renamed into place, so a crash
    never leaves half an export behind.
    """
    if output == "-":
        return _write(rows, fmt, sys.stdout)
    tmp = f"{output}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            count = _write(rows, fmt, handle)
        os.replace(tmp, output)
    except OSError as exc:
        raise LabelyardError(f"{output}: cannot write: {exc.strerror}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return count


def _write(rows: Iterable[dict[str, Any]], fmt: str, handle) -> int:
    count = 0
    if fmt == "jsonl":
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        return count
    writer = csv.writer(handle)
    writer.writerow(CSV_FIELDS)
    for row in rows:
        label = row["label"]
        cell = label if isinstance(label, str) else json.dumps(label, ensure_ascii=False)
        writer.writerow([row["id"], cell, row["final_by"], row["rule"], row["final_at"], row["category"] or ""])
        count += 1
    return count
