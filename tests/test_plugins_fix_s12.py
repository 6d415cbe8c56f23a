"""The twelfth session's plugin fixes: the validity reviewer's wording, the webhook's User-Agent, file
sources and an unterminated last line, file sinks killed in their first batch, and rule functions'
subprocess output under ``run --json``."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from router.plugin_api import PluginRun, ReviewItem
from router.plugins import load_plugins
from rules.workflow import LabelSpec


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)


# -- 1. validity says a refused label as the router does -----------------------------------------------
def _item(label):
    return ReviewItem(1, "t", "q", {"width": 10, "height": 10, "text": "some text"}, None, [], {},
                      [{"worker": "w", "label": label}], label, 1.0)


def test_validity_names_the_kind_of_a_label_outside_the_choices_as_submit_does(clean_env):
    review = load_plugins().get("reviewers", "validity").func
    choice = PluginRun("validity", "v", label_type="choice", choices=("1", "cat"))
    assert review(choice, _item(1)).reason == 'consensus: label 1 (a number) is not one of "1", "cat"'
    assert review(choice, _item(1)).reason == f"consensus: {LabelSpec(type='choice', choices=('1', 'cat')).problem(1)}"
    assert review(choice, _item("dog")).reason == 'consensus: label "dog" is not one of 1, cat'


def test_validity_names_the_kind_of_a_box_span_or_multi_choice_label(clean_env):
    review = load_plugins().get("reviewers", "validity").func
    boxes = PluginRun("validity", "v", label_type="boxes", choices=("1",))
    box = {"x": 0, "y": 0, "width": 1, "height": 1, "label": 1}
    assert review(boxes, _item([box])).reason == 'consensus: box 1: 1 (a number) is not one of "1"'
    assert LabelSpec(type="boxes", choices=("1",)).problem([box]) == '1 (a number) is not one of "1"'
    spans = PluginRun("validity", "v", label_type="spans", choices=("1", "x"))
    assert review(spans, _item([{"start": 0, "end": 2, "label": True}])).reason == \
        'consensus: span 1: true (true or false) is not one of "1", "x"'
    multi = PluginRun("validity", "v", label_type="multi_choice", choices=("1", "é"))
    assert review(multi, _item(["ö"])).reason == 'consensus: "ö" not among 1, é'
    assert review(multi, _item([1])).reason == 'consensus: 1 (a number) not among "1", "é"'
    assert LabelSpec(type="multi_choice", choices=("1", "é")).problem(["ö"]) == '"ö" not among 1, é'


def test_the_formatters_are_part_of_the_plugin_api():
    import router.plugin_api as api

    assert {"not_one_of", "not_among"} <= set(api.__all__)
    assert api.not_one_of(1, ["1"]) == '1 (a number) is not one of "1"'


# -- 2. the webhook takes the user's User-Agent --------------------------------------------------------
HOOK_WORKFLOW = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
notify: [{plugin: webhook, url: "URL", secret_env: HOOK_SECRET, backoff: 0HEADERS}]
"""


class Receiver:
    """An HTTP server on 127.0.0.1 recording every request's headers as sent (repeated ones too)."""

    def __init__(self):
        self.requests: list[list[tuple[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(list(self.headers.items()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def values(self, n: int, name: str) -> list[str]:
        return [value for key, value in self.requests[n] if key.lower() == name.lower()]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def hook_project(run, tmp_path, url: str, headers: str = "") -> None:
    text = HOOK_WORKFLOW.replace("URL", url).replace("HEADERS", f", headers: {headers}" if headers else "")
    (tmp_path / "f.workflow.yaml").write_text(text, encoding="utf-8")
    run.env["HOOK_SECRET"] = "s3cret"
    run.ok("init")
    run.ok("validate", "f.workflow.yaml")
    run.ok("apply", "f.workflow.yaml")
    (tmp_path / "t.jsonl").write_text(
        '{"id": "d1", "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")


@pytest.mark.parametrize("name", ["User-Agent", "user-AGENT"])
def test_the_users_user_agent_replaces_the_webhooks_default(run, tmp_path, receiver, name):
    hook_project(run, tmp_path, receiver.url, f'{{{name}: "acme-hooks/2.1", Authorization: "Bearer t"}}')
    assert run.json("run", "--json")["ok"]
    assert receiver.values(0, "User-Agent") == ["acme-hooks/2.1"]  # sent once, the user's
    assert receiver.values(0, "Authorization") == ["Bearer t"]
    assert receiver.values(0, "Content-Type") == ["application/json"]
    assert len(receiver.values(0, "X-Labelyard-Delivery")) == 1 and receiver.values(0, "X-Labelyard-Signature")


def test_without_a_user_agent_of_its_own_the_webhook_sends_its_default(run, tmp_path, receiver):
    hook_project(run, tmp_path, receiver.url)
    run.ok("run")
    assert receiver.values(0, "User-Agent") == ["labelyard-webhook"]


@pytest.mark.parametrize("header", ["Content-Type", "X-Labelyard-Delivery", "x-labelyard-signature",
                                    "Content-Length", "Transfer-Encoding", "Host"])
def test_the_headers_a_receiver_relies_on_are_still_refused(run, tmp_path, header):
    text = HOOK_WORKFLOW.replace("URL", "http://127.0.0.1:9/h").replace("HEADERS", f', headers: {{{header}: "x"}}')
    (tmp_path / "f.workflow.yaml").write_text(text, encoding="utf-8")
    refused = run("validate", "f.workflow.yaml")
    assert refused.returncode == 1 and f"setting `headers:` must not set `{header}`" in refused.stderr


# -- 3. a file source never reads a last line without its line break as a row ----------------------------
SOURCE_WORKFLOW = """\
workflow: r
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: default, do: {annotate: triage, overlap: 1}}
"""


@pytest.fixture
def sources(run, tmp_path):
    """``init`` done; ``use(entry)`` applies the workflow with ``sources: [entry]``."""
    (tmp_path / "r").mkdir()
    run.ok("init")

    def use(entry: str) -> None:
        (tmp_path / "r.workflow.yaml").write_text(SOURCE_WORKFLOW + f"sources: [{entry}]\n", encoding="utf-8")
        run.ok("validate", "r.workflow.yaml")
        run.ok("apply", "r.workflow.yaml")

    run.use = use
    return run


def counts(run, key: str, env: dict[str, str] | None = None) -> tuple[int, int, int]:
    report = run.json("run", "--json", env=env)["sources"][key]
    return report["ingested"], report["duplicates"], report["rejected"]


def data_of(run, ident: str):
    shown = run("show", ident, "--json")
    return json.loads(shown.stdout)["task"]["data"] if shown.returncode == 0 else None


def written_at(path, epoch: float) -> None:
    """Set ``path``'s modification time (the runs' clock is ``LABELYARD_NOW``)."""
    os.utime(path, (epoch, epoch))


def at(seconds: float) -> dict[str, str]:
    """The environment of a run ``seconds`` after the conftest's ``LABELYARD_NOW``."""
    return {"LABELYARD_NOW": str(NOW_EPOCH + seconds)}


NOW_EPOCH = 1740819600.0  # 2025-03-01T09:00:00Z, the conftest's LABELYARD_NOW


def test_a_half_csv_row_is_not_read_however_many_runs_find_it_unchanged_within_the_hour(sources, tmp_path):
    sources.use('{plugin: csv, path: "r/*.csv"}')
    sheet = tmp_path / "r" / "a.csv"
    sheet.write_bytes(b"id,text\nc1,one\nc2,tw")  # a writer caught in the middle of row c2
    written_at(sheet, NOW_EPOCH - 60)
    assert counts(sources, "csv:r/*.csv") == (1, 0, 0)
    for later in (60, 600, 3539):  # unchanged across whole run intervals, for most of the hour: not a row
        assert counts(sources, "csv:r/*.csv", at(later)) == (0, 0, 0)
    assert data_of(sources, "c2") is None
    with open(sheet, "ab") as handle:
        handle.write(b"o\n")  # the writer ends its row
    assert counts(sources, "csv:r/*.csv") == (1, 1, 0)
    assert data_of(sources, "c2") == {"text": "two"}
    assert sources.json("rejects", "--json") == []


def test_a_half_jsonl_line_is_not_read_however_many_runs_find_it_unchanged_within_the_hour(sources, tmp_path):
    sources.use('{plugin: jsonl, path: "r/*.jsonl"}')
    inbox = tmp_path / "r" / "a.jsonl"
    inbox.write_bytes(b'{"id": "j1", "data": {"text": "one"}}\n{"id": "j2", "data": {"text": "tw')
    written_at(inbox, NOW_EPOCH - 60)
    assert counts(sources, "jsonl:r/*.jsonl") == (1, 0, 0)
    for later in (60, 600, 3539):
        assert counts(sources, "jsonl:r/*.jsonl", at(later)) == (0, 0, 0)
    with open(inbox, "ab") as handle:
        handle.write(b'o"}}\n')
    assert counts(sources, "jsonl:r/*.jsonl") == (1, 0, 0)
    assert data_of(sources, "j2") == {"text": "two"}
    assert sources.json("rejects", "--json") == []


def test_finished_after_reads_the_last_csv_row_of_a_file_left_unmodified_that_long(sources, tmp_path):
    sources.use('{plugin: csv, path: "r/*.csv", finished_after: 600}')
    sheet = tmp_path / "r" / "export.csv"
    sheet.write_bytes(b"id,text\nc1,one\nc2,two")  # as a spreadsheet exports it: no final line break
    written_at(sheet, NOW_EPOCH - 60)  # a minute ago: it may still be being written
    assert counts(sources, "csv:r/*.csv") == (1, 0, 0)
    assert counts(sources, "csv:r/*.csv", at(539)) == (0, 0, 0)
    assert data_of(sources, "c2") is None
    assert counts(sources, "csv:r/*.csv", at(540)) == (1, 0, 0)  # unmodified for 600 s: finished
    assert data_of(sources, "c2") == {"text": "two"}
    assert counts(sources, "csv:r/*.csv", at(600)) == (0, 0, 0)  # done: not read again


def test_by_default_the_last_csv_row_of_a_file_left_unmodified_an_hour_goes_in(sources, tmp_path):
    sources.use('{plugin: csv, path: "r/*.csv"}')
    sheet = tmp_path / "r" / "export.csv"
    sheet.write_bytes(b"id,text\nc1,one\nc2,two")  # as a spreadsheet exports it: no final line break
    written_at(sheet, NOW_EPOCH - 60)
    assert counts(sources, "csv:r/*.csv") == (1, 0, 0)
    assert counts(sources, "csv:r/*.csv", at(3539)) == (0, 0, 0)
    assert data_of(sources, "c2") is None
    assert counts(sources, "csv:r/*.csv", at(3540)) == (1, 0, 0)  # unmodified for an hour: finished
    assert data_of(sources, "c2") == {"text": "two"}


def test_finished_after_zero_reads_files_to_their_end_at_once(sources, tmp_path):
    sources.use('{plugin: csv, path: "r/*.csv", finished_after: 0}')
    sheet = tmp_path / "r" / "export.csv"
    sheet.write_bytes(b"id,text\nc1,one\nc2,two")
    written_at(sheet, NOW_EPOCH)
    assert counts(sources, "csv:r/*.csv") == (2, 0, 0)


def test_finished_after_quarantines_the_cut_off_last_line_of_a_finished_jsonl_file(sources, tmp_path):
    sources.use('{plugin: jsonl, path: "r/*.jsonl", finished_after: 600}')
    inbox = tmp_path / "r" / "a.jsonl"
    inbox.write_bytes(b'{"id": "j1", "data": {}}\n{"id": "j2", "da')
    written_at(inbox, NOW_EPOCH)
    assert counts(sources, "jsonl:r/*.jsonl") == (1, 0, 0)
    assert counts(sources, "jsonl:r/*.jsonl", at(600)) == (0, 0, 1)
    assert [r["line"] for r in sources.json("rejects", "--json")] == [2]


def test_finished_after_must_be_a_number_of_seconds(sources, tmp_path):
    (tmp_path / "r.workflow.yaml").write_text(
        SOURCE_WORKFLOW + 'sources: [{plugin: csv, path: "r/*.csv", finished_after: -1}]\n', encoding="utf-8")
    refused = sources("validate", "r.workflow.yaml")
    assert refused.returncode == 1 and "setting `finished_after:` must be at least 0, not -1" in refused.stderr


# -- 4. a file sink killed in its first batch into a new file leaves each task once ------------------------
SINK_WORKFLOW = """\
workflow: s
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
"""

# `labelyard run`, killed with SIGKILL at a point the first argument names: `record`, when the first
# batch's delivery is about to be recorded (the sink's write returned: appended and synced); `torn`,
# in the middle of the sink's write (half its bytes in the file).
KILLED_RUN = """
import os, signal, sys
if sys.argv[1] == "record":
    import router.store as store
    def killing(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    store.Store.record_deliveries = killing
else:
    import plugins.csvfile, plugins.jsonl
    class Torn:
        def __init__(self, handle):
            self.handle = handle
        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        def __getattr__(self, name):
            return getattr(self.handle, name)
    for module in (plugins.csvfile, plugins.jsonl):
        module.open_append = lambda *args, _real=module.open_append, **kwargs: Torn(_real(*args, **kwargs))
from router.cli import main
sys.argv = ["labelyard", "run"]
main()
"""


@pytest.fixture
def sinks(run, tmp_path):
    """``init`` done; ``use(entry)`` applies the workflow with ``sinks: [entry]``; ``final(*ids)`` ingests
    tasks accepted at once; ``killed(mode)`` runs a run killed as ``KILLED_RUN`` says."""
    (tmp_path / "r").mkdir()
    run.ok("init")

    def use(entry: str) -> None:
        (tmp_path / "s.workflow.yaml").write_text(SINK_WORKFLOW + f"sinks: [{entry}]\n", encoding="utf-8")
        run.ok("apply", "s.workflow.yaml")

    def final(*ids: str) -> None:
        rows = "".join(json.dumps({"id": i, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"
                       for i in ids)
        (tmp_path / "in.jsonl").write_text(rows, encoding="utf-8")
        run.ok("ingest", "in.jsonl")

    def killed(mode: str) -> None:
        proc = subprocess.run([sys.executable, "-c", KILLED_RUN, mode], env=run.env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, proc.stderr

    run.use, run.final, run.killed = use, final, killed
    return run


def output_ids(path) -> list[str]:
    """The ids in a jsonl or csv sink's file, every line of it whole (a half line fails the test)."""
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n"), text[-80:]
    if ".jsonl" in path.name:
        return [json.loads(line)["id"] for line in text.splitlines()]
    rows = list(csv.reader(text.splitlines()))
    assert rows[0][0] == "id" and all(len(row) == len(rows[0]) for row in rows), rows
    return [row[0] for row in rows[1:]]


@pytest.mark.parametrize("mode", ["record", "torn"])
@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_a_sink_killed_in_its_first_batch_into_a_new_file_leaves_each_task_once(sinks, tmp_path, suffix, mode):
    plugin = "csv" if suffix == "csv" else "jsonl"
    out = tmp_path / "r" / f"out.{suffix}"
    sinks.use(f"{{plugin: {plugin}, path: r/out.{suffix}}}")
    sinks.final("t1")
    sinks.ok("run")
    assert [p.name for p in (tmp_path / "r").iterdir()] == [f"out.{suffix}"]  # a file it made: no mark left
    out.rename(tmp_path / "r" / f"out.{suffix}.1")  # rotated: the next batch goes to a new file
    sinks.final("t2", "t3")
    sinks.killed(mode)
    assert out.exists()  # the new file, the killed batch (or half of it) in it
    report = sinks.json("run", "--json")
    assert report["sinks"][f"{plugin}:r/out.{suffix}"] == {"delivered": 2}
    assert output_ids(out) == ["t2", "t3"]  # before: t2, t3 twice (or half a batch, then the batch)
    assert output_ids(tmp_path / "r" / f"out.{suffix}.1") == ["t1"]
    sinks.final("t4")
    sinks.ok("run")
    assert output_ids(out) == ["t2", "t3", "t4"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [f"out.{suffix}", f"out.{suffix}.1"]


@pytest.mark.parametrize("mode", ["record", "torn"])
def test_a_named_sink_killed_in_its_first_batch_into_a_file_it_did_not_write_keeps_that_file_whole(
        sinks, tmp_path, mode):
    sinks.use("{name: final, plugin: jsonl, path: r/a.jsonl}")
    sinks.final("t1")
    sinks.ok("run")
    other = tmp_path / "r" / "b.jsonl"
    kept = "".join(f'{{"id": "theirs-{n}"}}\n' for n in range(50))
    other.write_text(kept, encoding="utf-8")
    sinks.use("{name: final, plugin: jsonl, path: r/b.jsonl}")
    sinks.final("t2", "t3")
    sinks.killed(mode)
    sinks.ok("run")
    text = other.read_text(encoding="utf-8")
    assert text.startswith(kept)
    assert output_ids(other) == [f"theirs-{n}" for n in range(50)] + ["t2", "t3"]


# -- 5. a rule function's subprocess never writes into a command's output --------------------------------
SHELLED = """\
import os
import subprocess
import sys

from router import hookimpl


@hookimpl
def register_functions(register):
    register("shelled", shelled)


def shelled(text):
    os.system("echo from-os-system")
    subprocess.run([sys.executable, "-c", "print('from-a-child')"], check=True)
    print("from-print")
    return len(str(text))
"""

SHELLED_WORKFLOW = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}}
on_create:
  - {name: long, when: shelled(task.data.text) > 100, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
on_quorum:
  - {name: checked, when: shelled(task.id) > 100, do: accept}
  - {name: agreed, do: accept}
on_timer:
  - {name: idle, when: shelled(task.id) > 100, do: release}
sources: [{plugin: jsonl, path: r/in.jsonl}]
"""

SAID = ("from-os-system", "from-a-child", "from-print")


@pytest.fixture
def shelled(run, tmp_path):
    """A workflow whose rules call ``shelled()``, which prints, runs ``os.system`` and a child process."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "shelled.py").write_text(SHELLED, encoding="utf-8")
    (tmp_path / "r").mkdir()
    run.env["LABELYARD_PLUGINS_DIR"] = str(tmp_path / "plugins")
    (tmp_path / "f.workflow.yaml").write_text(SHELLED_WORKFLOW, encoding="utf-8")
    run.ok("init")
    run.ok("apply", "f.workflow.yaml")
    return run


def one_document(proc) -> dict:
    """Standard output is one JSON document, and what the rule function said is on standard error."""

    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    for said in SAID:
        assert said not in proc.stdout and said in proc.stderr, said
    return document


def test_run_json_and_quiet_keep_a_rule_functions_subprocess_off_standard_output(shelled, tmp_path):
    (tmp_path / "r" / "in.jsonl").write_text('{"id": "a1", "data": {"text": "x"}}\n', encoding="utf-8")
    report = one_document(shelled("run", "--json"))
    assert report["sources"]["jsonl:r/in.jsonl"]["routed"] == {"default": 1}
    with open(tmp_path / "r" / "in.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"id": "a2", "data": {"text": "y"}}\n')
    quiet = shelled("run", "--quiet")
    assert (quiet.returncode, quiet.stdout) == (0, "")
    assert all(said in quiet.stderr for said in SAID)


@pytest.mark.parametrize("how", ["file", "plugin"])
def test_ingest_json_keeps_a_rule_functions_subprocess_off_standard_output(shelled, tmp_path, how):
    (tmp_path / "b.jsonl").write_text('{"id": "b1", "data": {"text": "x"}}\n', encoding="utf-8")
    source = "b.jsonl" if how == "file" else "jsonl:b.jsonl"
    assert one_document(shelled("ingest", source, "--json"))["ingested"] == 1
    (tmp_path / "c.jsonl").write_text('{"id": "c1", "data": {"text": "x"}}\n', encoding="utf-8")
    plain = shelled("ingest", source.replace("b.", "c."))
    assert plain.stdout.startswith("ingested 1,") and all(said not in plain.stdout for said in SAID)


def test_submit_and_tick_json_keep_a_rule_functions_subprocess_off_standard_output(shelled, tmp_path):
    (tmp_path / "b.jsonl").write_text('{"id": "b1", "data": {"text": "x"}}\n'
                                      '{"id": "b2", "data": {"text": "x"}}\n', encoding="utf-8")
    shelled.ok("ingest", "b.jsonl")
    for worker in ("ann", "bob"):
        shelled.ok("workers", "add", worker, "--role", "annotator")
    first = shelled.json("claim", "--as", "ann", "--json")
    shelled.json("claim", "--as", "bob", "--json")
    assert one_document(shelled("submit", str(first["assignment"]), "--as", "ann", "--label", "bug", "--json"))
    assert one_document(shelled("tick", "--json"))
