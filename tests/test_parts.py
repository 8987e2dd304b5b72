"""A file too large for DuckDB's memory limit is scored in parts: the same answer as one statement."""

from __future__ import annotations

import datetime as dt
import tempfile

import numpy as np
import pandas as pd
import pytest

from segmentation.data import parts
from segmentation.data.duckdb_engine import DuckDBEngine, limit_bytes
from segmentation.data.sample import TRANSACTIONS_COLUMNS, TRANSACTIONS_FILE, write_sample
from segmentation.data.spec import source_from_spec
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore


@pytest.fixture(scope="module")
def lines(tmp_path_factory) -> pd.DataFrame:
    """The sample shop's orders as order lines: every third order in two lines, every fifth
    line's customer id padded with spaces (the same customer, however the id is written), a
    return netted against a later order, and a column the product does not read."""
    folder = write_sample(tmp_path_factory.mktemp("tx"), orders=6_000, seed=7, layout="transactions")
    orders = pd.read_parquet(folder / TRANSACTIONS_FILE)
    cents = (orders["amount"] * 100).round().astype(np.int64)
    split = np.arange(len(orders)) % 3 == 0
    first = orders.assign(amount=np.where(split, cents // 2, cents) / 100)
    second = orders[split].assign(amount=(cents[split] - cents[split] // 2) / 100)
    refund = orders.iloc[[10]].assign(order_id="R-1", amount=-(orders["amount"].iloc[10] / 2))
    out = pd.concat([first, second, refund], ignore_index=True)
    out["customer_id"] = np.where(np.arange(len(out)) % 5 == 0, "  " + out["customer_id"] + " ", out["customer_id"])
    out["channel"] = "web"  # a column the product does not read: left out of the parts
    return out


def _score(served, path, as_of):
    return served.score_source(source_from_spec(path, **TRANSACTIONS_COLUMNS), as_of)


def _assert_same(a, b) -> None:
    assert (a.customers, a.snapshot_date, a.latest_purchase) == (b.customers, b.snapshot_date, b.latest_purchase)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_array_equal(a.at_risk_counts, b.at_risk_counts)
    assert (a.at_risk.customers, a.at_risk.all_customers) == (b.at_risk.customers, b.at_risk.all_customers)
    assert a.at_risk.revenue == pytest.approx(b.at_risk.revenue, abs=0.005)
    assert a.at_risk.all_revenue == pytest.approx(b.at_risk.all_revenue, abs=0.005)
    pd.testing.assert_frame_equal(a.at_risk_rows, b.at_risk_rows, check_exact=False, atol=1e-9)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
@pytest.mark.parametrize("days_after", [None, 60])
def test_scoring_in_parts_equals_one_statement(trained, lines, tmp_path, monkeypatch, suffix, days_after):
    served = SegmentService(ModelStore(trained)).served()
    path = tmp_path / f"lines{suffix}"
    lines.to_parquet(path, index=False) if suffix == ".parquet" else lines.to_csv(path, index=False)
    snapshot = dt.date.fromisoformat(served.info.snapshot_date)
    as_of = None if days_after is None else snapshot + dt.timedelta(days=days_after)
    whole = _score(served, path, as_of)
    assert whole.at_risk.customers > 0  # the at-risk rows are compared too

    # about five parts at the configured limit, written to this test's temporary folder
    estimate = parts.estimated_lines(path)
    per_gb = 1e9 / limit_bytes(DuckDBEngine("x").limit)
    monkeypatch.setattr(parts, "PART_LINES_PER_GB", int(estimate // 5 * per_gb) + 1)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    written = []
    real = DuckDBEngine.write_parts
    monkeypatch.setattr(
        DuckDBEngine, "write_parts", lambda self, sql, folder: (written.append(folder), real(self, sql, folder))[1]
    )
    in_parts = _score(served, path, as_of)

    assert len(written) == 1 and len(list(written[0].parent.glob("segment-parts-*"))) == 0  # removed afterwards
    _assert_same(in_parts, whole)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
@pytest.mark.parametrize("row", ["C1,2024-01-01,9.99", "C0000012345,2024-01-01 10:00:00,12.34,web,Lisbon,PT,0.5"])
def test_lines_are_estimated_from_the_file_itself(tmp_path, suffix, row):
    import gzip

    rng = np.random.default_rng(0)
    text = "h\n" + "".join(f"{row},{rng.integers(10**6)}\n" for _ in range(300_000))
    path = tmp_path / f"t{suffix}"
    path.write_bytes(gzip.compress(text.encode()) if suffix.endswith(".gz") else text.encode())
    assert parts.estimated_lines(path) == pytest.approx(300_001, rel=0.15)  # the start of a gzip compresses worst


def test_a_failure_while_in_parts_removes_them_and_says_one_line(trained, lines, tmp_path, monkeypatch):
    from segmentation.errors import DataError

    served = SegmentService(ModelStore(trained)).served()
    path = tmp_path / "lines.parquet"
    lines.to_parquet(path, index=False)
    monkeypatch.setattr(parts, "PART_LINES_PER_GB", 1000)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    limits = []
    real = DuckDBEngine.table

    def failing(self, sql, relation=None):
        limits.append(self.con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])
        real(self, sql, relation)
        raise DataError("x: the disk of the temporary folder is full (simulated)")

    monkeypatch.setattr(DuckDBEngine, "table", failing)
    with pytest.raises(DataError, match="temporary folder is full"):
        _score(served, path, dt.date(2025, 1, 1))
    assert limits and not list(tmp_path.glob("segment-parts-*"))


def test_a_source_that_fails_while_parts_are_written_is_said_to_be_unreadable(trained, lines, tmp_path, monkeypatch):
    from segmentation.errors import DataError

    served = SegmentService(ModelStore(trained)).served()
    path = tmp_path / "lines.parquet"
    lines.to_parquet(path, index=False)

    def gone(p):  # the file is removed after it was opened: DuckDB's I/O error is about the source
        p.unlink()
        return 10**9

    monkeypatch.setattr(parts, "estimated_lines", gone)
    with pytest.raises(DataError) as err:
        _score(served, path, dt.date(2025, 1, 1))
    assert "cannot be read" in str(err.value) and "parts" not in str(err.value)


def test_a_large_file_only_is_split(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    path.write_text("customer_id,ordered_at,amount\n" + "C0000012345,2024-01-01 10:00:00,12.34\n" * 1000)
    source = source_from_spec(path, customer_col="customer_id", date_col="ordered_at", amount_col="amount")
    from segmentation.data.plan import _plan

    plan = _plan(source)
    try:
        assert parts.part_count(source, plan) == 1
        monkeypatch.setattr(parts, "PART_LINES_PER_GB", 100)
        memory = limit_bytes(plan.engine.limit)
        assert parts.part_count(source, plan) == -(-parts.estimated_lines(path) // int(100 * memory / 1e9))
    finally:
        plan.engine.close()


def test_the_memory_limit_is_lowered_while_parts_are_written_and_put_back():
    engine = DuckDBEngine("x")
    try:
        before = limit_bytes(engine.limit)

        def now() -> float:
            return limit_bytes(str(engine.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]))

        with engine.limited(0.5):
            assert now() == pytest.approx(before * 0.5, rel=0.02)
        assert now() == pytest.approx(before, rel=0.02)
        with pytest.raises(KeyError), engine.limited(0.5):  # put back after a failure too
            raise KeyError("boom")
        assert now() == pytest.approx(before, rel=0.02)
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("text", "expected"), [("1GB", 1e9), ("6 GiB", 6 * 2**30), ("953.6 MiB", 953.6 * 2**20), ("lots", None)]
)
def test_limit_bytes(text, expected):
    assert limit_bytes(text) == expected
