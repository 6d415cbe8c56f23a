"""The fourteenth session's plugin fixes: a plugin call that never returns is stopped at its entry's
time limit; ``release --where`` reads the queue's slots alone; the ``.json`` array reader says an
invalid element at once and holds a long one about once.

Real subprocesses of ``labelyard`` on real SQLite files; plugins under test are ``.py`` files in a
plugins folder (``LABELYARD_PLUGINS_DIR``), as a user would write them. The hung plugins loop for
ever; their entries' ``time_limit:`` is one second, a real one (``LABELYARD_NOW`` does not move
it), and no test asserts how long anything took.
"""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

BASE = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues: {q: {roles: [annotator]}, senior: {roles: [senior]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: q, overlap: 1}}
on_quorum: [{name: check, do: {review: senior}}]
"""

HUNG = {
    # yields one part, then waits for ever, swallowing what `except Exception` catches
    "hang": """
        import time
        from router import hookimpl
        from router.plugin_api import SourcePart, TaskInput

        @hookimpl
        def register_sources(register):
            register("hang", read)

        def read(run):
            yield SourcePart("hang", [TaskInput(1, "h1", {}, label="bug", confidence=0.95)], cursor=1)
            while True:
                try:
                    time.sleep(0.05)
                except Exception:
                    pass
    """,
    # judges a task at once, except a poisoned one, on which it spins
    "spin": """
        from router import hookimpl
        from router.plugin_api import approve

        @hookimpl
        def register_reviewers(register):
            register("spin", review)

        def review(run, item):
            n = 0
            while item.data.get("poison"):
                n += 1
            return approve("fine")
    """,
    # takes the first call ([]: where it starts) and never returns from a batch
    "stuck": """
        import time
        from router import hookimpl

        @hookimpl
        def register_sinks(register):
            register("stuck", write)

        def write(run, tasks):
            while tasks:
                time.sleep(0.05)
            return None
    """,
    # a receiver that never answers
    "mute": """
        import threading
        from router import hookimpl

        @hookimpl
        def register_notifiers(register):
            register("mute", send)

        def send(run, note):
            threading.Event().wait()
    """,
}


def confident(ident: str) -> str:
    return json.dumps({"id": ident, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"


def unsure(ident: str, **data) -> str:
    return json.dumps({"id": ident, "data": data}) + "\n"


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


@pytest.fixture
def project(run, tmp_path):
    """``init`` done, the hung plugins in LABELYARD_PLUGINS_DIR, ``apply(text)`` applies a version."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, body in HUNG.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    run.env["LABELYARD_PLUGINS_DIR"] = str(folder)
    run.env.pop("LABELYARD_LOAD_PLUGINS", None)
    run.ok("init")

    def apply(text: str, expect_ok: bool = True):
        path = tmp_path / "f.workflow.yaml"
        path.write_text(text, encoding="utf-8")
        return run.ok("apply", path.name) if expect_ok else run("apply", path.name)

    run.apply = apply
    return run


def timed_out(plugin: str, file: str) -> re.Pattern:
    return re.compile(rf"{plugin} timed out after 1 s and was stopped at {file}:\d+ \(each call may take the "
                      r"entry's `time_limit:` seconds, 600 unless set\)")


# -- 1: a hung plugin call is stopped at its time limit -----------------------------------------------
def test_a_hung_source_is_stopped_its_first_part_stays_and_the_other_entries_run(project, tmp_path):
    (tmp_path / "in.jsonl").write_text(confident("j1"), encoding="utf-8")
    project.apply(BASE + "sources: [{plugin: hang, time_limit: 1}, {plugin: jsonl, path: in.jsonl}]\n"
                         "sinks: [{plugin: jsonl, path: final.jsonl}]\n")
    proc = project("run", "--json")
    assert proc.returncode == 4, proc.stderr
    report = json.loads(proc.stdout)
    assert report["sources"]["hang"]["ingested"] == 1  # the part before the hang went in
    assert report["sources"]["jsonl:in.jsonl"]["ingested"] == 1
    assert report["sinks"] == {"jsonl:final.jsonl": {"delivered": 2}}
    [failure] = report["failures"]
    assert failure["step"] == "sources" and failure["entry"] == "hang"
    assert timed_out("hang", "hang.py").fullmatch(failure["error"]), failure["error"]
    [line] = proc.stderr.splitlines()
    assert line.startswith("labelyard run: hang: sources failed: hang timed out after 1 s")
    assert sorted(row["id"] for row in lines(tmp_path / "final.jsonl")) == ["h1", "j1"]
    status = project.json("status", "--json")["last_run"]
    assert status["finished"] is True and status["ok"] is False
    # its cursor was stored after its part: the next run starts after it, and is stopped again
    again = project("run", "--json")
    assert again.returncode == 4
    assert json.loads(again.stdout)["sources"]["hang"] == {"ingested": 0, "duplicates": 1, "rejected": 0,
                                                          "routed": {}}


def test_a_reviewer_hung_on_one_task_is_stopped_naming_it_and_the_tasks_after_it_wait(project, tmp_path):
    project.apply(BASE + "reviewers: [{plugin: spin, time_limit: 1}]\n"
                         "sinks: [{plugin: jsonl, path: final.jsonl}]\n")
    project.ok("workers", "add", "ann", "--role", "annotator")
    (tmp_path / "in.jsonl").write_text(unsure("ok1") + unsure("p1", poison=True) + unsure("ok2"), encoding="utf-8")
    project.ok("ingest", tmp_path / "in.jsonl")
    for _ in range(3):
        slot = project.json("claim", "--as", "ann", "--json")
        project.ok("submit", slot["assignment"], "--as", "ann", "--label", "bug")
    proc = project("run", "--json")
    assert proc.returncode == 4, proc.stderr
    report = json.loads(proc.stdout)
    assert report["reviewers"]["spin"] == {"approve": 1, "→ accept": 1}
    assert report["sinks"] == {"jsonl:final.jsonl": {"delivered": 1}}  # the run went on after it
    [failure] = report["failures"]
    assert failure["step"] == "reviewers" and failure["entry"] == "spin"
    assert failure["error"].startswith("task p1: spin timed out after 1 s and was stopped at spin.py:")
    assert failure["error"].endswith("; the tasks after it wait for the next run")
    assert project.json("show", "ok1", "--json")["task"]["status"] == "done"
    for waiting in ("p1", "ok2"):
        assert project.json("show", waiting, "--json")["task"]["stage"] == "review"


def test_a_hung_sink_and_a_hung_notifier_are_stopped_and_what_they_had_waits(project, tmp_path):
    project.apply(BASE + "sinks: [{plugin: stuck, time_limit: 1}, {plugin: jsonl, path: final.jsonl}]\n"
                         "notify: [{plugin: mute, time_limit: 1}]\n")
    (tmp_path / "in.jsonl").write_text(confident("t1"), encoding="utf-8")
    project.ok("ingest", tmp_path / "in.jsonl")
    proc = project("run", "--json")
    assert proc.returncode == 4, proc.stderr
    report = json.loads(proc.stdout)
    assert report["sinks"] == {"stuck": {"delivered": 0}, "jsonl:final.jsonl": {"delivered": 1}}
    assert report["notify"] == {"mute": {"queued": 1, "delivered": 0, "pending": 1}}
    sink, note = report["failures"]
    assert (sink["step"], sink["entry"]) == ("sinks", "stuck")
    assert timed_out("stuck", "stuck.py").fullmatch(sink["error"]), sink["error"]
    assert (note["step"], note["entry"]) == ("notify", "mute")
    assert note["error"].startswith("mute timed out after 1 s and was stopped at ")
    assert note["error"].endswith("; 1 notification(s) kept in the outbox for the next run")
    status = project.json("status", "--json")
    assert status["outbox_pending"] == 1
    assert status["last_run"]["finished"] is True


@pytest.mark.parametrize(("value", "message"), [
    ("0", "setting `time_limit:` must be at least 0.1, not 0"),
    ("ten", "setting `time_limit:` must be a number, not 'ten'"),
    ("90000", "setting `time_limit:` must be at most 86400, not 90000"),
])
def test_validate_and_apply_refuse_a_bad_time_limit_at_its_value(project, tmp_path, value, message):
    path = tmp_path / "f.workflow.yaml"
    path.write_text(BASE + f"sinks:\n  - plugin: jsonl\n    path: final.jsonl\n    time_limit: {value}\n",
                    encoding="utf-8")
    for command in ("validate", "apply"):
        proc = project(command, path.name)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"f.workflow.yaml:11:17: sinks entry 1 (`jsonl`): {message}" in proc.stdout + proc.stderr


def test_a_time_limit_is_labelyards_own_setting_of_every_entry(project, tmp_path):
    applied = project.apply(BASE + "sinks: [{plugin: jsonl, path: final.jsonl, time_limit: 2.5}]\n"
                                   "notify: [{plugin: webhook, url: 'http://127.0.0.1:9/h', time_limit: 30}]\n")
    assert "time_limit" not in applied.stderr  # not a setting the plugin does not know
    checked = project("validate", "f.workflow.yaml")
    assert checked.returncode == 0 and "time_limit" not in checked.stdout + checked.stderr


# -- the timer itself, in this process ------------------------------------------------------------------
def test_a_stopped_call_puts_back_the_handler_and_the_timer_it_found():
    from router.plugin_calls import plugin_code
    from router.plugin_time import PluginTimeout, time_limit

    heard = []

    def theirs(signum, frame):
        heard.append(signum)

    before = signal.signal(signal.SIGALRM, theirs)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        with time_limit(0.2, "loop"), pytest.raises(PluginTimeout, match=r"^loop timed out after 0.2 s"):
            with plugin_code():
                give_up = time.monotonic() + 30  # not a limit under test: a timer that never fires fails the test
                while time.monotonic() < give_up:
                    try:
                        time.sleep(0.01)
                    except Exception:  # noqa: BLE001 - what a careless plugin does
                        pass
        assert signal.getsignal(signal.SIGALRM) is theirs
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < left <= 60  # their timer goes on with what it had left
        with time_limit(0.2, "quick"), plugin_code():
            pass  # a call within its limit: nothing fires later
        assert signal.getsignal(signal.SIGALRM) is theirs and heard == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def test_a_call_outside_the_main_thread_is_not_stopped():
    from router.plugin_calls import plugin_code
    from router.plugin_time import time_limit

    outcome = []

    def call():
        try:
            with time_limit(0.05, "slow"), plugin_code():
                time.sleep(0.2)
            outcome.append("returned")
        except BaseException as exc:  # noqa: BLE001
            outcome.append(repr(exc))

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert outcome == ["returned"]



# -- 2: release --where reads the queue's slots alone, as the other bulk actions read its range ----------
RELEASE_WORKFLOW = """\
workflow: w
labels: {type: choice, choices: [cat, dog]}
queues:
  triage: {roles: [annotator]}
  vets: {roles: [annotator]}
on_create:
  - {name: medical, when: task.category == "medical", do: {annotate: vets, overlap: 2}}
  - {name: default, do: {annotate: triage, overlap: 2}}
"""


@pytest.fixture
def slots(tmp_path):
    """Twelve tasks, half in `vets` (the odd ones), four workers each holding a slot in both queues."""
    from lead_support import Project

    p = Project(tmp_path / "p", RELEASE_WORKFLOW)
    p.ingest([{"id": f"T{n:02d}", "category": "medical" if n % 2 else "plain", "data": {"n": n}}
              for n in range(12)])
    for worker in ("ann", "bob", "cy", "di"):
        p.worker(worker, "annotator")
    for queue in ("triage", "vets"):
        for worker in ("ann", "bob", "cy", "di"):
            p.run_ok("claim", "--as", worker, "--queue", queue)
    return p


RELEASE_EQUIVALENT = [  # a filter narrowed to a queue, and one of the same meaning that requires nothing
    ('task.queue == "vets"', 'not (task.queue != "vets")'),
    ('task.data.n > 4 and task.queue == "triage"', 'task.data.n > 4 and not (task.queue != "triage")'),
    ('task.queue in ["vets", null]', 'not (task.queue != "vets" and task.queue != null)'),
    ('task.queue == null', 'not (task.queue != null)'),
    ('task.queue == "nowhere"', 'not (task.queue != "nowhere")'),
    ('task.queue == 1', 'not (task.queue != 1)'),
    ('task.status == "held" and task.queue == "vets"', 'not (task.status != "held" or task.queue != "vets")'),
]


@pytest.mark.parametrize("narrowed, walked", RELEASE_EQUIVALENT)
def test_release_where_narrowed_to_a_queue_finds_the_tasks_the_whole_walk_finds(slots, narrowed, walked):
    def found(expr):
        report = slots.json("release", "--where", expr, "--dry-run")
        return report["matched"], sorted(d["external_id"] for d in report["done"]), report["skipped"]

    assert found(narrowed) == found(walked)


def test_release_where_on_a_queue_reads_the_slots_of_that_queue_alone(slots, monkeypatch):
    from lead_support import LEAD, engine_at
    from router.lead import Lead

    engine = engine_at(slots.db, monkeypatch, 1)
    read: list[str] = []
    method = engine.store.tasks_holding_slots_after

    def counted(*args):
        rows = method(*args)
        read.extend(row["external_id"] for row in rows)
        return rows

    monkeypatch.setattr(engine.store, "tasks_holding_slots_after", counted)
    report = Lead(engine, LEAD).run("release", [], 'task.queue == "vets"', dry_run=True)
    vets = list(read)
    assert len(vets) == 4 and all(int(ext[1:]) % 2 for ext in vets), read  # before: the triage slots too
    assert report.matched == len(set(vets))
    read.clear()
    everything = Lead(engine, LEAD).run("release", [], "true", dry_run=True)
    assert len(read) > len(vets) and everything.matched > report.matched
    read.clear()
    Lead(engine, LEAD).run("release", [], 'task.queue == "nowhere"', dry_run=True)
    assert read == []
    engine.close()


# -- 3: the .json array reader: an invalid element said at once, a long one not held twice -------------
class CountingReader(io.StringIO):
    """A text file that counts the characters read from it."""

    read_chars = 0

    def read(self, size: int | None = -1) -> str:
        text = super().read(size)
        self.read_chars += len(text)
        return text


def test_an_invalid_element_under_the_limit_is_said_at_its_line_without_reading_on_to_the_limit():
    from router.json_array import ArraySyntaxError, iter_json_elements

    limit = 4 << 20
    handle = CountingReader('[{"id": "a"},\n{"id": "b", "t": "line\nbreak"},\n{"id": "c", "t": "'
                            + "z" * (2 * limit) + '"}]')
    elements = iter_json_elements(handle, limit)
    assert next(elements).line == 1
    with pytest.raises(ArraySyntaxError, match=r"^invalid JSON at line 2, column 23: Invalid control character"):
        next(elements)
    assert handle.read_chars < limit // 8  # before: read on to the limit (4 MiB) before saying it


def test_an_element_over_the_limit_is_too_long_even_when_it_is_not_json():
    from router.json_array import LongElement, iter_json_elements

    limit = 1 << 20
    text = '[{"id": "a", "t": "' + "z" * (2 * limit) + '", oops},\n{"id": "b"}]'
    first, second = iter_json_elements(io.StringIO(text), limit)
    assert isinstance(first.value, LongElement) and first.value.size == len(text.split("\n")[0]) - 2  # [ ,
    assert (second.line, second.value) == (2, {"id": "b"})


READ_LONG = """\
import sys
from router.json_array import LongElement, iter_json_elements

def peak():  # this process's peak resident memory (not ru_maxrss: it keeps the forking parent's)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

limit = int(sys.argv[2])
before = peak()
with open(sys.argv[1], encoding="utf-8", errors="surrogateescape", newline="") as handle:
    kinds = [type(e.value).__name__ for e in iter_json_elements(handle, limit)]
print(kinds, (peak() - before) / limit)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak from /proc")
def test_an_element_over_the_limit_is_read_through_holding_about_the_limit(tmp_path):
    limit = 16 << 20
    path = tmp_path / "long.json"
    with path.open("w", encoding="utf-8") as handle:
        handle.write('[{"id": "a", "data": {"t": "')
        handle.write("x" * (3 * limit))
        handle.write('"}},\n{"id": "b", "data": {}}]\n')
    proc = subprocess.run([sys.executable, "-c", READ_LONG, str(path), str(limit)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    kinds, grown = proc.stdout.split("] ")
    assert kinds + "]" == "['LongElement', 'dict']"
    # the window up to the limit, once: before, 2.5 times the limit (each try to decode the string
    # read so far built it again, the window's rest was copied as it grew, its size measured on a copy)
    assert float(grown) < 1.8, proc.stdout
