"""Training without every customer's id or standardised row in memory: the ids set aside in a
file while the rows are read and streamed into the per-customer table, the model fitted from the
frame's own columns a block at a time, the engine's memory shared. Each path must give exactly
what the whole-in-memory path gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.data import sources as sources_mod
from segmentation.data.duckdb_engine import DuckDBEngine
from segmentation.data.kinds import OlistSource, SetAsideIds
from segmentation.data.rfm_rows import net_rows
from segmentation.data.sources import load_rfm
from segmentation.errors import DataError, EngineMemoryError
from segmentation.model import chunks
from segmentation.model import estimator as estimator_mod
from segmentation.model.atrisk import expected_value
from segmentation.model.estimator import SegmentModel, kinds_of
from segmentation.model.geometry import NEAREST_ROWS, nearest_own
from segmentation.model.terms import Freq, ShopTerms, Spend, recency_bands
from segmentation.serving import assignments as assignments_mod
from segmentation.serving import training as training_mod
from segmentation.serving.store import ModelStore
from segmentation.serving.training import fit, train


def _reader(table: pa.Table, cuts: list[int]) -> pa.RecordBatchReader:
    """``table`` handed over in batches cut at ``cuts``, as an engine streams it."""
    bounds = sorted({0, table.num_rows, *(c for c in cuts if 0 < c < table.num_rows)})
    batches = [b for a, z in zip(bounds, bounds[1:]) for b in table.slice(a, z - a).to_batches()]
    return pa.RecordBatchReader.from_batches(table.schema, batches)


def _rows(ids: list, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = len(ids)
    occasions = rng.integers(0, 4, n).astype(np.int32)  # 0: returns only
    return pa.table(
        {
            "customer_id": ids,
            "last_day": rng.integers(17_000, 19_000, n).astype(np.int32),
            "frequency": (occasions + rng.integers(0, 2, n)).astype(np.int32),
            "monetary": rng.choice([-5.0, 0.0, 12.5, 80.0, 310.25], n),
            "occasions": occasions,
            "span": rng.integers(0, 300, n).astype(np.int32),
        }
    )


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    seed=st.integers(0, 1000),
    shuffle=st.booleans(),
)
def test_ids_set_aside_batch_by_batch_are_the_kept_rows_ids_in_order(tmp_path_factory, n, cuts, seed, shuffle):
    """Whatever the batches: the numbers are the rows that a whole-table netting keeps, the file
    holds exactly their ids in the same order, and ``ordered`` says whether they are sorted as
    text (across batches too); the netted count and the last purchase are the whole table's."""
    ids = [f"c{i:05d}" for i in range(n)]
    if shuffle:
        ids = list(np.random.default_rng(seed).permutation(ids))
    table = _rows(ids, seed)
    path = tmp_path_factory.mktemp("ids") / "ids.arrow"
    rows = net_rows(_reader(table, cuts), path)
    keep = (table["occasions"].to_numpy() > 0) & (table["monetary"].to_numpy() > 0)
    bought = table["occasions"].to_numpy() > 0
    assert rows.netted_out == n - keep.sum()
    assert rows.last_bought == (table["last_day"].to_numpy()[bought].max() if bought.any() else None)
    assert "customer_id" not in rows.table.column_names
    assert rows.table["monetary"].to_numpy().tolist() == table["monetary"].to_numpy()[keep].tolist()
    kept_ids = [i for i, k in zip(ids, keep) if k]
    if not kept_ids:
        assert rows.ids is None
        return
    assert rows.ids == SetAsideIds(path, len(kept_ids), kept_ids == sorted(kept_ids))
    written = pa.ipc.open_file(pa.OSFile(str(path))).read_all()["customer_id"].to_pylist()
    assert written == kept_ids


def test_numeric_ids_are_set_aside_as_text_and_their_order_judged_as_text(tmp_path):
    """A database's integer ids come sorted as numbers (9 before 10): as text they are not, so the
    table is sorted when written."""
    table = _rows([8, 9, 10, 11], 1).drop_columns(["monetary", "occasions"])
    table = table.append_column("monetary", pa.array([5.0] * 4)).append_column("occasions", pa.array([1] * 4))
    rows = net_rows(_reader(table, [2]), tmp_path / "ids.arrow")
    assert rows.ids is not None and not rows.ids.ordered
    written = pa.ipc.open_file(pa.OSFile(str(tmp_path / "ids.arrow"))).read_all()["customer_id"]
    assert written.type == pa.string() and written.to_pylist() == ["8", "9", "10", "11"]


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), max_size=8), size=st.integers(1, 17))
def test_blocks_cut_any_arrays_into_equal_blocks_without_losing_a_value(lengths, size):
    arrays, start = [], 0
    for n in lengths:
        arrays.append(pa.array([f"{i}" for i in range(start, start + n)], pa.string()))
        start += n
    blocks = list(assignments_mod._blocks(iter(arrays), size))
    assert [v for b in blocks for v in b.to_pylist()] == [str(i) for i in range(start)]
    assert all(len(b) == size for b in blocks[:-1]) and all(0 < len(b) <= size for b in blocks)


def _frame(n: int, seed: int, ids: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="string[pyarrow]"),
            "recency": rng.integers(0, 900, n).astype(np.int32),
            "frequency": rng.integers(1, 9, n).astype(np.int32),
            "monetary": rng.uniform(1, 5000, n).round(2),
            "occasions": rng.integers(1, 5, n).astype(np.int32),
            "gap": np.where(rng.random(n) < 0.5, np.nan, rng.uniform(1, 400, n)),
            "cluster": rng.integers(0, 11, n).astype(np.int16),
            "at_risk": rng.random(n) < 0.1,
            "chance": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        }
    )


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_table_written_from_set_aside_ids_is_the_table_written_whole(tmp_path, monkeypatch, shuffled):
    """Streamed row group by row group from the ids' file (batches of any size), the per-customer
    table has the same rows, order and row groups as one written from a frame holding the ids;
    ids that are not sorted are sorted as the whole path sorts them."""
    monkeypatch.setattr(assignments_mod, "ROW_GROUP", 997)
    n = 5_003
    ids = [f"{x:012x}" for x in np.random.default_rng(3).choice(2**40, n, replace=False)]
    ids = ids if shuffled else sorted(ids)
    frame = _frame(n, 4, ids)
    whole = tmp_path / "whole.parquet"
    assignments_mod.write_assignments(whole, frame)
    aside = tmp_path / "ids.arrow"
    with pa.ipc.new_file(str(aside), pa.schema([("customer_id", pa.string())])) as writer:
        for a, z in ((0, 700), (700, 3_100), (3_100, 3_101), (3_101, n)):
            writer.write_batch(pa.record_batch([pa.array(ids[a:z])], names=["customer_id"]))
    streamed = tmp_path / "streamed.parquet"
    ordered = ids == sorted(ids)
    assignments_mod.write_assignments(streamed, frame.drop(columns="customer_id"), SetAsideIds(aside, n, ordered))
    a, b = pq.read_table(whole), pq.read_table(streamed)
    assert a.column_names == b.column_names
    for name in a.column_names:
        assert a[name].cast(b[name].type).equals(b[name]), name
    assert b["customer_id"].to_pylist() == sorted(ids)
    groups = [pq.ParquetFile(p).metadata for p in (whole, streamed)]
    assert [g.row_group(i).num_rows for g in groups[:1] for i in range(g.num_row_groups)] == [
        g.row_group(i).num_rows for g in groups[1:] for i in range(g.num_row_groups)
    ]
    with pytest.raises(ValueError, match="set aside"):
        assignments_mod.write_assignments(tmp_path / "x.parquet", frame.iloc[:10], SetAsideIds(aside, n, ordered))


def test_training_sets_the_ids_aside_and_its_table_is_the_whole_paths(tmp_path, sample_folder, monkeypatch):
    """``train`` reads with the ids set aside: its version's per-customer table equals the table
    of the same model fitted on a frame holding them, nothing is left in the models folder, and
    a training that fails after the read leaves nothing either."""
    store = ModelStore(tmp_path / "a")
    version, trained = train(OlistSource(sample_folder), store, k=6)
    got = store.open(version)[2].frame()
    whole = ModelStore(tmp_path / "b")
    table = load_rfm(OlistSource(sample_folder))
    assert "customer_id" in table.frame and table.ids is None
    plain = whole.save(*fit(table, k=6))
    pd.testing.assert_frame_equal(got, whole.open(plain)[2].frame())
    assert not list(store.models.glob(".staged*"))

    def fail(*args, **kwargs):
        raise DataError("stopped on purpose")

    monkeypatch.setattr(training_mod, "fit", fail)
    with pytest.raises(DataError, match="on purpose"):
        train(OlistSource(sample_folder), store, k=6)
    assert not list(store.models.glob(".staged*")) and store.current_version() == version


class _Engine:
    """An engine that records the memory shares it is lowered to."""

    def __init__(self):
        self.shares: list[float] = []

    def limited(self, share):
        import contextlib

        engine = self

        @contextlib.contextmanager
        def lowered():
            engine.shares.append(share)
            yield

        return lowered()


def test_work_under_a_lowered_limit_runs_again_with_the_whole_limit_only_when_memory_ran_out():
    engine = _Engine()
    attempts = []

    def work():
        attempts.append(len(engine.shares))
        if len(attempts) == 1:
            raise EngineMemoryError("out of memory")
        return "rows"

    assert sources_mod.sharing(engine, 0.5, work) == "rows" and attempts == [1, 1] and engine.shares == [0.5]

    def broken():
        raise DataError("cannot be read")

    with pytest.raises(DataError, match="cannot be read"):
        sources_mod.sharing(_Engine(), 0.5, broken)


def test_the_model_fitted_from_a_frame_block_by_block_is_the_one_fitted_from_an_array(monkeypatch):
    """The frame's own columns, standardised a block at a time (blocks smaller than the data
    here), give the same scaler, centres and labels to the bit as the (n, 3) array; the labels
    worked out block by block are ``predict``'s over the whole."""
    rng = np.random.default_rng(11)
    n = 6_000
    frame = pd.DataFrame(
        {
            "recency": rng.integers(0, 700, n).astype(np.int32),
            "occasions": np.maximum(1, rng.poisson(0.4, n) + 1).astype(np.int32),
            "monetary": rng.lognormal(4, 1, n),
            "customer_id": [f"c{i}" for i in range(n)],  # other columns are not read
        }
    )
    kinds = kinds_of(frame["occasions"], rng.random(n) < 0.05)
    X = frame[["recency", "occasions", "monetary"]].to_numpy(np.float64)
    monkeypatch.setattr(estimator_mod, "SCALER_CHUNK", 777)
    array = SegmentModel(n_clusters=20, cutoffs=(60, 150, 400), max_fit=2_000).fit(X, kinds=kinds)
    blocks = SegmentModel(n_clusters=20, cutoffs=(60, 150, 400), max_fit=2_000).fit(frame, kinds=kinds)
    assert np.array_equal(array.scaler_.mean_, blocks.scaler_.mean_)
    assert np.array_equal(array.cluster_centers_, blocks.cluster_centers_)
    assert np.array_equal(array.labels_, blocks.labels_)
    assert max(blocks.clusters_per_stratum_) > 1  # labels that depend on more than the stratum
    assert np.array_equal(blocks.labels_, blocks.predict(X, kinds))
    assert np.array_equal(X, frame[["recency", "occasions", "monetary"]].to_numpy(np.float64))  # X untouched
    with pytest.raises(ValueError, match="columns"):
        SegmentModel().fit(frame.drop(columns="monetary"))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 12), strata=st.integers(1, 4), seed=st.integers(0, 500))
def test_nearest_own_centre_is_the_plain_argmin_over_the_rows_own_centres(n, k, strata, seed):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3)).round(1)  # ties happen: the first minimum must win
    centers = rng.normal(size=(k, 3)).round(1)
    owner = np.concatenate([np.arange(strata), rng.integers(0, strata, max(k - strata, 0))])[:k]
    stratum = rng.choice(np.unique(owner), n)
    d = ((Z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    d[owner[None, :] != stratum[:, None]] = np.inf
    assert np.array_equal(nearest_own(Z, stratum, centers, owner, strata), d.argmin(axis=1))


def test_per_customer_rules_worked_out_in_blocks_equal_the_whole(monkeypatch):
    """Past a block (a million customers) the bands, levels and expected values are each row's own."""
    n = chunks.ROWS + 12_345
    rng = np.random.default_rng(5)
    r, o = rng.integers(0, 900, n).astype(np.int32), rng.integers(1, 6, n).astype(np.int32)
    m, p = rng.uniform(1, 900, n), np.where(rng.random(n) < 0.1, np.nan, rng.random(n))
    band = np.searchsorted(np.array([50.0, 120.0]), r.astype(float), side="left")
    want = np.where(r > np.where(o >= 2, 500.0, 300.0), 3, band)
    assert np.array_equal(recency_bands(r, o, 50, 120, (300, 500)), want)
    assert np.array_equal(expected_value(p, m, o), np.nan_to_num(p) * m / np.maximum(o, 1).astype(np.float64))
    assert np.array_equal(kinds_of(o, r > 800), np.where(r > 800, 2, np.where(o >= 2, 1, 0)))
    terms = ShopTerms(50, 120, 300, 3, 40.0, 500.0, 10, n, True)
    assert np.array_equal(terms.freqs(o), np.where(o >= 3, Freq.FREQUENT, np.where(o >= 2, Freq.REPEAT, Freq.ONE_TIME)))
    assert np.array_equal(terms.spends(m), np.where(m >= 500, Spend.HIGH, np.where(m < 40, Spend.LOW, Spend.MID)))


def test_nearest_own_centre_past_many_blocks_of_rows():
    """The buffers are reused block after block, the last block shorter: every row's own."""
    rng = np.random.default_rng(2)
    n, k = 3 * NEAREST_ROWS + 1_234, 12
    Z, centers = rng.normal(size=(n, 3)), rng.normal(size=(k, 3))
    owner = np.arange(k) % 4
    stratum = rng.integers(0, 4, n)
    want = np.empty(n, dtype=np.int64)
    for a in range(0, n, 50_000):
        d = ((Z[a : a + 50_000, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        d[owner[None, :] != stratum[a : a + 50_000, None]] = np.inf
        want[a : a + 50_000] = d.argmin(axis=1)
    assert np.array_equal(nearest_own(Z, stratum, centers, owner, 4), want)


def test_a_duckdb_failure_in_the_middle_of_a_stream_is_one_clear_line():
    """A result that fails after its first batches (a text that is no number, far down) is this
    source's DataError, not an OSError; running out of memory there is the error a step may
    retry with more memory."""
    engine = DuckDBEngine("test data")
    sql = "SELECT (CASE WHEN i < 2500000 THEN i::VARCHAR ELSE 'x' END)::INTEGER AS v FROM range(3000000) r(i)"
    with pytest.raises(DataError, match="test data: cannot be read") as caught:
        for _ in engine.batches(sql):
            pass
    assert not isinstance(caught.value, EngineMemoryError)
    assert isinstance(engine._error(OSError("Out of Memory Error: failed to allocate")), EngineMemoryError)
    engine.close()


def test_training_streams_many_small_batches_into_the_same_table(tmp_path, sample_folder, monkeypatch):
    """The rows handed over 97 at a time: the same per-customer table as in one batch."""
    store = ModelStore(tmp_path / "one")
    version, _ = train(OlistSource(sample_folder), store, k=6)
    whole = store.open(version)[2].frame()
    plain = DuckDBEngine.batches

    def small(self, sql, relation=None):
        reader = plain(self, sql, relation)
        return _reader(reader.read_all(), list(range(97, 100_000, 97)))

    monkeypatch.setattr(DuckDBEngine, "batches", small)
    monkeypatch.setattr(assignments_mod, "ROW_GROUP", 500)
    store = ModelStore(tmp_path / "many")
    version, _ = train(OlistSource(sample_folder), store, k=6)
    pd.testing.assert_frame_equal(store.open(version)[2].frame(), whole)
    assert pq.ParquetFile(store.models / f"{version}.assignments.parquet").metadata.num_row_groups > 1
