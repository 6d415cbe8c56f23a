"""Plugin fixes: locks through symlinks, webhook redirects and deadlines, sinks sharing a file,
file names that are not UTF-8, label comparison in reviewers, modules loaded twice, broken
exceptions, bounded settings, the version in `labelyard plugins`.

Real subprocesses of ``labelyard`` on real SQLite files, a real HTTP server on 127.0.0.1,
time through ``LABELYARD_NOW``.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from router.plugin_api import PluginRun, ReviewItem
from router.plugins import describe_error, get_plugin_manager, load_plugins

BASE = """\
workflow: f
labels: {type: choice, choices: [bug, spam]}
queues: {triage: {roles: [annotator]}, senior: {roles: [senior]}}
on_create:
  - {name: confident, when: prediction.confidence >= 0.9, do: accept}
  - {name: default, do: {annotate: triage, overlap: 1}}
on_quorum: [{name: check, do: {review: senior}}]
"""


def confident(ident: str) -> str:
    return json.dumps({"id": ident, "data": {}, "prediction": {"label": "bug", "confidence": 0.95}}) + "\n"


@pytest.fixture
def clean_env(monkeypatch):
    for key in ("LABELYARD_LOAD_PLUGINS", "LABELYARD_PLUGINS_DIR", "LABELYARD_TRACE_PLUGINS"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def project(run, tmp_path):
    """``init`` done; ``apply(text)`` writes and applies a workflow version."""
    run.ok("init")

    def apply(text: str, expect_ok: bool = True):
        path = tmp_path / "f.workflow.yaml"
        path.write_text(text, encoding="utf-8")
        return run.ok("apply", path.name) if expect_ok else run("apply", path.name)

    run.apply = apply
    return run


def store_spec(run, changes: dict) -> None:
    """Change the stored active workflow as an older Labelyard (without today's checks) would have applied it."""
    with sqlite3.connect(run.db) as conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec.update(changes)
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()


# -- 1: lock files are named from the database's real path -----------------------------------
def test_a_run_through_a_symlink_takes_the_real_databases_run_lock(project, tmp_path):
    from router.writer_lock import lock_path

    project.apply(BASE)
    other = tmp_path / "other"
    other.mkdir()
    (other / "lab.db").symlink_to(project.db)
    assert lock_path(str(other / "lab.db"), ".run-lock") == lock_path(str(project.db), ".run-lock") \
        == os.path.realpath(project.db) + ".run-lock"
    fd = os.open(f"{os.path.realpath(project.db)}.run-lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, b"4242\n")
        proc = project("run", "--db", other / "lab.db")
        assert proc.returncode == 0
        assert proc.stdout == "another labelyard run is in progress (pid 4242); nothing done\n"
    finally:
        os.close(fd)
    project.ok("run", "--db", other / "lab.db")
    # the writer queue too: one DB.lock beside the real file, none beside the symlink
    assert (tmp_path / "labelyard.db.lock").exists()
    assert not (other / "lab.db.lock").exists() and not (other / "lab.db.run-lock").exists()


# -- 2 and 6: the webhook follows no redirect, and its timeout bounds the whole request -------
class Server:
    """A receiver on 127.0.0.1 that answers POSTs with ``respond(handler)`` and records every request."""

    def __init__(self, respond):
        self.requests: list[dict] = []
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers),
                                        "body": body})
                respond(self, server)

            def do_GET(self):  # noqa: N802
                server.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server():
    started: list[Server] = []

    def start(respond) -> Server:
        started.append(Server(respond))
        return started[-1]

    yield start
    for one in started:
        one.close()


def webhook_project(project, tmp_path, url: str, **settings) -> None:
    extra = "".join(f", {k}: {v}" for k, v in settings.items())
    project.apply(BASE + f'notify: [{{plugin: webhook, url: "{url}", secret_env: HOOK_SECRET, '
                         f'headers: {{Authorization: "Bearer t0ken"}}, backoff: 0{extra}}}]\n')
    project.env["HOOK_SECRET"] = "s3cret"
    (tmp_path / "t.jsonl").write_text(confident("d1"), encoding="utf-8")
    project.ok("ingest", "t.jsonl")


def test_a_redirect_is_a_failed_delivery_and_is_not_followed(project, tmp_path, server):
    def redirect(handler, srv):
        handler.send_response(302)
        handler.send_header("Location", f"http://127.0.0.1:{srv.port}/elsewhere")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    receiver = server(redirect)
    webhook_project(project, tmp_path, receiver.url, retries=2)
    proc = project("run")
    assert proc.returncode == 4
    assert (f"POST {receiver.url}: HTTP 302: redirected to http://127.0.0.1:{receiver.port}/elsewhere; "
            "webhooks are not followed; 1 notification(s) kept in the outbox for the next run") in proc.stderr
    assert [(r["method"], r["path"]) for r in receiver.requests] == [("POST", "/hook")]  # no GET, no retry in the run
    assert project.json("status", "--json")["outbox_pending"] == 1
    project("run", env={"LABELYARD_NOW": "2025-03-01T09:05:00Z"})  # retried by a later run, like any failure
    assert [(r["method"], r["path"]) for r in receiver.requests] == [("POST", "/hook")] * 2


def drip(handler, srv, head: bytes) -> None:
    """Send ``head``, then one byte every 0.2 s of a body that never ends (until the test stops)."""
    try:
        handler.wfile.write(head)
        handler.wfile.flush()
        while not srv.stop.wait(0.2):
            handler.wfile.write(b"x")
            handler.wfile.flush()
    except OSError:
        pass  # the client hung up: what the deadline is for


@pytest.mark.parametrize("head", [b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n", b"HTTP/1.1 200 OK\r\nX-Slow: "],
                         ids=["body", "headers"])
def test_a_slow_drip_answer_times_out_within_the_webhooks_timeout(project, tmp_path, server, head):
    receiver = server(lambda handler, srv: drip(handler, srv, head))
    webhook_project(project, tmp_path, receiver.url, retries=0, timeout=1)
    proc = project("run")  # the conftest's subprocess timeout (120 s) is the only clock here
    assert proc.returncode == 4
    assert f"POST {receiver.url}: no complete answer within timeout 1 s" in proc.stderr
    assert project.json("status", "--json")["outbox_pending"] == 1


def test_a_huge_answer_is_not_read_in_full(project, tmp_path, server):
    def huge(handler, srv):
        handler.send_response(200)
        handler.send_header("Content-Length", str(200 * 1024 * 1024))
        handler.end_headers()
        try:
            handler.wfile.write(b"x" * (1024 * 1024))  # then nothing: reading it all would never end
            handler.wfile.flush()
            srv.stop.wait(60)
        except OSError:
            pass

    receiver = server(huge)
    webhook_project(project, tmp_path, receiver.url, retries=0, timeout=30)
    report = project.json("run", "--json")
    assert report["ok"] and report["notify"][f"webhook:{receiver.url}"]["delivered"] == 1


# -- 3: two sinks writing one file -------------------------------------------------------------
SAME_FILE = "each would cut the other's output back to its own last size, so give each sink a file of its own"


def test_validate_and_apply_refuse_two_sinks_on_one_file(project, tmp_path):
    text = BASE + textwrap.dedent("""\
        sinks:
          - {plugin: jsonl, path: out/f.jsonl}
          - {plugin: jsonl, name: copy, path: out/f.jsonl}
          - {plugin: jsonl, path: ./out/f.jsonl}
        """)
    (tmp_path / "f.workflow.yaml").write_text(text, encoding="utf-8")
    proc = project("validate", "f.workflow.yaml")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"f.workflow.yaml:10:39: sinks entry 2 (`jsonl`) writes the same file as sinks entry 1 (`jsonl`, line 9): "
        f"`path: out/f.jsonl`; {SAME_FILE}",
        f"f.workflow.yaml:11:27: sinks entry 3 (`jsonl`) writes the same file as sinks entry 1 (`jsonl`, line 9): "
        f"`path: ./out/f.jsonl`; {SAME_FILE}",
    ]  # not "give one of them its own `name:`", which entry 2 shows is no cure
    assert "name:" not in proc.stderr
    # relative and absolute paths of one file: apply resolves them from the database's folder
    mixed = BASE + f"sinks: [{{plugin: jsonl, path: out/f.jsonl}}, {{plugin: csv, path: '{tmp_path}/out/f.jsonl'}}]\n"
    refused = project.apply(mixed, expect_ok=False)
    assert refused.returncode != 0
    assert "sinks entry 2 (`csv`) writes the same file as sinks entry 1 (`jsonl`, line 8)" in refused.stderr


def test_run_refuses_a_second_sink_on_the_file_of_an_earlier_one(project, tmp_path):
    project.apply(BASE + "sinks: [{plugin: jsonl, path: out/f.jsonl}]\n")
    store_spec(project, {"sinks": [{"plugin": "jsonl", "path": "out/f.jsonl"},
                                   {"plugin": "jsonl", "name": "copy", "path": str(tmp_path / "out" / "f.jsonl")}]})
    (tmp_path / "t.jsonl").write_text(confident("d1") + confident("d2"), encoding="utf-8")
    project.ok("ingest", "t.jsonl")
    proc = project("run")
    assert proc.returncode == 4
    assert f"labelyard run: jsonl (copy): sinks failed: sinks entry 2 (`jsonl`) writes the same file as sinks " \
           f"entry 1 (`jsonl`): `path: {tmp_path / 'out' / 'f.jsonl'}`; {SAME_FILE}" in proc.stderr
    rows = [json.loads(line)["id"] for line in (tmp_path / "out" / "f.jsonl").read_text().splitlines()]
    assert rows == ["d1", "d2"]


# -- 4: a file name that is not UTF-8 ----------------------------------------------------------
def test_a_folder_file_named_in_another_encoding_is_one_reject_and_the_rest_go_in(project, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "ok.txt").write_text("fine", encoding="utf-8")
    with open(os.path.join(os.fsencode(inbox), b"lat\xe9.txt"), "wb") as handle:
        handle.write(b"caf\xc3\xa9")
    project.apply(BASE + "sources: [{plugin: folder, path: inbox, finished_after: 0}]\n")
    report = project.json("run", "--json")
    assert report["ok"], report["failures"]
    assert report["sources"]["folder:inbox"]["ingested"] == 1 and report["sources"]["folder:inbox"]["rejected"] == 1
    rejects = project.json("rejects", "--json")
    assert [r["reason"] for r in rejects] == ["lat\\xe9.txt: file name is not UTF-8"]
    assert project.json("show", "ok.txt", "--json")["task"]["data"]["text"] == "fine"


# -- 5: reviewers compare labels as the workflow does -------------------------------------------
def item(consensus, prediction=None, data=None) -> ReviewItem:
    return ReviewItem(1, "t1", "senior", data or {}, None, [], prediction or {},
                      [{"worker": "ann", "label": consensus}], consensus, 1.0)


def test_prediction_agreement_with_a_threshold_abstains_on_a_prediction_without_confidence(clean_env):
    review = load_plugins().get("reviewers", "prediction_agreement").func
    strict = PluginRun("prediction_agreement", "p", {"min_confidence": 0.9}, label_type="choice", choices=("a", "b"))
    assert review(strict, item("a", {"label": "a", "confidence": None})) is None
    assert review(strict, item("a", {"label": "a", "confidence": 0.95})).verdict == "approve"
    lenient = PluginRun("prediction_agreement", "p", {}, label_type="choice", choices=("a", "b"))
    assert review(lenient, item("a", {"label": "a", "confidence": None})).verdict == "approve"


def test_reviewers_judge_sameness_by_the_label_type(clean_env):
    loaded = load_plugins()
    agreement = loaded.get("reviewers", "prediction_agreement").func
    gold = loaded.get("reviewers", "gold").func
    multi = PluginRun("x", "x", label_type="multi_choice", choices=("x", "y"))
    assert multi.same_label(["x", "y"], ["y", "x", "x"])
    assert agreement(multi, item(["x", "y"], {"label": ["y", "x", "x"], "confidence": 0.5})).verdict == "approve"
    assert gold(multi, item(["x", "y"], data={"gold": ["y", "x", "x"]})).verdict == "approve"
    number = PluginRun("x", "x", label_type="number")
    assert gold(number, item(0.0, data={"gold": 0})).verdict == "approve"
    assert gold(number, item(1, data={"gold": 0})).verdict == "reject"
    boxes = PluginRun("x", "x", label_type="boxes", choices=("car", "dog"))
    car, dog = {"x": 0, "y": 0, "width": 10, "height": 10, "label": "car"}, {"x": 50, "y": 50, "width": 10,
                                                                             "height": 10, "label": "dog"}
    shifted = dict(car, x=1)  # IoU 0.82: the same box at labels.iou 0.5
    assert gold(boxes, item([car, dog], data={"gold": [dog, shifted]})).verdict == "approve"
    assert agreement(boxes, item([car, dog], {"label": [dog, shifted], "confidence": 0.7})).verdict == "approve"
    assert gold(boxes, item([car, dog], data={"gold": [dict(dog, label="car"), car]})).verdict == "reject"


def test_a_run_gives_reviewers_the_workflows_label_spec(project, tmp_path):
    workflow = BASE.replace("{type: choice, choices: [bug, spam]}", "{type: boxes, choices: [car], iou: 0.3}")
    project.apply(workflow + "reviewers: [{plugin: gold}]\n")
    project.ok("workers", "add", "ann", "--role", "annotator")
    box = {"x": 0, "y": 0, "width": 10, "height": 10, "label": "car"}
    # IoU 0.43: the same box at the workflow's `iou: 0.3`, not at the default 0.5
    (tmp_path / "t.jsonl").write_text(json.dumps({"id": "b1", "data": {"gold": [dict(box, x=4)]}}) + "\n",
                                      encoding="utf-8")
    project.ok("ingest", "t.jsonl")
    slot = project.json("claim", "--as", "ann", "--json")
    project.ok("submit", slot["assignment"], "--as", "ann", "--value", json.dumps([box]))
    report = project.json("run", "--json")
    assert report["reviewers"]["gold"]["approve"] == 1, report


# -- 7: a module already loaded through an entry point -------------------------------------------
def test_naming_an_entry_points_module_in_plugins_is_harmless(project, tmp_path, clean_env):
    pm = get_plugin_manager(["plugins.jsonl"])
    assert [info.error for info in pm.infos.values() if info.error] == []
    text = BASE + "plugins: [plugins.jsonl]\nsinks: [{plugin: jsonl, path: out/f.jsonl}]\n"
    (tmp_path / "f.workflow.yaml").write_text(text, encoding="utf-8")
    assert project.ok("validate", "f.workflow.yaml").stdout == "f.workflow.yaml: ok (f)\n"
    project.apply(text)
    (tmp_path / "t.jsonl").write_text(confident("d1"), encoding="utf-8")
    project.ok("ingest", "t.jsonl")
    assert project.json("run", "--json")["sinks"]["jsonl:out/f.jsonl"] == {"delivered": 1}
    assert "ERROR" not in project.ok("plugins").stdout


def test_another_module_under_a_loaded_plugins_name_is_refused_and_the_first_kept(tmp_path, clean_env):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "jsonl.py").write_text("from router import hookimpl\n", encoding="utf-8")  # not the built-in
    pm = get_plugin_manager(plugins_dir=str(folder))
    assert pm.infos["jsonl"].error is None and pm.get_plugin("jsonl").__name__ == "plugins.jsonl"
    errors = [info.error for info in pm.infos.values() if info.error]
    builtin = pm.get_plugin("jsonl").__file__
    assert errors == [f"a plugin named `jsonl` is already loaded (built-in plugins.jsonl, {builtin}); this one is "
                      f"{folder / 'jsonl.py'}: rename one of them"]


# -- 8: an exception whose message cannot be made -------------------------------------------------
BROKEN = """
    from router import hookimpl
    from router.plugin_api import approve

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no message for you")

    @hookimpl
    def register_reviewers(register):
        register("broken", lambda run, item: (_ for _ in ()).throw(Unprintable()))

    @hookimpl
    def register_sinks(register):
        def write(run, tasks):
            raise Unprintable()
        register("broken", write)
"""


def test_describing_an_exception_whose_str_raises_gives_its_class_name():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    try:
        raise Unprintable()
    except Unprintable as exc:
        assert describe_error(exc).startswith("Unprintable (test_plugins_fix_7.py:")


def test_a_broken_exception_fails_its_entry_and_the_later_entries_run(project, tmp_path):
    folder = tmp_path / "pl"
    folder.mkdir()
    (folder / "broken.py").write_text(textwrap.dedent(BROKEN), encoding="utf-8")
    project.env["LABELYARD_PLUGINS_DIR"] = str(folder)
    project.apply(BASE + "reviewers: [{plugin: broken}, {plugin: prediction_agreement}]\n"
                         "sinks: [{plugin: broken}, {plugin: jsonl, path: out/f.jsonl}]\n")
    project.ok("workers", "add", "ann", "--role", "annotator")
    (tmp_path / "t.jsonl").write_text(confident("d1") + json.dumps(
        {"id": "r1", "data": {}, "prediction": {"label": "bug", "confidence": 0.5}}) + "\n", encoding="utf-8")
    project.ok("ingest", "t.jsonl")
    slot = project.json("claim", "--as", "ann", "--json")
    project.ok("submit", slot["assignment"], "--as", "ann", "--label", "bug")
    proc = project("run", "--json")
    assert proc.returncode == 4
    report = json.loads(proc.stdout)
    assert report["reviewers"]["prediction_agreement"]["approve"] == 1  # the next reviewer ran
    assert report["sinks"]["jsonl:out/f.jsonl"] == {"delivered": 2}  # the next sink ran
    errors = {f["step"]: f["error"] for f in report["failures"]}
    assert errors["reviewers"].startswith("task r1: Unprintable (broken.py:")
    assert errors["sinks"].startswith("Unprintable (broken.py:")


# -- 9: bounds on settings ------------------------------------------------------------------------
def test_settings_out_of_bounds_are_validate_errors_at_their_position(project, tmp_path):
    text = BASE + textwrap.dedent("""\
        sinks: [{plugin: jsonl, path: out/f.jsonl, batch: 9999999999999999999999}]
        notify: [{plugin: webhook, url: "http://127.0.0.1:9/h", retries: -1, timeout: -5}]
        reviewers: [{plugin: prediction_agreement, min_confidence: 1.5}]
        """)
    (tmp_path / "f.workflow.yaml").write_text(text, encoding="utf-8")
    proc = project("validate", "f.workflow.yaml")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "f.workflow.yaml:8:51: sinks entry 1 (`jsonl`): setting `batch:` must be at most 1000000, "
        "not 9999999999999999999999",
        "f.workflow.yaml:9:66: notify entry 1 (`webhook`): setting `retries:` must be at least 0, not -1",
        "f.workflow.yaml:9:79: notify entry 1 (`webhook`): setting `timeout:` must be at least 0.1, not -5",
        "f.workflow.yaml:10:60: reviewers entry 1 (`prediction_agreement`): setting `min_confidence:` must be at "
        "most 1, not 1.5",
    ]


def test_run_fails_an_entry_with_a_setting_out_of_bounds_stored_by_an_older_version(project, tmp_path):
    project.apply(BASE + "sinks: [{plugin: jsonl, path: out/f.jsonl}]\n")
    store_spec(project, {"sinks": [{"plugin": "jsonl", "path": "out/f.jsonl", "batch": 9999999999999999999999},
                                   {"plugin": "jsonl", "path": "out/g.jsonl"}],
                         "notify": [{"plugin": "webhook", "url": "http://127.0.0.1:9/h", "retries": -1}]})
    (tmp_path / "t.jsonl").write_text(confident("d1"), encoding="utf-8")
    project.ok("ingest", "t.jsonl")
    proc = project("run", "--json")
    assert proc.returncode == 4
    report = json.loads(proc.stdout)
    assert report["sinks"] == {"jsonl:out/g.jsonl": {"delivered": 1}}
    assert {f["entry"]: f["error"] for f in report["failures"]} == {
        "jsonl:out/f.jsonl": "setting `batch:` must be at most 1000000, not 9999999999999999999999",
        "webhook:http://127.0.0.1:9/h": "setting `retries:` must be at least 0, not -1"}


def test_a_plugin_declares_bounds_and_a_bad_declaration_leaves_it_out(clean_env, tmp_path):
    from router.plugin_api import Setting

    (tmp_path / "tally.py").write_text(textwrap.dedent("""
        from router import hookimpl
        from router.plugin_api import Setting

        @hookimpl
        def register_sinks(register):
            register("tally", lambda run, tasks: None, settings={"every": Setting(int, min=1, max=10)})
    """), encoding="utf-8")
    (tmp_path / "bad.py").write_text(textwrap.dedent("""
        from router import hookimpl
        from router.plugin_api import Setting

        @hookimpl
        def register_sinks(register):
            register("bad", lambda run, tasks: None, settings={"every": Setting(str, min=1)})
    """), encoding="utf-8")
    loaded = load_plugins(plugins_dir=str(tmp_path))
    assert loaded.get("sinks", "tally").settings == {"every": Setting(int, min=1, max=10)}
    assert loaded.get("sinks", "bad") is None
    assert [i.error.split(" (plugins.py")[0] for i in loaded.errors] == [
        "register_sinks: ValueError: cannot register sink `bad`: setting `every`: bounds (min, max) are for int and "
        "float settings only"]
    run = PluginRun("tally", "t", {"every": 11})
    with pytest.raises(Exception, match=r"setting `every:` must be at most 10, not 11"):
        run.setting("every", kind=Setting(int, min=1, max=10))


# -- 10: the version in `labelyard plugins` ---------------------------------------------------------
def test_plugins_shows_each_plugins_version(run):
    from importlib.metadata import version

    out = run.ok("plugins", env={"LABELYARD_DB": None}).stdout  # no database: the plugins alone
    line = next(line for line in out.splitlines() if line.startswith("jsonl "))
    assert line.split() == ["jsonl", "built-in", "plugins.jsonl", "version", version("labelyard")]
