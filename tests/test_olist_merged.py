"""The Olist orders read with the payments summed in the orders' own GROUP BY (``merged``, the
files' form) are the orders of the two-table join (the databases' form), row for row, on messy
generated tables: repeated order ids with conflicting fields, missing and blank ids, payments of
unknown orders, unreadable amounts, orders without payments, customers listed twice."""

from __future__ import annotations

import duckdb
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from segmentation.data import olist_sql
from segmentation.data import relations as rel
from segmentation.data.engines import _sql

IDS = st.sampled_from(["o1", "o2", "o3", "o4", " o1 ", "", None])
CUSTOMERS = st.sampled_from(["c1", "c2", "c3", "c9", None])
STATUS = st.sampled_from(["delivered", " Delivered ", "shipped", None])
WHEN = st.sampled_from(["2024-01-02 10:00:00", "2024-01-01", "2024-03-05T08:00:00+02:00", "not a date", None])
AMOUNT = st.sampled_from(["10.50", "0", "-3.25", "abc", None, "99.99", "", "1e3", "0.125"])
INSTALMENTS = st.sampled_from(["1", "3", "x", None])


def _frame(columns, rows):
    return pd.DataFrame(rows, columns=columns, dtype=object)


orders_rows = st.lists(st.tuples(IDS, CUSTOMERS, STATUS, WHEN), max_size=12)
payments_rows = st.lists(st.tuples(IDS, AMOUNT, INSTALMENTS), max_size=12)
customers_rows = st.lists(
    st.tuples(CUSTOMERS, st.sampled_from(["u1", "u2", " ", None]), st.sampled_from(["sp", "RJ", None])), max_size=8
)


def _orders(
    con, merged: bool, carried: frozenset[str], valid: bool, keyed: frozenset[str] = frozenset()
) -> list[tuple]:
    reading = rel.Reading("TRY_CAST")
    tables = olist_sql.OlistTables("orders_t", "payments_t", "customers_t", reading, merged, keyed)
    if valid:
        ctes = olist_sql.olist_valid_orders(tables)
        select = "SELECT * FROM valid_orders"
    else:
        ctes = olist_sql.olist_orders(tables, carried)
        select = "SELECT * FROM orders"
    rows = con.execute(_sql(rel.with_ctes(ctes, select), "duckdb", None)).fetchall()
    return sorted(rows, key=repr)


@settings(max_examples=60, deadline=None)
@given(
    orders_rows,
    payments_rows,
    customers_rows,
    st.sampled_from([frozenset(), frozenset({"instalments"}), frozenset({"state"}), olist_sql.CARRIED]),
)
def test_merged_payments_give_the_joined_orders(orders, payments, customers, carried):
    con = _tables(orders, payments, customers)
    for valid in (False, True):
        assert _orders(con, True, carried, valid) == _orders(con, False, carried, valid)


CARRIED_SETS = st.sampled_from([frozenset(), frozenset({"instalments"}), frozenset({"state"}), olist_sql.CARRIED])


@settings(max_examples=40, deadline=None)
@given(orders_rows, payments_rows, customers_rows, CARRIED_SETS)
def test_tables_keyed_by_their_ids_need_no_grouping(orders, payments, customers, carried):
    """Where no id repeats nor is NULL (a primary key), reading the rows as they are gives the
    grouped orders (``keyed``, for PostgreSQL's declared keys)."""
    orders = list({o[0]: o for o in orders if o[0] is not None}.values())
    customers = list({c[0]: c for c in customers if c[0] is not None}.values())
    con = _tables(orders, payments, customers)
    for valid in (False, True):
        grouped = _orders(con, False, carried, valid)
        for keyed in (frozenset({"orders"}), frozenset({"customers"}), frozenset({"orders", "customers"})):
            assert _orders(con, False, carried, valid, keyed) == grouped


def _tables(orders, payments, customers):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    frames = {
        "orders_t": _frame(["order_id", "customer_id", "order_status", "order_purchase_timestamp"], orders),
        "payments_t": _frame(["order_id", "payment_value", "payment_installments"], payments),
        "customers_t": _frame(["customer_id", "customer_unique_id", "customer_state"], customers),
    }
    for name, frame in frames.items():
        con.register(f"{name}_df", frame)
        casts = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in frame.columns)
        con.execute(f"CREATE TABLE {name} AS SELECT {casts} FROM {name}_df")
    return con


def test_an_order_without_payments_and_a_payment_without_an_order():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE orders_t AS SELECT 'o1' AS order_id, 'c1' AS customer_id, 'delivered' AS order_status, "
        "'2024-01-02' AS order_purchase_timestamp"
    )
    con.execute(
        "CREATE TABLE payments_t AS SELECT 'o9' AS order_id, '5.00' AS payment_value, '1' AS payment_installments"
    )
    con.execute(
        "CREATE TABLE customers_t AS SELECT 'c1' AS customer_id, 'u1' AS customer_unique_id, 'SP' AS customer_state"
    )
    rows = _orders(con, True, frozenset(), False)
    assert [(r[0], r[1], r[3], r[5]) for r in rows] == [("o1", "u1", None, "without_payment")]


@settings(max_examples=40, deadline=None)
@given(orders_rows, payments_rows, customers_rows, CARRIED_SETS)
def test_customers_keyed_beside_merged_orders_give_the_grouped_orders(orders, payments, customers, carried):
    """Files whose customer ids are counted unique but whose order ids repeat: the orders merged
    with their payments, the customers read as they are (``plan``: keyed by counting)."""
    customers = list({c[0]: c for c in customers if c[0] is not None}.values())
    con = _tables(orders, payments, customers)
    for valid in (False, True):
        assert _orders(con, True, carried, valid, frozenset({"customers"})) == _orders(con, False, carried, valid)
