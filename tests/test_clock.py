"""The one clock: ``LABELYARD_NOW`` as epoch seconds or ISO 8601, refused when it is no instant."""

from __future__ import annotations

import pytest

from router.clock import iso, now, parse_instant
from router.errors import LabelyardError


@pytest.mark.parametrize("text, expected", [
    ("1764264000", 1764264000.0),
    (" 1764264000.5 ", 1764264000.5),
    ("2025-11-27T17:20:00Z", 1764264000.0),
    ("2025-11-27T17:20:00", 1764264000.0),  # no zone: UTC
    ("2025-11-27T18:20:00+01:00", 1764264000.0),
])
def test_instants_are_epoch_seconds_or_iso_8601(text, expected):
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "nan", "inf", "-inf", "1e400", "2025-13-01"])
def test_what_is_no_instant_is_refused_with_the_value(text):
    with pytest.raises(LabelyardError) as err:
        parse_instant(text)
    assert f"LABELYARD_NOW={text.strip()!r}" in str(err.value)


def test_now_follows_the_variable_and_iso_prints_utc(monkeypatch):
    monkeypatch.setenv("LABELYARD_NOW", "2025-11-27T17:20:00Z")
    assert now() == 1764264000.0
    assert iso(now()) == "2025-11-27T17:20:00+00:00"
    monkeypatch.setenv("LABELYARD_NOW", "nan")
    with pytest.raises(LabelyardError):
        now()


def test_a_bad_clock_is_a_message_from_the_cli(run, write_workflow):
    run.ok("init")
    run.ok("apply", write_workflow())
    run.ok("workers", "add", "ann", "--role", "annotator")
    proc = run("claim", "--as", "ann", env={"LABELYARD_NOW": "nan"})
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == ("labelyard: LABELYARD_NOW='nan' is not a time; give epoch seconds or an ISO 8601 time\n")


@pytest.mark.parametrize("text", ["9999-12-31T23:00:00-02:00", "1e20", "-1e20", "0001-01-01T00:30:00+01:00"])
def test_an_instant_outside_the_years_kept_is_refused(text):
    with pytest.raises(LabelyardError, match="outside 0001-01-02T00:00:00Z to 9999-12-30T00:00:00Z"):
        parse_instant(text)  # before: stored, then `status`, `show` and `explain` died on it


def test_a_time_stored_out_of_range_is_still_shown():
    assert iso(1e20) == "@1e+20" and iso(-1e20) == "@-1e+20"
    assert parse_instant("9999-12-29T00:00:00Z") > parse_instant("0001-01-03T00:00:00Z")
