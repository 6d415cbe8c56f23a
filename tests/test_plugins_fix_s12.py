"""The twelfth session's plugin fixes: the validity reviewer's wording, the webhook's User-Agent, file
sources and an unterminated last line, file sinks killed in their first batch, and rule functions'
subprocess output under ``run --json``."""

from __future__ import annotations

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
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
