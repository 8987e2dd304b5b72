"""Prediction latency with the model in memory: the one-row path vs the batch path on one row.

Usage: python bench/bench_predict.py [--calls N]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

from segmentation.data.kinds import OlistSource
from segmentation.data.sample import write_sample
from segmentation.model.estimator import kinds_of
from segmentation.serving.inputs import parse_rfm
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train


def per_call(fn, points) -> np.ndarray:
    out = np.empty(len(points))
    for i, p in enumerate(points):
        t = time.perf_counter_ns()
        fn(p)
        out[i] = time.perf_counter_ns() - t
    return out / 1e3  # microseconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_sample(os.path.join(tmp, "data"), orders=100_000)
        store = ModelStore(os.path.join(tmp, "art"))
        train(OlistSource(folder), store)
        served = SegmentService(store).served()
        model = served.trained.model
        rng = np.random.default_rng(0)
        pts = np.column_stack(
            [rng.uniform(0, 700, args.calls), rng.integers(1, 10, args.calls), rng.uniform(1, 2000, args.calls)]
        )
        kinds = kinds_of(pts[:, 1], np.zeros(len(pts), dtype=bool))
        rows = list(zip(pts, kinds))
        direct = per_call(lambda pk: model.predict_one(*pk[0], int(pk[1])), rows)
        batch = per_call(lambda pk: model.predict(pk[0].reshape(1, -1), [pk[1]]), rows[:5000])
        full = per_call(lambda pk: served.predict(parse_rfm([str(v) for v in pk[0]])), rows[:5000])
        assert all(model.predict_one(*p, int(k)) == model.predict(p.reshape(1, -1), [k])[0] for p, k in rows[:2000])
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    for name, t in (
        ("predict_one (NumPy, one row)", direct),
        ("predict (vectorised) on one row", batch),
        ("served.predict incl. parsing", full),
    ):
        print(f"{name:32s} p50 {np.median(t):8.1f} µs  p99 {np.percentile(t, 99):8.1f} µs  ({len(t):,} calls)")
    print(f"one-row path vs vectorised path at p50: {np.median(batch) / np.median(direct):.0f}x faster")


if __name__ == "__main__":
    main()
