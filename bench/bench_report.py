"""`segment report` end to end on a source (default: the real Olist folder), as a fresh process:
wall time and peak RSS, and the steps' share from the progress lines' timestamps.

Usage: python bench/bench_report.py [DATA] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT.parent / "shared" / "data" / "olist"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}; data {args.data}")
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            out = Path(tmp) / f"report-{i}.html"
            cmd = [
                sys.executable,
                "-m",
                "segment_cli",
                "--artifacts",
                tmp,
                "report",
                "--data",
                args.data,
                "--out",
                str(out),
            ]
            t = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp)
            steps = []
            assert proc.stderr is not None
            for line in proc.stderr:
                steps.append((time.perf_counter() - t, line.strip()))
            proc.wait()
            wall = time.perf_counter() - t
            if proc.returncode:
                sys.exit(f"failed: {steps[-1][1] if steps else ''}")
            walls.append(wall)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"run {i + 1}: {wall:.1f} s, peak RSS {rss:.0f} MB, {out.stat().st_size / 1024:.0f} KB")
            marks = [(0.0, "start")] + steps + [(wall, "done")]
            for (t0, what), (t1, _) in zip(marks[1:], marks[2:]):
                print(f"   {t1 - t0:5.1f} s  {what}")
    print(f"median {statistics.median(walls):.1f} s over {len(walls)} runs (target: at most 30 s on Olist)")


if __name__ == "__main__":
    main()
