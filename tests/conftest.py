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


# -- state database: SQLite always, PostgreSQL too when TEST_DATABASE_URL is set -------------

def _db_params():
    import os

    params = ["sqlite"]
    if os.environ.get("TEST_DATABASE_URL"):
        params.append("postgresql")
    return params


@pytest.fixture(params=_db_params())
def state_db(request, tmp_path):
    """A fresh, empty state database (a private schema on PostgreSQL)."""
    import os
    import uuid

    import sqlalchemy as sa

    from bot.state import StateDB

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
        db = StateDB(url)
        db.clone = lambda: StateDB(url)  # another process's connection to the same database
        yield db
        db.dispose()
        return
    url = os.environ["TEST_DATABASE_URL"]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as con:
        con.execute(sa.text(f"CREATE SCHEMA {schema}"))
    def connect():
        engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"}, pool_pre_ping=True)
        return StateDB(url, engine=engine)

    db = connect()
    db.clone = connect
    try:
        yield db
    finally:
        db.dispose()
        with admin.begin() as con:
            con.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
