"""A backup into a folder is named ``labelyard-YYYYMMDDTHHMMSSZ.db`` whatever the year: before, a
year under 1000 was written without its leading zeros (``labelyard-10102T000000Z.db`` on
0001-01-02), and such names no longer sorted by date.

The real ``labelyard`` command on a real SQLite file, time set with ``LABELYARD_NOW``.
"""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("now, name", [
    ("0001-01-02T00:00:00Z", "labelyard-00010102T000000Z.db"),
    ("0999-12-31T23:59:59Z", "labelyard-09991231T235959Z.db"),
    ("2025-03-01T09:00:00Z", "labelyard-20250301T090000Z.db"),
])
def test_the_year_of_a_dated_backup_has_four_digits(run, tmp_path, now, name):
    run.ok("init")
    made = run.json("backup", "bk/", "--json", env={"LABELYARD_NOW": now})["backup"]
    assert made == f"bk/{name}"
    assert (tmp_path / made).is_file()
