"""CLI commands for leads and timers: tick, reassign, escalate, hold, release, priority, gold, agreement."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add this module's commands to the ``labelyard`` group."""
