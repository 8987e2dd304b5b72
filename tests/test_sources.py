from __future__ import annotations

import datetime as dt
import gzip
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
import reference
from conftest import run_cli

from segmentation.data import file_loads
from segmentation.data.duckdb_engine import DuckDBEngine
from segmentation.data.file_loads import reader
from segmentation.data.kinds import OlistSource, describe_exclusions
from segmentation.data.plan import _open_plan
from segmentation.data.sources import load_rfm
from segmentation.data.spec import source_from_spec
from segmentation.errors import DataError, InputError

COLUMNS = ["customer_id", "recency", "frequency", "monetary", "occasions", "gap"]
INTS = {"customer_id": object, "recency": "int64", "frequency": "int64", "occasions": "int64", "gap": "float64"}


def _frame(table) -> pd.DataFrame:
    return table.frame[COLUMNS].reset_index(drop=True)


def _assert_same(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    pdt.assert_frame_equal(ours[COLUMNS].astype(INTS), ref[COLUMNS].astype(INTS), check_exact=True)


# -- Olist layout -------------------------------------------------------------------------


def test_olist_rfm_equals_pandas_reference(sample_folder):
    table = load_rfm(OlistSource(sample_folder))
    _assert_same(_frame(table), reference.olist_rfm(sample_folder))
    orders = pd.read_csv(sample_folder / "olist_orders_dataset.csv", dtype=str)
    assert table.excluded["not_delivered"] == (orders["order_status"] != "delivered").sum()
    assert table.snapshot_date == table.latest_purchase + dt.timedelta(days=1)
    assert table.frame["recency"].min() == 1


def test_first_returns_equal_the_pandas_reference(sample_folder):
    table = load_rfm(OlistSource(sample_folder))
    expected = reference.first_returns(reference.olist_orders(sample_folder))
    assert dict(zip(table.gaps.days, table.gaps.n)) == expected
    assert table.gaps.customers == (table.frame["occasions"] > 1).sum()


def test_same_day_orders_are_one_purchase_occasion(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame(
        {
            "c": ["a", "a", "a", "b", "b", "c"],
            "o": ["1", "2", "3", "4", "5", "6"],
            "d": ["2024-01-01 09:00", "2024-01-01 17:00", "2024-01-31", "2024-01-10", "2024-01-10", "2024-02-01"],
            "amt": [10, 20, 30, 5, 5, 7],
        }
    ).to_csv(path, index=False)
    table = load_rfm(source_from_spec(path, customer_col="c", order_col="o", date_col="d", amount_col="amt"))
    f = table.frame.set_index("customer_id")
    assert f.loc["a", ["frequency", "occasions", "gap"]].tolist() == [3, 2, 30.0]
    assert f.loc["b", ["frequency", "occasions"]].tolist() == [2, 1] and np.isnan(f.loc["b", "gap"])
    assert (table.gaps.days, table.gaps.n) == ((30,), (1,))  # a's first return: 30 days, one occasion each


def test_olist_gzipped_and_as_of(sample_folder, tmp_path):
    for f in sample_folder.glob("*.csv"):
        with open(f, "rb") as src, gzip.open(tmp_path / (f.name + ".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst)
    as_of = dt.date(2024, 6, 30)
    table = load_rfm(OlistSource(tmp_path), as_of=as_of)
    _assert_same(_frame(table), reference.olist_rfm(sample_folder, as_of=as_of))
    assert table.snapshot_date == as_of
    assert table.excluded["after_as_of"] > 0
    expected = reference.first_returns(reference.olist_orders(sample_folder), as_of=as_of)
    assert dict(zip(table.gaps.days, table.gaps.n)) == expected
    assert table.latest_purchase <= as_of


def _copy_olist(src: Path, dst: Path) -> dict[str, pd.DataFrame]:
    dst.mkdir(exist_ok=True)
    return {
        key: pd.read_csv(src / f"olist_{name}_dataset.csv", dtype=str, keep_default_na=False)
        for key, name in (("orders", "orders"), ("payments", "order_payments"), ("customers", "customers"))
    }


def _write_olist(frames: dict[str, pd.DataFrame], dst: Path) -> None:
    for key, name in (("orders", "orders"), ("payments", "order_payments"), ("customers", "customers")):
        frames[key].to_csv(dst / f"olist_{name}_dataset.csv", index=False)


def test_olist_orders_without_payment_and_bad_dates_are_counted(sample_folder, tmp_path):
    frames = _copy_olist(sample_folder, tmp_path)
    delivered = frames["orders"][frames["orders"]["order_status"] == "delivered"]["order_id"]
    no_pay = set(delivered.iloc[:5])
    frames["payments"] = frames["payments"][~frames["payments"]["order_id"].isin(no_pay)]
    bad_date_ids = list(delivered.iloc[10:13])
    frames["orders"].loc[frames["orders"]["order_id"].isin(bad_date_ids), "order_purchase_timestamp"] = "soon"
    _write_olist(frames, tmp_path)

    table = load_rfm(OlistSource(tmp_path))
    baseline = load_rfm(OlistSource(sample_folder))
    assert table.excluded["without_payment"] == baseline.excluded.get("without_payment", 0) + 5
    assert table.excluded["bad_date"] == 3
    assert table.orders == baseline.orders - 8


@pytest.mark.parametrize("repeated", [("orders",), ("customers",), ("orders", "customers")])
def test_olist_files_whose_ids_repeat_are_grouped_and_count_each_order_once(sample_folder, tmp_path, repeated):
    """Files declare no key: where the order or customer ids are counted unique their rows are
    read as they are, and where one repeats (a row exported twice) that table is grouped by
    its id, so the answer is the same as without the repeat."""
    frames = _copy_olist(sample_folder, tmp_path)
    for key in repeated:
        frames[key] = pd.concat([frames[key], frames[key].iloc[[3, 3, 40]]], ignore_index=True)
    _write_olist(frames, tmp_path)

    engine = DuckDBEngine(str(tmp_path))
    try:
        for key, column in (("orders", "order_id"), ("customers", "customer_id")):
            path = tmp_path / f"olist_{key}_dataset.csv"
            assert engine.ids_counted_unique(reader(path), column) is (key not in repeated)
            assert engine.ids_counted_unique(reader(sample_folder / path.name), column)
    finally:
        engine.close()
    table, baseline = load_rfm(OlistSource(tmp_path)), load_rfm(OlistSource(sample_folder))
    _assert_same(_frame(table), _frame(baseline))
    assert (table.orders, table.excluded) == (baseline.orders, baseline.excluded)


ALL_THREE = ("orders", "payments", "customers")
STEMS = {"orders": "orders", "payments": "order_payments", "customers": "customers"}


@pytest.mark.parametrize(
    "gzipped, repeated, from_disk, union, groups",
    [
        ((), False, True, False, 1),  # ids counted unique: only the payments are grouped
        ((), True, True, True, 1),  # the payments summed in the orders' own GROUP BY, the customers keyed
        (ALL_THREE, False, True, False, 3),  # gzipped: not counted (a second decompression), grouped, joined
        (ALL_THREE, True, True, False, 3),  # never merged: DuckDB's two gzip readers under one GROUP BY ran out of 1 GB
        (("orders",), True, True, False, 2),  # the plain customers counted and keyed
        (("payments",), True, True, False, 2),  # a gzipped payments file alone keeps the orders from merging
        (ALL_THREE, False, False, False, 1),  # a small gzipped folder is loaded into memory, then counted
    ],
)
def test_olist_files_are_read_in_the_form_their_ids_and_compression_allow(
    sample_folder, tmp_path, monkeypatch, gzipped, repeated, from_disk, union, groups
):
    """Every form counts each order once and leaves an unreadable amount's order out as
    bad_amount (DuckDB 2.0 made that TRY_CAST a strict cast inside the CSV reader, and the whole
    read failed). ``from_disk``: read as a large folder is, not loaded into memory first."""
    frames = _copy_olist(sample_folder, tmp_path)
    if repeated:
        frames["orders"] = pd.concat([frames["orders"], frames["orders"].iloc[[5]]], ignore_index=True)
    delivered = frames["orders"]["order_id"][frames["orders"]["order_status"] == "delivered"].iloc[20]
    frames["payments"].loc[frames["payments"]["order_id"] == delivered, "payment_value"] = "abc"
    _write_olist(frames, tmp_path)
    for key in gzipped:
        path = tmp_path / f"olist_{STEMS[key]}_dataset.csv"
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes(), 1))
        path.unlink()
    if from_disk:
        monkeypatch.setattr(file_loads, "LOAD_LIMIT", 0)
    plan = _open_plan(OlistSource(tmp_path), [])
    try:
        sql = plan.ctes[-1][1]
        assert ("UNION ALL" in sql, sql.count("GROUP BY")) == (union, groups)
    finally:
        plan.engine.close()
    table, baseline = load_rfm(OlistSource(tmp_path)), load_rfm(OlistSource(sample_folder))
    assert table.orders == baseline.orders - 1
    assert table.excluded == {**baseline.excluded, "bad_amount": baseline.excluded.get("bad_amount", 0) + 1}


def test_personas_read_from_disk_leave_an_unreadable_item_price_out(sample_folder, tmp_path, monkeypatch):
    """The personas' TRY_CAST of an item's price over the file, as a large folder is read: a
    strict cast in DuckDB 2.0's CSV reader unless that optimizer is off."""
    folder = tmp_path / "shop"
    shutil.copytree(sample_folder, folder)
    items = pd.read_csv(folder / "olist_order_items_dataset.csv", dtype=str, keep_default_na=False)
    items.loc[3, "price"] = "abc"
    items.to_csv(folder / "olist_order_items_dataset.csv", index=False)
    monkeypatch.setattr(file_loads, "LOAD_LIMIT", 0)
    r = run_cli("--artifacts", str(tmp_path / "art"), "-q", "train", "--data", str(folder))
    assert r.code == 0, r.err


def test_a_try_cast_over_a_file_gives_null_for_an_unreadable_value(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("order_id,payment_value\no1,10.50\no2,abc\n")
    engine = DuckDBEngine(str(tmp_path))
    try:
        rows = engine.table(f"SELECT order_id, TRY_CAST(payment_value AS DECIMAL(18,2)) AS v FROM {reader(path)} AS p")
        assert sorted(zip(*rows.to_pydict().values())) == [("o1", Decimal("10.50")), ("o2", None)]
    finally:
        engine.close()


@pytest.mark.parametrize(
    "ids, unique",
    [
        (["a", "b", "c"], True),
        (["a", "b", "a"], False),  # a row exported twice
        (["a", None, "b"], False),  # a row without its id: grouped, as an id of its own
        (["a", "", "b"], True),  # a blank id is an id of its own, as the joins compare them
        ([" a", "a", "b"], True),  # ids are compared as they are written, as the joins do
    ],
)
def test_ids_are_counted_unique_only_when_every_row_has_one_and_none_repeats(ids, unique):
    engine = DuckDBEngine("ids")
    try:
        engine.con.execute("CREATE TABLE t (order_id VARCHAR)")
        engine.con.executemany("INSERT INTO t VALUES (?)", [[i] for i in ids])
        assert engine.ids_counted_unique("t", "order_id") is unique
        assert engine.ids_counted_unique("t", "no_such_column") is False  # the orders' query says why
        assert engine.ids_counted_unique("read_csv('/no/such/file.csv')", "order_id") is False
    finally:
        engine.close()


def test_olist_missing_file_and_column(sample_folder, tmp_path):
    frames = _copy_olist(sample_folder, tmp_path)
    _write_olist(frames, tmp_path)
    (tmp_path / "olist_order_payments_dataset.csv").unlink()
    with pytest.raises(DataError, match="missing olist_order_payments_dataset.csv"):
        load_rfm(OlistSource(tmp_path))

    _write_olist({**frames, "customers": frames["customers"].drop(columns=["customer_unique_id"])}, tmp_path)
    with pytest.raises(DataError, match=r"olist_customers_dataset.csv: no column 'customer_unique_id'"):
        load_rfm(OlistSource(tmp_path))


def test_olist_nothing_delivered(sample_folder, tmp_path):
    frames = _copy_olist(sample_folder, tmp_path)
    frames["orders"]["order_status"] = "canceled"
    _write_olist(frames, tmp_path)
    with pytest.raises(DataError, match=r"no usable orders left after filtering .*orders not delivered"):
        load_rfm(OlistSource(tmp_path))


# -- generic transactions ---------------------------------------------------------------------


def _lines(seed: int = 3, n_orders: int = 800) -> pd.DataFrame:
    """Order lines with the mess real exports have."""
    rng = np.random.default_rng(seed)
    customers = [f"C{i:04d}" for i in range(250)]
    rows = []
    start = dt.datetime(2024, 1, 1)
    for o in range(n_orders):
        cust = customers[int(rng.integers(0, len(customers)))]
        when = start + dt.timedelta(minutes=int(rng.integers(0, 60 * 24 * 365)))
        for _ in range(int(rng.integers(1, 4))):
            rows.append(
                {
                    "customer": cust,
                    "order": f"O{o:05d}",
                    "date": when.strftime("%Y-%m-%d %H:%M:%S") if o % 7 else when.strftime("%Y-%m-%d"),
                    "qty": int(rng.integers(1, 4)),
                    "price_cents": int(rng.integers(100, 20_000)),
                }
            )
    df = pd.DataFrame(rows)
    df.loc[df.index[3:9], "customer"] = None  # rows without a customer id
    df.loc[df.index[20:24], "date"] = "not a date"  # unparseable dates
    returns = df["order"].isin(["O00100", "O00101"])  # refunds: negative lines
    df.loc[returns, "qty"] = -1
    df["cents"] = df["qty"] * df["price_cents"]
    df["price"] = df["price_cents"] / 100
    df["amount"] = df["cents"] / 100
    return df


def _expected_exclusions(df: pd.DataFrame) -> dict[str, int]:
    no_customer = df["customer"].isna()
    bad_date = ~no_customer & (df["date"] == "not a date")
    return {"without_customer": int(no_customer.sum()), "bad_date": int(bad_date.sum())}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_transactions_lines_equal_reference(tmp_path, fmt):
    df = _lines()
    path = tmp_path / f"sales.{fmt}"
    export = df[["customer", "order", "date", "qty", "price", "amount"]]
    if fmt == "csv":
        export.to_csv(path, index=False)
    else:
        export.to_parquet(path, index=False)
    src = source_from_spec(
        path, customer_col="customer", order_col="order", date_col="date", quantity_col="qty", price_col="price"
    )
    table = load_rfm(src)
    _assert_same(_frame(table), reference.lines_rfm(df))
    expected = _expected_exclusions(df)
    assert table.excluded["without_customer"] == expected["without_customer"]
    assert table.excluded["bad_date"] == expected["bad_date"]
    assert table.excluded["returned"] == 2  # the two refunds, netted (the reference nets them too)
    assert "nonpositive_total" not in table.excluded

    by_amount = load_rfm(
        source_from_spec(path, customer_col="Customer", order_col="order", date_col="date", amount_col="amount")
    )
    _assert_same(_frame(by_amount), reference.lines_rfm(df))


def test_transactions_without_order_column_each_row_is_an_order(tmp_path):
    df = _lines(seed=5, n_orders=300)
    df = df[df["qty"] > 0].copy()
    path = tmp_path / "rows.csv"
    df[["customer", "date", "amount"]].to_csv(path, index=False)
    table = load_rfm(source_from_spec(path, customer_col="customer", date_col="date", amount_col="amount"))
    ref = reference.lines_rfm(df.assign(order=[f"row{i}" for i in range(len(df))]))
    _assert_same(_frame(table), ref)


def test_transactions_date_format(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text('who,when,total\na,31/12/2024,10.50\na,01/12/2024,"4,50"\nb,15/06/2024,3\n')
    table = load_rfm(
        source_from_spec(path, customer_col="who", date_col="when", amount_col="total", date_format="%d/%m/%Y")
    )
    f = table.frame.set_index("customer_id")
    assert table.snapshot_date == dt.date(2025, 1, 1)
    assert f.loc["a", "recency"] == 1 and f.loc["a", "frequency"] == 1  # "4,50" is not a number
    assert table.excluded["bad_amount"] == 1
    assert f.loc["b", "recency"] == (dt.date(2025, 1, 1) - dt.date(2024, 6, 15)).days


@pytest.mark.parametrize(
    "content, flags, message",
    [
        ("c,d,a\n", dict(customer_col="c", date_col="d", amount_col="a"), "no usable orders left"),
        (
            "c,d,a\nx,2024-01-01,-5\n",
            dict(customer_col="c", date_col="d", amount_col="a"),
            "no customer has a positive spend net of returns.*1 order with a negative total",
        ),
        (
            "c,d,a\nx,2024-01-01,5\n",
            dict(customer_col="cust", date_col="d", amount_col="a"),
            "no column 'cust' \\(columns are: c, d, a\\)",
        ),
        ("c,d,a\nx,2024-01-01,5\n", dict(customer_col="c", date_col="d"), "give --amount-col"),
        ("c,d,a\nx,2024-01-01,5\n", dict(date_col="d", amount_col="a"), "--customer-col"),
        (
            "c,d,a\nx,yesterday,5\n",
            dict(customer_col="c", date_col="d", amount_col="a"),
            "1 row with an unparseable date",
        ),
    ],
)
def test_transactions_bad_inputs(tmp_path, content, flags, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises((DataError, InputError), match=message) as info:
        load_rfm(source_from_spec(path, **flags))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unknown_paths_and_types(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        source_from_spec(tmp_path / "nope.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(DataError, match="unsupported file type"):
        source_from_spec(tmp_path / "x.xlsx", customer_col="a", date_col="b", amount_col="c")
    with pytest.raises(DataError, match="missing olist_orders_dataset.csv"):
        load_rfm(source_from_spec(tmp_path))


def test_cli_bad_data_is_one_line(tmp_path):
    (tmp_path / "t.csv").write_text("c,d,a\n")
    r = run_cli(
        "--artifacts",
        str(tmp_path / "a"),
        "-q",
        "train",
        "--data",
        str(tmp_path / "t.csv"),
        "--customer-col",
        "c",
        "--date-col",
        "d",
        "--amount-col",
        "a",
    )
    assert r.code == 1
    assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert "t.csv: no usable orders left" in r.err


def test_rows_without_an_order_id_are_excluded_not_merged(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "cust,order,when,total\n"
        "a,o1,2024-01-01,10\n"
        "b,,2024-01-02,20\n"
        "c,,2024-01-03,30\n"
        "d, ,2024-01-04,40\n"
        "a,o2,2024-01-05,5\n"
    )
    table = load_rfm(
        source_from_spec(path, customer_col="cust", order_col="order", date_col="when", amount_col="total")
    )
    assert table.frame["customer_id"].tolist() == ["a"]
    assert table.frame["frequency"].tolist() == [2] and table.frame["monetary"].tolist() == [15.0]
    assert table.excluded == {"without_order": 3}


def test_utc_offsets_are_converted_not_dropped(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("cust,when,total\na,2024-01-05T23:30:00-05:00,10\nb,2024-01-06 08:00:00,10\nc,2024-01-06,10\n")
    table = load_rfm(source_from_spec(path, customer_col="cust", date_col="when", amount_col="total"))
    f = table.frame.set_index("customer_id")
    assert table.latest_purchase == dt.date(2024, 1, 6)  # 23:30 at UTC-5 is 04:30 UTC the next day
    assert f["recency"].to_dict() == {"a": 1, "b": 1, "c": 1}


def test_order_numbers_reused_by_two_customers_are_two_orders(tmp_path):
    path = tmp_path / "two-stores.csv"
    pd.DataFrame(
        {
            "c": ["north-1", "south-1", "north-2", "south-1"],
            "o": ["1", "1", "2", "2"],
            "d": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
            "amt": [10, 20, 30, 40],
        }
    ).to_csv(path, index=False)
    table = load_rfm(source_from_spec(path, customer_col="c", order_col="o", date_col="d", amount_col="amt"))
    assert table.customers == 3 and table.orders == 4
    assert table.frame.set_index("customer_id").loc["south-1", ["frequency", "monetary"]].tolist() == [2, 60.0]


def test_orders_dated_in_the_future_are_excluded_and_counted(tmp_path):
    path = tmp_path / "future.csv"
    pd.DataFrame(
        {"c": ["a", "b", "c", "d"], "d": ["2024-03-01", "2024-03-05", "2099-01-01", "1900-01-01"], "amt": [1, 2, 3, 4]}
    ).to_csv(path, index=False)
    src = source_from_spec(path, customer_col="c", date_col="d", amount_col="amt")
    table = load_rfm(src)
    assert table.excluded["future_date"] == 1 and table.snapshot_date == dt.date(2024, 3, 6)
    assert table.excluded["too_old"] == 1 and table.customers == 2
    assert describe_exclusions(table.excluded) == (
        "1 order dated before 1990 (placeholder dates); 1 order dated in the future (after tomorrow, UTC)"
    )
    later = load_rfm(src, as_of=dt.date(2100, 1, 1))  # a snapshot the user asks for is theirs to choose
    assert "future_date" not in later.excluded and later.customers == 3


def test_what_a_model_records_opens_the_same_data_again_and_never_a_password(tmp_path, sample_folder):
    from segmentation.data.spec import BUILT_IN_SAMPLE, SourceOptions, open_data, source_from_data_spec

    opts = SourceOptions(customer_col="email", date_col="day", amount_col="total", currency="€")
    csv_path = tmp_path / "my orders.csv"
    csv_path.write_text("email,day,total\na@x,2024-01-01,10\n")
    opened = open_data(str(csv_path), opts, tmp_path / "samples")
    again = source_from_data_spec(opened.spec, tmp_path / "samples")
    assert again.source == opened.source and again.spec == opened.spec  # flags and the space in the name kept
    assert open_data(str(sample_folder), SourceOptions(), tmp_path).spec == str(sample_folder.resolve())
    url = "postgresql://shop:s3cret@db.example/shop"
    locked = open_data(url, SourceOptions(layout="olist"), tmp_path / "samples")
    assert locked.spec is None and "s3cret" not in locked.reference and "***" in locked.source.describe()
    assert open_data(None, SourceOptions(), tmp_path / "none-yet").source.describe() == BUILT_IN_SAMPLE


@pytest.mark.parametrize("fmt", ["%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%d-%m-%Y", "%d/%m/%Y %H:%M"])
def test_unreadable_dates_get_the_format_that_reads_them(tmp_path, fmt):
    import datetime as dt

    days = [dt.datetime(2024, 1, 1, 9, 30) + dt.timedelta(days=17 * i) for i in range(30)]  # days past the 12th
    path = tmp_path / "orders.csv"
    path.write_text("email,day,total\n" + "".join(f"c{i % 7},{d.strftime(fmt)},{10 + i}\n" for i, d in enumerate(days)))
    with pytest.raises(DataError) as info:
        load_rfm(source_from_spec(path, customer_col="email", date_col="day", amount_col="total"))
    message = str(info.value)
    assert f"try --date-format {fmt}" in message and "\n" not in message
    suggested = message.split("try --date-format ")[1].split(" (or")[0]
    table = load_rfm(
        source_from_spec(path, customer_col="email", date_col="day", amount_col="total", date_format=suggested)
    )
    assert table.orders == 30 and table.customers == 7  # the suggestion reads every row


def test_an_empty_file_and_decimal_commas_are_said_plainly(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("email,day,total\n")
    with pytest.raises(DataError, match="the file has no rows below its header"):
        load_rfm(source_from_spec(empty, customer_col="email", date_col="day", amount_col="total"))
    comma = tmp_path / "comma.csv"
    comma.write_text("email;day;total\na@x;2024-12-25;10,50\nb@x;2024-12-26;1.234,56\n")
    with pytest.raises(DataError, match="with a decimal comma"):
        load_rfm(source_from_spec(comma, customer_col="email", date_col="day", amount_col="total"))


def test_decimal_comma_amounts_read_as_their_decimal_point_twins(tmp_path):
    rng = np.random.default_rng(8)
    cents = rng.integers(100, 500_000, 200)
    days = [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(200)]
    who = [f"c{i % 37}" for i in range(200)]

    def comma(c: int) -> str:  # R$ 1.234,56
        whole, frac = divmod(int(c), 100)
        return f"R$ {whole:,}".replace(",", ".") + f",{frac:02d}"

    pt, cm = tmp_path / "point.csv", tmp_path / "comma.csv"
    pt.write_text("email,day,total\n" + "".join(f"{w},{d},{c / 100:.2f}\n" for w, d, c in zip(who, days, cents)))
    cm.write_text("email;day;total\n" + "".join(f"{w};{d};{comma(c)}\n" for w, d, c in zip(who, days, cents)))
    flags = dict(customer_col="email", date_col="day", amount_col="total")
    a = load_rfm(source_from_spec(pt, **flags)).frame
    b = load_rfm(source_from_spec(cm, **flags, decimal=",")).frame
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    with pytest.raises(DataError, match="add --decimal ,"):
        load_rfm(source_from_spec(cm, **flags))
    with pytest.raises(InputError, match="--decimal is for files"):
        source_from_spec("postgresql://u@h/db", **flags, table="t", decimal=",")


# -- returns and cancellations ---------------------------------------------------------------

# An export in the shape of a shop's invoice lines: a cancellation is an invoice "C…" of
# negative quantities, on the day it was made.
_INVOICES = (
    "InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID\n"
    "536365,A,6,2024-01-01 08:26,2.55,keeps\n"
    "536365,B,2,2024-01-01 08:26,10.00,keeps\n"
    "536400,A,1,2024-02-01 09:00,2.55,keeps\n"
    "C536500,B,-1,2024-02-10 10:00,10.00,keeps\n"  # a returned line: 35.30 + 2.55 - 10.00
    "536370,Z,100,2024-01-05 12:00,771.84,cancels\n"
    "C536371,Z,-100,2024-01-05 12:30,771.84,cancels\n"  # the whole order cancelled: net 0
    "C536380,A,-3,2024-01-07 12:00,2.55,only_returns\n"  # bought before the export began
    "536390,A,4,2024-03-01 12:00,2.55,late_return\n"
    "C536900,A,-4,2024-06-01 12:00,2.55,late_return\n"  # after the --as-of date below
)
_INVOICE_FLAGS = dict(
    customer_col="CustomerID",
    order_col="InvoiceNo",
    date_col="InvoiceDate",
    quantity_col="Quantity",
    price_col="UnitPrice",
)


def test_returns_are_netted_against_spend_and_customers_left_with_nothing_are_counted(tmp_path):
    path = tmp_path / "invoices.csv"
    path.write_text(_INVOICES)
    table = load_rfm(source_from_spec(path, **_INVOICE_FLAGS))
    rows = table.frame.set_index("customer_id")
    assert sorted(rows.index) == ["keeps"]  # late_return is net 0 on all the data
    assert rows.loc["keeps", "monetary"] == 27.85  # 15.30 + 20.00 + 2.55 - 10.00
    assert rows.loc["keeps", "frequency"] == 2 and rows.loc["keeps", "occasions"] == 2  # a return is not a purchase
    assert table.latest_purchase == dt.date(2024, 3, 1)  # the last return is no purchase either
    assert table.excluded == {"returned": 4, "net_nonpositive": 3}
    said = describe_exclusions(table.excluded)
    assert "4 orders with a negative total (returns, cancellations), netted against their customer's spend" in said
    assert "3 customers left with no positive spend once their returns are netted" in said

    # as of a day before the last return, that return has not happened yet
    before = load_rfm(source_from_spec(path, **_INVOICE_FLAGS), as_of=dt.date(2024, 4, 1))
    assert before.frame.set_index("customer_id").loc["late_return", "monetary"] == 10.20
    assert before.excluded == {"returned": 3, "after_as_of": 1, "net_nonpositive": 2}

    # an export whose amounts are already net: negative orders are left out, as before netting
    as_is = load_rfm(source_from_spec(path, **_INVOICE_FLAGS, returns="already-netted"))
    rows = as_is.frame.set_index("customer_id")
    assert rows.loc["cancels", "monetary"] == 77184.00 and rows.loc["keeps", "monetary"] == 37.85
    assert as_is.excluded == {"nonpositive_total": 4}


def test_the_returns_flag_is_checked_and_kept_with_the_model(tmp_path, sample_folder):
    path = tmp_path / "invoices.csv"
    path.write_text(_INVOICES)
    with pytest.raises(InputError, match="--returns is net or already-netted"):
        source_from_spec(path, **_INVOICE_FLAGS, returns="gross")
    with pytest.raises(InputError, match="the Olist files have no returns"):
        source_from_spec(sample_folder, returns="net")
    from segmentation.data.spec import SourceOptions, open_data, source_from_data_spec

    opened = open_data(str(path), SourceOptions(**_INVOICE_FLAGS, returns="already-netted"), tmp_path)
    assert opened.spec is not None and opened.spec.endswith("--returns already-netted")
    again = source_from_data_spec(opened.spec, tmp_path).source  # what a retrain opens
    assert again == opened.source and not again.net_returns


def test_release_moves_the_kept_tables_out_of_memory_and_they_still_answer(monkeypatch):
    from segmentation import runtime
    from segmentation.data.duckdb_engine import DuckDBEngine

    def in_memory(engine) -> int:
        return engine.con.execute(
            "SELECT memory_usage_bytes FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'"
        ).fetchone()[0]

    monkeypatch.setattr(runtime, "current", lambda: runtime.Runtime(duckdb_memory="512MB"))
    engine = DuckDBEngine("test")
    engine.materialise("kept", "SELECT i, md5(i::VARCHAR) AS h FROM range(2000000) t(i)")
    expected = engine.one("SELECT SUM(i), COUNT(DISTINCT h) FROM kept")
    before = in_memory(engine)
    engine.release()
    assert before > 50 * 2**20 and in_memory(engine) < before / 4
    assert engine.con.execute("SELECT current_setting('memory_limit')").fetchone()[0].startswith("488")
    assert engine.one("SELECT SUM(i), COUNT(DISTINCT h) FROM kept") == expected
    engine.close()


def test_a_shop_too_large_for_duckdbs_memory_limit_says_what_to_set(tmp_path, monkeypatch):
    import duckdb

    from segmentation import runtime

    monkeypatch.setattr(runtime, "_current", runtime.current())  # the CLI reconfigures it; put back after
    monkeypatch.setenv("SEGMENT_DUCKDB_MEMORY", "8MB")
    data = tmp_path / "t.parquet"
    duckdb.sql(
        "COPY (SELECT md5(i::VARCHAR) AS c, DATE '2024-01-01' + (i % 300)::INTEGER AS d, 10.0 AS a"
        f" FROM range(600000) t(i)) TO '{data}' (FORMAT parquet)"
    )
    flags = ["--customer-col", "c", "--date-col", "d", "--amount-col", "a"]
    r = run_cli("--artifacts", str(tmp_path / "art"), "-q", "train", "--data", str(data), *flags)
    assert r.code == 1 and r.err.count("\n") == 1 and "Traceback" not in r.err
    assert (
        "t.parquet: too large for DuckDB's memory limit (8MB); raise it with SEGMENT_DUCKDB_MEMORY (93M customers need 6GB)"
        in r.err
    )
    assert not (tmp_path / "art" / "models").exists() or not any((tmp_path / "art" / "models").iterdir())


@pytest.mark.parametrize("configured, while_small", [("1GB", 256), ("6GB", 256), ("300MB", 300)])
def test_a_kept_table_is_read_back_through_a_small_buffer_then_the_limit_comes_back(
    monkeypatch, configured, while_small
):
    """The windows read the per-day table back from the spill folder: meanwhile DuckDB's buffer
    pool is held small (10M Olist-layout orders: +0.26 GB instead of +0.9), unless the limit set
    is small already, and the next release puts the configured limit back."""
    from segmentation import runtime
    from segmentation.data.duckdb_engine import DuckDBEngine, limit_bytes

    def _megabytes(size: str) -> float:
        return (limit_bytes(size) or 0) / 1e6

    monkeypatch.setattr(runtime, "_current", runtime.Runtime(duckdb_memory=configured))
    engine = DuckDBEngine("test")
    try:
        limit = lambda: _megabytes(engine.one("SELECT current_setting('memory_limit')")[0])  # noqa: E731
        full = limit()
        assert full == pytest.approx(_megabytes(configured), rel=0.03)  # DuckDB shows it rounded: "5.4 GiB"
        engine.release(small=True)
        assert limit() == pytest.approx(while_small, rel=0.01)
        engine.release()
        assert limit() == full
    finally:
        engine.close()
