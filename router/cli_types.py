"""Argument types the ``labelyard`` commands share."""

from __future__ import annotations

from typing import Any

import click


class WholeNumber(click.IntRange):
    """click's ``IntRange`` (ids, counts, limits) whose refusal of a value that is no number says
    what is wanted ("Invalid value for 'ASSIGNMENT': 'abc' is not a whole number."); click said
    "'abc' is not a valid integer range", though an assignment id or a count is no range. A number
    out of the range keeps click's message ("0 is not in the range 1<=x<=…")."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, int):
            try:
                int(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a whole number.", param, ctx)
        return super().convert(value, param, ctx)
