"""`segment train` end to end vs the original plain pipeline, on the same files, in one run.

All run as fresh processes (imports included), alternating, REPEAT times; medians reported.
``--against REF`` also times the ``segment train`` of an earlier commit of this repository
(exported with ``git archive`` into a temporary folder, run with the same Python), so a change
can be compared with what it replaces on the same machine in the same run.

Usage: python bench/bench_train.py [OLIST_FOLDER] [--repeat N] [--against GIT_REF]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT = ROOT.parent / "shared" / "data" / "olist"
KEYS = ["read_rfm", "fit", "naming", "silhouette", "table", "personas", "save"]


def timed(cmd: list[str], env: dict[str, str] | None = None, cwd: str | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=cwd).stdout
    return time.perf_counter() - t, out


def export_ref(ref: str, dest: Path) -> Path:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--against", help="also time `segment train` at this git commit or tag")
    args = ap.parse_args()
    args.data = str(Path(args.data).resolve())
    runs: dict[str, list[float]] = {"baseline": [], "ours": [], "earlier": []}
    splits, base_splits, earlier_splits = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        earlier = export_ref(args.against, Path(tmp) / "earlier") if args.against else None
        if earlier is not None:  # make sure the earlier runs really import the earlier code
            _, where = timed(
                [sys.executable, "-c", "import segmentation; print(segmentation.__file__)"],
                {**os.environ, "PYTHONPATH": str(earlier)},
                cwd=tmp,
            )
            assert where.strip().startswith(str(earlier)), where
        for i in range(args.repeat):
            t, out = timed([sys.executable, str(HERE / "baseline_pipeline.py"), args.data], cwd=tmp)
            runs["baseline"].append(t)
            base_splits.append([float(x) for x in out.split()[:3]])
            # every run starts in an empty folder: `python -m` puts the working directory first on
            # sys.path, so running from a checkout would shadow the code under test
            env = {**os.environ, "SEGMENT_ARTIFACTS": str(Path(tmp) / f"ours{i}")}
            env.pop("PYTHONPATH", None)
            t, out = timed(
                [sys.executable, "-m", "segment_cli", "-q", "train", "--data", args.data, "--json"], env, cwd=tmp
            )
            runs["ours"].append(t)
            splits.append(json.loads(out)["timings"])
            if earlier is not None:
                env = {**os.environ, "SEGMENT_ARTIFACTS": str(Path(tmp) / f"earlier{i}"), "PYTHONPATH": str(earlier)}
                t, out = timed(
                    [sys.executable, "-m", "segment_cli", "-q", "train", "--data", args.data, "--json"],
                    env,
                    cwd=tmp,
                )
                runs["earlier"].append(t)
                earlier_splits.append(json.loads(out)["timings"])
    med = statistics.median
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"data: {args.data}, {args.repeat} alternating runs, medians (wall clock, fresh process each)")
    b = runs["baseline"]
    print(
        f"baseline pipeline  : {med(b):6.2f} s  (read {med(s[0] for s in base_splits):.2f}, "
        f"merge+groupby {med(s[1] for s in base_splits):.2f}, scale+KMeans {med(s[2] for s in base_splits):.2f})"
    )

    def line(label: str, times: list[float], parts: list[dict[str, float]]) -> None:
        keys = [k for k in KEYS if all(k in p for p in parts)]
        detail = ", ".join(f"{k} {med(p[k] for p in parts):.2f}" for k in keys)
        rest = med(times) - med(sum(p[k] for k in keys) for p in parts)
        print(f"{label:19s}: {med(times):6.2f} s  ({detail}, start-up/imports/output {rest:.2f})")

    line("segment train", runs["ours"], splits)
    if earlier is not None:
        line(f"at {args.against}", runs["earlier"], earlier_splits)
    print(f"ratio ours/baseline: {med(runs['ours']) / med(b):.2f}")
    if earlier is not None:
        print(f"ratio ours/{args.against}: {med(runs['ours']) / med(runs['earlier']):.2f}")


if __name__ == "__main__":
    main()
