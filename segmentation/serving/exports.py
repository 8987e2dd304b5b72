"""The one CSV layout for exported customers, written atomically.

Customer ids come from the shop's data: an id a spreadsheet would read as a formula (starting
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, as OWASP lists them) is written with a
leading ``'``, which spreadsheets show as text and do not run (``spreadsheet_safe``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from segmentation.serving.assignments import CustomerRow
from segmentation.serving.atomic import atomic_path

if TYPE_CHECKING:
    import pandas as pd

CSV_COLUMNS = (
    "customer_id",
    "segment",
    "at_risk",
    "recency_days",
    "orders",
    "purchase_days",
    "monetary",
    "chance_to_buy_again",
    "within_days",
)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a spreadsheet shows it and never runs it (see the module docstring)."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def write_customers_csv(
    rows: Iterable[CustomerRow], names: Mapping[int, str], out: Path, horizon: int | None = None
) -> int:
    """Write ``rows`` (their cluster named by ``names``) to ``out``; returns the row count.
    ``chance_to_buy_again`` is a share (0.1423: 14%) within ``within_days``; empty without one."""
    n = 0
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(CSV_COLUMNS)
        for row in rows:
            w.writerow(
                [
                    spreadsheet_safe(row.customer_id),
                    names[row.cluster],
                    "yes" if row.at_risk else "no",
                    row.recency,
                    row.frequency,
                    row.occasions,
                    f"{row.monetary:.2f}",
                    "" if row.chance is None else f"{row.chance:.4f}",
                    "" if row.chance is None or horizon is None else horizon,
                ]
            )
            n += 1
    return n


def frame_rows(frame: pd.DataFrame, labels, flags, chance=None) -> Iterable[CustomerRow]:
    """Rows of a freshly scored RFM frame, biggest spenders first (as stored exports are)."""
    import numpy as np
    import pandas as pd

    if chance is None:
        chance = frame["chance"].to_numpy() if "chance" in frame else np.full(len(frame), np.nan)
    f = frame.assign(cluster=labels, at_risk=flags, chance=chance).sort_values(
        ["monetary", "customer_id"], ascending=[False, True]
    )
    for cid, r, fr, m, o, g, c, a, p in zip(
        f["customer_id"],
        f["recency"],
        f["frequency"],
        f["monetary"],
        f["occasions"],
        f["gap"],
        f["cluster"],
        f["at_risk"],
        f["chance"],
    ):
        yield CustomerRow(
            str(cid),
            int(r),
            int(fr),
            float(m),
            int(o),
            None if pd.isna(g) else float(g),
            int(c),
            bool(a),
            None if pd.isna(p) else float(p),
        )
