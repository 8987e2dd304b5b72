"""Versioned model bundles on disk.

    <root>/models/v0007.joblib               the bundle (joblib pickle)
    <root>/models/v0007.assignments.sqlite   every customer's R, F, M, purchase days, usual gap,
                                             cluster and at-risk flag
    <root>/models/v0007.json                 manifest: SHA-256 and size of the bundle, metadata;
                                             written last, so a version without one is incomplete
    <root>/models/CURRENT                    the served version

Every file is written to a temporary name, fsynced and renamed, so a crash leaves either the
old file or the new one. ``CURRENT`` moves only after the new version has been read back and
verified. A bundle is only unpickled after its bytes match the SHA-256 in the manifest: a
pickle is code, and a changed or truncated file is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd

from .errors import ModelIntegrityError, ModelNotFoundError, SegmentationError

if TYPE_CHECKING:
    from .segments import TrainedModel

SCHEMA_VERSION = 2
KEEP_VERSIONS = 10
_VERSION_RE = re.compile(r"^v(\d{4,})$")


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to build a file at; renamed over ``path`` if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are ordinary files for their readers
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class VersionInfo:
    version: str
    manifest: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        return self.manifest.get("metadata", {})


class ModelStore:
    def __init__(self, root: str | os.PathLike, keep: int = KEEP_VERSIONS):
        self.root = Path(root)
        self.models = self.root / "models"
        self.keep = max(5, keep)

    # -- paths -------------------------------------------------------------------------
    def _bundle_path(self, version: str) -> Path:
        return self.models / f"{version}.joblib"

    def _manifest_path(self, version: str) -> Path:
        return self.models / f"{version}.json"

    def assignments_path(self, version: str) -> Path:
        return self.models / f"{version}.assignments.sqlite"

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
        try:
            v = self._current_path.read_text().strip()
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

    def info(self, version: str) -> VersionInfo:
        try:
            manifest = json.loads(self._manifest_path(version).read_text())
        except FileNotFoundError:
            raise ModelNotFoundError(f"No model version {version} in {self.models}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelIntegrityError(
                f"{self._manifest_path(version)} is damaged; refusing to load {version}"
            ) from None
        return VersionInfo(version, manifest)

    def load(self, version: str | None = None) -> tuple[str, TrainedModel]:
        """(version, trained model) of ``version`` (default: current), after checking its SHA-256."""
        version = version or self.current_version()
        if version is None:
            raise ModelNotFoundError("No model yet: run 'segment train' first.")
        if not _VERSION_RE.match(version):
            raise ModelNotFoundError(f"'{version}' is not a model version (they look like v0003)")
        info = self.info(version)
        path = self._bundle_path(version)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelIntegrityError(f"{path} is missing; refusing to serve {version}") from None
        expected = info.manifest.get("sha256")
        if not expected or sha256_hex(data) != expected or len(data) != info.manifest.get("bytes"):
            raise ModelIntegrityError(
                f"{path} does not match the checksum recorded when it was saved "
                f"(changed or truncated); refusing to load it. Retrain, or roll back to an earlier version."
            )
        saved = joblib.load(io.BytesIO(data))
        if not isinstance(saved, dict) or saved.get("schema_version") != SCHEMA_VERSION or "trained" not in saved:
            raise ModelIntegrityError(
                f"{path} was written by an incompatible version of this software; retrain the model."
            )
        return version, saved["trained"]

    # -- writing -----------------------------------------------------------------------
    def save(self, trained: TrainedModel, assignments: pd.DataFrame, activate: bool = True) -> str:
        """Write a new version; make it current only once it is fully written and verified."""
        with self._lock():
            existing = [int(_VERSION_RE.match(v).group(1)) for v in self.versions()]
            leftovers = [
                int(m.group(1))
                for p in self.models.glob("v*.joblib")
                if (m := _VERSION_RE.match(p.stem))
            ]
            version = f"v{max(existing + leftovers, default=0) + 1:04d}"
            buf = io.BytesIO()
            joblib.dump({"schema_version": SCHEMA_VERSION, "trained": trained}, buf, compress=3)
            data = buf.getvalue()
            atomic_write_bytes(self._bundle_path(version), data)
            with atomic_path(self.assignments_path(version)) as tmp:
                write_assignments(tmp, assignments)
            manifest = {
                "version": version,
                "schema_version": SCHEMA_VERSION,
                "sha256": sha256_hex(data),
                "bytes": len(data),
                "metadata": trained.info.as_json(),
                "terms": trained.terms.as_json(),
                "at_risk_rule": {**trained.rule.as_json(), "text": trained.rule.text(trained.terms)},
            }
            atomic_write_bytes(
                self._manifest_path(version), json.dumps(manifest, indent=2, default=str).encode()
            )
            self.load(version)  # read back and verify before anyone is served from it
            if activate:
                self._set_current(version)
            self._prune()
            return version

    def _set_current(self, version: str) -> None:
        atomic_write_bytes(self._current_path, f"{version}\n".encode())

    def activate(self, version: str) -> None:
        with self._lock():
            self.load(version)
            self._set_current(version)

    def rollback(self) -> tuple[str, str]:
        """Serve the newest earlier version that was never rolled back from. Returns (from, to).

        The version rolled back from is remembered, so a later rollback (after a new training)
        does not bring it back.
        """
        with self._lock():
            try:
                current = self.current_version()
            except ModelIntegrityError:
                current = None
                candidates = self.versions()
            else:
                if current is None:
                    raise ModelNotFoundError("No model yet: nothing to roll back.")
                candidates = [v for v in self.versions() if _num(v) < _num(current)]
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
                return current or "a damaged pointer", candidate
            raise ModelNotFoundError(f"No earlier version than {current} to roll back to.")

    def _prune(self) -> None:
        versions = self.versions()
        current = self.current_version()
        for v in versions[: -self.keep]:
            if v == current:
                continue
            for p in (self._manifest_path(v), self._bundle_path(v), self.assignments_path(v)):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        # leftovers of saves that died: versions without a manifest, temporary files over an hour old
        complete = set(versions)
        newest = _num(versions[-1]) if versions else 0
        for p in self.models.glob("v*.*"):
            m = _VERSION_RE.match(p.name.split(".")[0])
            if m and p.name.split(".")[0] not in complete and int(m.group(1)) < newest:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
        cutoff = time.time() - 3600
        for p in self.models.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()


def _num(version: str) -> int:
    return int(_VERSION_RE.match(version).group(1))


# -- per-customer assignments -------------------------------------------------------------

ASSIGNMENT_COLUMNS = ("customer_id", "recency", "frequency", "monetary", "occasions", "gap", "cluster", "at_risk")


@dataclass(frozen=True)
class CustomerRow:
    customer_id: str
    recency: int
    frequency: int  # orders
    monetary: float
    occasions: int  # purchase days
    gap: float | None  # their usual days between purchase days; None with one purchase day
    cluster: int
    at_risk: bool


def write_assignments(path: Path, frame: pd.DataFrame) -> None:
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=OFF")
        con.execute("PRAGMA synchronous=OFF")
        con.execute(
            "CREATE TABLE assignments (customer_id TEXT PRIMARY KEY, recency INTEGER NOT NULL, "
            "frequency INTEGER NOT NULL, monetary REAL NOT NULL, occasions INTEGER NOT NULL, gap REAL, "
            "cluster INTEGER NOT NULL, at_risk INTEGER NOT NULL) WITHOUT ROWID"
        )
        gap = frame["gap"].astype(float)
        rows = zip(
            frame["customer_id"].astype(str).tolist(),
            frame["recency"].astype(np.int64).tolist(),
            frame["frequency"].astype(np.int64).tolist(),
            frame["monetary"].astype(float).tolist(),
            frame["occasions"].astype(np.int64).tolist(),
            gap.where(gap.notna(), None).tolist(),
            frame["cluster"].astype(np.int64).tolist(),
            frame["at_risk"].astype(np.int64).tolist(),
        )
        con.executemany("INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("CREATE INDEX assignments_cluster ON assignments (cluster, monetary)")
        con.execute("CREATE INDEX assignments_at_risk ON assignments (at_risk, monetary)")
        con.commit()
    finally:
        con.close()


_SELECT = "SELECT " + ", ".join(ASSIGNMENT_COLUMNS) + " FROM assignments"


def _row(t: tuple) -> CustomerRow:
    cid, r, f, m, o, g, c, a = t
    return CustomerRow(cid, int(r), int(f), float(m), int(o), None if g is None else float(g), int(c), bool(a))


class Assignments:
    """Read-only view of one version's per-customer table."""

    def __init__(self, path: Path):
        if not path.exists():
            raise ModelNotFoundError(f"{path.name} is missing: retrain to rebuild the customer table.")
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def get(self, customer_id: str) -> CustomerRow | None:
        with contextlib.closing(self._connect()) as con:
            t = con.execute(f"{_SELECT} WHERE customer_id = ?", (customer_id,)).fetchone()
        return None if t is None else _row(t)

    def members(self, clusters: Sequence[int] | None = None, at_risk_only: bool = False) -> Iterator[CustomerRow]:
        """Customers of ``clusters`` (all when None), optionally only those at risk, biggest
        spenders first."""
        where, args = [], []
        if clusters is not None:
            where.append(f"cluster IN ({','.join('?' * len(clusters))})")
            args += list(clusters)
        if at_risk_only:
            where.append("at_risk = 1")
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY monetary DESC, customer_id"
        with contextlib.closing(self._connect()) as con:
            for t in con.execute(sql, args):
                yield _row(t)
