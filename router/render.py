"""Human-readable output of status and tasks for the CLI (rich tables)."""

from __future__ import annotations

import errno
import functools
import json
import math
import os
import re
from typing import Any

from rules.visible_text import one_line, visible  # noqa: F401 - printed text, shared with rules' messages

from . import clock

_STEP_NAMES = {"sources": "source", "reviewers": "reviewer", "sinks": "sink"}  # a step as one of its entries


def continued(text: str, indent: str = "    ") -> str:
    """``text`` whose lines after the first are indented by ``indent``: a message of several lines
    (a plugin's error saying how to fix it) printed under the line that starts it."""
    return text.replace("\n", "\n" + indent)


# The width of a console that is not a terminal: wide enough that no table row is folded.
_UNFOLDED = 1_000_000


# What json.dumps leaves raw and a terminal acts on: DEL, C1 and the Unicode line separators
_JSON_RAW_CONTROL = re.compile(r"[\x7f-\x9f\u2028\u2029]")


def listed_name(name: str) -> str:
    """A worker, role or skill name as ``workers list`` writes it: in double quotes as JSON writes it
    when the list could misread it (holding a comma, a space or a double quote, or a bare ``-``), so
    a script splitting a line on whitespace reads the worker `mary ann` as one field; and when it
    holds a control character (a name an older version stored), every one written as an escape
    (``"ev\u001b]0;x\u0007il"``: still JSON), never sent raw to the terminal."""
    plain = (name != "-" and not any(c in name for c in ',"') and name.split() == [name]
             and one_line(name) == name)
    if plain:
        return name
    return _JSON_RAW_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(name, ensure_ascii=False))


def number_text(value: float) -> str:
    """A priority as a person reads it, its whole part never rounded away: a whole number in full
    (``1001``, ``1000000000000000``), else six significant digits, or the whole part and three
    more (``0.05``, ``1234567.5``, ``1e-09``). ``show`` wrote 1001 as `priority=1e+03`."""
    if not math.isfinite(value):  # never stored (``priority_problem``), but never a traceback either
        return str(value)
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    whole = len(str(int(abs(value)))) if abs(value) >= 1 else 0
    return f"{value:.{max(6, whole + 3)}g}"


def name_list(names: list[str], none: str = "") -> str:
    """Roles or skills joined with commas (``none`` when there are none), each as :func:`listed_name`
    writes it, so one role `senior,annotator` reads ``"senior,annotator"``, never like the two roles
    ``annotator,senior``. ``workers list`` and the TUI's screens write lists of names with it."""
    return ",".join(listed_name(n) for n in names) or none


def stdout_console(**options: Any) -> Any:
    """A rich ``Console`` on standard output whose reader may leave (``labelyard status | head``).

    rich answers a closed pipe with exit 1; here it is the ``BrokenPipeError`` every ``click.echo``
    raises, which ``LabelyardGroup.invoke`` turns into exit 0, standard output sent to /dev/null.

    Every line is printed whole (``soft_wrap``): a terminal folds a long one itself, and a pipe, a
    file or a cron log gets one logical line per line, for grep. Off a terminal the console is
    also too wide for a table row to be folded (rich would take 80 columns, or the width of the
    terminal the command's input comes from).
    """
    from rich.console import Console

    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True  # nothing more is written
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    console = StdoutConsole(soft_wrap=True, **options)
    if not console.is_terminal:
        console.width = _UNFOLDED
    return console


def print_status(data: dict[str, Any]) -> None:
    """Print task counts and the queues as tables."""
    from rich.table import Table

    console = stdout_console(markup=False)  # names and errors are the user's text
    # Each message is one line however narrow the terminal (rich reads its width from the terminal
    # even when standard output is a pipe: `status | grep rejected` got half a line); the table
    # alone is fitted to the width.
    line = functools.partial(console.print, soft_wrap=True)
    wf = data.get("workflow")
    line(f"workflow: {wf['name']} v{wf['version']}" if wf else "workflow: (none applied)")
    tasks = data["tasks"]
    line("tasks: " + ", ".join(f"{k} {v}" for k, v in tasks.items()) + f"  (total {data['total']})")
    table = Table("queue", "waiting", "active", "open", "workers", title=None)
    for name, q in data["queues"].items():  # workers: those the queue admits, not paused
        table.add_row(name, str(q["waiting"]), str(q["active"]), str(q["open"]), str(q["eligible_workers"]))
    console.print(table)
    for warning in data.get("warnings") or []:
        line(visible(f"warning: {warning}"))
    for text in stall_lines(data.get("stalled") or {}, data.get("held") or {}):
        line(one_line(text))
    if data.get("rejects"):
        line(f"rejected input rows: {data['rejects']} (labelyard rejects)")
    run = data.get("last_run")
    if run:
        state = "ok" if run["ok"] else ("running, or killed before it finished" if not run["finished"] else "failed")
        at = run.get("in_progress")
        if not run["finished"] and isinstance(at, dict):  # the step and entry it was at
            entry = f" `{at['entry']}`" if at.get("entry") else ""
            state += f", at {_STEP_NAMES.get(at.get('step'), at.get('step'))}{entry}" \
                + (f" since {at['since']}" if at.get("since") else "")
        line(visible(f"last run: {run['id']} at {run['started_at']}: {state}"))
        for f in run["failures"]:
            where = f["plugin"] + (f" ({f['entry']})" if f.get("entry") and f["entry"] != f["plugin"] else "")
            # a plugin's own words, every line of them
            console.print(visible(continued(f"  {where}: {f['step']} failed: {f['error']}", "      ")))
    if data.get("outbox_pending"):
        line(f"notifications waiting in the outbox: {data['outbox_pending']}")


STALLS_SHOWN = 10  # stalled open tasks listed by `status`; `status --json` has every one found


def stall_lines(stalled: dict[str, Any], held: dict[str, Any]) -> list[str]:
    """``status``'s lines of tasks that wait for ever: open ones nobody may take, then held ones."""
    lines = []
    found = stalled.get("tasks") or []
    for t in found[:STALLS_SHOWN]:
        lines.append(f"stalled: task {t['external_id']} in `{t['queue']}` ({t['stage']}, since {t['since']}): "
                     f"{t['reason']}")
    if len(found) > STALLS_SHOWN:
        lines.append(f"stalled: and {len(found) - STALLS_SHOWN} more (`status --json` lists them)")
    for t in held.get("tasks") or []:
        where = f"in `{t['queue']}` ({t['stage']})" if t["queue"] is not None else "(no queue)"
        act = (f"`labelyard unhold id:{t['id']}` reopens it" if t["moved_by"] == "unhold"
               else f"`labelyard escalate id:{t['id']} --to QUEUE` routes it")
        lines.append(f"held: task {t['external_id']} {where} since {t['since']}: {t['reason'] or 'held'}; {act}")
    if held.get("tasks"):
        more = f"and {held['more']} more; " if held.get("more") else ""
        lines.append(f"held: {more}no rule moves a held task; a lead's `unhold` or `escalate` does")
    return lines


def claim_lines(view: dict[str, Any]) -> list[str]:
    """A claimed slot as ``claim`` prints it: what ``--json`` holds, for a person. An annotate slot
    shows the data and the choices only (blind); review and escalated slots add the prediction,
    every vote and the earlier verdicts; a correction adds the reviewer's comment and the
    annotator's own earlier label. Text from the database is made safe for a terminal."""
    label = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    comment = lambda text: text.replace("\n", "\n  ")  # noqa: E731 - its own lines indented under the first
    lines = [f"assignment {view['assignment']}: {view['kind']} task {view['external_id']} (queue {view['queue']})",
             json.dumps(view["data"], ensure_ascii=False, indent=2)]
    if view["kind"] in ("review", "escalated"):
        p = view.get("prediction") or {}
        confidence = "" if p.get("confidence") is None else f" (confidence {p['confidence']:.4g})"
        lines.append("prediction: none" if p.get("label") is None else f"prediction: {label(p['label'])}{confidence}")
        votes = ", ".join(f"{one_line(v['worker'])}={label(v['label'])}" for v in view.get("votes") or [])
        lines.append(f"votes: {votes or 'none'}")
        for r in view.get("reviews") or []:
            said = [r["verdict"] or "submitted"]
            if r["label"] is not None:
                said.append(f"label {label(r['label'])}")
            if r["comment"]:
                said.append(f"comment: {comment(r['comment'])}")
            lines.append(f"earlier {r['stage']} by {one_line(r['worker'])}: {', '.join(said)}")
    if view["kind"] == "correct":
        lines.append(f"reviewer's comment: {comment(view.get('comment') or '(no comment)')}")
        lines.append(f"your earlier label: {label(view.get('your_label'))}")
    if view["choices"]:
        lines.append("choices: " + ", ".join(map(one_line, view["choices"])))  # one line, whatever a choice holds
    return [visible(line) for line in lines]


def _returned(detail: Any) -> str | None:
    """A return's (or an unhold's) corrections and the voters it left out, for the history."""
    from .returns import described

    if not isinstance(detail, dict) or not (detail.get("corrections") or detail.get("left_out")):
        return None
    offered = detail.get("corrections") or []
    text = described(offered, detail.get("left_out") or [])
    return f"correction offered to {text}" if offered else text


def _quoted_text(text: Any) -> str:
    """A reason as JSON writes it, on one line: ``"line1\\nheld: …"``, as ``explain`` shows one."""
    return one_line(json.dumps(text, ensure_ascii=False))


def _slots(ids: list[Any], workers: list[Any] | None = None) -> str:
    """``assignment 3 of a1``, ``assignments 3, 4``: the slots an action ended."""
    names = f" of {', '.join(one_line(str(w)) for w in workers)}" if workers else ""
    return f"assignment{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}{names}"


def lead_did(event: dict[str, Any]) -> str | None:
    """What a lead's action did, for its line of ``show``'s history: the worker a ``reassign`` gave
    the slot to, the slots it, a ``hold`` or a ``release`` ended, the new priority, the hold's
    reason, the queue an ``escalate`` opened and where an ``unhold`` reopened the task. ``None`` for
    an event a rule wrote (its rule is on the line; ``explain`` tells the rest)."""
    d = event.get("detail")
    if event.get("rule") or not isinstance(d, dict):
        return None
    action, parts = event.get("action"), []
    if action == "reassign" and d.get("to") is not None:
        parts.append(f"to {one_line(str(d['to']))}")
        if d.get("released"):
            parts.append("released " + _slots(d["released"], d.get("from")))
        if d.get("forced"):
            parts.append(f"forced: {one_line(str(d['forced']))}")
    elif action == "release" and d.get("assignment") is not None:
        worker = [d["worker"]] if d.get("worker") is not None else None
        again = " (offered to them again)" if d.get("now") == "offered" else ""
        parts.append(_slots([d["assignment"]], worker) + again)
    elif action == "priority" and "to" in d:
        was = "?" if not isinstance(d.get("from"), (int, float)) else number_text(d["from"])
        now = "?" if not isinstance(d["to"], (int, float)) else number_text(d["to"])
        parts.append(f"{was} → {now}")
    elif action == "hold":
        if d.get("reason"):
            parts.append(f"reason {_quoted_text(d['reason'])}")
        if d.get("released"):
            parts.append("released " + _slots(d["released"]))
    elif action == "unhold" and d.get("stage") is not None:
        parts.append(f"{d['stage']} in {one_line(str(d.get('queue')))}")
    elif action == "escalate" and d.get("target") is not None:
        parts.append(f"to {one_line(str(d['target']))}")
        if d.get("reason"):  # the lead's own words (else the default "escalated by …", said already)
            parts.append(f"reason {_quoted_text(d['reason'])}")
    return "; ".join(parts) or None


GOLD_ANSWER_CHARS = 40  # of a gold answer in `gold list` (a list of boxes can be long: `--json` has it whole)


def gold_table(questions: list[dict[str, Any]]) -> list[str]:
    """``gold list``: a line per gold question, with the reason of a held or retired one under it."""
    if not questions:
        return ["no gold questions (a lead adds them: labelyard gold add FILE)"]
    rows = [("id", "state", "queue", "right", "wrong", "answer")]
    for q in questions:
        answer = json.dumps(q["answer"], ensure_ascii=False)
        if len(answer) > GOLD_ANSWER_CHARS:
            answer = answer[:GOLD_ANSWER_CHARS - 1] + "…"
        rows.append((visible(one_line(q["id"])), q["state"], visible(one_line(str(q["queue"]))), str(q["right"]),
                     str(q["wrong"]), visible(answer)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for n, row in enumerate(rows):
        cells = [cell.rjust(w) if i in (3, 4) else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + [row[5]]).rstrip())
        reason = questions[n - 1]["reason"] if n else None
        if reason and questions[n - 1]["state"] != "open":
            lines.append(f"    {visible(one_line(reason))}")
    counts = {state: sum(1 for q in questions if q["state"] == state) for state in ("open", "held", "retired")}
    lines.append(", ".join(f"{state} {n}" for state, n in counts.items()))
    return lines


def gold_line(gold: dict[str, Any]) -> str:
    """A gold question's answer, state and scores in one line (``show`` for a lead)."""
    state = gold["state"] + (f": {gold['reason']}" if gold.get("reason") else "")
    return (f"gold question ({state}): answer {json.dumps(gold['answer'], ensure_ascii=False)}; answered "
            f"{gold['answered']} time{'' if gold['answered'] == 1 else 's'}: {gold['right']} right, "
            f"{gold['wrong']} wrong")


def print_task(data: dict[str, Any]) -> None:
    """Print one task, its votes and its history."""
    from rich.text import Text

    # Task data, reasons, comments and rule names are the user's text: never read as markup.
    console = stdout_console(highlight=False, markup=False)
    line = lambda text: console.print(visible(text))  # noqa: E731
    t = data["task"]
    # a done or held task has no stage or queue: left out, never Python's `None`
    where = "".join(f" {key}={t[key]}" for key in ("stage", "queue") if t[key] is not None)
    console.print(Text.assemble((f"task {t['id']}", "bold"),
                                visible(f" ({t['external_id']}) status={t['status']}{where} "
                                        f"priority={number_text(t['priority'])}")))
    if t["final_label"] is not None:
        by = f" by {one_line(str(t['final_by']))}" if t["final_by"] is not None else ""
        rule = f" (rule `{t['final_rule']}`)" if t["final_rule"] is not None else ""
        line(f"final label: {json.dumps(t['final_label'])}{by}{rule}")
    if t["reason"]:
        line(f"reason: {one_line(t['reason'])}")  # a line break in it would print as a line of its own
    if data.get("stalled"):
        console.print(visible(f"stalled: {data['stalled']}"))
    p = data["prediction"]
    if any(p.get(key) is not None for key in ("label", "confidence", "model")):  # a confidence alone routes too
        known = "".join(f" {key}={p[key]}" for key in ("confidence", "model") if p[key] is not None)
        line(f"prediction: {json.dumps(p['label'])}{known}")
    line(f"data: {json.dumps(t['data'], ensure_ascii=False)}")
    gold = data.get("gold")  # a lead's view of a gold question (router.gold_view)
    if gold is not None:
        line(gold_line(gold))
    for a in data["annotations"]:
        extra = f" verdict={a['verdict']}" if a["verdict"] else ""
        extra += f" comment={a['comment']!r}" if a["comment"] else ""
        if "gold_right" in a:
            extra += " (right)" if a["gold_right"] else " (wrong)"
        line(f"  {a['stage']:<9} {one_line(a['worker']):<12} {json.dumps(a['label'])}{extra}")
    line("history:")
    for e in data["events"]:
        rule = f" rule `{e['rule']}`" if e["rule"] else ""
        action = f" → {e['action']}" if e["action"] else ""
        kept = ""
        if e["kind"] == "late_submission":  # work kept that decided nothing: show what it was
            detail = e.get("detail") or {}
            kept = f" {json.dumps(detail.get('label'), ensure_ascii=False)}" if detail.get("label") is not None else ""
            kept += f" verdict={detail['verdict']}" if detail.get("verdict") else ""
        by = f" by {one_line(str(e['actor']))}" if e["actor"] is not None else ""
        did = lead_did(e)
        did = f": {did}" if did else ""
        line(f"  {clock.iso(e['at'])} {e['kind']}{rule}{action}{by}{kept}{did}")
        returned = _returned(e.get("detail"))
        if returned:
            line(f"      {returned}")
