"""The product's SQL, written once (DuckDB dialect; ``dialects`` compiles it for every engine).

Every source becomes the same *orders relation*, one row per order:

    order_id, customer_id, ordered_at (TIMESTAMP), amount (DECIMAL), excluded (reason or NULL)

``rfm_sql`` aggregates it per customer in one pass that also counts the excluded rows by reason;
``FIRST_RETURNS_SELECT`` counts how long the shop's customers took to come back for the first
time. Only per-customer rows and a handful of numbers leave the engine, never the order lines.

Files are read by DuckDB, which tolerates bad values (``TRY_CAST``: a row with an unreadable
date or amount is excluded and counted). Databases and Spark hold typed columns, read with a
plain ``CAST``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from segmentation.data.sqltext import ident, sql_str

EPOCH = dt.date(1970, 1, 1)
OLDEST = dt.date(1990, 1, 1)  # orders dated earlier are placeholders (1900-01-01 and friends)


@dataclass(frozen=True)
class Reading:
    """How to read raw values: DuckDB over files tolerates bad ones, typed engines cast."""

    cast: str = "CAST"  # or TRY_CAST
    date_format: str | None = None  # strptime format (files only)
    decimal_comma: bool = False  # amounts such as 10,50 or R$ 1.234,56 (files only)
    net_returns: bool = True  # an order with a negative total is a return, netted (else left out)

    @property
    def total_checks(self) -> tuple[Check, ...]:
        """What an order's total says: a return to net (``RETURN``), or an order to leave out."""
        return NETTED_TOTAL_CHECKS if self.net_returns else TOTAL_CHECKS

    def timestamp(self, col: str) -> str:
        c = ident(col)
        if self.date_format:
            return f"TRY_STRPTIME(CAST({c} AS VARCHAR), {sql_str(self.date_format)})"
        if self.cast == "TRY_CAST":
            # ISO dates and timestamps; one with a UTC offset is converted to UTC (the session
            # time zone), one without is taken as UTC. TIMESTAMPTZ first: a plain TIMESTAMP cast
            # would silently drop the offset.
            return f"COALESCE(CAST(TRY_CAST({c} AS TIMESTAMPTZ) AS TIMESTAMP), TRY_CAST({c} AS TIMESTAMP))"
        return f"CAST({c} AS TIMESTAMP)"  # engines convert zoned values to the session's UTC

    def money(self, expr: str) -> str:
        return f"{self.cast}({self._decimal(expr)} AS DECIMAL(18,2))"

    def number(self, expr: str) -> str:
        return f"{self.cast}({self._decimal(expr)} AS DECIMAL(18,4))"

    def _decimal(self, expr: str) -> str:
        """With a decimal comma: symbols and spaces dropped, thousands dots dropped, the comma a point."""
        if not self.decimal_comma:
            return expr
        digits = f"REGEXP_REPLACE(CAST({expr} AS VARCHAR), '[^0-9,.-]', '', 'g')"
        return f"REPLACE(REPLACE({digits}, '.', ''), ',', '.')"


def text_id(expr: str) -> str:
    """A trimmed text id, NULL when blank, compared byte by byte in every engine."""
    return f"BINARY_TEXT(NULLIF(TRIM(CAST({expr} AS VARCHAR)), ''))"


# Why a row or an order is left out, in the order the reasons are checked: (reason, condition).
# Each condition is only ever evaluated where the earlier ones are false, and is never NULL there,
# so "excluded for the first reason that holds" (``reason_of``) and "kept" (``passes``) are the
# same rule read two ways: training counts every reason, scoring keeps only the valid rows.
Check = tuple[str, str]

ROW_CHECKS: tuple[Check, ...] = (
    ("without_customer", "customer_id IS NULL"),
    ("without_order", "order_id IS NULL"),
    ("bad_date", "ordered_at IS NULL"),
    ("bad_amount", "amount IS NULL"),
)
TOTAL_CHECKS: tuple[Check, ...] = (("nonpositive_total", "amount <= 0"),)
# Returns and cancellations (an order whose total is negative, e.g. a "C…" order of negative
# lines) keep their customer and are netted against that customer's spend as of their day: they
# are not purchases (no order, no purchase day), and a customer whose net spend is not positive
# is left out of the per-customer rows (``NETTED_OUT``). Exports whose amounts are already net
# leave them out instead (``Reading.net_returns`` False).
RETURN = "returned"
NETTED_OUT = "net_nonpositive"
NETTED_TOTAL_CHECKS: tuple[Check, ...] = ((RETURN, "amount < 0"), ("nonpositive_total", "amount = 0"))


def date_checks(late_after: dt.date, late_reason: str, day: str = "CAST(ordered_at AS DATE)") -> tuple[Check, ...]:
    """Dates before 1990 are placeholders; rows after ``late_after`` are future-dated or after ``--as-of``."""
    return (
        ("too_old", f"{day} < DATE '{OLDEST.isoformat()}'"),
        (late_reason, f"{day} > DATE '{late_after.isoformat()}'"),
    )


def reason_of(checks: tuple[Check, ...]) -> str:
    """The first reason whose condition holds, or NULL."""
    return "CASE " + " ".join(f"WHEN {cond} THEN '{reason}'" for reason, cond in checks) + " END"


def passes(checks: tuple[Check, ...]) -> str:
    """True where no condition holds."""
    return " AND ".join(f"NOT ({cond})" for _, cond in checks)


@dataclass(frozen=True)
class Columns:
    """Which columns of a transactions table hold what (names as they are in the source)."""

    customer: str
    date: str
    order: str | None = None
    amount: str | None = None
    quantity: str | None = None
    price: str | None = None
    category: str | None = None  # on order lines, for the segments' personas


def _transaction_rows(relation: str, cols: Columns, reading: Reading) -> str:
    """The source's rows as (customer_id, order_id, ordered_at, amount), typed, NULL where unusable."""
    if cols.amount:
        amount = reading.money(ident(cols.amount))
    else:
        assert cols.quantity and cols.price
        amount = (
            f"CAST(ROUND({reading.number(ident(cols.quantity))} * {reading.number(ident(cols.price))}, 2) "
            "AS DECIMAL(18,2))"
        )
    # without an order column every row is an order (the id is never read: there is no grouping)
    order = text_id(ident(cols.order)) if cols.order else "'row'"
    category = f", {label_text(ident(cols.category))} AS category" if cols.category else ""
    return f"""
                SELECT {text_id(ident(cols.customer))} AS customer_id, {order} AS order_id,
                       {reading.timestamp(cols.date)} AS ordered_at, {amount} AS amount{category}
                FROM {relation} AS src"""


def label_text(expr: str) -> str:
    """A category, payment type or state as a label: trimmed text, NULL when blank."""
    return f"NULLIF(TRIM(CAST({expr} AS VARCHAR)), '')"


def transactions_orders(
    relation: str, cols: Columns, reading: Reading, order_is_key: bool = False
) -> list[tuple[str, str]]:
    """One row per order line (or per order): lines of one (customer, order) are summed. An order
    is (customer, order id): exports that merge several stores can reuse order numbers, and
    those must never merge two customers. Without an order column, or when the database declares
    it a key (``order_is_key``), every row is an order and there is nothing to sum."""
    rows_are_orders = order_is_key or not cols.order
    return [
        (
            "flagged",
            f"""
            SELECT customer_id, order_id, ordered_at, amount, {reason_of(ROW_CHECKS)} AS excluded
            FROM ({_transaction_rows(relation, cols, reading)}
            ) AS r""",
        ),
        (rows_are_orders_cte if rows_are_orders else lines_to_orders_cte)(reading.total_checks),
    ]


def transactions_valid_orders(
    relation: str, cols: Columns, reading: Reading, order_is_key: bool = False
) -> list[tuple[str, str]]:
    """The valid orders only (``valid_orders``: customer_id, order_id, ordered_at, amount), by the
    same checks as ``transactions_orders``."""
    rows = f"({_transaction_rows(relation, cols, reading)}\n            ) AS r"
    kept = "amount <> 0" if reading.net_returns else passes(TOTAL_CHECKS)  # returns are kept, to be netted
    if order_is_key or not cols.order:
        body = f"SELECT customer_id, order_id, ordered_at, amount FROM {rows} WHERE {passes(ROW_CHECKS)} AND {kept}"
    else:
        body = f"""
            SELECT customer_id, order_id, ordered_at, amount
            FROM (
                SELECT customer_id, order_id, MIN(ordered_at) AS ordered_at, SUM(amount) AS amount
                FROM {rows}
                WHERE {passes(ROW_CHECKS)}
                GROUP BY customer_id, order_id
            ) AS o
            WHERE {kept}"""
    return [("valid_orders", body)]


def rows_are_orders_cte(total_checks: tuple[Check, ...]) -> tuple[str, str]:
    """Every row is an order: only what its total says is added to the reasons."""
    return (
        "orders",
        f"""
    SELECT order_id, customer_id, ordered_at, amount, 1 AS n_rows,
           COALESCE(excluded, {reason_of(total_checks)}) AS excluded, CAST(NULL AS VARCHAR) AS order_customer
    FROM flagged""",
    )


def lines_to_orders_cte(total_checks: tuple[Check, ...]) -> tuple[str, str]:
    """One GROUP BY, one reference to `flagged` (PostgreSQL would write a CTE read twice to
    disk): the lines of a valid order become the order; excluded lines are counted per reason."""
    return (
        "orders",
        f"""
            SELECT order_id, customer_id, ordered_at, amount,
                   CASE WHEN excluded IS NULL THEN 1 ELSE n_rows END AS n_rows,
                   COALESCE(excluded, {reason_of(total_checks)}) AS excluded, CAST(NULL AS VARCHAR) AS order_customer
            FROM (
                SELECT order_id, customer_id, excluded, MIN(ordered_at) AS ordered_at, SUM(amount) AS amount,
                       COUNT(*) AS n_rows
                FROM (
                    SELECT CASE WHEN excluded IS NULL THEN customer_id END AS customer_id,
                           CASE WHEN excluded IS NULL THEN order_id END AS order_id,
                           ordered_at, amount, excluded
                    FROM flagged
                ) AS f
                GROUP BY customer_id, order_id, excluded
            ) AS o""",
    )


def classified(late_after: dt.date, late_reason: str, carried: frozenset[str] = frozenset()) -> tuple[str, str]:
    """Valid orders and returns keep their customer; every other row keeps only its reason
    (``date_checks``, which a return must pass too). ``carried``: the orders' persona labels."""
    extra = "".join(f", {c}" for c in sorted(carried))
    return (
        "classified",
        f"""
        SELECT CASE WHEN x IS NULL OR x = '{RETURN}' THEN customer_id END AS customer_id, order_id, day, amount, n_rows,
               x AS excluded, order_customer{extra}
        FROM (
            SELECT customer_id, order_id, amount, n_rows, order_customer{extra}, CAST(ordered_at AS DATE) AS day,
                   CASE WHEN excluded IS NULL OR excluded = '{RETURN}'
                        THEN COALESCE({reason_of(date_checks(late_after, late_reason))}, excluded)
                        ELSE excluded END AS x
            FROM orders
        ) AS flagged_dates""",
    )


def valid_days(late_after: dt.date, bucket: str | None = None) -> tuple[str, str]:
    """The valid orders (``valid_orders``) with their day, by the same date checks as
    ``classified``; ``bucket``, a condition on customer_id, keeps a share of the customers."""
    checks = passes(date_checks(late_after, "late"))
    return (
        "valid_days",
        f"""
        SELECT *, CAST(ordered_at AS DATE) AS day
        FROM valid_orders
        WHERE {checks}{f" AND {bucket}" if bucket else ""}""",
    )


def with_ctes(ctes: list[tuple[str, str]], select: str) -> str:
    return "WITH " + ",\n".join(f"{name} AS ({body}\n)" for name, body in ctes) + "\n" + select


# Money is summed in whole cents (amounts are decimals to the cent): integer sums are exact and
# several times cheaper than decimal ones in PostgreSQL, and CAST(cents AS DOUBLE) / 100 is the
# same double as CAST(decimal AS DOUBLE) in every engine (both are the double nearest to the
# exact value).
CENTS = "SUM(CAST(amount * 100 AS BIGINT))"
MONEY = "CAST(SUM(cents) AS DOUBLE) / 100"

# Training reads three things from a source: R, F, M per customer (RFM_SELECT) and the
# first returns (FIRST_RETURNS_SELECT), both from `per_day` (a row per customer and purchase day of the
# valid orders, with ``orders`` > 0, and rows of returns, with ``orders`` 0 and negative ``cents``:
# a day's purchases and returns may be one row or two), and the rows left out per reason (EXCLUDED_SELECT, from `excluded_rows`). Two
# ways to provide those relations, with the same results:
#
# - DuckDB and Spark materialise one table, `segment_daily`, with a row per customer and purchase
#   day and one per reason and day for the rows left out (customer NULL, with the number of rows
#   or orders they stand for in n_rows); the three reads come from it, so the files are scanned
#   once (``materialised``).
# - A database that aggregates on one core (PostgreSQL, MySQL) is asked the three directly, on two
#   connections at once: per_day from the valid orders, excluded_rows from the classified ones
#   (``direct``).
#
# The orders relation has one row per valid order, so the rows of a day are its orders.
DAILY_SELECT = f"""
SELECT customer_id, excluded, day, SUM(n_rows) AS n_rows, COUNT(*) AS orders, {CENTS} AS cents
FROM classified
GROUP BY customer_id, excluded, day
"""

# A purchase day of ``per_day`` (NULL on a row of returns only).
BOUGHT = "CASE WHEN orders > 0 THEN day END"

# Per customer: the last purchase day (days since 1970), orders, spend net of returns, purchase
# days and the span from first to last purchase day, in compact types (9M customers fit in
# ~0.5 GB), sorted by id (deterministic rows, and the order the assignments file is stored in).
# Two orders the same day are one purchase *occasion*: a split basket, not a return. A customer
# with returns only (occasions 0) or a net spend that is not positive is left out by the reader,
# who counts them (``NETTED_OUT``).
RFM_GROUPED = f"""
SELECT customer_id,
       CAST(DATE_DIFF('day', DATE '{EPOCH.isoformat()}', COALESCE(MAX({BOUGHT}), MAX(day))) AS INTEGER) AS last_day,
       CAST(SUM(orders) AS INTEGER) AS frequency,
       {MONEY} AS monetary,
       CAST(COUNT({BOUGHT}) AS INTEGER) AS occasions,
       CAST(COALESCE(DATE_DIFF('day', MIN({BOUGHT}), MAX({BOUGHT})), 0) AS INTEGER) AS span
FROM per_day
GROUP BY customer_id
"""
RFM_SELECT = RFM_GROUPED + "ORDER BY customer_id\n"
RFM_KEPT = "segment_rfm"  # RFM_GROUPED kept in DuckDB, then handed over sorted (``sources._per_customer``)

# The rows left out, per reason.
EXCLUDED_SELECT = """
SELECT excluded, CAST(SUM(n_rows) AS BIGINT) AS n_rows
FROM excluded_rows
GROUP BY excluded
"""

# The returns' rows of the daily table, as rows of ``per_day`` (no orders, their negative cents).
_PER_DAY_ROWS = (
    f"SELECT customer_id, day, CASE WHEN excluded IS NULL THEN orders ELSE 0 END AS orders, cents FROM segment_daily "
    f"WHERE (excluded IS NULL OR excluded = '{RETURN}')"
)
MATERIALISED = [
    ("per_day", _PER_DAY_ROWS),
    ("excluded_rows", "SELECT excluded, n_rows FROM segment_daily WHERE excluded IS NOT NULL"),
]
DIRECT_EXCLUDED = ("excluded_rows", "SELECT excluded, n_rows FROM classified WHERE excluded IS NOT NULL")


# The customers' first returns (``survival``): how many customers came back for the first time
# after each number of days, from their first purchase day to their second. Customers who have
# not come back are the one-time buyers of the RFM rows (censored at their tenure).
FIRST_RETURNS_SELECT = """
SELECT gap, COUNT(*) AS n
FROM (
    SELECT DATE_DIFF('day', LAG(day) OVER (PARTITION BY customer_id ORDER BY day), day) AS gap,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY day) AS k
    FROM per_day
    WHERE orders > 0
) AS g
WHERE k = 2
GROUP BY gap
"""


# Windows: every customer as of earlier cut-off days, with what they did in the ``horizon`` days
# after each (``later_days``: purchase days, ``later_spend``), in one statement for all the
# cut-offs. The chance to buy again is learned from them (``chance``), the segments' measured
# future is read from the last one, and ``segment backtest`` scores its own cut-off with them. A
# cut-off day's own orders are history (the day an --as-of training would include); only
# ``per_day`` rows up to the last cut-off plus the horizon are read. ``sample`` (a condition on
# customer_id) keeps a share of the customers of a large shop.
def windows_select(cutoffs: list[dt.date], horizon: int, sample: str | None = None) -> str:
    """Returns count in the spend (net, as of each day) and never as a purchase day; a customer
    is in a window once they have bought by its cut-off with a positive net spend."""
    cuts = " UNION ALL ".join(f"SELECT {(c - EPOCH).days} AS cutoff" for c in sorted(set(cutoffs)))
    if_before = "CASE WHEN p.d <= k.cutoff THEN {} END"
    if_bought = "CASE WHEN p.d <= k.cutoff AND p.orders > 0 THEN {} END"
    return f"""
SELECT p.customer_id AS customer_id, k.cutoff AS cutoff,
       k.cutoff - MAX({if_bought.format("p.d")}) AS recency,
       k.cutoff - MIN({if_bought.format("p.d")}) AS tenure,
       CAST(COUNT({if_bought.format("1")}) AS INTEGER) AS occasions,
       CAST(SUM({if_before.format("p.orders")}) AS INTEGER) AS frequency,
       CAST(SUM({if_before.format("p.cents")}) AS DOUBLE) / 100 AS monetary,
       CAST(COUNT(CASE WHEN p.d > k.cutoff AND p.orders > 0 THEN 1 END) AS INTEGER) AS later_days,
       CAST(COALESCE(SUM(CASE WHEN p.d > k.cutoff THEN p.cents END), 0) AS DOUBLE) / 100 AS later_spend
FROM (
    SELECT customer_id, DATE_DIFF('day', DATE '{EPOCH.isoformat()}', day) AS d, orders, cents
    FROM per_day{f" WHERE {sample}" if sample else ""}
) AS p
JOIN ({cuts}) AS k ON p.d <= k.cutoff + {int(horizon)}
GROUP BY p.customer_id, k.cutoff
HAVING COUNT({if_bought.format("1")}) > 0 AND SUM({if_before.format("p.cents")}) > 0
ORDER BY k.cutoff, p.customer_id
"""


def per_day_until(last: dt.date) -> tuple[str, str]:
    """``per_day`` from the materialised daily table, up to and including ``last``."""
    return ("per_day", f"{_PER_DAY_ROWS} AND day <= DATE '{last.isoformat()}'")


def excluded_until(last: dt.date) -> tuple[str, str]:
    """The rows left out of a pass as of ``last``: every reason of the rows up to it (and those
    without a date), and the valid orders after it as ``after_as_of``."""
    return (
        "excluded_rows",
        f"""
        SELECT excluded, n_rows FROM segment_daily
        WHERE excluded IS NOT NULL AND (day IS NULL OR day <= DATE '{last.isoformat()}')
        UNION ALL
        SELECT 'after_as_of' AS excluded, n_rows FROM segment_daily
        WHERE (excluded IS NULL OR excluded = '{RETURN}') AND day > DATE '{last.isoformat()}'""",
    )


# Scoring inside the engine (digests, their exports): the valid orders per customer and day,
# then per customer as of a snapshot date (``customers``), then the compiled model
# (``compiled.scored_ctes``) and ``SCORED_TOTALS_SELECT``, all in one statement: nothing is
# written in the engine and only totals and the at-risk customers come back.
PER_DAY = (
    "per_day",
    f"""
    SELECT customer_id, day, SUM(CASE WHEN amount < 0 THEN 0 ELSE 1 END) AS orders, {CENTS} AS cents
    FROM valid_days
    GROUP BY customer_id, day""",
)


def customers(snapshot: dt.date) -> tuple[str, str]:
    """Per-customer RFM as of ``snapshot`` from ``per_day``, for scoring inside the engine: the
    customers ``RFM_SELECT`` keeps (a purchase, a positive net spend)."""
    last = f"DATE_DIFF('day', DATE '{EPOCH.isoformat()}', MAX({BOUGHT}))"
    return (
        "customers",
        f"""
        SELECT customer_id,
               {(snapshot - EPOCH).days} - {last} AS recency, {last} AS last_day,
               SUM(orders) AS frequency,
               {MONEY} AS monetary,
               COUNT({BOUGHT}) AS occasions,
               CASE WHEN COUNT({BOUGHT}) > 1
                    THEN CAST(DATE_DIFF('day', MIN({BOUGHT}), MAX({BOUGHT})) AS DOUBLE) / (COUNT({BOUGHT}) - 1)
               END AS gap
        FROM per_day
        GROUP BY customer_id
        HAVING COUNT({BOUGHT}) > 0 AND SUM(cents) > 0""",
    )


LATEST_SELECT = f"SELECT DATE_DIFF('day', DATE '{EPOCH.isoformat()}', MAX(day)) FROM valid_days WHERE amount >= 0"

# One row per segment for the customers not at risk, and one per customer at risk (its
# customer_id, recency, ... are that customer's): a single aggregation gives both the totals and
# the at-risk list, so the scored customers are never stored in the engine.
SCORED_TOTALS_SELECT = """
SELECT cluster, at_risk, CASE WHEN at_risk = 1 THEN customer_id END AS risky_id,
       COUNT(*) AS customers, SUM(monetary) AS revenue,
       SUM(COALESCE(chance, 0) * monetary / occasions) AS expected, MAX(last_day) AS last_day,
       MAX(recency) AS recency, MAX(frequency) AS frequency, MAX(occasions) AS occasions, MAX(gap) AS gap,
       MAX(chance) AS chance
FROM scored
GROUP BY cluster, at_risk, CASE WHEN at_risk = 1 THEN customer_id END
"""


# Personas: what each segment's customers buy, how they pay and where they live, as histograms
# per cluster that ``personas`` reads: one row per (facet, cluster, label) with an amount of
# money and a count. They follow the scored customers (``members``: customer_id, cluster, from
# the compiled model) and their valid orders (``valid_days``).
FACETS_SELECT = "SELECT facet, cluster, label, CAST(SUM(amount) AS DOUBLE) AS amount, CAST(SUM(n) AS BIGINT) AS n FROM facet_rows GROUP BY facet, cluster, label"
# where the members are a sample of some segments: how many each holds, as facet rows
MEMBER_COUNTS = "SELECT 'members' AS facet, cluster, '' AS label, CAST(0 AS DOUBLE) AS amount, CAST(COUNT(*) AS BIGINT) AS n FROM members GROUP BY cluster"


def sampled_members(bucket: str, keep: Mapping[int, int], buckets: int) -> str:
    """A condition on the scored customers (customer_id, cluster) keeping, of each cluster in
    ``keep``, the customers whose ``bucket`` (0 to ``buckets`` - 1) is under its number."""
    cases = " ".join(f"WHEN {int(c)} THEN {int(k)}" for c, k in sorted(keep.items()))
    return f"{bucket} < CASE cluster {cases} ELSE {int(buckets)} END"


# The valid orders with their order id and the order's own customer id: in the scoring
# statement (``valid_days``), or in the materialised orders of a training pass (there the
# own customer id is NULL where the orders carry the customer's state: ``olist_orders``).
VALID_DAYS = "valid_days"
MATERIALISED_ORDERS = "(SELECT * FROM segment_classified WHERE excluded IS NULL)"


def transactions_persona(relation: str, cols: Columns, reading: Reading, late_after: dt.date) -> list[tuple[str, str]]:
    """The categories of a transactions source's order lines (``--category-col``): the lines
    with a positive amount up to ``late_after`` of the scored customers, by the lines' own checks
    (a line of an order refunded whole still counts: lines are not summed per order here)."""
    assert cols.category
    checks = passes(ROW_CHECKS + TOTAL_CHECKS + date_checks(late_after, "late"))
    return [
        (
            "facet_rows",
            f"""
            SELECT 'category' AS facet, m.cluster AS cluster, COALESCE(l.category, '(no category)') AS label,
                   l.amount AS amount, 1 AS n
            FROM (
                SELECT * FROM ({_transaction_rows(relation, cols, reading)}
                ) AS r
                WHERE {checks}
            ) AS l
            JOIN members AS m ON l.customer_id = m.customer_id""",
        )
    ]
