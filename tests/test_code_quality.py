"""Lint, format and type checks, configured in pyproject.toml, run with the rest of the suite
so the one test command (and CI) enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODE = ["segmentation", "segment_cli", "bot", "tests", "bench"]


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", *CODE],
        [sys.executable, "-m", "ruff", "format", "--check", *CODE],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff check", "ruff format", "mypy"],
)
def test_code_passes(command):
    r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
