"""The webhook notifier against a real HTTP server on 127.0.0.1 that checks the HMAC-SHA256 signature.

``labelyard run`` runs as a subprocess; the server runs in a thread of the
test process and records every request it receives.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

SECRET = "s3cret-for-tests"
LATER = "2025-03-01T09:05:00Z"  # past the first retry delay (1 minute) after the conftest's NOW

WORKFLOW = """\
workflow: pets
labels: {type: choice, choices: [cat, dog, bird]}
queues:
  triage: {roles: [annotator]}
  experts: {roles: [expert]}
on_create:
  - name: confident
    when: prediction.confidence >= 0.9
    do: accept
  - name: odd
    when: task.category == "odd"
    do: {escalate: experts, reason: "odd one"}
  - name: default
    do: {annotate: triage, overlap: 1}
notify: [{plugin: webhook, url: "URL", events: [done, escalated], secret_env: HOOK_SECRET, retries: RETRIES, backoff: 0}]
"""


class Receiver:
    """A webhook receiver: answers each request from ``answers`` (then 204) and checks signatures."""

    def __init__(self, port: int = 0, answers: list[int] | None = None):
        self.requests: list[dict] = []
        self.answers = list(answers or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(self.headers.get("X-Labelyard-Signature", ""), expected)
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                          "signed": signed})
                status = receiver.answers.pop(0) if receiver.answers else (204 if signed else 401)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver():
    servers: list[Receiver] = []

    def start(port: int = 0, answers: list[int] | None = None) -> Receiver:
        servers.append(Receiver(port, answers))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def setup(run, tmp_path, port: int, retries: int = 0) -> None:
    url = f"http://127.0.0.1:{port}/hook"
    (tmp_path / "w.workflow.yaml").write_text(WORKFLOW.replace("URL", url).replace("RETRIES", str(retries)),
                                              encoding="utf-8")
    run.env["HOOK_SECRET"] = SECRET
    run.ok("init")
    run.ok("apply", "w.workflow.yaml")
    (tmp_path / "t.jsonl").write_text(
        '{"id": "d1", "data": {"text": "a"}, "prediction": {"label": "cat", "confidence": 0.97}}\n'
        '{"id": "o1", "category": "odd", "data": {"text": "b"}}\n'
        '{"id": "n1", "data": {"text": "c"}}\n', encoding="utf-8")
    run.ok("ingest", "t.jsonl")


def test_signed_events_are_delivered_once(run, tmp_path, receiver):
    server = receiver()
    setup(run, tmp_path, server.port)
    report = run.json("run", "--json")
    assert report["ok"] and report["notify"][f"webhook:http://127.0.0.1:{server.port}/hook"] == {
        "queued": 2, "delivered": 2, "pending": 0}
    assert [r["signed"] for r in server.requests] == [True, True]
    done, escalated = (json.loads(r["body"]) for r in server.requests)
    assert (done["event"], done["task"]["id"], done["task"]["label"], done["task"]["final_by"]) == (
        "done", "d1", "cat", "model")
    assert (escalated["event"], escalated["task"]["id"], escalated["task"]["queue"]) == ("escalated", "o1", "experts")
    headers = server.requests[0]["headers"]
    assert headers["Content-Type"] == "application/json" and headers["X-Labelyard-Event"] == "done"
    assert server.requests[0]["path"] == "/hook"
    assert headers["X-Labelyard-Delivery"] != server.requests[1]["headers"]["X-Labelyard-Delivery"]
    run.ok("run")
    run.ok("run", env={"LABELYARD_NOW": LATER})
    assert len(server.requests) == 2  # acknowledged: never sent again


def test_an_event_not_delivered_waits_in_the_outbox_for_a_later_run(run, tmp_path, receiver):
    port = free_port()  # nothing listens here yet
    setup(run, tmp_path, port)
    down = run("run")
    assert down.returncode == 4
    assert down.stderr.startswith(f"labelyard run: webhook (webhook:http://127.0.0.1:{port}/hook): notify failed: "
                                  f"POST http://127.0.0.1:{port}/hook: ")
    assert down.stderr.rstrip().endswith("2 notification(s) kept in the outbox for the next run")
    assert run.json("status", "--json")["outbox_pending"] == 2
    assert run.json("run", "--json")["notify"][f"webhook:http://127.0.0.1:{port}/hook"]["delivered"] == 0  # not due yet

    server = receiver(port)
    up = run.json("run", "--json", env={"LABELYARD_NOW": LATER})
    assert up["ok"] and up["notify"][f"webhook:http://127.0.0.1:{port}/hook"] == {
        "queued": 0, "delivered": 2, "pending": 0}
    assert [json.loads(r["body"])["task"]["id"] for r in server.requests] == ["d1", "o1"]
    assert all(r["signed"] for r in server.requests)
    run.ok("run", env={"LABELYARD_NOW": "2025-03-01T12:00:00Z"})
    assert len(server.requests) == 2
    assert run.json("status", "--json")["outbox_pending"] == 0


def test_a_refused_signature_is_not_an_acknowledgement(run, tmp_path, receiver):
    server = receiver()
    setup(run, tmp_path, server.port)
    wrong = run("run", env={"HOOK_SECRET": "not-the-secret"})
    assert wrong.returncode == 4 and "HTTP 401" in wrong.stderr
    assert [r["signed"] for r in server.requests] == [False]  # the queue waits behind the first failure
    run.ok("run", env={"LABELYARD_NOW": LATER})
    assert [r["signed"] for r in server.requests] == [False, True, True]
    assert server.requests[0]["body"] == server.requests[1]["body"]  # the same bytes on every attempt


def test_retries_within_a_run_send_the_same_delivery(run, tmp_path, receiver):
    server = receiver(answers=[503, 502])
    setup(run, tmp_path, server.port, retries=2)
    run.ok("run")
    first, second, third, fourth = server.requests
    assert first["body"] == second["body"] == third["body"]
    assert first["headers"]["X-Labelyard-Delivery"] == third["headers"]["X-Labelyard-Delivery"]
    assert json.loads(fourth["body"])["task"]["id"] == "o1"


def test_a_missing_secret_sends_nothing(run, tmp_path, receiver):
    server = receiver()
    setup(run, tmp_path, server.port)
    proc = run("run", env={"HOOK_SECRET": None})
    assert proc.returncode == 4
    assert "environment variable HOOK_SECRET (secret_env) is not set; nothing sent" in proc.stderr
    assert server.requests == []


def test_signature_is_hmac_sha256_of_the_body():
    from plugins.webhook import sign

    body = b'{"event":"done"}'
    assert sign("key", body) == "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    assert sign("key", body) != sign("other", body)


# -- `headers:` may add headers, never replace the webhook's own ---------------------------------
def test_headers_that_would_replace_the_webhooks_own_are_refused(run, tmp_path, receiver):
    server = receiver()
    setup(run, tmp_path, server.port)
    text = (tmp_path / "w.workflow.yaml").read_text(encoding="utf-8").replace(
        "backoff: 0}", 'backoff: 0, headers: {Authorization: "Bearer t", x-labelyard-DELIVERY: "1"}}')
    (tmp_path / "w.workflow.yaml").write_text(text, encoding="utf-8")
    expected = ("w.workflow.yaml:15:149: notify entry 1 (`webhook`): setting `headers:` must not set "
                "`x-labelyard-DELIVERY`: the webhook sets it itself (header names ignore case); remove it\n")
    for command in ("validate", "apply"):
        refused = run(command, "w.workflow.yaml")
        assert (refused.returncode, refused.stderr) == (1, expected), command
    for header in ("Content-Type: text/plain", "X-Labelyard-Signature: x", "Host: example.com"):
        (tmp_path / "w.workflow.yaml").write_text(text.replace("x-labelyard-DELIVERY: \"1\"", header),
                                                  encoding="utf-8")
        assert f"must not set `{header.split(':')[0]}`" in run("validate", "w.workflow.yaml").stderr
    # a header of its own goes out beside the webhook's
    (tmp_path / "w.workflow.yaml").write_text(text.replace(', x-labelyard-DELIVERY: "1"', ""), encoding="utf-8")
    run.ok("apply", "w.workflow.yaml")
    run.ok("run")
    sent = server.requests[0]["headers"]
    assert sent["Authorization"] == "Bearer t" and sent["Content-Type"] == "application/json"
    assert sent["X-Labelyard-Delivery"] != server.requests[1]["headers"]["X-Labelyard-Delivery"]


def test_a_stored_entry_replacing_the_webhooks_header_fails_alone_and_sends_nothing(run, tmp_path, receiver):
    import sqlite3

    server = receiver()
    setup(run, tmp_path, server.port)
    conn = sqlite3.connect(run.db)  # as an older version, without this check, stored it
    with conn:
        spec = json.loads(conn.execute("SELECT spec FROM workflows WHERE active = 1").fetchone()[0])
        spec["notify"][0]["headers"] = {"X-Labelyard-Delivery": "1"}
        conn.execute("UPDATE workflows SET spec = ? WHERE active = 1", (json.dumps(spec),))
    conn.close()
    proc = run("run")
    assert proc.returncode == 4
    assert "setting `headers:` must not set `X-Labelyard-Delivery`" in proc.stderr
    assert server.requests == []
