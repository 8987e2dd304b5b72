"""Writes that either happen whole or not at all (a crash leaves the old file), and file digests."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from segmentation.errors import InputError, StorageError


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def output_file(out: str | os.PathLike, example: str) -> Path:
    """``out`` checked as a file to write, before any work: not a folder, in a folder that exists
    and can be written to (nothing is created on the way). ``example`` names a good one."""
    text = os.fspath(out)
    path = Path(text).expanduser()
    if not text.strip() or path.is_dir():
        raise InputError(f"'{text}' is a folder; give a file name, e.g. --out {example}")
    parent = path.parent
    if not parent.exists():
        raise InputError(f"The folder '{parent}' does not exist; create it first or write elsewhere")
    if not parent.is_dir():
        raise InputError(f"'{parent}' is a file, not a folder; give a path such as --out {example}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"Cannot write '{path}': permission denied; write elsewhere")
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


# Files this product writes hold customer data (the per-customer table, exports) or what serves
# it: readable by their owner and group, never by everyone.
FILE_MODE = 0o640


@contextlib.contextmanager
def atomic_path(path: Path, mode: int = FILE_MODE) -> Iterator[Path]:
    """A temporary path to build a file at; renamed over ``path`` (with ``mode``) if the block
    succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> tuple[str, int]:
    """(SHA-256 hex, size) of a file, read in chunks."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


# What a write can meet that no one but the machine's owner can fix, said plainly.
_DISK = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
}


def storage_error(exc: OSError, where: Path | str) -> StorageError | None:
    """``exc`` as one line naming the disk's trouble and where, or None for other errors."""
    said = _DISK.get(exc.errno or 0)
    if said is None:
        return None
    return StorageError(f"Cannot write under {where}: {said}; free space there (or make it writable) and try again")


@contextlib.contextmanager
def disk_errors(where: Path | str) -> Iterator[None]:
    """Writes under ``where``, with a full or read-only disk said in one line (``StorageError``)."""
    try:
        yield
    except OSError as exc:
        plain = storage_error(exc, where)
        if plain is None:
            raise
        raise plain from None
