"""What a model store keeps: old versions pruned by count and size, and what killed saves left behind.

Called by ``ModelStore`` under its write lock (``prune``, after every save) or taking it
(``clean``, at start-up). The served version and one to roll back to always stay.
"""

from __future__ import annotations

import contextlib
import errno
import re
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from segmentation.serving import staging

_VERSION_RE = re.compile(r"^v(\d{4,})$")


class ModelStore(Protocol):
    """What pruning needs of ``store.ModelStore``."""

    models: Path
    keep: int
    max_bytes: int

    def versions(self) -> list[str]: ...
    def current_version(self) -> str | None: ...
    def _remove_version(self, v: str) -> None: ...
    def _version_files(self, v: str) -> tuple[Path, ...]: ...
    def _lock(self) -> AbstractContextManager[None]: ...


def prune(store: ModelStore) -> None:
    """Versions beyond ``store.keep``, then the oldest while together they take more than
    ``store.max_bytes``; then the leftovers of saves that died (called under the lock)."""
    versions = store.versions()
    current = store.current_version()
    for v in versions[: -store.keep]:
        if v != current:
            store._remove_version(v)
    kept = store.versions()
    size = {v: sum(p.stat().st_size for p in store._version_files(v) if p.exists()) for v in kept}
    total = sum(size.values())
    for v in list(kept):  # oldest first, by size; the served version and one more always stay
        if total <= store.max_bytes or len(kept) <= 2:
            break
        if v == current:
            continue
        store._remove_version(v)
        kept.remove(v)
        total -= size[v]
    # leftovers of saves that died: versions without a manifest older than the newest complete one
    complete = set(versions)
    newest = int(versions[-1][1:]) if versions else 0
    for p in store.models.glob("v*.*"):
        m = _VERSION_RE.match(p.name.split(".")[0])
        if m and p.name.split(".")[0] not in complete and int(m.group(1)) < newest:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    remove_temporary_files(store.models)
    staging.remove_orphans(store.models)


def remove_temporary_files(models: Path) -> None:
    """Temporary files are only written under the lock, so any found while holding it was left
    by a process that died mid-write."""
    for p in models.glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def clean(store: ModelStore) -> str | None:
    """Remove what killed saves left behind (at start-up); why not, on a read-only models folder
    (nothing can have been left behind there: it is served as it is)."""
    if not store.models.is_dir():
        return None
    try:
        with store._lock():
            remove_temporary_files(store.models)
        staging.remove_orphans(store.models)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        return f"the models folder {store.models} is read-only ({exc.strerror}): served as it is, no retrain"
    return None
