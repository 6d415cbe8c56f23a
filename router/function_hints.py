"""What is said when a workflow calls a rule function that no plugin loaded here registers.

One wording for both ways it happens: a workflow file (``validate``, ``apply``, ``test``,
``replay``: a diagnostic at the call's ``file:line:col``) and a stored version compiled where
the plugin ``apply`` had is missing (:class:`~router.errors.FunctionsMissing`, no position).
Both name the function, the rules that call it and where rule functions come from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from rules.actions import SECTIONS
from rules.visible_text import quoted


def where_functions_come_from() -> str:
    """Where rule functions come from, with what ``LABELYARD_LOAD_PLUGINS`` keeps out when it is set."""
    from .plugins import allowed_entry_points  # only once a function is missing

    allowed = allowed_entry_points()
    if allowed is None:
        packages = "installed plugin packages"
    elif allowed:
        names = ", ".join(quoted(n) for n in sorted(allowed))
        packages = f"installed plugin packages (only the entry points LABELYARD_LOAD_PLUGINS names here: {names})"
    else:
        packages = "installed plugin packages (none here: LABELYARD_LOAD_PLUGINS is set and empty)"
    return ("rule functions come from plugin files in LABELYARD_PLUGINS_DIR (`run`, `ingest NAME:ARG` and `plugins` "
            "also take --plugins-dir DIR), from modules in the workflow's `plugins:` (on PYTHONPATH), and from "
            + packages)


LISTED = "`labelyard plugins` lists what is loaded"

# The compiler's words (rules.expr): "unknown function `f`; did you mean `g`?" or "… (functions: a, b)"
_UNKNOWN_FUNCTION = re.compile(r"unknown function `([^`]+)`(?:; did you mean `([^`]+)`\?| \(functions: ([^)]*)\))?\Z")


def unknown_functions(diagnostics: Iterable[Any]) -> list[str]:
    """The names of the functions ``diagnostics`` call unknown, sorted."""
    return sorted({m.group(1) for d in diagnostics for m in [_UNKNOWN_FUNCTION.match(d.message)] if m})


def calling_rules(spec: Any, names: Iterable[str]) -> list[str]:
    """The rules of workflow ``spec`` (its data) whose text calls one of ``names``: ``on_quorum rule `loud```."""
    names = list(names)
    if not isinstance(spec, dict) or not names:
        return []
    calls = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\s*\(")
    return [f"{section} rule {quoted(rule.get('name') or index + 1)}" for section in SECTIONS
            for index, rule in enumerate(spec.get(section) or []) if isinstance(rule, dict)
            and calls.search(json.dumps(rule, ensure_ascii=False))]


def callers_note(spec: Any, names: Iterable[str]) -> str:
    """`` (on_create rule `a`, on_quorum rule `b`)``, or nothing when no rule is found."""
    callers = calling_rules(spec, names)
    return f" ({', '.join(callers)})" if callers else ""


def explained(diagnostics: Sequence[Any], spec: Any) -> list[Any]:
    """``diagnostics`` of a workflow file whose ``unknown function`` errors say where functions come from.

    ``spec`` is the file's data (for the rules that call each function). The first call of a
    function (in file order) says it all: the rules calling it, that no plugin loaded here
    registers it, where rule functions come from, and the compiler's did-you-mean or list of the
    functions there are; a later call of the same function points back at that one.
    """
    first: dict[str, Any] = {}
    out = []
    for d in sorted(diagnostics):
        m = _UNKNOWN_FUNCTION.match(d.message) if d.severity == "error" else None
        if m is None:
            out.append(d)
            continue
        name, hint, known = m.groups()
        if name in first:
            seen = first[name]
            out.append(replace(d, message=f"unknown function {quoted(name)}, which no plugin loaded here registers "
                                          f"(see {seen.line}:{seen.col})"))
            continue
        first[name] = d
        callers = calling_rules(spec, [name])
        called = f"unknown function {quoted(name)}" + (f" (called by {', '.join(callers)})" if callers else "")
        if hint:
            message = (f"{called}; did you mean {quoted(hint)}? If it is a plugin's, no plugin loaded here "
                       f"registers it: {where_functions_come_from()}; {LISTED}")
        else:
            there = f" (functions here: {known})" if known else ""
            message = f"{called}, which no plugin loaded here registers: {where_functions_come_from()}; {LISTED}{there}"
        out.append(replace(d, message=message))
    return out


def explained_in(diagnostics: Sequence[Any], text: str, filename: str) -> list[Any]:
    """:func:`explained` for the workflow file ``text`` (read again only when a function is unknown)."""
    if not unknown_functions(diagnostics):
        return list(diagnostics)
    from rules.diagnostics import WorkflowInvalid
    from rules.loader import load_document

    try:
        spec = load_document(text, filename).data
    except WorkflowInvalid:
        spec = None
    return explained(diagnostics, spec)
