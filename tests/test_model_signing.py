"""Signed manifests: a model version is only loaded if it was signed with this deployment's key,
and its per-customer table is only answered from while it matches its signed checksum."""

from __future__ import annotations

import io
import json
import os
import stat

import joblib
import pandas as pd
import pytest
from conftest import run_cli

from segmentation.data.kinds import OlistSource
from segmentation.data.sources import load_rfm
from segmentation.errors import ModelIntegrityError, SegmentationError
from segmentation.serving import assignments as assignments_mod
from segmentation.serving import atomic as atomic_mod
from segmentation.serving import signing
from segmentation.serving import store as store_mod
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import fit


@pytest.fixture(scope="module")
def fitted(sample_folder):
    return fit(load_rfm(OlistSource(sample_folder)), k=6)


def _store(tmp_path, fitted, n=1, **kw) -> ModelStore:
    store = ModelStore(tmp_path, **kw)
    for _ in range(n):
        store.save(*fitted)
    return store


def _manifest(tmp_path, v="v0001"):
    return tmp_path / "models" / f"{v}.json"


def test_key_file_is_created_private_and_a_shared_one_is_refused(tmp_path, fitted):
    _store(tmp_path, fitted)
    key_file = tmp_path / "model.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text().strip()) >= signing.MIN_KEY_CHARS
    os.chmod(key_file, 0o644)
    with pytest.raises(signing.ModelKeyError, match="chmod 600"):
        ModelStore(tmp_path)
    r = run_cli("--artifacts", str(tmp_path), "predict", "30", "2", "150")
    assert r.code == 1 and "chmod 600" in r.err and "Traceback" not in r.err


def test_a_replaced_bundle_with_a_recomputed_checksum_is_refused(tmp_path, fitted):
    """Whoever can write the folder but lacks the key can no longer get a pickle loaded."""
    store = _store(tmp_path, fitted)
    buf = io.BytesIO()
    joblib.dump({"schema_version": store_mod.SCHEMA_VERSION, "evil": True}, buf)
    data = buf.getvalue()
    (tmp_path / "models" / "v0001.joblib").write_bytes(data)
    m = json.loads(_manifest(tmp_path).read_text())
    m.update(sha256=atomic_mod.sha256_hex(data), bytes=len(data))
    _manifest(tmp_path).write_text(json.dumps(m))
    with pytest.raises(ModelIntegrityError, match="signature that does not verify"):
        store.load()
    del m["signature"]
    _manifest(tmp_path).write_text(json.dumps(m))
    with pytest.raises(ModelIntegrityError, match="is not signed"):
        store.load()
    # another deployment's key does not verify either
    other = signing.ModelKey(b"k" * 40, "test")
    store2 = _store(tmp_path / "other", fitted, key=other)
    (tmp_path / "models" / "v0002.joblib").write_bytes((tmp_path / "other/models/v0001.joblib").read_bytes())
    (tmp_path / "models" / "v0002.assignments.parquet").write_bytes(store2.assignments_path("v0001").read_bytes())
    m2 = json.loads((tmp_path / "other/models/v0001.json").read_text())
    _manifest(tmp_path, "v0002").write_text(json.dumps(m2))
    with pytest.raises(ModelIntegrityError, match="does not verify"):
        store.load("v0002")


@pytest.mark.parametrize("edit", ["spend", "cluster"])
def test_an_edited_customer_table_is_refused(tmp_path, fitted, edit):
    store = _store(tmp_path, fitted)
    served = SegmentService(store).served()
    cid = fitted[1]["customer_id"].iloc[0]
    assert served.customer(cid).customer_id == cid
    path = store.assignments_path("v0001")
    frame = pd.read_parquet(path)
    if edit == "spend":
        frame.loc[frame["customer_id"] == cid, "monetary"] = 1e12
    else:
        frame["cluster"] = 999
    assignments_mod.write_assignments(path, frame)
    with pytest.raises(ModelIntegrityError, match="does not match the checksum"):
        served.customer(cid)  # the served model notices the file changed under it
    with pytest.raises(ModelIntegrityError, match="does not match the checksum"):
        # refused at load when the size changed, at the first read of the table otherwise
        SegmentService(store).served().customer(cid)
    with pytest.raises(ModelIntegrityError, match="does not match the checksum"):
        store.load()  # a full load (as before activating a version) hashes it
    r = run_cli("--artifacts", str(tmp_path), "customer", cid)
    assert r.code == 1 and "does not match the checksum" in r.err and "KeyError" not in r.err


def test_segment_model_marks_damaged_versions_and_survives_a_garbage_manifest(tmp_path, fitted):
    _store(tmp_path, fitted, 3)
    _manifest(tmp_path, "v0001").write_bytes(b"\x00\xff not json")
    (tmp_path / "models" / "v0003.joblib").write_bytes(b"tampered")
    r = run_cli("--artifacts", str(tmp_path), "model")
    assert r.code == 1, r.out
    lines = {tok: line for line in r.out.splitlines() for tok in line.split()[:2] if tok.startswith("v0")}
    assert lines["v0003"].startswith("! ") and "DAMAGED" in lines["v0003"]
    assert "DAMAGED" in lines["v0001"] and "ok" in lines["v0002"].split()
    assert "served version v0003 is damaged" in r.err
    r = run_cli("--artifacts", str(tmp_path), "--quiet", "model", "--json")
    versions = {v["version"]: v for v in json.loads(r.out)["versions"]}
    assert r.code == 1 and versions["v0002"]["damaged"] is None and versions["v0001"]["damaged"]
    assert run_cli("--artifacts", str(tmp_path), "rollback").code == 0
    r = run_cli("--artifacts", str(tmp_path), "model")
    assert r.code == 0 and "* v0002" in r.out


def test_rekey_rotates_the_key_file_and_keeps_every_good_version(tmp_path, fitted):
    store = _store(tmp_path, fitted, 2)
    old = (tmp_path / "model.key").read_text()
    (tmp_path / "models" / "v0001.joblib").write_bytes(b"tampered")
    r = run_cli("--artifacts", str(tmp_path), "rekey")
    assert r.code == 0 and "Re-signed 1 model version" in r.out and "v0001" in r.out, r.err
    assert (tmp_path / "model.key").read_text() != old
    assert not (tmp_path / "model.key.previous").exists()
    assert ModelStore(tmp_path).load()[0] == "v0002"  # verifies with the new key alone
    with pytest.raises(SegmentationError):
        ModelStore(tmp_path, key=signing.ModelKey(old.strip().encode(), "old")).load()
    assert store.versions() == ["v0001", "v0002"]


def test_key_from_the_environment(tmp_path, fitted):
    env = {signing.KEY_ENV: "e" * 40}
    store = _store(tmp_path, fitted, key=signing.load_key(tmp_path, env))
    assert not (tmp_path / "model.key").exists()
    assert store.load()[0] == "v0001"
    with pytest.raises(signing.ModelKeyError, match="at least 32"):
        signing.load_key(tmp_path, {signing.KEY_ENV: "short"})
    rotated = signing.load_key(tmp_path, {signing.KEY_ENV: "n" * 40, signing.PREVIOUS_KEY_ENV: "e" * 40})
    assert ModelStore(tmp_path, key=rotated).rekey(rotated) == (["v0001"], [])
    assert ModelStore(tmp_path, key=signing.load_key(tmp_path, {signing.KEY_ENV: "n" * 40})).load()[0] == "v0001"


def test_a_running_service_follows_a_rotation_of_the_key_file(tmp_path, fitted):
    """`segment rekey` while the bot runs: the bot's store re-reads the key file, so it keeps
    serving, can roll back, and signs its next retrain with the new key."""
    store = _store(tmp_path, fitted, 2)
    service = SegmentService(store)
    assert service.served().version == "v0002"
    assert run_cli("--artifacts", str(tmp_path), "rekey").code == 0
    assert service.served("v0001").version == "v0001"  # verified with the new key
    assert service.rollback() == ("v0002", "v0001")
    store.save(*fitted)
    assert ModelStore(tmp_path).load()[0] == "v0003"  # a fresh process verifies what it signed


def test_an_edit_that_keeps_size_and_mtime_is_still_noticed(tmp_path, fitted):
    store = _store(tmp_path, fitted)
    served = SegmentService(store).served()
    cid = fitted[1]["customer_id"].iloc[0]
    served.customer(cid)
    path = store.assignments_path("v0001")
    before = path.stat()
    with open(path, "r+b") as fh:  # one byte changed in place: same size
        fh.seek(before.st_size // 2)
        byte = fh.read(1)
        fh.seek(before.st_size // 2)
        fh.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(ModelIntegrityError, match="does not match the checksum"):
        served.customer(cid)


def test_a_signed_seal_spares_a_fresh_process_the_hash_until_the_file_changes(tmp_path, fitted, monkeypatch):
    store = _store(tmp_path, fitted)
    cid = fitted[1]["customer_id"].iloc[0]
    SegmentService(store).served().customer(cid)  # hashed once, sealed
    seal = assignments_mod.seal_path(store.assignments_path("v0001"))
    assert json.loads(seal.read_text())["sha256"] == store.info("v0001").manifest["assignments"]["sha256"]

    hashed = []
    real = assignments_mod.file_sha256
    monkeypatch.setattr(assignments_mod, "file_sha256", lambda p: hashed.append(p) or real(p))
    assert SegmentService(ModelStore(tmp_path)).served().customer(cid).customer_id == cid
    assert hashed == []  # a fresh process trusted the seal: same file, same key

    forged = json.loads(seal.read_text())
    forged["signature"] = signing.ModelKey(b"x" * 40, "attacker").sign(forged)
    seal.write_text(json.dumps(forged))
    SegmentService(ModelStore(tmp_path)).served().customer(cid)
    assert len(hashed) == 1  # a seal signed with another key is ignored: the file is hashed

    path = store.assignments_path("v0001")
    frame = pd.read_parquet(path)
    frame["cluster"] = (frame["cluster"] + 1) % 3  # a changed table, written anew
    assignments_mod.write_assignments(path, frame)
    with pytest.raises(ModelIntegrityError, match="does not match the checksum"):
        SegmentService(ModelStore(tmp_path)).served().customer(cid)  # the seal no longer matches the file


def test_a_version_copied_under_another_name_is_refused(tmp_path, fitted):
    store = _store(tmp_path, fitted, n=2)
    models = tmp_path / "models"
    for path in list(models.glob("v0001.*")):
        (models / path.name.replace("v0001", "v0003")).write_bytes(path.read_bytes())
    (models / "CURRENT").write_text("v0003\n")
    with pytest.raises(ModelIntegrityError, match="signed as version v0001, not v0003"):
        ModelStore(tmp_path).load()
    r = run_cli("--artifacts", str(tmp_path), "predict", "30", "2", "150")
    assert r.code == 1 and "signed as version v0001, not v0003" in r.err
    assert store.problem("v0002") is None  # the genuine versions still serve


def test_a_signature_names_the_kind_of_document(tmp_path, fitted):
    """A seal and a manifest are signed as what they are: one never verifies as the other."""
    key = signing.ModelKey(b"k" * 40, "test")
    doc = {"version": "v0001", "sha256": "0" * 64, "bytes": 10}
    as_seal = dict(doc, signature=key.sign(doc, signing.SEAL))
    assert key.verifies(as_seal, signing.SEAL) and not key.verifies(as_seal)
    as_manifest = dict(doc, signature=key.sign(doc))
    assert key.verifies(as_manifest) and not key.verifies(as_manifest, signing.SEAL)


def test_a_manifest_signed_before_kinds_still_loads_and_rekey_signs_it_anew(tmp_path, fitted):
    store = _store(tmp_path, fitted)
    path = _manifest(tmp_path)
    manifest = json.loads(path.read_text())
    manifest.pop("signature")
    manifest["signature"] = signing._mac(store.key.key, manifest, None)  # the form before kinds
    path.write_text(json.dumps(manifest))
    assert ModelStore(tmp_path).load()[0] == "v0001"
    assert not store.key.signed_by_current(manifest)
    done, refused = ModelStore(tmp_path).rekey(store.key)
    assert done == ["v0001"] and not refused
    assert store.key.signed_by_current(json.loads(path.read_text()))
