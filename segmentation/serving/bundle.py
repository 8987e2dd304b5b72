"""A trained model as bytes: a marked, zlib-compressed pickle (read only after its signature verifies)."""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

BUNDLE_MAGIC = b"SEGMENT-BUNDLE-1\n"  # then a zlib-compressed pickle


def dump_bundle(obj: Any) -> bytes:
    """The bundle's bytes: a pickle compressed with zlib behind a magic line. Plain pickle needs
    no joblib (a fifth of a second to import on a cold start), and the bundle holds a few kB of
    arrays, where joblib's memory-mapping brings nothing."""
    import zlib

    return BUNDLE_MAGIC + zlib.compress(pickle.dumps(obj, protocol=5), 6)


# Where the classes of a saved model lived before the package was laid out by layer: a model
# saved then still loads (its pickle names the old modules).
_MOVED = {
    "segmentation.model": ("segmentation.model.estimator", "segmentation.model.geometry"),
    "segmentation.model.estimator": ("segmentation.model.estimator", "segmentation.model.geometry"),
    **{
        f"segmentation.{old}": (f"segmentation.model.{old}",)
        for old in (
            "survival", "terms", "chance", "atrisk", "definitions", "naming", "playbook", "personas",
            "baseline", "segments", "outlook", "compiled",
        )
    },
}  # fmt: skip


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        for new in _MOVED.get(module, ()):
            found = getattr(importlib.import_module(new), name, None)
            if found is not None:
                return found
        return super().find_class(module, name)


def load_bundle(data: bytes) -> Any:
    """Unpickle a bundle whose signature and checksum were verified (the caller's job); bundles
    saved by earlier versions of the product are joblib files."""
    import zlib

    if data.startswith(BUNDLE_MAGIC):
        return _Unpickler(io.BytesIO(zlib.decompress(data[len(BUNDLE_MAGIC) :]))).load()
    import joblib

    return joblib.load(io.BytesIO(data))
