from __future__ import annotations

import os
import re

import pytest
from conftest import run_cli
from pandas import testing as pd_testing

from segmentation.data.kinds import OlistSource
from segmentation.data.sources import load_rfm
from segmentation.errors import InputError, ModelIntegrityError, ModelNotFoundError, SegmentationError
from segmentation.serving import assignments as assignments_mod
from segmentation.serving import atomic as atomic_mod
from segmentation.serving import bundle as bundle_mod
from segmentation.serving import staging
from segmentation.serving import store as store_mod
from segmentation.serving.inputs import parse_rfm
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import fit


@pytest.fixture(scope="module")
def fitted(sample_folder):
    table = load_rfm(OlistSource(sample_folder))
    return fit(table, k=6)


def _fresh(tmp_path, fitted, n=1) -> ModelStore:
    store = ModelStore(tmp_path)
    for _ in range(n):
        store.save(*fitted)
    return store


def test_save_and_load_round_trip(tmp_path, fitted):
    store = _fresh(tmp_path, fitted, 2)
    assert store.versions() == ["v0001", "v0002"] and store.current_version() == "v0002"
    version, trained = store.load()
    assert version == "v0002" and trained.info.k == 6
    assert (trained.segments, trained.terms, trained.at_risk) == (
        fitted[0].segments,
        fitted[0].terms,
        fitted[0].at_risk,
    )
    info = store.info("v0002")
    assert info.manifest["sha256"] == atomic_mod.sha256_hex((tmp_path / "models" / "v0002.joblib").read_bytes())
    assert not list((tmp_path / "models").glob(".*.tmp"))


@pytest.mark.parametrize("damage", ["flip", "truncate", "replace"])
def test_checksum_mismatch_is_refused(tmp_path, fitted, damage):
    store = _fresh(tmp_path, fitted)
    path = tmp_path / "models" / "v0001.joblib"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) - 10]
    else:  # a perfectly valid pickle that is not the one that was saved
        import io

        import joblib

        buf = io.BytesIO()
        joblib.dump({"schema_version": 2, "evil": True}, buf)
        data = buf.getvalue()
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match the checksum"):
        store.load()
    r = run_cli("--artifacts", str(tmp_path), "predict", "30", "2", "150")
    assert r.code == 1 and "refusing to load" in r.err and "Traceback" not in r.err


def test_failed_save_leaves_previous_model_serving(tmp_path, fitted, monkeypatch):
    store = _fresh(tmp_path, fitted)
    service = SegmentService(store)
    before = service.served().predict(parse_rfm("30 2 150"))

    def crash(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(staging, "write_assignments", crash)  # the save stages the table through it
    with pytest.raises(OSError):
        store.save(*fitted)
    monkeypatch.undo()
    assert store.current_version() == "v0001"
    assert store.versions() == ["v0001"]  # the half-written version has no manifest
    assert service.served().predict(parse_rfm("30 2 150")) == before
    assert not list((tmp_path / "models").glob(".*.tmp")) + list((tmp_path / "models").glob(".staged.*"))
    # a failed save leaves nothing behind, not even its number
    assert store.save(*fitted) == "v0002"


def test_crash_before_rename_keeps_old_file(tmp_path):
    target = tmp_path / "f.bin"
    atomic_mod.atomic_write_bytes(target, b"old")

    real_replace = os.replace

    def boom(src, dst):
        raise KeyboardInterrupt  # the process dies between write and rename

    os.replace = boom
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_mod.atomic_write_bytes(target, b"new" * 1000)
    finally:
        os.replace = real_replace
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_rollback_and_retention(tmp_path, fitted):
    store = _fresh(tmp_path, fitted, 7)
    assert store.versions() == [f"v{n:04d}" for n in range(1, 8)]  # nothing pruned below 10
    store.keep = 5
    store.save(*fitted)
    assert store.versions() == [f"v{n:04d}" for n in range(4, 9)]
    assert store.rollback() == ("v0008", "v0007")
    assert store.load()[0] == "v0007"
    # a damaged older version is skipped, never served
    (tmp_path / "models" / "v0006.joblib").write_bytes(b"junk")
    assert store.rollback() == ("v0007", "v0005")
    store.rollback()
    with pytest.raises(ModelNotFoundError, match="No earlier version"):
        store.rollback()


def test_no_model_yet(tmp_path):
    with pytest.raises(ModelNotFoundError, match="run 'segment train' first"):
        ModelStore(tmp_path).load()


def test_assignments_answer_customers_and_export(tmp_path, fitted):
    store = _fresh(tmp_path, fitted)
    _, assignments = fitted
    served = SegmentService(store).served()
    row = assignments.iloc[17]
    ans = served.customer(row["customer_id"])
    assert (ans.recency, ans.frequency, ans.monetary) == (row["recency"], row["frequency"], row["monetary"])
    assert ans.cluster == row["cluster"] and ans.purchase_days == row["occasions"]
    assert ans.at_risk == bool(row["at_risk"])
    seg = served.segment(int(row["cluster"]))
    assert ans.segment == seg.name
    out = tmp_path / "seg.csv"
    names, n = served.export(served.resolve(seg.name), out, store)
    assert n == (assignments["cluster"] == row["cluster"]).sum() == seg.customers
    lines = out.read_text().splitlines()
    assert lines[0] == (
        "customer_id,segment,at_risk,recency_days,orders,purchase_days,monetary,chance_to_buy_again,within_days"
    )
    assert ans.chance == pytest.approx(row["chance"]) and ans.horizon == served.trained.horizon
    assert len(lines) == n + 1
    assert oct(out.stat().st_mode & 0o777) == "0o640"  # customer data: never readable by everyone
    for written in (store.assignments_path("v0001"), store.models / "v0001.json", store.models / "CURRENT"):
        assert written.stat().st_mode & 0o007 == 0, written
    store.assignments_path("v0001").unlink()
    with pytest.raises(ModelIntegrityError, match="retrain to rebuild the customer table"):
        served.customer(row["customer_id"])


def test_rollback_never_returns_to_a_version_rolled_back_from(tmp_path, fitted):
    store = _fresh(tmp_path, fitted, 3)
    assert store.rollback() == ("v0003", "v0002")  # v0003 was bad
    store.save(*fitted)
    assert store.rollback() == ("v0004", "v0002")  # not back to the bad v0003


def test_damaged_current_pointer(tmp_path, fitted):
    store = _fresh(tmp_path, fitted, 2)
    (tmp_path / "models" / "CURRENT").write_text("../../etc/passwd\n")
    with pytest.raises(ModelIntegrityError, match="CURRENT is damaged"):
        store.load()
    r = run_cli("--artifacts", str(tmp_path), "predict", "30", "2", "150")
    assert r.code == 1 and "CURRENT is damaged" in r.err
    assert store.rollback()[1] == "v0002"  # a rollback repairs it
    assert store.load()[0] == "v0002"


def test_a_running_process_sees_current_move_at_once(tmp_path, fitted):
    """CURRENT is read again only when it changed: a rollback (same length, new file) and a
    hand edit in place are both seen by the next lookup."""
    store = _fresh(tmp_path, fitted, 3)
    assert store.current_version() == "v0003"
    assert store.rollback() == ("v0003", "v0002")  # by another process: a store of its own
    assert store.current_version() == "v0002"
    other = ModelStore(tmp_path)
    other.rollback()
    assert store.current_version() == "v0001"
    current = tmp_path / "models" / "CURRENT"
    stat = current.stat()
    with open(current, "r+") as f:  # edited in place: same file, same size
        f.write("v0003\n")
    os.utime(current, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000))
    assert store.current_version() == "v0003"
    current.unlink()
    assert store.current_version() is None


def test_leftovers_of_dead_saves_are_cleaned(tmp_path, fitted):
    store = _fresh(tmp_path, fitted)
    (tmp_path / "models" / "v0002.joblib").write_bytes(b"half")  # died before its manifest
    old_tmp = tmp_path / "models" / ".v0002.joblib.abc.tmp"
    old_tmp.write_bytes(b"x")  # a killed save's temporary file, however young: saves hold the lock
    assert store.save(*fitted) == "v0003"
    names = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert "v0002.joblib" not in names and old_tmp.name not in names
    old_tmp.write_bytes(b"x")
    store.clean()  # what the bot does at start
    assert not old_tmp.exists()


def test_a_staged_table_becomes_its_versions_table_and_a_dead_trainings_is_cleaned(tmp_path, fitted):
    """A training writes its per-customer table ahead of its version (``staged``): ``save`` moves
    it in (the same rows as a table saved with the version); a block that ends without a save
    leaves nothing; ``clean`` removes a staged table whose process died (its lock is free) and
    keeps one a live training holds."""
    import time

    trained, assignments = fitted
    store = ModelStore(tmp_path)
    with store.staged(assignments) as staged:
        assert staged.path.exists() and staged.path.parent == store.models
        version = store.save(trained, staged)
        assert not staged.path.exists()
    plain = store.save(trained, assignments)
    got = store.open(version)[2].frame()
    want = store.open(plain)[2].frame()
    pd_testing.assert_frame_equal(got, want)
    assert oct((store.models / f"{version}.assignments.parquet").stat().st_mode & 0o777) == oct(atomic_mod.FILE_MODE)
    with store.staged(assignments) as staged:
        left = staged.path
        stale = time.time() - 2 * staging.GRACE
        os.utime(left, (stale, stale))
        store.clean()  # held by this (live) training: kept
        assert left.exists()
    assert not left.exists()  # no save: removed at the end of the block
    dead = store.models / ".staged.dead.parquet"  # a training killed after staging: nobody holds it
    dead.write_bytes(b"rows")
    young = store.models / ".staged.young.parquet"  # just created, its lock maybe not taken yet
    young.write_bytes(b"rows")
    os.utime(dead, (stale, stale))
    store.clean()
    assert not dead.exists() and young.exists()


def test_customer_lookups_across_many_row_groups_match_the_table(tmp_path, monkeypatch):
    """Lookups find a row by the row groups' id ranges: every id present is found with its own
    values, ids below, above and between the ranges are not."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    n = 20_000
    ids = pd.Series([f"{x:016x}" for x in rng.choice(2**40, n, replace=False)])
    frame = pd.DataFrame(
        {
            "customer_id": ids,
            "recency": rng.integers(0, 900, n),
            "frequency": rng.integers(1, 9, n),
            "monetary": rng.uniform(1, 5000, n).round(2),
            "occasions": rng.integers(1, 5, n),
            "gap": np.where(rng.random(n) < 0.5, np.nan, rng.uniform(1, 400, n)),
            "cluster": rng.integers(0, 11, n),
            "at_risk": rng.random(n) < 0.1,
        }
    )
    monkeypatch.setattr(assignments_mod, "ROW_GROUP", 997)  # about 20 row groups
    path = tmp_path / "a.parquet"
    assignments_mod.write_assignments(path, frame)
    table = assignments_mod.Assignments(path, *atomic_mod.file_sha256(path))
    by_id = frame.set_index("customer_id")
    for cid in list(ids.iloc[::97]) + [ids.min(), ids.max()]:
        row = table.get(cid)
        want = by_id.loc[cid]
        assert row is not None and (row.recency, row.frequency, row.monetary, row.cluster, row.at_risk) == (
            want["recency"],
            want["frequency"],
            want["monetary"],
            want["cluster"],
            bool(want["at_risk"]),
        )
        assert (row.gap is None) == bool(np.isnan(want["gap"]))
    for absent in ("", "0" * 15, "f" * 17, ids.iloc[5] + "0", ids.iloc[5][:-1]):
        if absent not in by_id.index:
            assert table.get(absent) is None


def test_versions_are_pruned_by_size_too(tmp_path, fitted):
    trained, assignments = fitted
    probe = ModelStore(tmp_path / "probe")
    probe.save(trained, assignments)
    one = sum(p.stat().st_size for p in (tmp_path / "probe" / "models").glob("v0001*"))
    store = ModelStore(tmp_path / "art", max_bytes=int(one * 2.5))
    for _ in range(5):
        store.save(trained, assignments)
    assert store.versions() == ["v0004", "v0005"]  # two fit in the budget; the served one stays
    assert store.rollback() == ("v0005", "v0004")
    tiny = ModelStore(tmp_path / "tiny", max_bytes=1)
    for _ in range(3):
        tiny.save(trained, assignments)
    assert tiny.versions() == ["v0002", "v0003"]  # never fewer than the served one and one to roll back to


def test_bundles_saved_with_joblib_by_earlier_versions_still_load(tmp_path, fitted, monkeypatch):
    import io

    import joblib

    def joblib_dump(obj):
        buf = io.BytesIO()
        joblib.dump(obj, buf, compress=3)
        return buf.getvalue()

    monkeypatch.setattr(store_mod, "dump_bundle", joblib_dump)  # where the store calls it
    old = ModelStore(tmp_path)
    old.save(*fitted)
    assert not (tmp_path / "models" / "v0001.joblib").read_bytes().startswith(bundle_mod.BUNDLE_MAGIC)
    monkeypatch.undo()
    version, trained = ModelStore(tmp_path).load()
    assert version == "v0001" and trained.segments == fitted[0].segments
    ModelStore(tmp_path).save(*fitted)
    assert (tmp_path / "models" / "v0002.joblib").read_bytes().startswith(bundle_mod.BUNDLE_MAGIC)


def test_a_model_saved_before_the_layered_layout_still_loads(tmp_path, fitted):
    """A bundle names the modules its classes lived in when it was saved: the old flat modules
    (segmentation.model, segmentation.terms, ...) are found in their new homes."""
    import io
    import pickle

    from segmentation.model.estimator import SegmentModel
    from segmentation.model.geometry import Standardiser
    from segmentation.model.terms import ShopTerms

    trained = fitted[0]
    data = pickle.dumps(trained, protocol=2)  # module names as text lines: easy to rename
    old = (
        data.replace(b"segmentation.model.estimator\n", b"segmentation.model\n")
        .replace(b"segmentation.model.geometry\n", b"segmentation.model\n")
        .replace(b"segmentation.model.terms\n", b"segmentation.terms\n")
    )
    assert old != data and b"segmentation.model.estimator" not in old
    with pytest.raises((AttributeError, ModuleNotFoundError)):
        pickle.loads(old)  # plain pickle cannot find them
    loaded = bundle_mod._Unpickler(io.BytesIO(old)).load()
    assert type(loaded.model) is SegmentModel and type(loaded.model.scaler_) is Standardiser
    assert type(loaded.terms) is ShopTerms and loaded.terms == trained.terms


def test_serve_goes_forward_again_after_rollbacks_and_refuses_what_it_cannot_serve(tmp_path, fitted):
    store = _fresh(tmp_path, fitted, 3)
    store.rollback()
    store.rollback()
    assert store.current_version() == "v0001"
    assert store.serve("v0003") == ("v0001", "v0003")  # forward again, no retrain needed
    assert store.load()[0] == "v0003"
    assert "v0003" not in store._rolled_back()  # serving by name cleared its rolled-back mark
    assert store.rollback() == ("v0003", "v0001")  # v0002 was rolled back from: never served again by a rollback
    assert store.serve("v0002") == ("v0001", "v0002")  # but by name it is
    for bad, said in [
        ("v0009", "is not kept (kept: v0001, v0002, v0003)"),
        ("../v0001", "looks like v0003"),
        ("v0002", "already serving"),
    ]:
        with pytest.raises(InputError, match=re.escape(said)):
            store.serve(bad)
    (tmp_path / "models" / "v0001.joblib").write_bytes(b"junk")  # damaged: refused, nothing changes
    with pytest.raises(SegmentationError):
        store.serve("v0001")
    assert store.current_version() == "v0002"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_an_id_a_spreadsheet_would_run_is_exported_as_text(tmp_path, start):
    """OWASP's CSV injection: an id starting with a formula character gets a leading quote."""
    import csv

    from segmentation.serving.assignments import CustomerRow
    from segmentation.serving.exports import write_customers_csv

    ids = [f'{start}HYPERLINK("http://evil.example","x")', "plain-id", "a=b"]
    rows = [CustomerRow(cid, 5, 1, 10.0, 1, None, 0, False) for cid in ids]
    out = tmp_path / "x.csv"
    assert write_customers_csv(rows, {0: "Lost"}, out) == 3
    with open(out, newline="", encoding="utf-8") as fh:
        written = [r["customer_id"] for r in csv.DictReader(fh)]
    assert written == ["'" + ids[0], "plain-id", "a=b"]


def test_a_read_only_models_folder_is_served_and_its_clean_up_skipped(tmp_path, fitted, monkeypatch):
    """The bot's start-up clean-up takes the write lock; on a read-only folder (EROFS, or a user
    without write access) it is skipped and said once, and the models still serve."""
    import errno

    from segmentation.serving.service import SegmentService

    store = ModelStore(tmp_path)
    store.save(*fitted)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "models" / ".lock"))

    monkeypatch.setattr(store_mod.fcntl, "flock", read_only)
    service = SegmentService(ModelStore(tmp_path))
    said = service.tidy()
    assert said is not None and "read-only" in said and "no retrain" in said
    from segmentation.serving.inputs import parse_rfm

    assert service.served().version == "v0001" and service.served().predict(parse_rfm("30 2 150")).segment


def test_a_full_disk_is_said_plainly_and_a_failed_save_uses_no_version_number(tmp_path, fitted, monkeypatch):
    import errno

    from segmentation.errors import StorageError

    store = ModelStore(tmp_path)
    store.save(*fitted)
    real = assignments_mod.write_assignments

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(staging, "write_assignments", full)
    with pytest.raises(StorageError, match="the disk is full; free space there"):
        store.save(*fitted)
    assert sorted(p.name for p in (tmp_path / "models").glob("v0002*")) == []  # nothing left of it
    assert not list((tmp_path / "models").glob(".staged.*"))
    monkeypatch.setattr(staging, "write_assignments", real)
    assert store.save(*fitted) == "v0002"  # the number was not used up
    assert store.current_version() == "v0002"


def test_a_first_save_stopped_before_current_says_which_version_to_serve(tmp_path, fitted):
    store = ModelStore(tmp_path)
    store.save(*fitted, activate=False)  # as if killed between the manifest and CURRENT
    with pytest.raises(ModelNotFoundError, match="No version is marked as served; serve one: segment serve v0001"):
        ModelStore(tmp_path).load()
    r = run_cli("--artifacts", str(tmp_path), "serve", "v0001")
    assert r.code == 0, r.err
    assert ModelStore(tmp_path).load()[0] == "v0001"


def test_the_cli_says_a_full_disk_in_one_line(tmp_path, monkeypatch):
    import errno

    from segmentation.data import sample

    def full(out, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", f"{out}/olist_orders_dataset.csv")

    monkeypatch.setattr(sample, "write_sample", full)  # the command imports it when it runs
    r = run_cli("--artifacts", str(tmp_path), "sample-data", "--orders", "100", "--out", str(tmp_path / "s"))
    assert r.code == 1 and r.err.count("\n") == 1 and "unexpected" not in r.err
    assert "olist_orders_dataset.csv: the disk is full; free space there" in r.err
