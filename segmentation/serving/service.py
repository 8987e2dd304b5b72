"""The model store behind the answers, and the data it was trained on.

``SegmentService.served()`` hands out one immutable ``ServedModel`` (served.py) for the current
version (or a pinned one); a caller takes it once per request and asks it everything, so one
answer never mixes two versions even if a retrain lands meanwhile. The CLI and the Slack bot both
use it and neither reimplements it. It also knows which data a retrain or a digest reads: the
configured data, else the served model's own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from segmentation.data.spec import BUILT_IN_SAMPLE, OpenedData, source_from_data_spec
from segmentation.errors import InputError, SegmentationError
from segmentation.model.segments import TrainedModel
from segmentation.serving.options import TrainOptions
from segmentation.serving.served import ServedModel
from segmentation.serving.store import ModelStore


class SegmentService:
    """Loads model versions from the store and hands out ``ServedModel`` objects; the current
    one is reloaded when ``CURRENT`` moves."""

    PINNED = 4  # older versions kept in memory for pinned answers (shared predictions, digest exports)

    def __init__(self, store: ModelStore):
        self.store = store
        self._lock = threading.Lock()
        self._current: ServedModel | None = None
        self._pinned: OrderedDict[str, ServedModel] = OrderedDict()

    def served(self, version: str | None = None) -> ServedModel:
        """The served model (default), or a pinned version that the store still keeps."""
        if version is not None:
            return self._pinned_version(version)
        current = self.store.current_version()
        s = self._current
        if s is None or s.version != current:
            with self._lock:
                s = self._current
                if s is None or s.version != self.store.current_version():
                    s = self._current = self._load(None)
        return s

    def _pinned_version(self, version: str) -> ServedModel:
        if not isinstance(version, str) or version not in self.store.versions():
            shown = str(version)[:20]
            raise InputError(f"Model version '{shown}' is not kept any more (or never existed); ask again.")
        current = self._current
        if current is not None and current.version == version:
            return current
        with self._lock:
            s = self._pinned.get(version)
            if s is None:
                s = self._pinned[version] = self._load(version)
                while len(self._pinned) > self.PINNED:
                    self._pinned.popitem(last=False)
            return s

    def _load(self, version: str | None) -> ServedModel:
        return ServedModel(*self.store.open(version))

    # -- administration -------------------------------------------------------------------
    def current_version(self) -> str | None:
        return self.store.current_version()

    def tidy(self) -> str | None:
        """Remove what interrupted saves left behind (at start-up); why it could not, if it could not."""
        return self.store.clean()

    def has_model(self) -> bool:
        """Whether any model version exists. A served version that is damaged or missing still
        counts: it is repaired by rolling back or retraining, never by training anew at start-up."""
        return bool(self.store.versions())

    def describe_current(self) -> str:
        """The served version for a log line, or why there is none; never raises."""
        try:
            return self.served().version
        except SegmentationError as exc:
            return f"none usable: {exc}"

    def source(self, spec: str | None, name: str = "SEGMENT_DATA") -> OpenedData:
        """The source a one-line data spec names (the built-in sample when empty)."""
        return source_from_data_spec(spec, Path(self.store.root) / "samples", name)

    def data_of(self, spec: str | None) -> OpenedData:
        """The data to retrain on or to score for a digest: ``spec`` (SEGMENT_DATA) when given,
        else the served model's own source; the built-in sample only when there is no model."""
        own, name = self._own_spec(spec)
        return self.source(own, name)

    def _own_spec(self, spec: str | None) -> tuple[str | None, str]:
        """(the spec ``data_of`` opens, None for the built-in sample; the name errors give it)."""
        if spec and spec.strip():
            return spec, "SEGMENT_DATA"
        if not self.has_model():
            return None, "SEGMENT_DATA"
        try:
            served = self.served()
        except SegmentationError as exc:
            raise InputError(
                f"The served model cannot be read ({str(exc).rstrip('.')}), so the data it was trained on is "
                "unknown; set SEGMENT_DATA, or roll back"
            ) from None
        info = served.info
        if "data_spec" not in info.__dict__:  # saved before models recorded how to open their data
            legacy = info.data if info.data and "***" not in info.data else None
            return legacy, f"the data of {served.version}"
        if info.data_spec is None:
            raise InputError(
                f"{served.version} was trained on {info.source}, which cannot be opened again from what the model "
                "recorded (a password is never kept); set SEGMENT_DATA to that data"
            )
        return info.data_spec or None, f"the data of {served.version}"

    def data_of_checked(self, spec: str | None) -> None:
        """Raise what ``data_of`` would, without opening anything (nor making the built-in sample)."""
        own, name = self._own_spec(spec)
        if own is not None:
            self.source(own, name)

    def source_description(self, spec: str | None) -> str:
        """How the data a digest scores is described (as digests record it), without reading it
        or making the built-in sample."""
        try:
            own, name = self._own_spec(spec)
            return BUILT_IN_SAMPLE if own is None else self.source(own, name).source.describe()
        except SegmentationError:
            return "unknown data"

    def train(
        self,
        spec: str | None,
        *,
        trained_by: str,
        options: TrainOptions | None = None,
        train_fn: Any = None,
    ) -> tuple[str, TrainedModel]:
        """Train on ``spec``'s data (the served model's own when empty; see ``data_of``) with
        ``options`` (K and seed, the defaults when unset) and serve the new version once it is
        verified."""
        from segmentation.serving.training import train  # lazy: scikit-learn takes seconds to import; training is rare

        data = self.data_of(spec)
        k, seed = (options or TrainOptions()).resolved()
        return (train_fn or train)(
            data.source, self.store, trained_by=trained_by, data_ref=data.reference, data_spec=data.spec, k=k, seed=seed
        )

    def rollback(self) -> tuple[str, str]:
        """Serve the previous version. Returns (from, to)."""
        return self.store.rollback()

    def serve(self, version: str) -> tuple[str | None, str]:
        """Serve a kept version by name (forward again after a rollback). Returns (from, to)."""
        return self.store.serve(version)
