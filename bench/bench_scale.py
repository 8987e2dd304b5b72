"""Large shops, side by side: the same generated orders as a Parquet file (DuckDB) and as a
PostgreSQL table (the RFM and the scoring pushed down; the order id is the table's primary key,
as in a shop's database), plus the sample fit against a full fit.

Every measured step runs as a fresh process; its wall time and peak RSS (the process's own
``ru_maxrss``) are printed. Steps:

  train-parquet   `segment train` on the Parquet file (DuckDB)
  train-postgres  `segment train` on the PostgreSQL table (aggregation in the database)
  digest-parquet  score every customer as a digest does (DuckDB over the file)
  digest-postgres the same, scored inside PostgreSQL
  customer-cold   a cold `segment customer ID` (process start to answer)
  bot-retrain     the bot process retraining on the Parquet file: the Slack app built, the served
                  version read (a customer looked up), then an admin's retrain run by the bot's
                  own retrainer in its thread; the peak RSS is the bot process's
  ari             on the first --ari-customers customers: full KMeans fit vs the 200k sample fit

Usage: python bench/bench_scale.py [--orders 10000000] [--pg postgresql://postgres@127.0.0.1/test]
       [--work DIR] [--steps train-parquet,train-postgres,...] [--repeat N]
       python bench/bench_scale.py --layout olist [--orders N] [--repeat N] [--pg URL]   (see olist_layout.py;
       PostgreSQL unless --steps leaves out train-postgres)

With --repeat N the steps run N times in turn (Parquet and PostgreSQL alternate, so both see the
same machine) and the medians are printed. From 100M orders on, the targets below are checked and
the disk taken by the trained version is printed; a miss exits with status 1. The digest steps
run with --digest-memory as SEGMENT_DUCKDB_MEMORY (default: SEGMENT_DUCKDB_MEMORY, else the
product's 1GB), so a training given 6GB and the bot's digest at 1GB are measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import olist_layout

HERE = Path(__file__).resolve().parent
# the columns of `segment sample-data --layout transactions` (TRANSACTIONS_COLUMNS)
COLUMNS = {"customer_col": "customer_id", "order_col": "order_id", "date_col": "ordered_at", "amount_col": "amount"}
FLAGS = [part for key, name in COLUMNS.items() for part in ("--" + key.replace("_", "-"), name)]
# at 100M orders and more: (seconds, peak MB) per step; the cold lookup is time only
TARGETS = {"train-parquet": (300.0, 3072.0), "digest-parquet": (180.0, 1024.0), "customer-cold": (0.5, None)}
DISK_TARGET = 2e9  # bytes per model version
TARGETS_FROM = 100_000_000
STEPS = ["train-parquet", "train-postgres", "digest-parquet", "digest-postgres", "customer-cold", "bot-retrain", "ari"]

MEASURE = """
import resource, subprocess, sys, time
t = time.perf_counter()
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - t
if r.returncode:
    sys.exit("failed: " + r.stderr[-2000:])
print(f"{wall:.2f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}")
"""

DIGEST = """
import datetime as dt, os, sys
from segmentation import runtime
runtime.configure(runtime.Runtime(duckdb_memory=sys.argv[4]))  # as the bot does with SEGMENT_DUCKDB_MEMORY
from segmentation.serving.service import SegmentService
from segmentation.data.spec import source_from_spec
from segmentation.serving.store import ModelStore
flags = dict(customer_col="customer_id", order_col="order_id", date_col="ordered_at", amount_col="amount")
extra = {"table": sys.argv[3]} if sys.argv[3] != "-" else {}
served = SegmentService(ModelStore(sys.argv[1])).served()
as_of = dt.date.fromisoformat(served.info.snapshot_date) + dt.timedelta(days=30)
score = served.score_source(source_from_spec(sys.argv[2], **flags, **extra), as_of)
print(score.customers, score.at_risk.customers)
"""

BOT_RETRAIN = """
import shutil, sys
from pathlib import Path
from unittest.mock import Mock
from slack_sdk import WebClient
from segment_cli import settings as settings_mod
from bot.app import build_context, create_app
art = Path(sys.argv[1])
if art.exists():
    shutil.rmtree(art)
shutil.copytree(sys.argv[2], art)
settings = settings_mod.load({"SEGMENT_ARTIFACTS": str(art), "SEGMENT_DATA": sys.argv[3],
                              "DATABASE_URL": "sqlite:///" + str(art / "state.db")}, require_slack=False, dotenv=False)
client = Mock(spec=WebClient, token="xoxb-bench")
ctx = build_context(settings, client=client)
create_app(ctx)
served = ctx.service.served()
served.customer(sys.argv[4])
line = ctx.retrainer.request("UADMIN", "CADMIN", client)
ctx.retrainer.join()
posted = str(client.chat_postMessage.call_args)
if "Retrain failed" in posted or ctx.service.served().version == served.version:
    sys.exit("the retrain did not serve a new version: " + posted[-600:])
"""


def table_name(orders: int) -> str:
    return f"bench_tx_{orders}"  # the transactions file's columns (earlier runs' tables had others)


def measure(cmd: list[str]) -> tuple[float, float]:
    out = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])}…: {out.stderr.strip()[-1500:]}")
    wall, rss = out.stdout.split()
    return float(wall), float(rss)


def prepare(work: Path, orders: int, pg: str | None) -> Path:
    """Generated orders, streamed by `segment sample-data --layout transactions` into one Parquet
    file of the delivered orders (the same shop as the Olist layout of the seed) → the same rows
    in a PostgreSQL table."""
    import duckdb

    parquet = work / "transactions.parquet"
    if not parquet.exists():
        t = time.perf_counter()
        wall, rss = measure(
            [
                sys.executable,
                "-m",
                "segment_cli",
                "-q",
                "sample-data",
                "--orders",
                str(orders),
                "--layout",
                "transactions",
                "--out",
                str(work),
            ]
        )
        print(f"generated {orders:,} orders in {time.perf_counter() - t:.0f} s, peak RSS {rss:.0f} MB", flush=True)
    if pg:
        import sqlalchemy as sa

        from segmentation.data.urls import resolve_url

        engine = sa.create_engine(resolve_url(pg)[0])
        with engine.begin() as con:
            have = con.exec_driver_sql(f"SELECT to_regclass('{table_name(orders)}') IS NOT NULL").scalar()
        if not have:
            t = time.perf_counter()
            csv = work / "orders.csv"
            duckdb.connect().execute(f"COPY (SELECT * FROM '{parquet}') TO '{csv}' (HEADER false)")
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute(
                    f"CREATE TABLE {table_name(orders)} (customer_id text, order_id text, ordered_at timestamp, amount numeric(18,2))"
                )
                olist_layout.copy_csv(cur, table_name(orders), csv, header=False)
                raw.commit()
            finally:
                raw.close()
            csv.unlink()
            # as a shop's orders table is: the order id its primary key, vacuumed and analysed
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as con:
                con.exec_driver_sql(f"ALTER TABLE {table_name(orders)} ADD PRIMARY KEY (order_id)")
                con.exec_driver_sql(f"VACUUM (ANALYZE) {table_name(orders)}")
            print(f"loaded PostgreSQL in {time.perf_counter() - t:.0f} s", flush=True)
    return parquet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=10_000_000)
    ap.add_argument("--pg", default=os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "segment-scale"))
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--ari-customers", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    # the digest's own DuckDB limit: the product's default, whatever a training here was given
    ap.add_argument("--digest-memory", default=os.environ.get("SEGMENT_DUCKDB_MEMORY", "1GB"))
    ap.add_argument("--layout", choices=["parquet", "olist"], default="parquet")
    args = ap.parse_args()
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", args.digest_memory, re.I):  # else DuckDB's own 80% of RAM
        ap.error(f"--digest-memory is a size such as 1GB or 512MiB; got '{args.digest_memory}'")
    steps = args.steps.split(",")
    compile_product()
    work = Path(args.work) / str(args.orders)
    work.mkdir(parents=True, exist_ok=True)
    if args.layout == "olist":  # the six CSV files with personas, against plain DuckDB (olist_layout.py)
        print(f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}")
        pg = args.pg if "train-postgres" in steps else None
        sys.exit(olist_layout.run(work, args.orders, args.repeat, measure, pg))
    parquet = prepare(work, args.orders, args.pg if any("postgres" in s for s in steps) else None)
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}; {args.orders:,} orders"
    )
    segment = [sys.executable, "-m", "segment_cli"]
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeat):
        for step, result in run_steps(steps, work, parquet, args, segment).items():
            runs.setdefault(step, []).append(result)
    if args.repeat > 1:
        import statistics

        print(f"medians of {args.repeat} runs:")
        for step, values in runs.items():
            print(
                f"{step:16s} {statistics.median(w for w, _ in values):7.1f} s   peak RSS {max(r for _, r in values):7.0f} MB"
            )
    if "train-parquet" in runs and "train-postgres" in runs:
        ratios = [pg[0] / pq[0] for pq, pg in zip(runs["train-parquet"], runs["train-postgres"])]
        print("PostgreSQL / Parquet training time: " + ", ".join(f"{r:.2f}×" for r in ratios))
    if args.orders >= TARGETS_FROM:
        sys.exit(check_targets(runs, work / "art-parquet"))


def compile_product() -> None:
    """The product's bytecode, written as installing it does (pip compiles a wheel's modules), so
    that no step spends its start-up compiling them: where PYTHONDONTWRITEBYTECODE is set (this
    machine sets it) every fresh process would otherwise compile 50 modules again, 0.05-0.1 s."""
    root = Path(__file__).resolve().parents[1]
    packages = [str(root / p) for p in ("segmentation", "segment_cli", "bot")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True, stdout=subprocess.DEVNULL)


def version_bytes(art: Path) -> int:
    """The disk taken by the served version: its files in the models folder (``v0001.*``)."""
    models = art / "models"
    current = (models / "CURRENT").read_text().strip()
    return sum(p.stat().st_size for p in models.glob(f"{current}.*"))


def check_targets(runs: dict[str, list[tuple[float, float]]], art: Path) -> int:
    """The 100M targets (medians of the runs; the peak is the largest), met or missed; 1 if any is missed."""
    import statistics

    checks = []
    for step, (seconds, peak_mb) in TARGETS.items():
        if step not in runs:
            continue
        wall = statistics.median(w for w, _ in runs[step])
        checks.append((f"{step} {wall:.{1 if wall >= 10 else 2}f} s (target ≤ {seconds:g} s)", wall <= seconds))
        if peak_mb is not None:
            peak = max(r for _, r in runs[step])
            checks.append((f"{step} peak {peak:.0f} MB (target ≤ {peak_mb:.0f} MB)", peak <= peak_mb))
    if "train-parquet" in runs:
        size = version_bytes(art)
        checks.append(
            (f"disk per version {size / 1e9:.2f} GB (target ≤ {DISK_TARGET / 1e9:g} GB)", size <= DISK_TARGET)
        )
    for text, ok in checks:
        print(("met:    " if ok else "MISSED: ") + text)
    return 0 if all(ok for _, ok in checks) else 1


def run_steps(steps: list[str], work: Path, parquet: Path, args, segment: list[str]) -> dict[str, tuple[float, float]]:
    results: dict[str, tuple[float, float]] = {}
    for step in steps:
        art = str(work / ("art-" + step.split("-")[-1]))
        if step == "train-parquet":
            results[step] = measure([*segment, "--artifacts", art, "-q", "train", "--data", str(parquet), *FLAGS])
        elif step == "train-postgres":
            results[step] = measure(
                [
                    *segment,
                    "--artifacts",
                    art,
                    "-q",
                    "train",
                    "--data",
                    args.pg,
                    "--table",
                    table_name(args.orders),
                    *FLAGS,
                ]
            )
        elif step == "digest-parquet":
            results[step] = measure(
                [sys.executable, "-c", DIGEST, str(work / "art-parquet"), str(parquet), "-", args.digest_memory]
            )
        elif step == "digest-postgres":
            results[step] = measure(
                [
                    sys.executable,
                    "-c",
                    DIGEST,
                    str(work / "art-postgres"),
                    args.pg,
                    table_name(args.orders),
                    args.digest_memory,
                ]
            )
        elif step == "customer-cold":
            import pyarrow.parquet as pq

            any_file = next((work / "art-parquet").rglob("*.assignments.parquet"))
            cid = pq.read_table(any_file, columns=["customer_id"]).column(0)[12345].as_py()
            # five fresh processes, the median: one sub-second start-up on a noisy machine says little
            lookups = sorted(
                measure([*segment, "--artifacts", str(work / "art-parquet"), "customer", cid]) for _ in range(5)
            )
            results[step] = lookups[2]
        elif step == "bot-retrain":
            import pyarrow.parquet as pq

            any_file = next((work / "art-parquet").rglob("*.assignments.parquet"))
            cid = pq.read_table(any_file, columns=["customer_id"]).column(0)[12345].as_py()
            spec = " ".join([str(parquet), *FLAGS])
            results[step] = measure(
                [sys.executable, "-c", BOT_RETRAIN, str(work / "art-bot"), str(work / "art-parquet"), spec, cid]
            )
        elif step == "ari":
            ari(parquet, args.ari_customers)
            continue
        wall, rss = results[step]
        print(f"{step:16s} {wall:7.{1 if wall >= 10 else 2}f} s   peak RSS {rss:7.0f} MB", flush=True)
    return results


def ari(parquet: Path, customers: int) -> None:
    """Full fit vs the default sample fit on the first ``customers`` customers (by id)."""
    import numpy as np
    from sklearn.metrics import adjusted_rand_score

    from segmentation.data.sources import load_rfm
    from segmentation.data.spec import source_from_spec
    from segmentation.model.estimator import FEATURES, SegmentModel, kinds_of
    from segmentation.model.terms import measure as measure_terms

    table = load_rfm(
        source_from_spec(parquet, **dict(zip(["customer_col", "order_col", "date_col", "amount_col"], FLAGS[1::2])))
    )
    frame = table.frame.iloc[:customers]
    terms = measure_terms(frame, table.gaps, "")
    flags = frame["occasions"].to_numpy() < 0  # the sample-vs-full comparison leaves the churn flag out
    X, kinds = frame[FEATURES].to_numpy(np.float64), kinds_of(frame["occasions"], flags)
    cut = (terms.return_time, terms.return_window, terms.lost_after)
    out = {}
    for name, max_fit in (("full", None), ("sample", 200_000)):
        t = time.perf_counter()
        m = SegmentModel(11, cut, max_fit=max_fit).fit(X, kinds=kinds)
        out[name] = (m.labels_, time.perf_counter() - t)
    seed2 = SegmentModel(11, cut, random_state=7, max_fit=None).fit(X, kinds=kinds).labels_
    full, sample = out["full"][0], out["sample"][0]
    sizes_full = np.bincount(full, minlength=11) / len(full)
    sizes_sample = np.bincount(sample, minlength=max(11, sample.max() + 1)) / len(sample)
    k = min(len(sizes_full), len(sizes_sample))
    print(
        json.dumps(
            {
                "customers": len(frame),
                "fit_full_s": round(out["full"][1], 1),
                "fit_sample_s": round(out["sample"][1], 1),
                "ari_sample_vs_full": round(adjusted_rand_score(full, sample), 3),
                "ari_full_seed42_vs_seed7": round(adjusted_rand_score(full, seed2), 3),
                "largest_size_change_points": round(float(np.abs(sizes_full[:k] - sizes_sample[:k]).max()) * 100, 2),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
