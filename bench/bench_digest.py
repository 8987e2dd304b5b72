"""Building a digest: score all customers with the served model, compare with the previous
digest, render the chart. On the real Olist data and on ~1M generated customers.

Usage: python bench/bench_digest.py [OLIST_FOLDER] [--customers 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from bot.digest_data import PreviousRun, compute
from bot.digest_render import chart_png, message
from segmentation.data.kinds import OlistSource
from segmentation.data.sample import write_sample
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "olist"


def build(service, source, previous, run_date):
    t0 = time.perf_counter()
    served = service.served()
    score = served.score_source(source, run_date)  # RFM and scoring inside DuckDB
    t1 = time.perf_counter()
    data = compute(served, score, previous, run_date)
    message(data)
    t2 = time.perf_counter()
    chart_png(data)
    t3 = time.perf_counter()
    return data, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)


def bench(name, folder, run_date, repeat, tmp):
    store = ModelStore(Path(tmp) / name)
    train(OlistSource(folder), store)
    service = SegmentService(store)
    first, _ = build(service, OlistSource(folder), None, run_date - dt.timedelta(days=30))
    previous = PreviousRun(
        dt.datetime.combine(run_date, dt.time()),
        first.counts,
        first.at_risk_hashes,
        first.model_version,
        first.data_source,
    )
    runs = [build(service, OlistSource(folder), previous, run_date) for _ in range(repeat)]
    data = runs[0][0]
    med = [statistics.median(r[1][i] for r in runs) for i in range(4)]
    print(
        f"{name:28s} {data.customers:>9,} customers  total {med[3]:5.2f} s  "
        f"(read+RFM+score in DuckDB {med[0]:.2f}, compare {med[1]:.2f}, chart {med[2]:.2f}); "
        f"at risk {data.at_risk.customers:,}, newly at risk: {data.moved_into_at_risk:,}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("olist", nargs="?", default=str(DEFAULT))
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"medians of {args.repeat} digests, each compared with a previous one"
    )
    with tempfile.TemporaryDirectory() as tmp:
        if Path(args.olist).exists():
            bench("Olist (real)", Path(args.olist), dt.date(2018, 9, 1), args.repeat, tmp)
        orders = int(args.customers * 1.1)  # ~1.1 orders per delivered customer in the generator
        folder = write_sample(Path(tmp) / "big", orders=orders, seed=1)
        bench(f"generated, {orders:,} orders", folder, dt.date(2025, 1, 15), args.repeat, tmp)


if __name__ == "__main__":
    main()
