"""Element-wise work over millions of customers, a block of rows at a time."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

ROWS = 1 << 20  # a million customers: the temporaries of one block, not of the whole shop


def by_rows(fn: Callable[..., np.ndarray], columns: Sequence[np.ndarray], dtype: type, rows: int = ROWS) -> np.ndarray:
    """``fn(*columns)`` for a function that works row by row, evaluated ``rows`` rows at a time:
    the same values (each row's is its own), with one block's temporaries instead of all."""
    n = len(columns[0])
    if n <= rows:
        return fn(*columns)
    out: np.ndarray = np.empty(n, dtype=dtype)
    for start in range(0, n, rows):
        out[start : start + rows] = fn(*(c[start : start + rows] for c in columns))
    return out
