"""A trained model as bytes: a marked, zlib-compressed pickle (read only after its signature verifies)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


BUNDLE_MAGIC = b"SEGMENT-BUNDLE-1\n"  # then a zlib-compressed pickle


def dump_bundle(obj: Any) -> bytes:
    """The bundle's bytes: a pickle compressed with zlib behind a magic line. Plain pickle needs
    no joblib (a fifth of a second to import on a cold start), and the bundle holds a few kB of
    arrays, where joblib's memory-mapping brings nothing."""
    import pickle
    import zlib

    return BUNDLE_MAGIC + zlib.compress(pickle.dumps(obj, protocol=5), 6)


def load_bundle(data: bytes) -> Any:
    """Unpickle a bundle whose signature and checksum were verified (the caller's job); bundles
    saved by earlier versions of the product are joblib files."""
    import pickle
    import zlib

    if data.startswith(BUNDLE_MAGIC):
        return pickle.loads(zlib.decompress(data[len(BUNDLE_MAGIC) :]))
    import joblib

    return joblib.load(io.BytesIO(data))
