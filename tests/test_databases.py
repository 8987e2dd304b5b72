"""Order history in a real database: PostgreSQL (TEST_DATABASE_URL) and MariaDB/MySQL
(TEST_MYSQL_URL). The RFM pushed down into the database must equal the file path exactly, on the
same generated data, exclusions and the Olist rules included. `.ci/run` sets both URLs and fails
when a server is unreachable; locally a missing URL skips its tests."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from conftest import run_cli

from segmentation import runtime
from segmentation.data.kinds import DatabaseSource
from segmentation.data.sources import load_rfm
from segmentation.data.spec import source_from_spec
from segmentation.data.urls import mask, resolve_url
from segmentation.errors import DataError, InputError

SERVERS = {"postgresql": "TEST_DATABASE_URL", "mariadb": "TEST_MYSQL_URL"}


def _plain(url: str) -> str:
    """The URL as a user would type it (no SQLAlchemy driver suffix)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+')[0]}://{rest}"


@pytest.fixture(params=list(SERVERS), scope="module")
def server(request):
    url = os.environ.get(SERVERS[request.param])
    if not url:
        pytest.skip(f"needs {SERVERS[request.param]}")
    url = _plain(url)
    engine = sa.create_engine(resolve_url(url)[0], poolclass=sa.pool.NullPool)
    yield request.param, url, engine
    engine.dispose()


@pytest.fixture
def tables(server):
    """Loads frames as uniquely named tables; drops them afterwards."""
    kind, url, engine = server
    made: list[str] = []

    def load(df: pd.DataFrame, name: str | None = None, dtype=None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:10]}"
        df.to_sql(name, engine, index=False, dtype=dtype)
        made.append(name)
        return name

    yield kind, url, engine, load
    with engine.begin() as con:
        if kind == "mariadb":  # a connection the product left open would hold a lock: fail, not hang
            con.exec_driver_sql("SET SESSION lock_wait_timeout = 20")
        else:
            con.exec_driver_sql("SET lock_timeout = '20s'")
        for name in made:
            con.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def _transactions(seed: int = 3, n: int = 1_500) -> pd.DataFrame:
    """Order lines with what real exports have: several lines per order, order numbers reused by
    two customers, ids differing only in case, same-day orders, refunds, missing values."""
    rng = np.random.default_rng(seed)
    customers = [f"C{i:04d}" for i in range(300)] + ["abc", "ABC", "Abc "]
    # each customer buys within their own active span: some are still active, others long gone
    start = rng.integers(0, 600, len(customers))
    span = np.minimum(rng.exponential(150, len(customers)).astype(int) + 1, 600 - start)
    rows = []
    for _ in range(n):
        i = int(rng.integers(len(customers)))
        c = customers[i]
        order = f"O{int(rng.integers(n // 2)):05d}"
        offset = int(start[i] + rng.integers(span[i]))
        day = dt.datetime(2023, 1, 1) + dt.timedelta(days=offset, minutes=int(rng.integers(1440)))
        rows.append((c, order, day, int(rng.integers(1, 4)), round(float(rng.uniform(1, 300)), 2)))
    df = pd.DataFrame(rows, columns=["Customer", "order_no", "created_at", "qty", "price"])
    df["total"] = (df["qty"] * df["price"]).round(2)
    df.loc[df.index[5:9], "Customer"] = None
    df.loc[df.index[12:15], "total"] = None
    df.loc[df.index[20:23], "total"] = -5.0  # refunds
    df.loc[df.index[30:32], "created_at"] = pd.NaT
    df.loc[df.index[40], "created_at"] = dt.datetime(1900, 1, 1)
    return df


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.frame.reset_index(drop=True), b.frame.reset_index(drop=True), check_exact=True)
    assert a.excluded == b.excluded
    assert (a.snapshot_date, a.latest_purchase, a.orders, a.gaps) == (
        b.snapshot_date,
        b.latest_purchase,
        b.orders,
        b.gaps,
    )


FLAGS = dict(customer_col="customer", order_col="ORDER_NO", date_col="created_at", amount_col="total")


def test_table_and_query_equal_the_file(tables, tmp_path):
    kind, url, engine, load = tables
    df = _transactions()
    path = tmp_path / "sales.parquet"
    df.to_parquet(path, index=False)
    name = load(df)
    from_file = load_rfm(source_from_spec(path, **FLAGS))
    from_table = load_rfm(source_from_spec(url, table=name, **FLAGS))
    _same(from_table, from_file)
    assert {"abc", "ABC"} <= set(from_table.frame["customer_id"])  # never merged by a collation
    netted = {k: n for k, n in from_file.excluded.items() if k in ("returned", "net_nonpositive")}
    assert netted["returned"] > 0  # the refunds, netted in the database as in the file
    assert from_table.excluded == {"without_customer": 4, "bad_date": 2, "bad_amount": 3, "too_old": 1} | netted
    already = dict(FLAGS, returns="already-netted")
    _same(load_rfm(source_from_spec(url, table=name, **already)), load_rfm(source_from_spec(path, **already)))
    query = f"SELECT * FROM {name} WHERE 1 = 1;"
    _same(load_rfm(source_from_spec(url, query=query, **FLAGS)), from_file)
    as_of = dt.date(2024, 3, 1)
    _same(load_rfm(source_from_spec(url, table=name, **FLAGS), as_of), load_rfm(source_from_spec(path, **FLAGS), as_of))


def test_an_order_key_declared_by_the_database_skips_summing_lines(tables, tmp_path):
    """A table whose order column is its primary key has one row per order: the product reads the
    key from the database's metadata, skips the per-order sum, and the RFM still equals the file's."""
    from segmentation.data import relations as rel
    from segmentation.data.plan import _plan

    kind, url, engine, load = tables
    df = _transactions(seed=5).reset_index(drop=True)
    df["order_no"] = [f"N{i:06d}" for i in range(len(df))]  # every row its own order
    path = tmp_path / "orders.parquet"
    df.to_parquet(path, index=False)
    keyed, plain = load(df, dtype={"order_no": sa.String(20)}), load(df)
    with engine.begin() as con:
        con.exec_driver_sql(f"ALTER TABLE {keyed} ADD PRIMARY KEY (order_no)")
    plans = {name: _plan(source_from_spec(url, table=name, **FLAGS)) for name in (keyed, plain)}
    for plan in plans.values():
        plan.engine.close()
    assert plans[keyed].ctes[-1] == rel.rows_are_orders_cte(rel.NETTED_TOTAL_CHECKS)
    assert plans[plain].ctes[-1] == rel.lines_to_orders_cte(rel.NETTED_TOTAL_CHECKS)
    from_file = load_rfm(source_from_spec(path, **FLAGS))
    _same(load_rfm(source_from_spec(url, table=keyed, **FLAGS)), from_file)
    _same(load_rfm(source_from_spec(url, table=plain, **FLAGS)), from_file)


def test_quantity_and_price_and_no_order_column(tables, tmp_path):
    kind, url, engine, load = tables
    df = _transactions(seed=9).dropna(subset=["created_at"])
    path = tmp_path / "lines.parquet"
    df.to_parquet(path, index=False)
    name = load(df)
    flags = dict(customer_col="Customer", date_col="created_at", quantity_col="qty", price_col="price")
    _same(load_rfm(source_from_spec(url, table=name, **flags)), load_rfm(source_from_spec(path, **flags)))
    flags = dict(customer_col="Customer", date_col="created_at", amount_col="total")  # each row an order
    _same(load_rfm(source_from_spec(url, table=name, **flags)), load_rfm(source_from_spec(path, **flags)))


def _keyed(url: str, schema: str) -> bool:
    """Whether the Olist orders of that schema are read without grouping the orders and customers."""
    from segmentation.data.plan import _plan  # lazy: the plan opens a connection

    plan = _plan(source_from_spec(url, layout="olist", schema=schema))
    try:
        text = " ".join(body for _, body in plan.ctes)
    finally:
        plan.engine.close()
    return "GROUP BY order_id" not in text and "GROUP BY KEY_TEXT(customer_id)" not in text


def test_olist_layout_equals_the_folder(tables, sample_folder):
    kind, url, engine, load = tables
    schema = f"s_{uuid.uuid4().hex[:8]}"
    with engine.begin() as con:
        con.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        for stem, dates in (
            ("olist_orders_dataset", ["order_purchase_timestamp"]),
            ("olist_order_payments_dataset", []),
            ("olist_customers_dataset", []),
        ):
            frame = pd.read_csv(sample_folder / f"{stem}.csv", parse_dates=dates)
            if stem == "olist_orders_dataset":  # an order of an unknown status and one not delivered stay out
                frame.loc[frame.index[:3], "order_status"] = " Delivered "
            frame.to_sql(stem, engine, schema=schema, index=False)
        folder_copy = sample_folder
        from_db = load_rfm(source_from_spec(url, layout="olist", schema=schema))
        from_folder = load_rfm(source_from_spec(folder_copy))
        _same(from_db, from_folder)
        assert from_db.excluded.get("not_delivered", 0) > 0
        assert not _keyed(url, schema)
        # ids declared primary keys are read as they are, not grouped (PostgreSQL): the same answer
        length = "" if kind == "postgresql" else "(64)"  # MariaDB keys a text column by a prefix
        with engine.begin() as con:
            con.exec_driver_sql(f"ALTER TABLE {schema}.olist_orders_dataset ADD PRIMARY KEY (order_id{length})")
            con.exec_driver_sql(f"ALTER TABLE {schema}.olist_customers_dataset ADD PRIMARY KEY (customer_id{length})")
        assert _keyed(url, schema) == (kind == "postgresql")
        _same(load_rfm(source_from_spec(url, layout="olist", schema=schema)), from_folder)
        if kind == "postgresql":  # a child table's rows are read too, and the key does not cover them
            with engine.begin() as con:
                con.exec_driver_sql(f"CREATE TABLE {schema}.more_orders () INHERITS ({schema}.olist_orders_dataset)")
                con.exec_driver_sql(
                    f"INSERT INTO {schema}.more_orders SELECT * FROM {schema}.olist_orders_dataset LIMIT 5"
                )
            assert not _keyed(url, schema)
            _same(load_rfm(source_from_spec(url, layout="olist", schema=schema)), from_folder)
    finally:
        with engine.begin() as con:
            con.exec_driver_sql(f"DROP SCHEMA {schema} {'CASCADE' if kind == 'postgresql' else ''}")


def test_ids_never_repeat_only_under_a_plain_primary_key(tables):
    kind, url, engine, load = tables
    names = {case: f"k_{case}_{uuid.uuid4().hex[:8]}" for case in ("pk", "unique", "float", "pair", "parent")}
    text = "TEXT" if kind == "postgresql" else "VARCHAR(40)"
    statements = [
        f"CREATE TABLE {names['pk']} (order_id {text} PRIMARY KEY, x INTEGER)",
        f"CREATE TABLE {names['unique']} (order_id {text} UNIQUE, x INTEGER)",
        f"CREATE TABLE {names['float']} (order_id DOUBLE PRECISION PRIMARY KEY, x INTEGER)",
        f"CREATE TABLE {names['pair']} (order_id {text}, x INTEGER, PRIMARY KEY (order_id, x))",
        f"CREATE TABLE {names['parent']} (order_id {text} PRIMARY KEY, x INTEGER)",
    ]
    if kind == "postgresql":
        statements.append(f"CREATE TABLE {names['parent']}_child () INHERITS ({names['parent']})")
    with engine.begin() as con:
        for sql in statements:
            con.exec_driver_sql(sql)
    try:
        from segmentation.data.database_engine import DatabaseEngine  # lazy: opens a connection

        db = DatabaseEngine(url)
        try:
            found = {case: db.ids_never_repeat(name, None, "order_id") for case, name in names.items()}
        finally:
            db.close()
        expected = {"pk": kind == "postgresql", "unique": False, "float": False, "pair": False, "parent": False}
        assert found == expected
    finally:
        with engine.begin() as con:
            if kind == "postgresql":
                con.exec_driver_sql(f"DROP TABLE IF EXISTS {names['parent']}_child")
            for name in names.values():
                con.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")


def test_bad_sources_are_one_clear_line(tables):
    kind, url, engine, load = tables
    name = load(_transactions().head(50))
    host_url = url.replace("://", "://nobody:s3cret-pw@", 1) if "@" not in url else url
    port = "5432" if kind == "postgresql" else "3306"
    cases = [
        (source_from_spec(url, table="no_such_table", **FLAGS), "the query failed"),
        (source_from_spec(url, table=name, **{**FLAGS, "amount_col": "nope"}), "no column 'nope'"),
        (source_from_spec(url, query="SELECT * FROM nowhere_at_all", **FLAGS), "the query failed"),
        (source_from_spec(url, query="SELEC broken", **FLAGS), "the query failed"),
        (
            source_from_spec(host_url.replace(f":{port}", ":1").replace("127.0.0.1", "127.0.0.1"), table=name, **FLAGS),
            "cannot connect",
        ),
    ]
    for source, expected in cases:
        with pytest.raises(DataError) as info:
            load_rfm(source)
        message = str(info.value)
        assert expected in message, message
        assert "\n" not in message and "s3cret-pw" not in message and "Traceback" not in message


def test_training_from_a_database_masks_the_password(tables, tmp_path, monkeypatch):
    kind, url, engine, load = tables
    name = load(_transactions(seed=11, n=4_000))
    if kind == "postgresql":  # trust authentication: the password is accepted and ignored
        with_password = url.replace("postgres@", "postgres:hunter2-secret@", 1)
    else:
        with_password = url.replace("root@", "root:@", 1)  # MariaDB's root has an empty password here
    art = tmp_path / "art"
    r = run_cli(
        "--artifacts", str(art), "-q", "train", "--k", "6", "--json", "--data", with_password, "--table", name,
        "--customer-col", "Customer", "--order-col", "order_no", "--date-col", "created_at", "--amount-col", "total",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert "hunter2" not in r.out + r.err
    info = json.loads(r.out)
    assert info["customers"] > 250 and "***" not in url
    stored = b"".join(p.read_bytes() for p in art.rglob("*") if p.is_file())
    assert b"hunter2" not in stored
    r = run_cli("--artifacts", str(art), "model", "--json")
    assert r.code == 0 and "hunter2" not in r.out


def test_flags_that_do_not_fit_a_database(server):
    kind, url, engine = server
    for kwargs, expected in (
        ({}, "give --table"),
        ({"table": "t", "query": "SELECT 1"}, "give --table"),
        ({"table": "t", "date_format": "%d/%m/%Y", **FLAGS}, "--date-format applies to files"),
        ({"query": "SELECT 1", "schema": "s", **FLAGS}, "--schema goes with --table"),
        ({"layout": "olist", "table": "t"}, "--layout olist reads the three Olist tables"),
        ({"table": "t"}, "--customer-col and --date-col are required"),
    ):
        with pytest.raises((DataError, InputError), match=expected):
            source_from_spec(url, **kwargs)


def test_a_database_without_a_hash_here_reads_every_customer_instead_of_failing():
    """The windows of a large shop are read from a hash sample of its customers; a warehouse
    whose hash the product does not know is read whole (no bucket condition), not a KeyError."""
    from segmentation.data.database_engine import DatabaseEngine

    engine = DatabaseEngine.__new__(DatabaseEngine)  # the conditions only: no connection needed
    engine.dialect = "snowflake"
    assert engine.bucket("customer_id", 4, 0) is None and engine.bucket_of("customer_id", 4) is None
    engine.dialect = "mysql"
    assert engine.bucket("customer_id", 4, 3) == "CRC32(customer_id) % 4 = 3"


def test_masking():
    from segmentation.data.urls import mask_text

    assert mask("postgresql://shop:p%40ss@db:5432/shop") == "postgresql://shop:***@db:5432/shop"
    assert mask("postgresql://u:my@secret@127.0.0.1/test") == "postgresql://u:***@127.0.0.1/test"
    assert "TOPSECRET" not in mask("postgresql://u@h/test?password=TOPSECRET&sslmode=require")
    assert "sslmode=require" in mask("postgresql://u@h/test?password=TOPSECRET&sslmode=require")
    with pytest.raises(DataError) as info:  # a mistyped URL is taken for a path: still masked
        source_from_spec("postgresql:/u:TOPSECRET@h/db")
    assert "TOPSECRET" not in str(info.value)
    assert "TOPSECRET" not in mask_text("retraining on mysql://u:TOPSECRET@h/db --table t")
    assert mask("mysql://root@localhost/test") == "mysql://root@localhost/test"
    src = DatabaseSource("postgresql://u:topsecret@h/db", table="orders")
    assert "topsecret" not in repr(src) and "topsecret" not in src.describe()
    with pytest.raises(DataError, match="unknown database type 'oracle'") as info:
        resolve_url("oracle://u:topsecret@h/db")
    assert "topsecret" not in str(info.value)


def test_the_shops_own_tables_and_odd_values_are_safe(tables, tmp_path):
    """Tables named like the product's temporary ones survive; a % in a query is SQL, not a
    placeholder; ids such as NA or NULL are ids."""
    kind, url, engine, load = tables
    df = _transactions(seed=2, n=400)
    df.loc[df.index[:30], "Customer"] = "NA"
    df.loc[df.index[30:60], "Customer"] = "NULL"
    name = load(df, name=f"daily_{uuid.uuid4().hex[:6]}")
    keep = load(pd.DataFrame({"x": [1]}), name="segment_daily") if kind == "mariadb" else None
    path = tmp_path / "x.parquet"
    df.to_parquet(path, index=False)
    got = load_rfm(source_from_spec(url, table=name, **FLAGS))
    _same(got, load_rfm(source_from_spec(path, **FLAGS)))
    assert {"NA", "NULL"} <= set(got.frame["customer_id"])
    like = load_rfm(source_from_spec(url, query=f"SELECT * FROM {name} WHERE order_no LIKE 'O%' -- all", **FLAGS))
    assert like.customers == got.customers
    if keep:
        with engine.connect() as con:
            assert con.exec_driver_sql("SELECT x FROM segment_daily").scalar() == 1


def _scores_equal(got, served, rfm) -> None:
    """A source scored inside its engine against its RFM scored by NumPy: same sizes, flags and rows."""
    expected = served.score(rfm.frame)
    k = len(served.trained.model.cluster_centers_)
    np.testing.assert_array_equal(got.counts, np.bincount(expected.labels, minlength=k))
    np.testing.assert_array_equal(got.at_risk_counts, np.bincount(expected.labels[expected.at_risk], minlength=k))
    assert got.customers == len(rfm.frame) and got.latest_purchase == rfm.latest_purchase
    assert got.at_risk.past_spend == pytest.approx(float(rfm.frame["monetary"][expected.at_risk].sum()), abs=0.005)
    summary = served.at_risk(expected)
    assert got.at_risk.revenue == pytest.approx(summary.revenue, rel=1e-9)  # expected revenue at stake
    assert got.at_risk.all_revenue == pytest.approx(summary.all_revenue, rel=1e-9)
    want = rfm.frame[expected.at_risk].assign(cluster=expected.labels[expected.at_risk]).sort_values("customer_id")
    rows = got.at_risk_rows
    assert list(rows["customer_id"]) == list(want["customer_id"])
    for col in ("recency", "frequency", "occasions", "cluster"):
        np.testing.assert_array_equal(rows[col].to_numpy(), want[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(rows["monetary"].to_numpy(), want["monetary"].to_numpy(), atol=0.005)
    np.testing.assert_allclose(rows["gap"].to_numpy(), want["gap"].to_numpy(), equal_nan=True)
    np.testing.assert_allclose(
        rows["chance"].to_numpy(),
        expected.chance[expected.at_risk][
            np.argsort(rfm.frame["customer_id"][expected.at_risk].to_numpy(), kind="stable")
        ],
        rtol=1e-9,
    )


@pytest.mark.parametrize("sessions", ["1", "3"])
def test_scoring_inside_the_database_equals_scoring_its_rfm(tables, tmp_path, monkeypatch, sessions):
    """A digest's scoring, pushed down (one statement per connection, customers split by a hash of
    their id over SEGMENT_DB_SESSIONS connections), gives what NumPy gives on the RFM, on messy
    order lines and on rows that are orders, as of a date with later orders left out."""
    from segmentation.serving.service import SegmentService
    from segmentation.serving.store import ModelStore
    from segmentation.serving.training import train

    kind, url, engine, load = tables
    df = _transactions(seed=11, n=4_000)
    path = tmp_path / "sales.parquet"
    df.to_parquet(path, index=False)
    name = load(df)
    store = ModelStore(tmp_path / "models")
    train(source_from_spec(path, **FLAGS), store, k=8)
    served = SegmentService(store).served()
    monkeypatch.setattr(runtime, "_current", runtime.Runtime(db_sessions=int(sessions)))
    as_of = dt.date(2024, 5, 20)
    each_row = dict(customer_col="Customer", date_col="created_at", amount_col="total")
    for flags in (FLAGS, each_row):
        rfm = load_rfm(source_from_spec(path, **flags), as_of)
        got = served.score_source(source_from_spec(url, table=name, **flags), as_of)
        assert got.at_risk.customers > 0 and got.snapshot_date == as_of
        _scores_equal(got, served, rfm)
        _scores_equal(served.score_source(source_from_spec(path, **flags), as_of), served, rfm)  # the file, in DuckDB


def test_one_connection_or_two_read_the_same(tables, tmp_path, monkeypatch):
    """Training reads a database on two connections at once (the exclusions and gaps beside the
    per-customer rows) or, with SEGMENT_DB_SESSIONS=1, from one materialised per-day table: the
    same RFM, exclusions and gaps either way, as of a date too."""
    kind, url, engine, load = tables
    df = _transactions(seed=21)
    name = load(df)
    for as_of in (None, dt.date(2024, 2, 1)):
        monkeypatch.setattr(runtime, "_current", runtime.Runtime(db_sessions=2))
        two = load_rfm(source_from_spec(url, table=name, **FLAGS), as_of)
        monkeypatch.setattr(runtime, "_current", runtime.Runtime(db_sessions=1))
        one = load_rfm(source_from_spec(url, table=name, **FLAGS), as_of)
        _same(one, two)
        assert two.excluded and two.gaps.customers > 0


def test_postgresql_reads_the_per_customer_table_back_byte_for_byte(server, tmp_path):
    """PostgreSQL's personas read training's per-customer table by COPY instead of scoring every
    customer again: ids with commas, quotes, new lines, spaces and accents arrive unchanged,
    and compare byte by byte with the shop's own ids; MariaDB scores again (None)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segmentation.data.database_engine import DatabaseEngine

    kind, url, _ = server
    ids = ["a,b", 'q"uote', "two\nlines", " spaced ", "çà", "NULL", "B", "b", "x" * 300]
    path = tmp_path / "labels.parquet"
    pq.write_table(
        pa.table({"customer_id": ids, "cluster": list(range(len(ids))), "at_risk": [False] * len(ids)}), path
    )
    engine = DatabaseEngine(url)
    try:
        relation = engine.staged_relation(path)
        if kind != "postgresql":
            assert relation is None
            return
        back = engine.table(f"SELECT customer_id, cluster FROM {relation} ORDER BY cluster")
        assert back.column("customer_id").to_pylist() == ids and back.column("cluster").to_pylist() == list(range(9))
        # ordered byte by byte, as the ids of the shop's tables are (BINARY_TEXT)
        ordered = engine.table(f"SELECT cluster FROM {relation} ORDER BY customer_id").column("cluster").to_pylist()
        assert ordered == sorted(range(9), key=lambda i: ids[i].encode())
        # and they meet the shop's own ids, read as training reads them, exactly once each
        shop = pd.DataFrame({"customer_id": ids[::-1], "spend": range(9)})
        shop.to_sql("staged_ids_shop", server[2], index=False, if_exists="replace")
        try:
            met = engine.table(
                f"SELECT s.spend, l.cluster FROM (SELECT BINARY_TEXT(NULLIF(TRIM(CAST(customer_id AS VARCHAR)), '')) "
                f"AS customer_id, spend FROM staged_ids_shop) AS s JOIN {relation} AS l ON s.customer_id = l.customer_id"
            )
            pairs = sorted(zip(met.column("spend").to_pylist(), met.column("cluster").to_pylist()))
            # " spaced " is trimmed as every source's ids are: it meets no staged id, as training's own table has none
            assert pairs == sorted((8 - i, i) for i in range(9) if ids[i] != " spaced ")
        finally:
            with server[2].begin() as con:
                con.exec_driver_sql("DROP TABLE staged_ids_shop")
    finally:
        engine.close()


def test_personas_from_the_database_equal_the_folders(tables, sample_folder, tmp_path, monkeypatch):
    """The Olist layout's six tables in a schema, and a transactions table with --category-col:
    the personas computed inside the database (one statement; the segments read back from
    training's per-customer table on PostgreSQL, scored by the compiled model on MariaDB) equal
    the file path's."""
    from segmentation.serving.store import ModelStore
    from segmentation.serving.training import train

    kind, url, engine, load = tables
    schema = f"s_{uuid.uuid4().hex[:8]}"
    with engine.begin() as con:
        con.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        for stem in (
            "olist_orders_dataset",
            "olist_order_payments_dataset",
            "olist_customers_dataset",
            "olist_order_items_dataset",
            "olist_products_dataset",
            "product_category_name_translation",
        ):
            dates = ["order_purchase_timestamp"] if stem == "olist_orders_dataset" else []
            frame = pd.read_csv(sample_folder / f"{stem}.csv", parse_dates=dates, encoding="utf-8-sig")
            frame.to_sql(stem, engine, schema=schema, index=False, chunksize=2_000, method="multi")
        _, from_folder = train(source_from_spec(sample_folder), ModelStore(tmp_path / "f"), k=8)
        from segmentation.data.database_engine import DatabaseEngine

        read_back: list[str | None] = []
        staged = DatabaseEngine.staged_relation
        monkeypatch.setattr(
            DatabaseEngine, "staged_relation", lambda self, path: read_back.append(staged(self, path)) or read_back[-1]
        )
        for sessions in ("2", "1"):
            monkeypatch.setattr(runtime, "_current", runtime.Runtime(db_sessions=int(sessions)))
            _, from_db = train(
                source_from_spec(url, layout="olist", schema=schema), ModelStore(tmp_path / f"db{sessions}"), k=8
            )
            assert [s.name for s in from_db.segments] == [s.name for s in from_folder.segments]
            for a, b in zip(from_db.segments, from_folder.segments):
                assert a.persona is not None and b.persona is not None
                assert [c.label for c in a.persona.categories] == [c.label for c in b.persona.categories]
                np.testing.assert_allclose(
                    [c.share for c in a.persona.categories], [c.share for c in b.persona.categories]
                )
                assert a.persona.payment.label == b.persona.payment.label
                assert a.persona.payment.share == pytest.approx(b.persona.payment.share, rel=1e-12)
                assert a.persona.instalments == b.persona.instalments and a.persona.states == b.persona.states
        # PostgreSQL read training's labels back instead of scoring every customer again
        if kind == "postgresql":
            assert read_back == ["segment_staged_labels"] * 2
        else:
            assert not any(read_back)
    finally:
        with engine.begin() as con:
            con.exec_driver_sql(f"DROP SCHEMA {schema} {'CASCADE' if kind == 'postgresql' else ''}")
    df = _transactions(seed=4, n=3_000)
    df["genre"] = np.random.default_rng(1).choice(["a", "b", "c", None], size=len(df))
    path = tmp_path / "lines.parquet"
    df.to_parquet(path, index=False)
    name = load(df)
    flags = dict(FLAGS, category_col="genre")
    _, from_db = train(source_from_spec(url, table=name, **flags), ModelStore(tmp_path / "tdb"), k=6)
    _, from_file = train(source_from_spec(path, **flags), ModelStore(tmp_path / "tf"), k=6)
    for a, b in zip(from_db.segments, from_file.segments):
        assert [c.label for c in a.persona.categories] == [c.label for c in b.persona.categories]
        np.testing.assert_allclose([c.share for c in a.persona.categories], [c.share for c in b.persona.categories])
    # segments over personas.SAMPLE customers are described from a sample, by the database's own hash
    from segmentation.model import personas as persona_mod

    monkeypatch.setattr(persona_mod, "SAMPLE", 150)
    _, sampled = train(source_from_spec(url, table=name, **flags), ModelStore(tmp_path / "tdbs"), k=6)
    assert any(s.persona.sampled for s in sampled.segments)
    for a, b in zip(sampled.segments, from_file.segments):
        if a.customers <= 150:
            # described whole (only the lifts' yardstick, the whole shop, is estimated)
            assert a.persona.sampled is None
            assert [(c.label, pytest.approx(c.share)) for c in a.persona.categories] == [
                (c.label, c.share) for c in b.persona.categories
            ]
            continue
        assert 75 <= a.persona.sampled <= min(300, a.customers)  # about 150
        exact = {c.label: c.share for c in b.persona.categories}
        for c in a.persona.categories:  # three genres in even shares: near the whole segment's
            assert c.label in exact and c.share == pytest.approx(exact[c.label], abs=0.15)


def _backtest_figures(bt):
    return [
        (
            r.cutoff,
            r.customers,
            r.returned,
            r.terms,
            [(s.name, s.customers, s.future.returned) for s in r.segments],
            {k: None if v is None else round(v, 12) for k, v in r.auc.items()},
        )
        for r in bt.results
    ]


def test_backtest_on_the_database_equals_the_file(tables, tmp_path, monkeypatch):
    """``segment backtest`` reads the database as training does (two connections, or one
    materialised per-day table): the same cut-offs, customers, segments and AUCs as the file."""
    from segmentation.analysis import backtest

    kind, url, engine, load = tables
    df = _transactions(seed=13, n=5_000)
    path = tmp_path / "sales.parquet"
    df.to_parquet(path, index=False)
    name = load(df)
    on_file = backtest.run(source_from_spec(path, **FLAGS), horizon=60, cutoffs=2)
    assert on_file.results
    for sessions in ("2", "1"):
        monkeypatch.setattr(runtime, "_current", runtime.Runtime(db_sessions=int(sessions)))
        in_db = backtest.run(source_from_spec(url, table=name, **FLAGS), horizon=60, cutoffs=2)
        assert _backtest_figures(in_db) == _backtest_figures(on_file)


def test_olist_layout_for_a_user_who_may_only_read(sample_folder, tmp_path):
    """A training pass keeps PostgreSQL's joined Olist orders in a temporary table; a role that
    may not create one (TEMP revoked) is read as a plain table is: each statement on its own."""
    from segmentation.data.sources import opened

    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs TEST_DATABASE_URL")
    url = _plain(url)
    admin = sa.create_engine(resolve_url(url)[0], poolclass=sa.pool.NullPool, isolation_level="AUTOCOMMIT")
    tag = uuid.uuid4().hex[:8]
    database, role = f"ro_{tag}", f"ro_{tag}"
    with admin.connect() as con:
        con.exec_driver_sql(f"CREATE DATABASE {database}")
        con.exec_driver_sql(f"REVOKE TEMPORARY ON DATABASE {database} FROM PUBLIC")
        con.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    own_url = url.rsplit("/", 1)[0] + f"/{database}"
    own = sa.create_engine(resolve_url(own_url)[0], poolclass=sa.pool.NullPool)
    try:
        for stem, dates in (
            ("olist_orders_dataset", ["order_purchase_timestamp"]),
            ("olist_order_payments_dataset", []),
            ("olist_customers_dataset", []),
        ):
            pd.read_csv(sample_folder / f"{stem}.csv", parse_dates=dates).to_sql(stem, own, index=False)
        with own.begin() as con:
            con.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        reader = own_url.replace("://postgres@", f"://{role}@", 1)
        folder = load_rfm(source_from_spec(sample_folder))
        for who, keeps in ((own_url, True), (reader, False)):
            with opened(source_from_spec(who, layout="olist"), None, personas=True) as training_pass:
                _same(training_pass.rfm(), folder)
                assert training_pass.direct is not keeps
        r = run_cli("--artifacts", str(tmp_path), "-q", "train", "--data", reader, "--layout", "olist", "--k", "6")
        assert r.code == 0, r.err
    finally:
        own.dispose()
        with admin.connect() as con:
            con.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            con.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()
