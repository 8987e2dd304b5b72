"""Versioned model bundles on disk.

    <root>/models/v0007.joblib               the bundle (a zlib-compressed pickle; joblib before)
    <root>/models/v0007.assignments.parquet  every customer's R, F, M, purchase days, usual gap, cluster, flag
    <root>/models/v0007.json                 manifest: SHA-256 and size of the bundle and the assignments,
                                             metadata, an HMAC-SHA256 signature with the model key
                                             (``signing``); written last: without it a version is incomplete
    <root>/models/CURRENT                    the served version

Files are written to a temporary name, fsynced and renamed: a crash leaves the old file or the
new one. ``CURRENT`` moves only once the new version is read back and verified. A bundle (a
pickle is code) is only unpickled after its manifest's signature verifies with the model key and
its bytes match the manifest's SHA-256. The assignments file is checked against its SHA-256
before it is first read (or trusted from a seal signed with the key that names the very same
file, see ``Assignments``) and again whenever the file changes on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmentation.errors import InputError, ModelIntegrityError, ModelNotFoundError, SegmentationError
from segmentation.serving import pruning, staging
from segmentation.serving.assignments import Assignments, seal_path
from segmentation.serving.atomic import atomic_write_bytes, disk_errors, sha256_hex
from segmentation.serving.bundle import dump_bundle, load_bundle
from segmentation.serving.signing import ModelKey, load_key
from segmentation.serving.staging import StagedTable

if TYPE_CHECKING:
    import pandas as pd

    from segmentation.data.kinds import SetAsideIds
    from segmentation.model.segments import TrainedModel

SCHEMA_VERSION = 5  # 4: the per-customer table is Parquet; 5: terms from first returns, the chance to buy again
KEEP_VERSIONS = 10
# Versions are also pruned, oldest first, while together they take more than this (the served one
# and one to roll back to always stay): at 10M customers a version takes about 170 MB.
KEEP_BYTES = 2 * 1024**3


_VERSION_RE = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class VersionInfo:
    version: str
    manifest: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.manifest.get("metadata", {})


class ModelStore:
    """Model versions under ``root``. ``key`` signs and verifies manifests; by default it is the
    key file in ``root`` (created on first use)."""

    def __init__(
        self,
        root: str | os.PathLike,
        keep: int = KEEP_VERSIONS,
        key: ModelKey | None = None,
        max_bytes: int = KEEP_BYTES,
    ):
        self.root = Path(root)
        self.models = self.root / "models"
        self.keep = max(5, keep)
        self.max_bytes = max_bytes
        self._key = key or load_key(self.root)
        self._current_seen: tuple[tuple[int, int, int], str] | None = None  # CURRENT's (inode, mtime, size), text

    @property
    def key(self) -> ModelKey:
        """The model key, re-read when ``segment rekey`` rotated the key file under a running process."""
        self._key = self._key.refreshed()
        return self._key

    @key.setter
    def key(self, key: ModelKey) -> None:
        self._key = key

    # -- paths -------------------------------------------------------------------------
    def _bundle_path(self, version: str) -> Path:
        return self.models / f"{version}.joblib"

    def _manifest_path(self, version: str) -> Path:
        return self.models / f"{version}.json"

    def assignments_path(self, version: str) -> Path:
        return self.models / f"{version}.assignments.parquet"

    @property
    def _current_path(self) -> Path:
        return self.models / "CURRENT"

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.models.mkdir(parents=True, exist_ok=True)
        with open(self.models / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- reading -----------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Complete versions (those with a manifest), oldest first."""
        if not self.models.is_dir():
            return []
        found = []
        for p in self.models.glob("v*.json"):
            m = _VERSION_RE.match(p.stem)
            if m:
                found.append((int(m.group(1)), p.stem))
        return [v for _, v in sorted(found)]

    def current_version(self) -> str | None:
        """The version ``CURRENT`` names. Asked on every lookup: the file is read again only when
        it changed (it is replaced, never edited in place, so a new inode says so)."""
        path = self._current_path
        try:
            st = os.stat(path)
            seen = self._current_seen
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen is not None and seen[0] == stamp:
                v = seen[1]
            else:
                v = path.read_text().strip()
                self._current_seen = (stamp, v)
        except FileNotFoundError:
            return None
        if not _VERSION_RE.match(v):
            raise ModelIntegrityError(
                f"{self._current_path} is damaged (it should name a version such as v0003); "
                "roll back or retrain to rewrite it."
            )
        return v

    def _rolled_back(self) -> set[str]:
        try:
            return {v for v in self._rolled_back_path.read_text().split() if _VERSION_RE.match(v)}
        except FileNotFoundError:
            return set()

    @property
    def _rolled_back_path(self) -> Path:
        return self.models / "ROLLED_BACK"

    def is_inside(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` points into the model folder (never a place to write exports)."""
        try:
            Path(path).resolve().relative_to(self.models.resolve())
            return True
        except ValueError:
            return False

    def info(self, version: str, verify: bool = True) -> VersionInfo:
        """A version's manifest; with ``verify`` (the default) only if its signature verifies."""
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise ModelNotFoundError(f"'{str(version)[:20]}' is not a model version (they look like v0003)")
        name = self._manifest_path(version).name
        try:
            manifest = json.loads(self._manifest_path(version).read_text())
        except FileNotFoundError:
            raise ModelNotFoundError(f"No model version {version} in {self.models}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            raise ModelIntegrityError(f"{name} is damaged; refusing to load {version}") from None
        if not isinstance(manifest, dict):
            raise ModelIntegrityError(f"{name} is damaged; refusing to load {version}")
        if verify and not self.key.verifies(manifest):
            state = "is not signed" if "signature" not in manifest else "has a signature that does not verify"
            raise ModelIntegrityError(
                f"{name} {state} with this deployment's model key ({self.key.origin}); refusing to load "
                f"{version}. Retrain, or roll back to a version signed with this key."
            )
        if verify and manifest.get("version") != version:  # signed as another version: copied or renamed
            signed_as = str(manifest.get("version"))[:20]
            raise ModelIntegrityError(f"{name} is signed as version {signed_as}, not {version}; refusing to load it.")
        return VersionInfo(version, manifest)

    def load(self, version: str | None = None) -> tuple[str, TrainedModel]:
        """(version, trained model) of ``version`` (default: current), after checking the
        manifest's signature and the SHA-256 of the bundle and of the assignments."""
        version, trained, _ = self._load(version)
        return version, trained

    def open(self, version: str | None = None) -> tuple[str, TrainedModel, Assignments]:
        """Like ``load``, with the version's per-customer table. The table (165 MB at 10M
        customers) is hashed when it is first read, not here: a prediction never reads it, and
        hashing it would double a cold start. Every read verifies it first."""
        return self._load(version, check_table=False)

    def _load(self, version: str | None, check_table: bool = True) -> tuple[str, TrainedModel, Assignments]:
        version = version or self.current_version()
        if version is None and self.versions():  # e.g. a first save stopped before it marked its version
            newest = self.versions()[-1]
            raise ModelNotFoundError(f"No version is marked as served; serve one: segment serve {newest}")
        if version is None:
            raise ModelNotFoundError("No model yet: run 'segment train' first.")
        info = self.info(version)
        path = self._bundle_path(version)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelIntegrityError(f"{path.name} is missing; refusing to serve {version}") from None
        expected = info.manifest.get("sha256")
        if not expected or sha256_hex(data) != expected or len(data) != info.manifest.get("bytes"):
            raise ModelIntegrityError(
                f"{path.name} does not match the checksum recorded when it was saved "
                f"(changed or truncated); refusing to load it. Retrain, or roll back to an earlier version."
            )
        recorded = info.manifest.get("assignments") or {}
        assignments = Assignments(
            self.assignments_path(version), recorded.get("sha256"), recorded.get("bytes"), key=self.key
        )
        if check_table:
            assignments.verify()
        else:
            assignments.check_size()  # missing or truncated: said now
        saved = load_bundle(data)
        if not isinstance(saved, dict) or saved.get("schema_version") != SCHEMA_VERSION or "trained" not in saved:
            raise ModelIntegrityError(
                f"{path.name} was written by an incompatible version of this software; retrain the model."
            )
        return version, saved["trained"], assignments

    def problem(self, version: str) -> str | None:
        """Why ``version`` cannot be served (damaged, unsigned, missing files), or None."""
        try:
            self._load(version)
        except SegmentationError as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - a signed bundle that still fails to unpickle
            return f"{version} cannot be read ({type(exc).__name__})"
        return None

    # -- writing -----------------------------------------------------------------------
    def staged(
        self, assignments: pd.DataFrame, ids: SetAsideIds | None = None
    ) -> contextlib.AbstractContextManager[StagedTable]:
        """The per-customer table written now, ahead of the version ``save`` gives it (``staging``);
        ``ids``: the rows' customer ids, set aside in a file (``RFMTable.ids``)."""
        return staging.staged(self.models, assignments, ids)

    def save(self, trained: TrainedModel, assignments: pd.DataFrame | StagedTable, activate: bool = True) -> str:
        """Write a new version; make it current only once it is fully written and verified."""
        if not isinstance(assignments, StagedTable):
            with self.staged(assignments) as table:
                return self.save(trained, table, activate)
        with self._lock(), disk_errors(self.models):
            existing = [_num(v) for v in self.versions()]
            leftovers = [int(m.group(1)) for p in self.models.glob("v*.joblib") if (m := _VERSION_RE.match(p.stem))]
            version = f"v{max(existing + leftovers, default=0) + 1:04d}"
            try:
                return self._save(version, trained, assignments, activate)
            except BaseException:
                try:
                    serving = self.current_version() == version  # then only what came after failed
                except SegmentationError:
                    serving = False
                if not serving:
                    self._remove_version(version)  # a failed save leaves nothing, not even its number
                raise

    def _save(self, version: str, trained: TrainedModel, table: StagedTable, activate: bool) -> str:
        """``save`` under the lock, its version number chosen."""
        data = dump_bundle({"schema_version": SCHEMA_VERSION, "trained": trained})
        atomic_write_bytes(self._bundle_path(version), data)
        staging.move(table, self.assignments_path(version))
        manifest = {
            "version": version,
            "schema_version": SCHEMA_VERSION,
            "sha256": sha256_hex(data),
            "bytes": len(data),
            # as written: a change since is refused when the table is first read
            "assignments": {"sha256": table.sha256, "bytes": table.bytes},
            "metadata": trained.info.as_json(),
            "terms": trained.terms.as_json(),
            "at_risk_rule": {**trained.rule.as_json(), "text": trained.rule.text(trained.terms, trained.horizon)},
            "chance": None if trained.chance is None else trained.chance.as_json(),
        }
        self._write_manifest(version, manifest)
        self.load(version)  # read back and verify before anyone is served from it
        if activate:
            self._set_current(version)
        self._prune()
        return version

    def _write_manifest(self, version: str, manifest: dict[str, Any]) -> None:
        manifest = json.loads(json.dumps(manifest, default=str))  # what will be read back
        manifest["signature"] = self.key.sign(manifest)
        atomic_write_bytes(self._manifest_path(version), json.dumps(manifest, indent=2).encode())

    def rekey(self, key: ModelKey) -> tuple[list[str], list[str]]:
        """Re-sign every version that verifies now with ``key``'s signing key. Returns
        (re-signed, refused); refused versions are left as they are."""
        done, refused = [], []
        with self._lock():
            self.key = key  # verifies with the new key and the previous ones
            for v in self.versions():
                if self.problem(v) is not None:
                    refused.append(v)
                    continue
                manifest = dict(self.info(v).manifest)
                if not key.signed_by_current(manifest):
                    self._write_manifest(v, manifest)  # signed anew (the signature itself is not signed)
                done.append(v)
        return done, refused

    def _set_current(self, version: str) -> None:
        atomic_write_bytes(self._current_path, f"{version}\n".encode())

    def rollback(self) -> tuple[str, str]:
        """Serve the newest earlier version never rolled back from; returns (from, to). The version
        rolled back from is remembered: a later rollback (after a new training) never brings it back."""
        with self._lock():
            try:
                current = self.current_version()
            except ModelIntegrityError:
                current = None
                candidates = self.versions()
            else:
                if current is None and not self.versions():
                    raise ModelNotFoundError("No model yet: nothing to roll back.")
                # no CURRENT (lost): serve the newest good version
                candidates = [v for v in self.versions() if current is None or _num(v) < _num(current)]
            bad = self._rolled_back()
            for candidate in reversed(candidates):
                if candidate in bad:
                    continue
                try:
                    self.load(candidate)
                except SegmentationError:
                    continue  # skip a damaged version rather than serve it
                if current:
                    atomic_write_bytes(self._rolled_back_path, "\n".join(sorted(bad | {current})).encode() + b"\n")
                self._set_current(candidate)
                return current or "a damaged or missing pointer", candidate
            raise ModelNotFoundError(f"No earlier version than {current} to roll back to.")

    def serve(self, version: str) -> tuple[str | None, str]:
        """Serve ``version``, a kept version that verifies: forward again after rollbacks, or back
        further than one step. Serving it by name clears its rolled-back mark. Returns (from, to)."""
        if not isinstance(version, str) or not _VERSION_RE.match(version.strip()):
            raise InputError(f"A model version looks like v0003, not '{str(version)[:40]}'")
        version = version.strip()
        with self._lock():
            kept = self.versions()
            if version not in kept:
                listed = ", ".join(kept[-8:]) or "none"
                raise InputError(f"Model version {version} is not kept (kept: {listed})")
            self.load(version)  # refuses a damaged or unsigned version, one line
            try:
                current = self.current_version()
            except ModelIntegrityError:
                current = None
            if current == version:
                raise InputError(f"{version} is already serving")
            bad = self._rolled_back()
            if version in bad:
                atomic_write_bytes(self._rolled_back_path, "".join(f"{v}\n" for v in sorted(bad - {version})).encode())
            self._set_current(version)
            return current, version

    def _version_files(self, v: str) -> tuple[Path, ...]:
        legacy = self.models / f"{v}.assignments.sqlite"  # before the table was Parquet
        table = self.assignments_path(v)
        return (self._manifest_path(v), self._bundle_path(v), table, seal_path(table), legacy)

    def _remove_version(self, v: str) -> None:
        for p in self._version_files(v):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()

    def _prune(self) -> None:
        pruning.prune(self)

    def clean(self) -> str | None:
        """Remove what killed saves left behind (at start-up); on a read-only folder, says why not."""
        return pruning.clean(self)


def _num(version: str) -> int:
    m = _VERSION_RE.match(version)
    if m is None:
        raise ModelNotFoundError(f"'{version[:20]}' is not a model version (they look like v0003)")
    return int(m.group(1))
