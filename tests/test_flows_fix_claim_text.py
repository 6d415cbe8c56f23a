"""`labelyard claim` without `--json` shows what `--json` and the work screen show.

Before, the text form printed the data, the votes, the reviewer's comment and the choices only:
a reviewer or an expert did not see the model's prediction nor the earlier review verdicts and
their comments, and an annotator correcting their work did not see their own earlier label
(design.md "Blind annotation"; workflow-language.md `return`). Annotate slots stay blind.
"""

from __future__ import annotations

from w1_support import W1, w1


TEAM = {"al": ["--role", "annotator"], "sr": ["--role", "senior"], "ex": ["--role", "expert", "--skill", "law"]}


def text_claim(run, worker: str) -> list[str]:
    return run.ok("claim", "--as", worker).stdout.splitlines()


def submit(run, assignment: str, worker: str, *args: str) -> None:
    run.ok("submit", assignment, "--as", worker, *args)


def assignment_of(lines: list[str]) -> str:
    return lines[0].split(":")[0].split()[1]


def test_review_escalated_and_correct_slots_show_in_text_what_json_shows(run):
    w1(run, W1, TEAM,
       [{"id": "A", "data": {"p": 1}, "prediction": {"label": "a", "confidence": 0.6}}])

    annotate = text_claim(run, "al")
    assert annotate == ["assignment 1: annotate task A (queue q1)", "{", '  "p": 1', "}", "choices: a, b, c"]
    submit(run, "1", "al", "--label", "b")

    review = text_claim(run, "sr")
    assert review[0] == "assignment 2: review task A (queue rev)"
    assert review[4:] == ['prediction: "a" (confidence 0.6)', 'votes: al="b"', "choices: a, b, c"]
    submit(run, "2", "sr", "--reject", "--comment", "look again")

    correct = text_claim(run, "al")
    assert correct[0] == "assignment 3: correct task A (queue q1)"
    assert correct[4:] == ["reviewer's comment: look again", 'your earlier label: "b"', "choices: a, b, c"]
    submit(run, "3", "al", "--label", "c")

    run.ok("escalate", "A", "--to", "exp")
    escalated = text_claim(run, "ex")
    assert escalated[0] == f"assignment {assignment_of(escalated)}: escalated task A (queue exp)"
    assert escalated[4:] == ['prediction: "a" (confidence 0.6)', 'votes: al="c"',
                             "earlier review by sr: reject, comment: look again", "choices: a, b, c"]
    shown = run.json("claim", "--as", "ex", "--resume", "--json")  # the same slot, as --json shows it
    assert shown["reviews"] == [{"worker": "sr", "stage": "review", "verdict": "reject", "label": None,
                                 "comment": "look again"}]


def test_a_slot_without_prediction_or_votes_says_so_and_comments_reach_the_terminal_as_text(run):
    w1(run, W1, TEAM,
       [{"id": "B", "data": {"p": 2}}, {"id": "C", "data": {"p": 1}}])
    run.ok("escalate", "C", "--to", "exp")  # before anyone voted
    escalated = text_claim(run, "ex")
    assert escalated[0].endswith("escalated task C (queue exp)")
    assert escalated[4:] == ["prediction: none", "votes: none", "choices: a, b, c"]

    submit(run, assignment_of(text_claim(run, "al")), "al", "--label", "a")
    review = text_claim(run, "sr")
    assert review[4:6] == ["prediction: none", 'votes: al="a"']
    submit(run, assignment_of(review), "sr", "--reject", "--comment", "two\nlines \x1b[2J")
    correct = text_claim(run, "al")
    assert correct[4:6] == ["reviewer's comment: two", "  lines \\x1b[2J"]  # no escape reaches the terminal
    submit(run, assignment_of(correct), "al", "--label", "b")
    run.ok("escalate", "B", "--to", "exp")
    again = text_claim(run, "ex")
    assert again[6:8] == ["earlier review by sr: reject, comment: two", "  lines \\x1b[2J"]
