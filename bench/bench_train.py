"""`segment train` end to end vs the original plain pipeline, on the same files, in one run.

Both run as fresh processes (imports included), alternating, REPEAT times; medians reported.
Usage: python bench/bench_train.py [OLIST_FOLDER] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parent.parent / "shared" / "data" / "olist"


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    base_t, ours_t, splits, base_splits = [], [], [], []
    with tempfile.TemporaryDirectory() as art:
        env = {**os.environ, "SEGMENT_ARTIFACTS": art}
        for _ in range(args.repeat):
            t, out = timed([sys.executable, str(HERE / "baseline_pipeline.py"), args.data])
            base_t.append(t)
            base_splits.append([float(x) for x in out.split()[:3]])
            t, out = timed([sys.executable, "-m", "segmentation.cli", "-q", "train", "--data", args.data, "--json"], env)
            ours_t.append(t)
            splits.append(json.loads(out)["timings"])
    med = statistics.median
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"data: {args.data}, {args.repeat} alternating runs, medians (wall clock, fresh process each)")
    print(f"baseline pipeline  : {med(base_t):6.2f} s  (read {med(s[0] for s in base_splits):.2f}, "
          f"merge+groupby {med(s[1] for s in base_splits):.2f}, scale+KMeans {med(s[2] for s in base_splits):.2f})")
    keys = ["read_rfm", "fit", "naming", "silhouette", "save"]
    parts = ", ".join(f"{k} {med(s[k] for s in splits):.2f}" for k in keys)
    rest = med(ours_t) - med(sum(s[k] for k in keys) for s in splits)
    print(f"segment train      : {med(ours_t):6.2f} s  ({parts}, start-up/imports/output {rest:.2f})")
    print(f"ratio ours/baseline: {med(ours_t) / med(base_t):.2f}")


if __name__ == "__main__":
    main()
