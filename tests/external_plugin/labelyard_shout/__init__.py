"""An example third-party plugin: the ``shout`` rule function, a ``numbers`` source and a ``shout`` command."""

import click

from router import hookimpl
from router.plugin_api import SourcePart, TaskInput


@hookimpl
def register_functions(register):
    register("shout", lambda text: None if text is None else str(text).upper())


@hookimpl
def register_sources(register):
    register("numbers", numbers)


def numbers(run):
    """``numbers:N``: tasks n1..nN, resuming after the last one a previous run stored."""
    count = int(run.config["path"])
    start = (run.state or {}).get("done", 0)
    for n in range(start + 1, count + 1):
        yield SourcePart("numbers", [TaskInput(n, f"n{n}", {"text": f"number {n}"})], {"done": n})


@hookimpl
def register_commands(cli):
    @cli.command()
    @click.argument("text")
    def shout(text):
        """Print TEXT loudly."""
        click.echo(text.upper() + "!")
