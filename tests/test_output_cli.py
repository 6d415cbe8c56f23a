"""What the command line promises: ``submit``'s options, the README's summary, the run's failure lines.

Real subprocesses on a real database file (see ``conftest.run``); the README and
docs/cron.md are checked against the commands as they are.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from router.cli import main

ROOT = Path(__file__).resolve().parent.parent

REVIEWED = """\
workflow: pets
labels: {type: choice, choices: [cat, dog]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create: [{name: one vote, do: {annotate: triage, overlap: 1}}]
on_quorum: [{name: check, do: {review: senior}}]
"""


def review_slot(run, write_workflow) -> int:
    """A project whose task T1 waits in `sen`'s review slot; returns the assignment."""
    run.ok("init")
    run.ok("apply", write_workflow(REVIEWED))
    run.ok("workers", "add", "ann", "--role", "annotator")
    run.ok("workers", "add", "sen", "--role", "senior")
    (run.folder / "t.jsonl").write_text(json.dumps({"id": "T1", "data": {}}) + "\n", encoding="utf-8")
    run.ok("ingest", "t.jsonl")
    vote = run.json("claim", "--as", "ann", "--json")["assignment"]
    run.ok("submit", vote, "--as", "ann", "--label", "cat")
    return run.json("claim", "--as", "sen", "--json")["assignment"]


# -- submit -----------------------------------------------------------------------------------
def test_submit_options_that_contradict_each_other_are_usage_errors(run, write_workflow):
    slot = review_slot(run, write_workflow)
    cases = {
        ("--approve", "--reject"): "give either --approve or --reject",
        ("--reject", "--approve"): "give either --approve or --reject",
        ("--reject", "--label", "dog"): "--reject takes no --label or --value",
        ("--reject", "--value", '"dog"', "--comment", "no"): "--reject takes no --label or --value",
        ("--label", "dog", "--value", '"dog"'): "give either --label or --value",
    }
    for args, message in cases.items():
        proc = run("submit", slot, "--as", "sen", *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"Error: {message}" in proc.stderr, (args, proc.stderr)
    assert run.json("show", "T1", "--json")["task"]["status"] == "open"  # nothing was taken
    corrected = run.json("submit", slot, "--as", "sen", "--approve", "--value", '"dog"', "--json")
    assert corrected["decision"]["status"] == "done"  # --approve with a label: the reviewer's correction
    assert run.json("show", "T1", "--json")["task"]["final_label"] == "dog"


def test_submit_usage_errors_come_before_the_database(run, tmp_path):
    proc = run("submit", "7", "--approve", "--reject", "--db", tmp_path / "none.db")
    assert proc.returncode == 2 and "give either --approve or --reject" in proc.stderr


# -- the README -------------------------------------------------------------------------------
def commands(group: click.Group = main, prefix: str = "") -> dict[str, click.Command]:
    """Every command of the CLI by its full name (``workers add``)."""
    found = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found.update(commands(command, f"{prefix}{name} "))
        else:
            found[f"{prefix}{name}"] = command
    return found


def options(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in getattr(param, "opts", [])}


def named_in(text: str) -> set[str]:
    """The command names written in backticks in ``text`` (`workers add|set` names two)."""
    names = set()
    for quoted in re.findall(r"`([^`]+)`", text):
        head, _, tail = quoted.rpartition(" ")
        names.update(f"{head} {word}".strip() for word in tail.split("|"))
    return names


def test_the_readme_names_the_commands_without_db_or_json():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    summary = readme[readme.index("`labelyard rejects` lists"):readme.index("Exit codes:")]
    named = named_in(summary)
    for name, command in commands().items():
        have = options(command)
        assert "--db" in have or name in named, f"the README says `{name}` takes --db"
        assert "--json" in have or name in named, f"the README says `{name}` takes --json"


def test_every_markdown_file_the_readme_names_is_in_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\]\(([^)#]+\.md)\)", readme)) | set(re.findall(r"`([\w./-]+\.md)`", readme))
    assert named, "the README names no documents"
    missing = sorted(name for name in named if not (ROOT / name).is_file())
    assert missing == []


# -- docs/cron.md: the failure lines of `labelyard run` --------------------------------------
def documented_failure_forms() -> list[re.Pattern]:
    """The forms docs/cron.md gives for a failure line, as patterns (PLUGIN, ENTRY, STEP, ERROR filled in)."""
    text = " ".join((ROOT / "docs" / "cron.md").read_text(encoding="utf-8").split())
    forms = set(re.findall(r"`(labelyard run: PLUGIN[^`]*)`", text))
    fill = {"PLUGIN": r"[^\s:()]+", "\\(ENTRY\\)": r"\([^()]+\)", "STEP": r"[a-z]+", "ERROR": r".+"}
    patterns = []
    for form in forms:
        pattern = re.escape(form)
        for word, value in fill.items():
            pattern = pattern.replace(word, value)
        patterns.append(re.compile(pattern))
    return patterns


def test_every_failure_line_of_a_run_has_a_form_docs_cron_gives(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow(REVIEWED + "reviewers: [{plugin: nosuch}, {plugin: nosuch, name: second}]\n"))
    proc = run("run")
    assert proc.returncode == 4
    lines = proc.stderr.splitlines()
    assert lines == ["labelyard run: nosuch: reviewers failed: no reviewer plugin `nosuch` is loaded "
                     "(see `labelyard plugins`)",
                     "labelyard run: nosuch (second): reviewers failed: no reviewer plugin `nosuch` is loaded "
                     "(see `labelyard plugins`)"]
    forms = documented_failure_forms()
    for line in lines:
        assert any(form.fullmatch(line) for form in forms), f"docs/cron.md has no form for {line!r}"
