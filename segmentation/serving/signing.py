"""The model key: manifests are signed with HMAC-SHA256, so only whoever holds the key can make
a model version this deployment will unpickle.

The key comes from ``SEGMENT_MODEL_KEY`` when set (the caller passes the environment in), else
from a key file: ``SEGMENT_MODEL_KEY_FILE``, by default ``<artifacts>/model.key``, created with
0600 permissions on first use. A key file that others can read or write is refused. During a
rotation (``segment rekey``) the old key is kept beside it as ``model.key.previous`` (or given as
``SEGMENT_MODEL_PREVIOUS_KEY``) and still verifies until every version is re-signed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segmentation.errors import SegmentationError

KEY_ENV = "SEGMENT_MODEL_KEY"
PREVIOUS_KEY_ENV = "SEGMENT_MODEL_PREVIOUS_KEY"
KEY_FILE_ENV = "SEGMENT_MODEL_KEY_FILE"
MIN_KEY_CHARS = 32
# The kinds of signed document: a version's manifest, and the seal of its per-customer table.
MANIFEST, SEAL = "manifest", "seal"


class ModelKeyError(SegmentationError):
    """The model key is missing, too short or kept unsafely."""


@dataclass(frozen=True)
class ModelKey:
    """The key that signs new manifests, and the keys that still verify old ones."""

    key: bytes = field(repr=False)
    origin: str  # where it came from, for messages (never the key itself)
    previous: tuple[bytes, ...] = field(default=(), repr=False)
    file: Path | None = None  # the key file, when the key lives in one
    stamp: tuple[int, ...] = ()  # the key files' (inode, mtime, ctime) when read
    previous_env: tuple[bytes, ...] = field(default=(), repr=False)  # SEGMENT_MODEL_PREVIOUS_KEY, kept on reload

    def refreshed(self) -> ModelKey:
        """This key, or the key file's new contents if ``segment rekey`` rotated it meanwhile (so a
        running bot follows a rotation without a restart). Keys from the environment never change."""
        if self.file is None or _stamp(self.file) == self.stamp:
            return self
        return _from_file(self.file, list(self.previous_env))

    def sign(self, document: Mapping[str, Any], kind: str = MANIFEST) -> str:
        return _mac(self.key, document, kind)

    def verifies(self, document: Mapping[str, Any], kind: str = MANIFEST) -> bool:
        """Signed with this key or a previous one as a document of ``kind``. A manifest signed
        before signatures named their kind still verifies (its own ``version`` field binds it to
        its name, which the store checks); ``segment rekey`` re-signs it in the new form."""
        given = document.get("signature")
        if not isinstance(given, str):
            return False
        kinds: tuple[str | None, ...] = (kind, None) if kind == MANIFEST else (kind,)
        return any(hmac.compare_digest(given, _mac(k, document, c)) for k in (self.key, *self.previous) for c in kinds)

    def signed_by_current(self, document: Mapping[str, Any], kind: str = MANIFEST) -> bool:
        given = document.get("signature")
        return isinstance(given, str) and hmac.compare_digest(given, _mac(self.key, document, kind))


def canonical(manifest: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the manifest without its signature, keys sorted."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def _mac(key: bytes, document: Mapping[str, Any], kind: str | None) -> str:
    """The signature of ``document`` as a ``kind`` of document: the kind is signed with it, so a
    seal can never pass for a manifest or the other way round (None: the form before kinds)."""
    prefix = b"" if kind is None else f"segment/{kind}\n".encode()
    return hmac.new(key, prefix + canonical(document), hashlib.sha256).hexdigest()


def _from_text(text: str, where: str) -> bytes:
    text = text.strip()
    if len(text) < MIN_KEY_CHARS:
        raise ModelKeyError(
            f"{where} must hold at least {MIN_KEY_CHARS} characters (e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`)"
        )
    return text.encode()


def _read_key_file(path: Path) -> bytes:
    st = path.stat()
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ModelKeyError(
            f"the model key file {path.name} can be read or written by others; "
            f"run `chmod 600 {path}` (or set {KEY_ENV})"
        )
    return _from_text(path.read_text(), f"the model key file {path.name}")


def create_key_file(path: Path) -> None:
    """A new random key in ``path``, readable by its owner only; never overwrites."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def key_file_for(artifacts: str | os.PathLike, env: Mapping[str, str] | None = None) -> Path:
    env = env or {}
    return Path(env.get(KEY_FILE_ENV, "").strip() or Path(artifacts) / "model.key")


def load_key(artifacts: str | os.PathLike, env: Mapping[str, str] | None = None) -> ModelKey:
    """The deployment's model key (see the module docstring); creates the key file on first use."""
    env = env or {}
    previous: list[bytes] = []
    if env.get(PREVIOUS_KEY_ENV, "").strip():
        previous.append(_from_text(env[PREVIOUS_KEY_ENV], PREVIOUS_KEY_ENV))
    if env.get(KEY_ENV, "").strip():
        return ModelKey(_from_text(env[KEY_ENV], KEY_ENV), KEY_ENV, tuple(previous))
    path = key_file_for(artifacts, env)
    with contextlib.suppress(FileExistsError):
        create_key_file(path)
    return _from_file(path, previous)


def _stamp(path: Path) -> tuple[int, ...]:
    out: list[int] = []
    for p in (path, path.with_name(path.name + ".previous")):
        try:
            st = p.stat()
            out += [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
        except FileNotFoundError:
            out += [0, 0, 0]
    return tuple(out)


def _from_file(path: Path, previous_env: list[bytes]) -> ModelKey:
    """The key in ``path``, with ``path.previous`` (a rotation under way) and ``previous_env``
    still verifying."""
    stamp = _stamp(path)
    previous = list(previous_env)
    old = path.with_name(path.name + ".previous")
    if old.exists():
        previous.append(_read_key_file(old))
    return ModelKey(
        _read_key_file(path), f"the key file {path.name}", tuple(previous), path, stamp, tuple(previous_env)
    )


def new_key_file(key: ModelKey) -> ModelKey:
    """Rotation, step one: keep the current key file as ``.previous`` and write a new key. The
    returned key signs with the new key and still verifies with the old ones."""
    if key.file is None:
        raise ModelKeyError(
            f"the model key comes from {KEY_ENV}: to rotate it, set {PREVIOUS_KEY_ENV} to the old "
            f"value and {KEY_ENV} to the new one, then run `segment rekey`"
        )
    old = key.file.with_name(key.file.name + ".previous")
    if old.exists():
        raise ModelKeyError(f"a rotation is already under way ({old.name} exists): run `segment rekey` to finish it")
    os.replace(key.file, old)
    create_key_file(key.file)
    return _from_file(key.file, list(key.previous_env))


def finish_rotation(key: ModelKey) -> None:
    """Rotation, last step: every version is signed with the new key; forget the old key file."""
    if key.file is not None:
        with contextlib.suppress(FileNotFoundError):
            key.file.with_name(key.file.name + ".previous").unlink()
