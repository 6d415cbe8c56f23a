"""The layers are enforced: import-linter's contracts in pyproject.toml must all be kept.

`rules` imports neither `router` nor `textual` (nor SQLite), `router` imports
neither `tui` nor `plugins`, `tui` does not import `plugins`. import-linter is
in the test extras, so a missing `lint-imports` fails the test rather than
skipping it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports() -> str | None:
    beside = Path(sys.executable).with_name("lint-imports")
    return str(beside) if beside.is_file() else shutil.which("lint-imports")


def test_import_layer_contracts_are_kept():
    command = lint_imports()
    assert command, "`lint-imports` is not installed; pip install -e '.[test]' (import-linter is a test extra)"
    proc = subprocess.run([command, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout
    kept = [line for line in proc.stdout.splitlines() if line.endswith(" KEPT")]
    assert len(kept) >= 3, proc.stdout
