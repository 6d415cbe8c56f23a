"""CLI commands about rules: explain, test, replay (registered by ``router.cli``)."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add this module's commands to the ``labelyard`` group."""
