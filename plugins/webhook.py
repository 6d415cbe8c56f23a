"""Notifier ``webhook``: POSTs each event as JSON, signed with HMAC-SHA256.

Settings: ``url`` (required), ``events`` (which events, default ``[done]``;
handled by Labelyard), ``secret_env`` (the environment variable holding the
signing secret; ``validate`` refuses an empty name, which once sent every
notification unsigned: leave it out for that), ``retries`` (extra attempts within one run, default 2),
``backoff`` (seconds before the first retry, doubling, default 1; each wait
at most 300 s, and all the waits for one notification in one run at most
600 s, after which the next run retries it),
``timeout`` (seconds for the whole request, default 10), ``headers`` (extra
headers: never one of Labelyard's own, below, nor ``Content-Length``,
``Host`` or ``Transfer-Encoding``; names are compared ignoring case, and
``validate`` refuses such a header at ``file:line:col``, as it does a value
that is true or false or holds a character outside Latin-1; a ``User-Agent``
replaces the default ``labelyard-webhook``).

Headers sent: ``Content-Type: application/json``, ``X-Labelyard-Event``
(``done``…), ``X-Labelyard-Delivery`` (unique per notification and entry;
the same on every retry, so a receiver can drop duplicates) and, with a
secret, ``X-Labelyard-Signature: sha256=<hex>``: the HMAC-SHA256 of the raw
body with the secret as key. A receiver checks it with
``hmac.compare_digest(header, "sha256=" + hmac.new(secret, body, sha256).hexdigest())``.

Any 2xx answer is an acknowledgement: the notification is never sent again.
Anything else (a refused connection, a timeout, a 5xx) is retried, then left
in the outbox for the next run; a 4xx other than 408/429, and a redirect
(3xx: never followed, since the POST would become a GET and the signature
would go to another address), are not retried within the run. ``timeout``
bounds the whole request, an answer that trickles in too; of the answer's
body at most 64 KiB is read.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time

from router import hookimpl
from router.plugin_api import Notification, PluginError, PluginRun, Setting, without_password

SIGNATURE_HEADER = "X-Labelyard-Signature"
# Headers `headers:` must not replace: those a receiver relies on (one deduplicating on X-Labelyard-Delivery
# would drop every notification given one value; it parses the body as Content-Type says), and those HTTP
# itself sets. Compared in lower case. User-Agent is not one: the user's replaces DEFAULT_USER_AGENT.
OWN_HEADERS = ("content-type", "content-length", "host", "transfer-encoding")
DEFAULT_USER_AGENT = "labelyard-webhook"
OWN_PREFIX = "x-labelyard-"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 9110's token: what a header name may be
MAX_RETRIES = 10  # within one run; later runs retry anyway
MAX_BACKOFF_S = 300.0  # `backoff:` at most, and each wait of the doubling at most
MAX_WAITS_S = 600.0  # all the waits for one notification within one run: a run holds the run lock
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.1, 3600.0


@hookimpl
def register_notifiers(register):
    register("webhook", send, required=["url"], settings={
        "url": Setting(str, check=url_problem), "headers": HEADERS, "secret_env": SECRET_ENV,
        "retries": Setting(int, min=0, max=MAX_RETRIES),
        "backoff": Setting(float, min=0, max=MAX_BACKOFF_S), "timeout": Setting(float, min=MIN_TIMEOUT_S, max=MAX_TIMEOUT_S)})


def url_problem(url: str) -> str | None:
    """Why ``url`` is no address to POST to (``validate`` says it at the setting), or ``None``.

    A password in it is never shown (``bob:***@``); a user name and password in it are refused
    (urllib took them for part of the host name: every POST failed): they go in ``headers:``."""
    from urllib.parse import quote, urlsplit

    shown = without_password(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # a bad IPv6 bracket
        return f"is not a URL ({exc}): {shown!r}"
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return f"must be an http:// or https:// address, not {shown!r}"
    if "@" in parts.netloc:
        user, colon, _ = parts.netloc.rpartition("@")[0].partition(":")
        what, given = ("a user name and password", f"{user}:***@") if colon else ("a user name", f"{user}@")
        return (f"holds {what} ({given}), which the webhook does not send from a URL: remove it, and send "
                "credentials in `headers:` (`Authorization: \"Bearer …\"`, or \"Basic …\", the base64 of "
                "user:password)")
    odd = next((c for c in url if c.isspace() or not c.isprintable()), None)
    if odd is not None:  # urllib refuses it at every delivery ("URL can't contain control characters")
        what = "a space" if odd == " " else f"the character {odd!r}"
        return f"holds {what}, which a URL cannot (write it as {quote(odd)}): {shown!r}"
    odd = next((c for c in parts.path + parts.query if not c.isascii()), None)
    if odd is not None:  # http.client sends the path as ASCII: every delivery failed
        return f"holds {odd!r}, which a URL's path and query cannot (write it as {quote(odd)}): {shown!r}"
    try:
        port = parts.port  # ':99999' was taken modulo 65536 (port 34463); ':abc' failed every delivery
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        given = parts.netloc.rpartition(":")[2]
        return f"has the port {given!r}, which is not one (a whole number from 1 to 65535): {shown!r}"
    return None


def headers_problem(headers: dict) -> str | None:
    """Why ``headers:`` cannot be sent as it is (``validate`` says it at the setting), or ``None``:
    a header Labelyard sets itself (``Content-Type``, ``X-Labelyard-Delivery``… in any case), a
    name that is no header name, a value that is not one line of text (or a number, sent as
    written), true or false (Python would send ``True``), or holds a character outside Latin-1
    (HTTP sends header values as Latin-1 bytes: every POST failed)."""
    for name, value in headers.items():
        shown = repr(name)
        if not isinstance(name, str) or not _TOKEN.match(name):
            return f"holds the header name {shown}, which is not one (letters, digits and -)"
        lower = name.lower()
        if lower in OWN_HEADERS or lower.startswith(OWN_PREFIX):
            whose = "HTTP" if lower in ("content-length", "host", "transfer-encoding") else "the webhook"
            return f"must not set `{name}`: {whose} sets it itself (header names ignore case); remove it"
        if isinstance(value, bool):
            written = "true" if value else "false"
            return (f"header `{name}` is {written} (true or false), which would be sent as `{value}`: quote the "
                    f"text to send (`{name}: \"{written}\"`)")
        if isinstance(value, (dict, list)) or value is None:
            kind = "null" if value is None else "a list" if isinstance(value, list) else "a mapping"
            return f"header `{name}` must be text or a number, not {kind}"
        if any(c in str(value) for c in "\r\n\0"):
            return f"header `{name}` must be one line of text, not {value!r}"
        odd = next((c for c in str(value) if ord(c) > 0xFF), None)
        if odd is not None:
            return (f"header `{name}` holds {odd!r} (U+{ord(odd):04X}), which a header value cannot: HTTP sends "
                    "header values as Latin-1 bytes; write it another way (percent-encoded, say)")
    return None


HEADERS = Setting(dict, check=headers_problem)


def secret_env_problem(name: str) -> str | None:
    """Why ``secret_env:`` names no environment variable (``validate`` says it at the setting), or
    ``None``. Empty, it once meant "no secret": every notification went unsigned, though signing
    was asked for; a name holding ``=``, a space or a control character cannot be set in a shell."""
    if not name.strip():
        return ("must name the environment variable holding the signing secret (`secret_env: HOOK_SECRET`), "
                "not an empty text; leave `secret_env:` out to send unsigned notifications")
    odd = next((c for c in name if c == "=" or c.isspace() or not c.isprintable()), None)
    if odd is not None:
        return f"holds {odd!r}, which no environment variable's name can: {name!r}"
    return None


SECRET_ENV = Setting(str, check=secret_env_problem)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Labelyard-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send(run: PluginRun, notification: Notification) -> None:
    url = run.require("url", str)
    problem = url_problem(url)
    if problem:
        raise PluginError(f"setting `url:` {problem}")
    # Checked here too (an older version stored it unchecked): none is the webhook's own but User-Agent.
    extra = {str(k): str(v) for k, v in run.setting("headers", {}, kind=HEADERS).items()}
    own_agent = any(name.lower() == "user-agent" for name in extra)
    headers = {**({} if own_agent else {"User-Agent": DEFAULT_USER_AGENT}), **extra,
               "Content-Type": "application/json", "X-Labelyard-Event": notification.event,
               "X-Labelyard-Delivery": str(notification.delivery)}
    secret_env = run.setting("secret_env", kind=SECRET_ENV)  # checked here too: an older version stored "" as is
    if secret_env is not None:
        secret = os.environ.get(secret_env)
        if not secret:
            raise PluginError(f"environment variable {secret_env} (secret_env) is not set; nothing sent")
        headers[SIGNATURE_HEADER] = sign(secret, notification.body)
    retries = run.setting("retries", 2, kind=int)
    delay = run.setting("backoff", 1.0, kind=float)
    timeout = run.setting("timeout", 10.0, kind=float)
    problem, waited = "not sent", 0.0
    for attempt in range(max(0, retries) + 1):
        problem, again = post(url, notification.body, headers, timeout)
        if problem is None:
            return
        if not again or attempt >= retries:
            break
        wait = retry_wait(delay, attempt, waited)
        if wait is None:  # this run's waits for it are spent: the next run retries it
            problem += f" (retried for {waited:g} s, the most one run waits for a notification)"
            break
        if wait > 0:
            time.sleep(wait)
            waited += wait
    raise PluginError(f"POST {without_password(url)}: {problem}")


def retry_wait(backoff: float, attempt: int, waited: float) -> float | None:
    """Seconds to wait before the retry after POST number ``attempt + 1`` failed, ``waited`` seconds
    having been waited for the notification already: ``backoff``, doubling, each wait at most
    :data:`MAX_BACKOFF_S` and all of them at most :data:`MAX_WAITS_S`; ``None`` when those are spent.
    (Uncapped, `retries: 10` and `backoff: 300` slept 306,900 s — three and a half days — in one run.)"""
    if backoff <= 0:
        return 0.0
    left = MAX_WAITS_S - waited
    if left <= 0:
        return None
    return min(backoff * 2 ** min(attempt, 30), MAX_BACKOFF_S, left)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[str | None, bool]:
    """POST ``body`` once: ``(None, _)`` for a 2xx, else ``(why it failed, whether to retry within the run)``.

    The whole request — connecting, sending, the answer's headers and up to
    ``BODY_LIMIT`` bytes of its body — must end within ``timeout`` seconds. A
    redirect is not followed (a 3xx is a failure): following it would resend
    the signature, and a 301/302/303 turns the POST into a bodyless GET.
    """
    import http.client  # here, not at import: it costs ~30 ms that `labelyard plugins` need not pay
    import urllib.error
    import urllib.request

    deadline = _Deadline(timeout)
    no_redirect, http_handler, https_handler = _handlers()
    opener = urllib.request.build_opener(no_redirect, http_handler(deadline), https_handler(deadline))
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with deadline:
        try:
            with opener.open(request, timeout=timeout) as response:
                response.read(BODY_LIMIT)  # for the receiver's sake; the rest is not needed
        except urllib.error.HTTPError as exc:
            exc.close()
            if deadline.expired:
                return _timed_out(timeout), True
            if 300 <= exc.code < 400:
                location = _shown(exc.headers.get("Location") or "nowhere")
                return f"HTTP {exc.code}: redirected to {location}; webhooks are not followed", False
            return f"HTTP {exc.code} {exc.reason}", not (400 <= exc.code < 500 and exc.code not in (408, 429))
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            if deadline.expired:
                return _timed_out(timeout), True
            return _shown(str(getattr(exc, "reason", exc)) or type(exc).__name__), True
    if deadline.expired:
        return _timed_out(timeout), True
    return None, False


BODY_LIMIT = 64 * 1024  # of an answer's body, read and dropped: a 200 MB answer is not read into memory


def _timed_out(timeout: float) -> str:
    return f"no complete answer within timeout {timeout:g} s"


def _shown(text: str, limit: int = 200) -> str:
    """``text`` from the other side, cut to ``limit`` characters for a failure line."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


class _Deadline:
    """Bounds one request as a whole: when ``seconds`` have passed, its socket is shut down,
    which ends a connection that drips its answer a byte at a time (a socket timeout bounds
    each read alone, so such an answer would never time out)."""

    def __init__(self, seconds: float):
        import threading

        self.expired = False
        self._sockets: list = []
        self._done = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> "_Deadline":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def watch(self, sock) -> None:
        """Shut ``sock`` down at the deadline (at once if it has passed)."""
        with self._lock:
            self._sockets.append(sock)
            if self.expired:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock) -> None:
    """End every read and write on ``sock`` (a TLS socket too: its file descriptor is shut down)."""
    import socket

    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _watched(base: type, deadline: _Deadline) -> type:
    """``base`` (an ``http.client`` connection class) whose socket ``deadline`` watches."""

    class Watched(base):  # type: ignore[misc, valid-type]
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    return Watched


def _handlers() -> tuple[type, type, type]:
    """urllib handlers: one that follows no redirect, and HTTP and HTTPS ones whose sockets a deadline watches."""
    import http.client
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """Every 3xx is an answer (urllib raises it as an ``HTTPError``), never followed."""

        def redirect_request(self, *args, **kwargs):
            return None

    class Http(urllib.request.HTTPHandler):
        def __init__(self, deadline: _Deadline):
            super().__init__()
            self.deadline = deadline

        def http_open(self, req):
            return self.do_open(_watched(http.client.HTTPConnection, self.deadline), req)

    class Https(urllib.request.HTTPSHandler):
        def __init__(self, deadline: _Deadline):
            super().__init__()
            self.deadline = deadline

        def https_open(self, req):
            return self.do_open(_watched(http.client.HTTPSConnection, self.deadline), req, context=self._context)

    return NoRedirect, Http, Https
