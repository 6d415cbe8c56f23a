"""How a label outside the workflow's choices is said in a message (``submit``, ``gold add``, ``ingest``,
and the ``validity`` reviewer through ``router.plugin_api``).

Choices are text. A label of text is shown as JSON (``"dog"``) beside the choices as written
(``is not one of 1, cat``). A label of another kind is shown with its kind named, and the choices
as JSON, so a number and the text spelling it are told apart: ``1 (a number) is not one of "1",
"cat"``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

# Why a number past the float range is no number label, whatever its form (an integer of 310 digits,
# `1e400` written in a CSV cell or given to `submit --value`): a label is a float's size at most, so
# every consensus, agreement and export takes it.
TOO_LARGE = "is too large: a number label is at most about 1.8e308 in size (the largest float)"

KINDS = {bool: "true or false", int: "a number", float: "a number", list: "a list", dict: "an object"}


def shown(value: Any) -> str:
    """``value`` as JSON text (an integer past Python's 4,300 digits named, not written)."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except ValueError:
        return "an integer too long to show"


def not_one_of(value: Any, choices: Iterable[str]) -> str:
    """``<value> is not one of <choices>``, the kinds told apart when ``value`` is not text."""
    choices = list(choices)
    if isinstance(value, str):
        return f"{shown(value)} is not one of {', '.join(choices)}"
    kind = KINDS.get(type(value))
    named = f" ({kind})" if kind else ""
    return f"{shown(value)}{named} is not one of {', '.join(map(shown, choices))}"


def not_among(values: Iterable[Any], choices: Iterable[str]) -> str:
    """``<values> not among <choices>`` (the items of a ``multi_choice`` label outside the choices),
    the kinds told apart as :func:`not_one_of` does when one of ``values`` is not text."""
    values, choices = list(values), list(choices)
    if all(isinstance(v, str) for v in values):
        return f"{', '.join(map(shown, values))} not among {', '.join(choices)}"
    named = [f"{shown(v)} ({KINDS[type(v)]})" if type(v) in KINDS else shown(v) for v in values]
    return f"{', '.join(named)} not among {', '.join(map(shown, choices))}"
