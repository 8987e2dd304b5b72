"""The product's SQL compiles for every engine it names, and keeps away from constructs that
transpile to different *results* (see segmentation/dialects.py)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from segmentation.data import olist_sql
from segmentation.data import relations as rel
from segmentation.data.dialects import compile_sql, with_relation
from segmentation.data.urls import WAREHOUSES
from segmentation.errors import DataError
from segmentation.model import chance, compiled
from segmentation.model.compiled import scored_ctes

SQL_FILES = [Path(rel.__file__), Path(olist_sql.__file__), Path(compiled.__file__), Path(chance.__file__)]


def _queries() -> dict[str, str]:
    files = rel.transactions_orders('"s"."t"', rel.Columns("c", "d", None, None, "q", "p"), rel.Reading())
    olist = olist_sql.olist_orders(olist_sql.OlistTables('"o"', '"p"', '"c"', rel.Reading()))
    day = dt.date(2024, 1, 1)
    valid_files = rel.transactions_valid_orders('"s"."t"', rel.Columns("c", "d", "o", "a"), rel.Reading())
    valid_olist = olist_sql.olist_valid_orders(olist_sql.OlistTables('"o"', '"p"', '"c"', rel.Reading()))
    scoring = [rel.valid_days(day, "x = 1"), rel.PER_DAY, rel.customers(day)]
    return {
        "valid transactions": rel.with_ctes([*valid_files, *scoring], "SELECT * FROM customers"),
        "valid olist": rel.with_ctes([*valid_olist, *scoring], "SELECT * FROM customers"),
        "transactions": rel.with_ctes([*files, rel.classified(day, "future_date")], rel.DAILY_SELECT),
        "olist": rel.with_ctes([*olist, rel.classified(day, "after_as_of")], rel.DAILY_SELECT),
        "rfm": rel.RFM_SELECT,
        "first returns": rel.FIRST_RETURNS_SELECT,
        "windows": rel.with_ctes([rel.per_day_until(day)], rel.windows_select([day, dt.date(2023, 6, 1)], 90, "x = 1")),
        "windows as of": rel.with_ctes([rel.per_day_until(day), rel.excluded_until(day)], rel.EXCLUDED_SELECT),
        "customers": rel.with_ctes([rel.customers(day)], "SELECT * FROM customers"),
    }


@pytest.mark.parametrize("dialect", ["duckdb", "postgres", "mysql", "spark", *sorted(set(WAREHOUSES.values()))])
def test_every_query_compiles(dialect):
    for name, sql in _queries().items():
        assert compile_sql(sql, dialect), name


def test_the_compiled_model_compiles_everywhere(trained):
    from segmentation.serving.service import SegmentService
    from segmentation.serving.store import ModelStore

    served = SegmentService(ModelStore(trained)).served()
    trained_model = served.trained
    assert trained_model.chance is not None  # the chance and the rule on it are compiled too
    ctes = [
        ("customers", "SELECT * FROM t"),
        *scored_ctes(trained_model.model, trained_model.rule, served.terms, trained_model.chance),
    ]
    sql = rel.with_ctes(ctes, rel.SCORED_TOTALS_SELECT)
    for dialect in ["duckdb", "postgres", "mysql", "spark", *sorted(set(WAREHOUSES.values()))]:
        compiled = compile_sql(sql, dialect)
        assert "LN(" in compiled.upper() or dialect == "tsql"
        # the fence that keeps PostgreSQL from inlining the model's expressions, only there
        assert ("OFFSET 0" in compiled) == (dialect == "postgres"), dialect
        assert "EXP(" in compiled.upper()


def test_the_sql_avoids_constructs_that_differ_between_engines():
    text = "\n".join(p.read_text() for p in SQL_FILES)
    assert not re.search(r"\bday\s*-\s*(LAG|MIN|MAX|day)\b", text, re.I), "date - date: use DATE_DIFF"
    assert not re.search(r"\b1\.0\s*/", text), "1.0 / n is a decimal division in MariaDB"
    assert not re.search(r"\bLOG\(", text), "LOG is base 10 in some engines: use LN"
    assert "percentile_cont" not in text.lower()


def test_a_query_that_cannot_be_said_is_one_line():
    with pytest.raises(DataError, match="cannot run this query") as info:
        compile_sql("SELECT * FROM (", "postgres")
    assert "\n" not in str(info.value)


def test_a_users_query_is_spliced_whole():
    out = with_relation("SELECT * FROM segment_source_relation_q7f3 AS src", "SELECT 1 -- a comment")
    assert out == "SELECT * FROM (\nSELECT 1 -- a comment\n) AS src"
