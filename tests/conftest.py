from __future__ import annotations

import io
import os
import socket
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from segment_cli.main import main  # noqa: E402
from segmentation.data.sample import write_sample  # noqa: E402

# -- the database servers: used whenever they answer on their default local ports ----------------

DEFAULT_SERVERS = {
    "TEST_DATABASE_URL": ("PostgreSQL", 5432, "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "TEST_MYSQL_URL": ("MariaDB/MySQL", 3306, "mysql://root@127.0.0.1:3306/test"),
}
SERVERS_SEEN: dict[str, str] = {}


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


for _var, (_name, _port, _url) in DEFAULT_SERVERS.items():
    if os.environ.get(_var):
        SERVERS_SEEN[_name] = f"tested at {_var}"
    elif _answers(_port):
        os.environ[_var] = _url
        SERVERS_SEEN[_name] = f"tested on 127.0.0.1:{_port} (set {_var} to use another server)"
    else:
        SERVERS_SEEN[_name] = f"NOT tested: nothing answers on 127.0.0.1:{_port} and {_var} is not set"

# The JVM of the Spark tests lives a minute on a few thousand rows: its quick compiler only
# (30% less time to warm up; a shop's own cluster keeps Spark's defaults).
os.environ.setdefault(
    "PYSPARK_SUBMIT_ARGS", "--driver-java-options '-XX:TieredStopAtLevel=1 -XX:+UseSerialGC' pyspark-shell"
)

# Whole flows through servers, subprocesses or a JVM; the rest are unit tests (pytest -m unit).
INTEGRATION = {
    "test_attacks",
    "test_bot",
    "test_cli",
    "test_compiled",
    "test_console",
    "test_databases",
    "test_digests",
    "test_golden",
    "test_home",
    "test_lifecycle",
    "test_report",
    "test_settings_state",
    "test_spark",
    "test_spark_cluster",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__ if item.module else ""
        if module in INTEGRATION or "bot" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
        if item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)
        if module in ("test_spark", "test_spark_cluster") or "[spark" in item.nodeid:
            # one worker, one JVM (--dist loadgroup); the cluster's JVMs then never run beside it
            item.add_marker(pytest.mark.xdist_group("spark"))
        elif module == "test_report":
            item.add_marker(pytest.mark.xdist_group("report"))  # its module fixture built once


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if hasattr(config, "workerinput"):
        return
    terminalreporter.section("database servers")
    for name, seen in SERVERS_SEEN.items():
        terminalreporter.write_line(f"{name}: {seen}")
    skipped = terminalreporter.stats.get("skipped", [])
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} test(s) skipped; the reasons are listed above (-ra)")


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
    params = ["sqlite"]
    if os.environ.get("TEST_DATABASE_URL"):
        params.append("postgresql")
    return params


@pytest.fixture(params=_db_params())
def state_db(request, tmp_path):
    """A fresh, empty state database (a private schema on PostgreSQL)."""
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


# -- generated shops ---------------------------------------------------------------------------


def terms_with(days=(30, 90, 200), monetary=None, currency: str = "", lost=None):
    """The shop's terms with the given return time, window and lost cut-off (and per-kind lost
    cut-offs ``lost`` = (one-time, repeat)); spend levels from ``monetary`` (default 10..100)."""
    from dataclasses import replace

    import numpy as np
    import pandas as pd

    from segmentation.model.survival import FirstReturns
    from segmentation.model.terms import measure

    m = np.arange(10.0, 110.0, 10.0) if monetary is None else np.asarray(monetary, dtype=float)
    frame = pd.DataFrame({"recency": [1] * len(m), "occasions": [1] * len(m), "monetary": m})
    t = measure(frame, FirstReturns(), currency=currency)
    one, rep = lost or (days[2], days[2])
    return replace(
        t,
        return_time=days[0],
        return_window=days[1],
        lost_after=days[2],
        measured=True,
        returning_customers=500,
        one_time_lost_after=one,
        repeat_lost_after=rep,
    )


def shop_orders(
    seed: int,
    customers: int = 600,
    gap_days: float = 40.0,
    dropout: float = 0.4,
    days: int = 540,
    one_time_share: float = 0.5,
):
    """Order history of a made-up shop: some customers buy once, the others buy at their own
    rate until they drop out. Returns a DataFrame customer, order, date, amount."""
    import datetime as dt

    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    start = dt.date(2023, 1, 1)
    rows = []
    for c in range(customers):
        t = float(rng.uniform(0, days))
        n = 1 if rng.random() < one_time_share else 1 + int(rng.geometric(max(dropout, 1e-3)))
        rate = rng.gamma(2.0, gap_days / 2.0)
        for _ in range(n):
            if t >= days:
                break
            orders = 2 if rng.random() < 0.05 else 1  # now and then two orders on one day
            for _ in range(orders):
                rows.append(
                    (
                        f"C{c:05d}",
                        f"O{len(rows):07d}",
                        (start + dt.timedelta(days=int(t))).isoformat(),
                        round(float(rng.lognormal(4.3, 0.8)), 2),
                    )
                )
            t += max(1.0, float(rng.exponential(rate)))
    return pd.DataFrame(rows, columns=["customer", "order", "date", "amount"])


def shop_table(tmp_path, seed: int, as_of=None, **kw):
    """A generated shop written as a transactions CSV and read back as RFM."""
    from segmentation.data.sources import load_rfm
    from segmentation.data.spec import source_from_spec

    path = tmp_path / f"shop-{seed}.csv"
    if not path.exists():
        shop_orders(seed, **kw).to_csv(path, index=False)
    src = source_from_spec(path, customer_col="customer", order_col="order", date_col="date", amount_col="amount")
    return load_rfm(src, as_of=as_of)


# -- the bot over HTTP, with the Slack stand-in ------------------------------------------------


@pytest.fixture
def slack():
    """A local stand-in for Slack's Web API and response URLs that records every call."""
    from bot.emulator import SlackEmulator

    with SlackEmulator() as emulator:
        yield emulator


@pytest.fixture
def bot(slack, trained, tmp_path, state_db):
    """The bot serving HTTP on a local port, with a copy of the trained model (tests override it
    where they need data behind it)."""
    from slackkit import copy_artifacts, start_bot

    running = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db)
    yield running
    running.stop()
