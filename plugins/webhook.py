"""Notifier ``webhook``: POSTs each event as JSON, signed with HMAC-SHA256.

Settings: ``url`` (required), ``events`` (which events, default ``[done]``;
handled by Labelyard), ``secret_env`` (the environment variable holding the
signing secret), ``retries`` (extra attempts within one run, default 2),
``backoff`` (seconds before the first retry, doubling, default 1),
``timeout`` (seconds, default 10), ``headers`` (extra headers).

Headers sent: ``Content-Type: application/json``, ``X-Labelyard-Event``
(``done``…), ``X-Labelyard-Delivery`` (unique per notification and entry;
the same on every retry, so a receiver can drop duplicates) and, with a
secret, ``X-Labelyard-Signature: sha256=<hex>``: the HMAC-SHA256 of the raw
body with the secret as key. A receiver checks it with
``hmac.compare_digest(header, "sha256=" + hmac.new(secret, body, sha256).hexdigest())``.

Any 2xx answer is an acknowledgement: the notification is never sent again.
Anything else (a refused connection, a timeout, a 5xx) is retried, then left
in the outbox for the next run; a 4xx other than 408/429 is not retried
within the run.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from router import hookimpl
from router.plugin_api import Notification, PluginError, PluginRun

SIGNATURE_HEADER = "X-Labelyard-Signature"


@hookimpl
def register_notifiers(register):
    register("webhook", send, required=["url"], settings={
        "url": str, "headers": dict, "secret_env": str, "retries": int, "backoff": float, "timeout": float})


def sign(secret: str, body: bytes) -> str:
    """The ``X-Labelyard-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def send(run: PluginRun, notification: Notification) -> None:
    url = run.require("url", str)
    if not url.startswith(("http://", "https://")):
        raise PluginError(f"url {url!r} is not an http(s) address")
    headers = {"Content-Type": "application/json", "User-Agent": "labelyard-webhook",
               "X-Labelyard-Event": notification.event, "X-Labelyard-Delivery": str(notification.delivery)}
    headers.update({str(k): str(v) for k, v in run.setting("headers", {}, kind=dict).items()})
    secret_env = run.setting("secret_env")
    if secret_env:
        secret = os.environ.get(secret_env)
        if not secret:
            raise PluginError(f"environment variable {secret_env} (secret_env) is not set; nothing sent")
        headers[SIGNATURE_HEADER] = sign(secret, notification.body)
    import urllib.error  # here, not at import: it costs ~30 ms that `labelyard plugins` need not pay
    import urllib.request

    retries = run.setting("retries", 2, kind=int)
    delay = run.setting("backoff", 1.0, kind=float)
    timeout = run.setting("timeout", 10.0, kind=float)
    problem = ""
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=notification.body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
                return  # 2xx (urllib raises HTTPError for the rest)
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code} {exc.reason}"
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                break
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            problem = str(reason)
        if attempt < retries and delay > 0:
            time.sleep(delay * 2**attempt)
    raise PluginError(f"POST {url}: {problem}")
