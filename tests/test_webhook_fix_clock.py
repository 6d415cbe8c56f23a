"""Notifications after the clock went back: a retry time set before the step back is no further
off than its back-off. Before, ``next_at`` was kept as an absolute time: a clock stepped back a day
delayed the retry by a day, far beyond "at most hourly", and every notification queued behind it.

A real HTTP receiver on 127.0.0.1 (``test_webhook``'s), ``labelyard run`` as a subprocess, time set
with ``LABELYARD_NOW`` (the conftest's is 2025-03-01T09:00:00Z).
"""

from __future__ import annotations

import json

from test_webhook import free_port, receiver, setup  # noqa: F401 - receiver is a fixture

DAY_BEFORE = "2025-02-28T09:00:00Z"
DAY_BEFORE_90S = "2025-02-28T09:01:30Z"


def test_a_retry_set_before_the_clock_went_back_is_not_delayed_by_the_step(run, tmp_path, receiver):  # noqa: F811
    port = free_port()  # nothing listens here yet: the first notification fails, the second waits behind it
    setup(run, tmp_path, port)
    assert run("run").returncode == 4
    assert run.json("status", "--json")["outbox_pending"] == 2
    server = receiver(port)
    up = run.json("run", "--json", env={"LABELYARD_NOW": DAY_BEFORE})  # the clock is set back a day
    assert up["ok"] and up["notify"][f"webhook:http://127.0.0.1:{port}/hook"] == {
        "queued": 0, "delivered": 2, "pending": 0}
    assert [json.loads(r["body"])["task"]["id"] for r in server.requests] == ["d1", "o1"]
    run.ok("run", env={"LABELYARD_NOW": DAY_BEFORE_90S})
    assert len(server.requests) == 2  # delivered once


def test_within_its_back_off_a_retry_still_waits(run, tmp_path, receiver):  # noqa: F811
    port = free_port()
    setup(run, tmp_path, port)
    assert run("run").returncode == 4
    server = receiver(port)
    waiting = run.json("run", "--json", env={"LABELYARD_NOW": "2025-03-01T09:00:30Z"})
    assert waiting["notify"][f"webhook:http://127.0.0.1:{port}/hook"]["delivered"] == 0
    assert server.requests == []
