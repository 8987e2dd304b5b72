"""The per-customer table at scale: writing it, and `segment customer ID` lookups.

The product writes one Parquet file sorted by customer id and looks a customer up by reading the
one row group whose id range holds it (the file's stat checked, the footer cached). The strongest plain
alternative a user would write is SQLite with the id as primary key (WITHOUT ROWID), filled with
``executemany`` in one transaction with journaling off: the product's previous design. Both are
built from the same frame and probed with the same ids, in one run.

Usage: python bench/bench_customer.py [--customers 10000000] [--lookups 300]
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from segmentation.serving.assignments import Assignments, write_assignments
from segmentation.serving.atomic import file_sha256


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = pd.Series(np.char.mod("%032x", rng.integers(0, 2**62, n * 11 // 10))).drop_duplicates().iloc[:n]
    n = len(ids)
    return pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "recency": rng.integers(0, 700, n),
            "frequency": rng.integers(1, 5, n),
            "monetary": rng.uniform(5, 2000, n).round(2),
            "occasions": rng.integers(1, 4, n),
            "gap": np.where(rng.random(n) < 0.9, np.nan, rng.uniform(1, 300, n)),
            "cluster": rng.integers(0, 11, n),
            "at_risk": rng.random(n) < 0.05,
        }
    )


def write_sqlite(path: Path, f: pd.DataFrame) -> None:
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute(
        "CREATE TABLE assignments (customer_id TEXT PRIMARY KEY, recency INTEGER, frequency INTEGER, "
        "monetary REAL, occasions INTEGER, gap REAL, cluster INTEGER, at_risk INTEGER) WITHOUT ROWID"
    )
    gap = f["gap"].astype(float)
    con.executemany(
        "INSERT INTO assignments VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        zip(
            f["customer_id"].tolist(),
            f["recency"].tolist(),
            f["frequency"].tolist(),
            f["monetary"].tolist(),
            f["occasions"].tolist(),
            gap.where(gap.notna(), None).tolist(),
            f["cluster"].tolist(),
            f["at_risk"].astype(int).tolist(),
        ),
    )
    con.commit()
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=10_000_000)
    ap.add_argument("--lookups", type=int, default=300)
    args = ap.parse_args()
    f = frame(args.customers)
    probe = f["customer_id"].sample(args.lookups, random_state=1).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        pq_path, db_path = Path(tmp) / "a.parquet", Path(tmp) / "a.sqlite"
        t = time.perf_counter()
        write_assignments(pq_path, f)
        pq_write = time.perf_counter() - t
        t = time.perf_counter()
        digest = file_sha256(pq_path)
        pq_hash = time.perf_counter() - t
        t = time.perf_counter()
        write_sqlite(db_path, f)
        db_write = time.perf_counter() - t

        table = Assignments(pq_path, *digest)
        table.verify()
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        pq_lat, db_lat = [], []
        for cid in probe:  # interleaved, so the machine's noise hits both alike
            t = time.perf_counter()
            row = table.get(cid)
            pq_lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            other = con.execute("SELECT * FROM assignments WHERE customer_id = ?", (cid,)).fetchone()
            db_lat.append(time.perf_counter() - t)
            assert row is not None and other is not None and row.customer_id == other[0]
        con.close()
        sizes = pq_path.stat().st_size, db_path.stat().st_size

    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{len(f):,} customers, {args.lookups} lookups each, interleaved"
    )
    print(f"Parquet (product) write {pq_write:6.1f} s  {sizes[0] / 1e6:7.0f} MB  (SHA-256 of it {pq_hash:.2f} s)")
    print(f"SQLite (previous) write {db_write:6.1f} s  {sizes[1] / 1e6:7.0f} MB")
    for name, lat in (("Parquet lookup", pq_lat), ("SQLite lookup ", db_lat)):
        a = np.array(lat) * 1000
        print(f"{name}  p50 {np.percentile(a, 50):7.2f} ms  p99 {np.percentile(a, 99):7.2f} ms")
    print(f"write time ratio Parquet/SQLite: {pq_write / db_write:.2f}")


if __name__ == "__main__":
    main()
