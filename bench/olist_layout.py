"""`bench_scale.py --layout olist`: training on the six Olist-layout CSV files that
`segment sample-data` writes (personas included), against plain DuckDB over the same files.

Each round runs, in fresh processes and in turn, `segment train --data FOLDER --json` and the
reference: one DuckDB query for RFM per customer from the orders, payments and customers files,
and one pass over the items file (what the personas add), with no memory limit. Printed: wall
time and peak RSS of both, the ratio, and the product's own steps (from its JSON), with the
personas' share. The targets below are checked; a miss exits with status 1.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RATIO_TARGET = 2.5  # training / reference
PEAK_TARGET_MB = 1536
PERSONAS_TARGET = 0.15  # of training time

REFERENCE = """
import sys, duckdb
d = sys.argv[1]
con = duckdb.connect()
con.sql(f'''
WITH o AS (SELECT order_id, customer_id, order_purchase_timestamp AS ts
           FROM read_csv('{d}/olist_orders_dataset.csv') WHERE order_status = 'delivered'),
     p AS (SELECT order_id, SUM(payment_value) AS v FROM read_csv('{d}/olist_order_payments_dataset.csv') GROUP BY 1),
     c AS (SELECT customer_id, customer_unique_id FROM read_csv('{d}/olist_customers_dataset.csv'))
SELECT c.customer_unique_id, MAX(o.ts) AS last, COUNT(DISTINCT CAST(o.ts AS DATE)) AS f, SUM(p.v) AS m
FROM o JOIN c USING (customer_id) LEFT JOIN p USING (order_id) GROUP BY 1''').to_arrow_table()
con.sql(f'''SELECT product_id, COUNT(*), SUM(price) FROM read_csv('{d}/olist_order_items_dataset.csv')
            GROUP BY 1''').to_arrow_table()
"""


def generate(work: Path, orders: int) -> Path:
    folder = work / "olist"
    if not (folder / "olist_orders_dataset.csv").exists():
        t = time.perf_counter()
        cmd = [sys.executable, "-m", "segment_cli", "sample-data", "--orders", str(orders), "--out", str(folder)]
        subprocess.run(cmd, check=True)
        print(f"generated {orders:,} orders (six CSV files) in {time.perf_counter() - t:.0f} s", flush=True)
    return folder


def run(work: Path, orders: int, repeat: int, measure) -> int:
    """The rounds, the table and the target checks; returns the exit status."""
    folder = generate(work, orders)
    size = sum(p.stat().st_size for p in folder.glob("*.csv")) / 1e9
    print(f"Olist layout, {orders:,} orders: {size:.2f} GB of CSV in {folder}")
    product, reference, steps = [], [], []
    for _ in range(repeat):
        art = work / "art-olist"
        out = work / "train.json"
        product.append(measure([sys.executable, "-c", _TRAIN, str(art), str(folder), str(out)]))
        steps.append(json.loads(out.read_text())["timings"])
        reference.append(measure([sys.executable, "-c", REFERENCE, str(folder)]))
        print(
            f"segment train {product[-1][0]:6.1f} s  peak {product[-1][1]:5.0f} MB   "
            f"plain DuckDB {reference[-1][0]:5.1f} s  peak {reference[-1][1]:5.0f} MB",
            flush=True,
        )
    wall = statistics.median(w for w, _ in product)
    ref = statistics.median(w for w, _ in reference)
    peak = max(r for _, r in product)
    timing = {k: statistics.median(s[k] for s in steps) for k in steps[0]}
    personas = timing.get("personas", 0.0) / wall
    print("steps (medians, s): " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))
    checks = [
        (f"training / plain DuckDB {wall / ref:.2f}× (target ≤ {RATIO_TARGET}×)", wall / ref <= RATIO_TARGET),
        (f"peak {peak:.0f} MB (target ≤ {PEAK_TARGET_MB} MB)", peak <= PEAK_TARGET_MB),
        (f"personas {personas:.0%} of training (target ≤ {PERSONAS_TARGET:.0%})", personas <= PERSONAS_TARGET),
    ]
    for text, ok in checks:
        print(("met:    " if ok else "MISSED: ") + text)
    return 0 if all(ok for _, ok in checks) else 1


_TRAIN = """
import shutil, subprocess, sys
from pathlib import Path
art, folder, out = sys.argv[1:4]
shutil.rmtree(art, ignore_errors=True)
r = subprocess.run([sys.executable, "-m", "segment_cli", "--artifacts", art, "train", "--data", folder, "--json"],
                   capture_output=True, text=True)
if r.returncode:
    sys.exit(r.stderr[-2000:])
Path(out).write_text(r.stdout)
"""
