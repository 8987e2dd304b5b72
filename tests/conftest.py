from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from segmentation.cli import main  # noqa: E402
from segmentation.sample import write_sample  # noqa: E402


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def sample_folder(tmp_path_factory) -> Path:
    """A small generated Olist-layout folder shared by read-only tests."""
    return write_sample(tmp_path_factory.mktemp("sample"), orders=6_000, seed=7)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, sample_folder) -> Path:
    """An artifacts folder with one trained model on the sample (read-only for tests)."""
    root = tmp_path_factory.mktemp("artifacts")
    r = run_cli("--artifacts", str(root), "-q", "train", "--data", str(sample_folder))
    assert r.code == 0, r.err
    return root
