"""An entry whose identity changes with the same plugin and target keeps its progress.

An entry's progress is kept under its identity (:func:`router.plugins.entry_key`): its
``name:``, else its plugin and ``path`` or ``url``. Adding ``name:`` to an existing entry
(or dropping it, or renaming an entry that has a path or url) changes that identity
while the entry still reads or writes the same thing; without this, a sink delivered
every final label again and a source read every file again. ``apply`` calls
:func:`carry_over` in the transaction that stores the new version: an entry of the
active version that the new one lacks, and an entry of the new version that the active
one lacks, of one section, one plugin and one target, are one entry; what the old
identity stored (cursor or sink state, a sink's deliveries, a notify entry's outbox)
moves to the new one, unless the new one has progress of its own.
"""

from __future__ import annotations

from typing import Any

from rules.visible_text import quoted

from .plugins import entry_key

SECTIONS = ("sources", "sinks", "notify")  # reviewers: their verdicts are the worker `auto:NAME`'s own


def renamed_entries(old_spec: dict[str, Any] | None, new_spec: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(section, old identity, new identity)`` of each entry whose identity the new spec changes
    while its plugin and target stay: an unnamed entry named (or a named one unnamed) with the same
    plugin and ``path``/``url`` (or neither), a named one renamed with the same plugin and
    ``path``/``url``. Only a pair that matches one to one counts."""
    found = []
    for section in SECTIONS:
        old = _entries(old_spec, section)
        new = _entries(new_spec, section)
        old_keys, new_keys = {entry_key(e) for e in old}, {entry_key(e) for e in new}
        gone = [e for e in old if entry_key(e) not in new_keys]
        added = [e for e in new if entry_key(e) not in old_keys]
        for entry in added:
            matches = [e for e in gone if _same_target(e, entry)]
            if len(matches) == 1 and [e for e in added if _same_target(matches[0], e)] == [entry]:
                found.append((section, entry_key(matches[0]), entry_key(entry)))
    return found


def carry_over(store, old_spec: dict[str, Any] | None, new_spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Move the progress of each renamed entry (:func:`renamed_entries`) to its new identity; what
    moved, one ``{section, from, to, cursor, deliveries | outbox, waiting}`` each. In the caller's
    transaction (the one that stores the new version and its ``workflow_applied`` event)."""
    carried = []
    for section, old, new in renamed_entries(old_spec, new_spec):
        moved = store.move_entry_state(section, old, new)
        if moved is not None:
            carried.append({"section": section, "from": old, "to": new, **moved})
    return carried


def carried_line(item: dict[str, Any]) -> str:
    """What ``apply`` says of an entry whose progress was carried over to its new identity."""
    section, old, new = item["section"], quoted(item["from"]), quoted(item["to"])
    if section == "sinks":
        what = f"its {item.get('deliveries', 0)} delivered task(s) and state carry over: nothing is delivered again"
    elif section == "notify":
        what = (f"its cursor and {item.get('waiting', 0)} waiting notification(s) carry over: nothing is sent "
                "again or lost")
    else:
        what = "its cursor carries over: what it read is not read again"
    return f"{_ENTRY[section]} {old} is now {new} (same plugin and target): {what}"


_ENTRY = {"sources": "source", "sinks": "sink", "notify": "notify entry"}


def _entries(spec: dict[str, Any] | None, section: str) -> list[dict[str, Any]]:
    entries = (spec or {}).get(section) or []
    return [e for e in entries if isinstance(e, dict) and e.get("plugin")] if isinstance(entries, list) else []


def _named(entry: dict[str, Any]) -> bool:
    name = entry.get("name")
    return isinstance(name, str) and bool(name)


def _target(entry: dict[str, Any]) -> str:
    """The entry's identity without its name: ``plugin:path``, ``plugin:url``, or the plugin."""
    return entry_key({k: v for k, v in entry.items() if k != "name"})


def _same_target(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two entries are one entry by what they read or write. Without a path or url, two
    differently named entries of one plugin may be two (their other settings tell them apart),
    so a rename counts only when one of them is unnamed."""
    if _target(old) != _target(new):
        return False
    has_target = _target(new) != str(new.get("plugin"))
    return has_target or not (_named(old) and _named(new))
