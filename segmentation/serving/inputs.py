"""Reading R, F, M as people type them.

Accepted: ``30 2 150`` (recency in days, number of orders, total spend), ``r=30 f=2 m=150`` in
any order, ``30d 2 $150`` (a day suffix marks recency, a currency sign marks spend), and a
decimal comma (``150,50``). A comma followed by exactly three digits is a thousands separator
(``1,250`` is 1250); with both ``.`` and ``,`` the last one is the decimal mark.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from segmentation.errors import InputError

EXAMPLE = "30 2 150 (recency in days, number of orders, total spend)"
LIMITS = {
    "recency": (0.0, 36_500.0, "days"),
    "frequency": (1.0, 1_000_000.0, "orders"),
    "monetary": (0.0, 1e10, ""),
}
_KEYS = {
    "r": "recency",
    "recency": "recency",
    "f": "frequency",
    "frequency": "frequency",
    "m": "monetary",
    "monetary": "monetary",
}
_CURRENCY = re.compile(r"^(?:R\$|US\$|\$|€|£|¥|₹)|(?:R\$|\$|€|£|¥|₹)$")
_DAYS = re.compile(r"(?<=\d)\s*(?:d|days?)$", re.IGNORECASE)
_ORDERS = re.compile(r"(?<=\d)\s*(?:x|orders?)$", re.IGNORECASE)


@dataclass(frozen=True)
class RFM:
    recency: float
    frequency: float
    monetary: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.recency, self.frequency, self.monetary)


def shown(text: str, limit: int = 30) -> str:
    """User input quoted back in a message: on one line, never whole when it is long."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Thousands groups: 1,250 or 1,250,000 (and 1.250.000 with a decimal comma)
_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:([,.])\d{3})(?:\1\d{3})*(?:[.,]\d+)?$")


def parse_number(text: str, what: str) -> float:
    t = text.strip().replace("\u00a0", "").replace(" ", "")
    bad = InputError(f"{what} must be a number, not '{shown(text)}'. Example: {EXAMPLE}")
    if not t.isascii() or "_" in t or (t.count(",") + t.count(".") > 1 and not _GROUPED.match(t)):
        raise bad  # e.g. 150,5,5: not thousands groups, not a decimal
    if "," in t and "." in t:
        if t.rfind(",") > t.rfind("."):
            t = t.replace(".", "").replace(",", ".")
        else:
            t = t.replace(",", "")
    elif t.count(",") == 1:
        whole, frac = t.split(",")
        t = whole + frac if len(frac) == 3 and whole.lstrip("+-") else whole + "." + frac
    elif t.count(",") > 1:
        t = t.replace(",", "")
    elif t.count(".") > 1:
        t = t.replace(".", "")  # 1.250.000
    try:
        value = float(t)
    except ValueError:
        raise bad from None
    if not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, not '{shown(text)}'. Example: {EXAMPLE}")
    return value


def _check(field: str, value: float, raw: str) -> float:
    lo, hi, unit = LIMITS[field]
    if field == "frequency" and value != int(value):
        raise InputError(f"frequency is a number of orders, a whole number ≥ 1; got '{shown(raw)}'. Example: {EXAMPLE}")
    if not lo <= value <= hi:
        span = f"{lo:,.0f} and {hi:,.0f}" + (f" {unit}" if unit else "")
        raise InputError(f"{field} must be between {span}; got '{shown(raw)}'. Example: {EXAMPLE}")
    return value


def parse_rfm(tokens: list[str] | str) -> RFM:
    """Parse user input into R, F, M or raise ``InputError`` with one friendly line."""
    if isinstance(tokens, str):
        tokens = tokens.split()
    # "r = 30" and "30 days" typed with spaces: glue the pieces back together.
    text = re.sub(r"\s*=\s*", "=", " ".join(tokens))
    text = re.sub(r"(?<=\d)\s+(days?|d|orders?|x)\b", r"\1", text, flags=re.IGNORECASE)
    joined = text.split()
    if len(joined) != 3:
        raise InputError(f"Give exactly three values, R F M, e.g. {EXAMPLE}; got {len(joined)}.")
    values: dict[str, tuple[float, str]] = {}
    unassigned: list[str] = []
    for tok in joined:
        field = None
        body = tok
        if "=" in tok:
            key, _, body = tok.partition("=")
            field = _KEYS.get(key.strip().lower())
            if field is None:
                raise InputError(f"Unknown key '{shown(key)}': use r=, f= and m=. Example: r=30 f=2 m=150")
        elif _CURRENCY.search(tok):
            field, body = "monetary", _CURRENCY.sub("", tok)
        elif _DAYS.search(tok):
            field, body = "recency", _DAYS.sub("", tok)
        elif _ORDERS.search(tok):
            field, body = "frequency", _ORDERS.sub("", tok)
        if field is None:
            unassigned.append(tok)
            continue
        if field in values:
            raise InputError(f"{field} is given twice. Example: {EXAMPLE}")
        values[field] = (parse_number(body, field), tok)
    for field in ("recency", "frequency", "monetary"):
        if field not in values:
            tok = unassigned.pop(0)
            values[field] = (parse_number(tok, field), tok)
    checked = {f: _check(f, v + 0.0, raw) for f, (v, raw) in values.items()}  # + 0.0: no "-0"
    return RFM(checked["recency"], checked["frequency"], checked["monetary"])
