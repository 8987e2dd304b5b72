"""The Olist layout's SQL: the three tables of orders, payments and customers as the product's
*orders relation* (``relations``), and the optional item, product and translation files as the
segments' personas. DuckDB dialect, compiled for every engine by ``dialects``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from segmentation.data.relations import VALID_DAYS, Check, Reading, label_text, passes, reason_of, text_id

OLIST_TABLES = {
    "orders": "olist_orders_dataset",
    "payments": "olist_order_payments_dataset",
    "customers": "olist_customers_dataset",
}
# Optional files of the Olist layout: what customers buy, for the segments' personas.
OLIST_PERSONA_TABLES = {
    "items": "olist_order_items_dataset",
    "products": "olist_products_dataset",
    "translation": "product_category_name_translation",
}
OLIST_COLUMNS = {
    "orders": ("order_id", "customer_id", "order_status", "order_purchase_timestamp"),
    "payments": ("order_id", "payment_value"),
    "customers": ("customer_id", "customer_unique_id"),
}

OLIST_CHECKS: tuple[Check, ...] = (
    ("not_delivered", "o.status IS DISTINCT FROM 'delivered'"),
    ("without_customer", "c.uid IS NULL"),
    ("bad_date", "o.ordered_at IS NULL"),
    ("without_payment", "p.order_id IS NULL"),
    ("bad_amount", "p.n_ok < p.n_rows"),
)
# The same checks where the payments are summed in the orders' own GROUP BY (``_olist_joined``, merged):
# an order without any payment row counts none there.
OLIST_MERGED_CHECKS: tuple[Check, ...] = (
    ("not_delivered", "o.status IS DISTINCT FROM 'delivered'"),
    ("without_customer", "c.uid IS NULL"),
    ("bad_date", "o.ordered_at IS NULL"),
    ("without_payment", "o.n_rows = 0"),
    ("bad_amount", "o.n_ok < o.n_rows"),
)


# The tables whose id a source may find never repeats (a declared or counted key: ``OlistTables.keyed``).
KEYABLE: tuple[tuple[str, str], ...] = (("orders", "order_id"), ("customers", "customer_id"))

# Persona labels an Olist training pass can carry on each order from the joins it makes anyway
# (the payments per order, the order's customer), so the personas need not join those files again.
CARRIED = frozenset({"instalments", "state"})


@dataclass(frozen=True)
class OlistTables:
    """The Olist layout's three tables as a source reads them (``_olist_joined`` says how)."""

    orders: str
    payments: str
    customers: str
    reading: Reading
    # the payments summed in the orders' own GROUP BY (files whose order ids repeat, unless gzipped and read from disk)
    merged: bool = False
    # "orders", "customers": their ids never repeat nor are NULL (a declared or counted key); the
    # merged form groups the orders whatever this says
    keyed: frozenset[str] = frozenset()

    @property
    def paid(self) -> str:
        """The alias that holds the payments' columns."""
        return "o" if self.merged else "p"

    @property
    def checks(self) -> tuple[Check, ...]:
        return OLIST_MERGED_CHECKS if self.merged else OLIST_CHECKS


def _olist_order_columns(reading: Reading) -> str:
    """The order lines' columns, typed: the caller adds the FROM."""
    return f"""SELECT KEY_TEXT(order_id) AS order_id, KEY_TEXT(customer_id) AS cid,
                   LOWER(TRIM(CAST(order_status AS VARCHAR))) AS status,
                   {reading.timestamp("order_purchase_timestamp")} AS ordered_at"""


def _olist_joined(tables: OlistTables, carried: frozenset[str] = frozenset()) -> str:
    """The Olist orders (one row per order id, should the table repeat one) with their summed
    payments and their customer's ``customer_unique_id``; aliases o (the order), p (its payments)
    and c (its customer). ``carried``: the order's most instalments (p.instalments) and its
    customer's state (c.state) too.

    ``tables.merged``: the payments are summed in the orders' own GROUP BY (one hash table of the
    order ids instead of two and a join; there is no alias p: o carries its columns, hence
    ``OLIST_MERGED_CHECKS``):
    10M orders in DuckDB within 1 GB, 27 s instead of 35 s. Databases keep the join: PostgreSQL
    reads 3M orders slower merged (the RFM read 42-43 s instead of 37).

    ``tables.keyed`` (of "orders", "customers"): the tables whose id never repeats nor is NULL (a
    primary key: ``DatabaseEngine.ids_never_repeat``; a file's rows counted:
    ``DuckDBEngine.ids_counted_unique``); their rows are read as they are, not grouped by the id.
    PostgreSQL, 3M orders with both keys: the RFM read 29.3-29.8 s instead of 36.6-36.7 s."""
    orders, payments, customers, reading = tables.orders, tables.payments, tables.customers, tables.reading
    merged, keyed = tables.merged, tables.keyed
    amount = reading.money("payment_value")
    instalments = f"{reading.cast}(payment_installments AS INTEGER)"
    state = f", MIN(UPPER({label_text('customer_state')})) AS state" if "state" in carried else ""
    if "customers" in keyed:
        each = f", UPPER({label_text('customer_state')}) AS state" if "state" in carried else ""
        customer_rows = f"""
        SELECT KEY_TEXT(customer_id) AS customer_id, {text_id("customer_unique_id")} AS uid{each}
        FROM {customers} AS cc"""
    else:
        customer_rows = f"""
        SELECT KEY_TEXT(customer_id) AS customer_id, MIN({text_id("customer_unique_id")}) AS uid{state}
        FROM {customers} AS cc
        GROUP BY KEY_TEXT(customer_id)"""
    customer = f"""
    LEFT JOIN ({customer_rows}
    ) AS c ON o.cid = c.customer_id"""
    if merged:
        most = ", MAX(instalments) AS instalments" if "instalments" in carried else ""
        none = ", CAST(NULL AS INTEGER) AS instalments" if "instalments" in carried else ""
        paid = f", {instalments}" if "instalments" in carried else ""
        return f"""
    FROM (
        SELECT order_id, MIN(cid) AS cid, MIN(status) AS status, MIN(ordered_at) AS ordered_at,
               SUM(amount) AS amount, COUNT(paid) AS n_rows, COUNT(amount) AS n_ok{most}
        FROM (
            {_olist_order_columns(reading)},
                   1 AS ordered, CAST(NULL AS INTEGER) AS paid, CAST(NULL AS DECIMAL(18,2)) AS amount{none}
            FROM {orders} AS oo
            UNION ALL
            SELECT KEY_TEXT(order_id), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS TIMESTAMP),
                   CAST(NULL AS INTEGER), 1, {amount}{paid}
            FROM {payments} AS pp
            WHERE KEY_TEXT(order_id) IS NOT NULL
        ) AS u
        GROUP BY order_id
        HAVING COUNT(ordered) > 0
    ) AS o{customer}"""
    most = f", MAX({instalments}) AS instalments" if "instalments" in carried else ""
    if "orders" in keyed:
        order_rows = f"""
        {_olist_order_columns(reading)}
        FROM {orders} AS oo"""
    else:
        order_rows = f"""
        SELECT order_id, MIN(cid) AS cid, MIN(status) AS status, MIN(ordered_at) AS ordered_at
        FROM (
            {_olist_order_columns(reading)}
            FROM {orders} AS oo
        ) AS ooo
        GROUP BY order_id"""
    return f"""
    FROM ({order_rows}
    ) AS o
    LEFT JOIN (
        SELECT KEY_TEXT(order_id) AS order_id, SUM({amount}) AS amount,
               COUNT(*) AS n_rows, COUNT({amount}) AS n_ok{most}
        FROM {payments} AS pp
        GROUP BY KEY_TEXT(order_id)
    ) AS p ON o.order_id = p.order_id{customer}"""


def olist_orders(tables: OlistTables, carried: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """The Olist layout: delivered orders only, payments summed per order, customers identified
    by ``customer_unique_id`` (``customer_id`` is per order in Olist). Orders paid entirely by
    voucher (total 0) count. ``carried`` (of ``CARRIED``): persona labels kept on each order;
    the order's own customer id (``order_customer``, for the personas' state when it is not
    carried) is NULL where the state is carried."""
    pay = tables.paid
    labels = {"instalments": f"{pay}.instalments", "state": "c.state"}
    extra = "".join(f", {labels[c]} AS {c}" for c in sorted(carried))
    own = "CAST(NULL AS VARCHAR)" if "state" in carried else "o.cid"
    return [
        (
            "orders",
            f"""
    SELECT o.order_id AS order_id, c.uid AS customer_id, o.ordered_at AS ordered_at, {pay}.amount AS amount,
           1 AS n_rows, {reason_of(tables.checks)} AS excluded,
           {own} AS order_customer{extra}{_olist_joined(tables, carried)}""",
        )
    ]


def olist_valid_orders(tables: OlistTables) -> list[tuple[str, str]]:
    """The valid orders of the Olist layout only (``valid_orders``: customer_id, order_id,
    order_customer (the order's own customer_id), ordered_at, amount). ``OFFSET 0`` fences it
    on PostgreSQL: the date checks of ``valid_days`` would otherwise be pushed into the grouped
    orders, which PostgreSQL then takes for a single row and joins by nested loops (11 s for
    6,000 orders)."""
    return [
        (
            "valid_orders",
            f"""
    SELECT c.uid AS customer_id, o.order_id AS order_id, o.cid AS order_customer, o.ordered_at AS ordered_at,
           {tables.paid}.amount AS amount{_olist_joined(tables)}
    WHERE {passes(tables.checks)}
    OFFSET 0""",
        )
    ]


BOUGHT_ORDERS = "bought"  # the valid orders with their customer's segment (the first of the Olist facets' CTEs)


def olist_persona(
    refs: Mapping[str, str],
    reading: Reading,
    have: frozenset[str],
    orders: str = VALID_DAYS,
    carried: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """The Olist layout's facets, from whichever optional files or columns ``have`` names:
    ``category`` (items, products and, for English names, the translation), ``payment`` and
    ``instalments`` (payment_type, payment_installments) and ``state`` (customer_state);
    ``orders`` holds the valid orders, and ``carried`` names the labels that are columns of it
    already (``olist_orders``), read from there instead of joining their file again."""
    parts = []
    labels = "".join(f", v.{c} AS {c}" for c in sorted(carried & have))
    bought = (
        BOUGHT_ORDERS,
        f"""
        SELECT v.order_id AS order_id, v.order_customer AS order_customer, v.customer_id AS customer_id,
               m.cluster AS cluster{labels}
        FROM {orders} AS v JOIN members AS m ON v.customer_id = m.customer_id""",
    )
    # the item lines and the payments, each with its order id, meet the valid orders in one join
    # (one hash table of the orders, not one per file: 10M orders, 11.3 s of join work become 8.1 s)
    lines = []
    if "category" in have:
        english = "translation" in have
        name = "COALESCE(t.en, pr.cat)" if english else "pr.cat"
        join = (
            f"""
            LEFT JOIN (
                SELECT {label_text("product_category_name")} AS cat, MIN({label_text("product_category_name_english")}) AS en
                FROM {refs["translation"]} AS tt GROUP BY {label_text("product_category_name")}
            ) AS t ON t.cat = pr.cat"""
            if english
            else ""
        )
        lines.append(
            f"""
            SELECT i.order_id AS order_id, 'category' AS facet, COALESCE({name}, '(no category)') AS label,
                   i.price AS amount
            FROM (
                SELECT KEY_TEXT(order_id) AS order_id, KEY_TEXT(product_id) AS product_id,
                       {reading.money("price")} AS price
                FROM {refs["items"]} AS ii
            ) AS i
            LEFT JOIN (
                SELECT KEY_TEXT(product_id) AS product_id, MIN({label_text("product_category_name")}) AS cat
                FROM {refs["products"]} AS pp GROUP BY KEY_TEXT(product_id)
            ) AS pr ON pr.product_id = i.product_id{join}"""
        )
    if "payment" in have:
        lines.append(
            f"""
            SELECT KEY_TEXT(pay.order_id) AS order_id, 'payment' AS facet,
                   COALESCE(LOWER({label_text("pay.payment_type")}), 'not_defined') AS label,
                   {reading.money("pay.payment_value")} AS amount
            FROM {refs["payments"]} AS pay"""
        )
    if lines:
        parts.append(
            f"""
            SELECT l.facet AS facet, b.cluster AS cluster, l.label AS label, l.amount AS amount, 1 AS n
            FROM bought AS b
            JOIN ({"            UNION ALL".join(lines)}
            ) AS l ON l.order_id = b.order_id"""
        )
    payments = f"""
            FROM bought AS b
            JOIN {refs["payments"]} AS pay ON KEY_TEXT(pay.order_id) = b.order_id"""
    if "instalments" in have and "instalments" in carried:
        parts.append(
            """
            SELECT 'instalments' AS facet, cluster, CAST(instalments AS VARCHAR) AS label, 0 AS amount, 1 AS n
            FROM bought
            WHERE instalments IS NOT NULL"""
        )
    elif "instalments" in have:
        instalments = f"{reading.cast}(pay.payment_installments AS INTEGER)"
        parts.append(
            f"""
            SELECT 'instalments' AS facet, cluster, CAST(most AS VARCHAR) AS label, 0 AS amount, 1 AS n
            FROM (
                SELECT b.cluster AS cluster, b.order_id AS order_id, MAX({instalments}) AS most{payments}
                GROUP BY b.cluster, b.order_id
            ) AS per_order
            WHERE most IS NOT NULL"""
        )
    if "state" in have and "state" in carried:
        parts.append(
            """
            SELECT 'state' AS facet, cluster, state AS label, 0 AS amount, COUNT(DISTINCT customer_id) AS n
            FROM bought
            WHERE state IS NOT NULL
            GROUP BY cluster, state"""
        )
    elif "state" in have:
        parts.append(
            f"""
            SELECT 'state' AS facet, cluster, label, 0 AS amount, COUNT(DISTINCT customer_id) AS n
            FROM (
                SELECT b.cluster AS cluster, b.customer_id AS customer_id, UPPER({label_text("cu.customer_state")}) AS label
                FROM bought AS b
                JOIN {refs["customers"]} AS cu ON KEY_TEXT(cu.customer_id) = b.order_customer
            ) AS located
            WHERE label IS NOT NULL
            GROUP BY cluster, label"""
        )
    if not parts:
        return []
    return [bought, ("facet_rows", "\n            UNION ALL".join(parts))]
