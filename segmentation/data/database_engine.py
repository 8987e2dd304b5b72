"""PostgreSQL, MySQL/MariaDB and other SQLAlchemy databases: the product's SQL compiled to their dialect, rows fetched in batches."""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segmentation.data.engines import FETCH_ROWS, _sessions_setting, _sql, first_line, query_errors
from segmentation.data.frames import staged_batches
from segmentation.data.sqltext import ident
from segmentation.data.urls import SCHEMES, mask, mask_text, resolve_url
from segmentation.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa


# A share of the customers by a hash of their id, in each engine's own function (not compiled:
# SQLGlot passes these calls through unchanged).
_BUCKETS = {
    "postgres": "(HASHTEXT({x}) & 2147483647) % {n}",
    "mysql": "CRC32({x}) % {n}",
}


# the id types whose text is the value: two different ids are two different texts
_PLAIN_KEY_TYPES = frozenset({"text", "character varying", "character", "integer", "bigint", "smallint", "uuid"})


class DatabaseEngine:
    def __init__(self, url: str):
        import sqlalchemy as sa

        self.where = mask(url)
        self._password = _password(url)
        sa_url, self.dialect = resolve_url(url)
        try:
            self.engine = sa.create_engine(sa_url, poolclass=sa.pool.NullPool)
        except ModuleNotFoundError as exc:
            base = url.split("://", 1)[0].split("+", 1)[0].lower()
            package = SCHEMES.get(base, ("", "", exc.name or "its driver"))[2]
            raise DataError(f"{self.where}: the database driver is not installed (pip install '{package}')") from None
        except Exception as exc:  # a malformed URL
            raise DataError(f"{self.where}: not a usable database URL ({self._scrub(first_line(exc))})") from None
        self.con = None
        try:
            # autocommit: every statement is its own transaction, so no read holds a lock on the
            # shop's tables (MySQL keeps a metadata lock until the transaction ends); the
            # temporary tables live as long as the connection
            # no_parameters: a % in a user's query or a column name is sent as is, never taken
            # for a driver placeholder
            self.con = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT", no_parameters=True)
            session = {
                # work_mem: the per-customer aggregation hashes in memory instead of sorting on disk;
                # enable_nestloop: these statements join whole tables, and PostgreSQL's row
                # estimates for grouped or filtered subqueries are guesses (200, or 1 after a few
                # filters): a nested loop chosen on such a guess turned a 40 ms join into 11 s;
                # enable_indexscan: every statement reads whole tables, and a primary key on
                # random ids tempted PostgreSQL to read them in key order through the index, a
                # random heap read per row (3M Olist-layout orders: 49 s instead of 33)
                "postgres": [
                    "SET TIME ZONE 'UTC'",
                    # COPY's text in and out is UTF-8, whatever the database's own encoding
                    "SET client_encoding = 'UTF8'",
                    "SET work_mem = '128MB'",
                    "SET enable_nestloop = off",
                    "SET enable_indexscan = off",
                ],
                "mysql": ["SET time_zone = '+00:00'"],
            }.get(self.dialect, [])
            for statement in session:
                self.con.exec_driver_sql(statement)
            if self.dialect == "postgres":
                # JIT spent 1.6-2.6 s compiling each of these queries' expressions at 10M orders
                # (EXPLAIN ANALYZE) for no measurable gain; servers before PostgreSQL 11 lack it
                with contextlib.suppress(Exception):
                    self.con.exec_driver_sql("SET jit = off")
            if self.dialect == "mysql":
                # MariaDB joins its grouped derived tables by nested loops unless hash joins are
                # allowed (the Olist layout's joins: 6 s instead of a fraction of one for 6,000
                # orders); MySQL 8 has them by default and no such variable
                with contextlib.suppress(Exception):
                    self.con.exec_driver_sql("SET SESSION join_cache_level = 4")
        except Exception as exc:
            self.close()
            raise DataError(f"{self.where}: cannot connect ({self._scrub(_db_message(exc))})") from None

    def prepare_scoring(self, sessions: int = 1, few_groups: bool = False) -> None:
        """MariaDB/MySQL would inline the compiled model's derived tables into one expression per
        reference (slow to plan and run); materialising them keeps the scoring query linear.
        ``few_groups``: PostgreSQL cannot estimate how few groups a GROUP BY over a union makes
        (it guessed 8M for the personas' 450) and sorted 9.4M rows to group them; told not to
        sort where it can hash, it hashes (3M Olist-layout orders: that statement 18.7 -> 8.0 s)."""
        if self.dialect == "mysql" and self.con is not None:
            with self._errors():
                self.con.exec_driver_sql("SET SESSION optimizer_switch = 'derived_merge=off'")
        if self.dialect == "postgres" and self.con is not None and few_groups:
            with self._errors():
                self.con.exec_driver_sql("SET enable_sort = off")
        if self.dialect == "postgres" and self.con is not None and sessions > 1:
            # the sessions are the parallelism: PostgreSQL's own parallel workers on top of them
            # would only compete for the same cores (10M orders on 2 cores: 23 s instead of 28)
            with self._errors():
                self.con.exec_driver_sql("SET max_parallel_workers_per_gather = 0")

    def sessions(self) -> int:
        """PostgreSQL aggregates on one core after its parallel scan, and MySQL runs a statement on
        one core: scoring splits the customers over this many connections at once."""
        return _sessions_setting() if self.dialect in _BUCKETS else 1

    def bucket(self, column: str, buckets: int, bucket: int) -> str | None:
        """A condition keeping one share of the customers, by a hash of their id; None (keep
        them all) where the database has no hash function here. Only the windows' sample asks
        such a database: scoring splits over several sessions only where there is a hash."""
        form = self.bucket_of(column, buckets)
        return None if form is None else f"{form} = {bucket}"

    def bucket_of(self, column: str, buckets: int) -> str | None:
        """Each customer's bucket, 0 to ``buckets`` - 1, by a hash of their id; None where the
        database has no hash function here (a warehouse reached by another SQLAlchemy driver)."""
        form = _BUCKETS.get(self.dialect)
        return None if form is None else form.format(x=column, n=buckets)

    def _scrub(self, text: str) -> str:
        if self._password:
            from urllib.parse import unquote

            for form in {self._password, unquote(self._password)}:
                text = text.replace(form, "***")
        return mask_text(text)

    def _errors(self):
        # autocommit: a failed statement leaves no transaction to roll back
        return query_errors(self.where, lambda exc: self._scrub(_db_message(exc)))

    def table(self, sql: str, relation: str | None = None) -> pa.Table:
        text = _sql(sql, self.dialect, relation)
        assert self.con is not None
        import pyarrow as pa

        if self.dialect == "postgres" and _psycopg(self.con.connection.driver_connection):
            with self._errors():
                return self._copy_table(text)
        with self._errors():
            result = self.con.execution_options(stream_results=True).exec_driver_sql(text)
            names = list(result.keys())
            parts = []
            while True:
                rows = result.fetchmany(FETCH_ROWS)
                if not rows:
                    break
                columns = [_column([row[i] for row in rows]) for i in range(len(names))]
                parts.append(pa.table(columns, names=names))
            result.close()
        if not parts:
            return pa.table({n: pa.array([], pa.null()) for n in names})
        return pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]

    def limited(self, share: float) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # its memory is the server's own

    def batches(self, sql: str, relation: str | None = None) -> pa.RecordBatchReader:
        """The whole result (``table``), batch by batch."""
        import pyarrow as pa

        result = self.table(sql, relation)
        return pa.RecordBatchReader.from_batches(result.schema, result.to_batches())

    def materialise(self, name: str, sql: str, relation: str | None = None) -> None:
        """A temporary table of the query's result, private to this connection."""
        text = _sql(sql, self.dialect, relation)
        assert self.con is not None
        with self._errors():
            self.con.exec_driver_sql(f"CREATE TEMPORARY TABLE {name} AS {text}")
            if self.dialect == "postgres":
                # autovacuum never sees temporary tables: without statistics the planner takes 9M
                # customers for 200 groups and hashes them in many spilled batches (30 s instead of 10)
                self.con.exec_driver_sql(f"ANALYZE {name}")

    def staged_relation(self, path: Path) -> str | None:
        """Training's per-customer table (a Parquet file: ``customer_id``, ``cluster``) copied
        into a temporary table, its name returned; None where only scoring again reaches the
        segments (every database but PostgreSQL through psycopg). PostgreSQL's COPY takes 2.8M
        customers in about a second, where scoring them again took 9 s."""
        assert self.con is not None
        raw: Any = self.con.connection.driver_connection
        if self.dialect != "postgres" or not _psycopg(raw):
            return None
        import pyarrow.csv as pacsv

        name = "segment_staged_labels"
        with self._errors():
            # the id compared byte by byte, as BINARY_TEXT gives it to the tables it meets
            self.con.exec_driver_sql(f'CREATE TEMPORARY TABLE {name} (customer_id TEXT COLLATE "C", cluster INTEGER)')
            with raw.cursor() as cur, cur.copy(f"COPY {name} FROM STDIN (FORMAT csv)") as copy:
                for batch in staged_batches(path):
                    buffer = io.BytesIO()
                    pacsv.write_csv(batch, buffer, pacsv.WriteOptions(include_header=False))
                    copy.write(buffer.getvalue())
            self.con.exec_driver_sql(f"ANALYZE {name}")
        return name

    def _copy_table(self, text: str) -> pa.Table:
        """PostgreSQL: the result streamed with COPY as CSV into a temporary file and parsed by
        Arrow, several times faster than fetching rows as Python tuples, in bounded memory."""
        import pyarrow as pa
        import pyarrow.csv as pacsv

        assert self.con is not None
        raw: Any = self.con.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute(f"SELECT * FROM ({text}) AS q LIMIT 0")
            described = cur.description or []
        names = [d.name for d in described]
        # every column typed from the result's own description: Arrow's type inference would
        # keep candidate parses of every value and double the memory for 9M customers
        known = {25: pa.string(), 1043: pa.string(), 1042: pa.string(), 19: pa.string()}  # text, varchar, char, name
        known |= {20: pa.int64(), 21: pa.int16(), 23: pa.int32(), 700: pa.float32(), 701: pa.float64()}
        types = {d.name: known[d.type_code] for d in described if d.type_code in known}
        with tempfile.TemporaryFile() as fh:
            with raw.cursor() as cur, cur.copy(f"COPY ({text}) TO STDOUT (FORMAT csv)") as copy:
                for chunk in copy:
                    fh.write(chunk)
            if not fh.tell():
                return pa.table({n: pa.array([], pa.null()) for n in names})
            fh.seek(0)
            table = pacsv.read_csv(
                fh,
                read_options=pacsv.ReadOptions(column_names=names),
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                # PostgreSQL writes NULL as an unquoted empty field and nothing else: an id such
                # as "NA" or "NULL" is a value
                convert_options=pacsv.ConvertOptions(
                    column_types=types,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
        return table

    def one(self, sql: str, relation: str | None = None) -> tuple[Any, ...]:
        text = _sql(sql, self.dialect, relation)
        assert self.con is not None
        with self._errors():
            row = self.con.exec_driver_sql(text).fetchone()
        return tuple(row) if row is not None else ()

    def may_keep(self) -> bool:
        """Whether this user may create temporary tables (a read-only role may not)."""
        try:
            assert self.con is not None
            self.con.exec_driver_sql("CREATE TEMPORARY TABLE segment_probe (x INTEGER)")
            self.con.exec_driver_sql("DROP TABLE segment_probe")
            return True
        except Exception:
            return False

    def is_key(self, table: str, schema: str | None, column: str) -> bool:
        """Whether the database declares ``column`` of ``table`` unique on its own (a primary
        key, a unique constraint or a unique index): then every row is its own order. Only an
        optimisation: any doubt (no such metadata, no permission) answers False."""
        import sqlalchemy as sa

        assert self.con is not None
        try:
            inspector = sa.inspect(self.con)
            keys: list[Any] = [inspector.get_pk_constraint(table, schema=schema).get("constrained_columns") or []]
            keys += [u.get("column_names") or [] for u in inspector.get_unique_constraints(table, schema=schema)]
            keys += [
                i.get("column_names") or [] for i in inspector.get_indexes(table, schema=schema) if i.get("unique")
            ]
        except Exception:
            return False
        return [column] in [list(k) for k in keys]

    def ids_never_repeat(self, table: str, schema: str | None, column: str) -> bool:
        """PostgreSQL: ``column`` is ``table``'s primary key on its own, ``table`` is a plain
        table without child tables (a query reads the rows of tables that INHERIT it, which its
        key does not cover) and the id is of a type whose text is the value itself (text,
        integers, uuid: not a float, printed to fewer digits than it holds). Then no two rows of
        ``table`` give the same id as text. One catalogue query; any doubt answers False."""
        if self.dialect != "postgres":
            return False
        import sqlalchemy as sa

        assert self.con is not None
        name = f"{ident(schema)}.{ident(table)}" if schema else ident(table)
        sql = """
            SELECT c.relkind, format_type(a.atttypid, NULL),
                   EXISTS (SELECT 1 FROM pg_inherits AS i WHERE i.inhparent = c.oid),
                   EXISTS (SELECT 1 FROM pg_index AS x
                           WHERE x.indrelid = c.oid AND x.indisprimary AND x.indnkeyatts = 1
                             AND x.indkey[0] = a.attnum)
            FROM pg_class AS c JOIN pg_attribute AS a ON a.attrelid = c.oid
            WHERE c.oid = to_regclass(:name) AND a.attname = :col AND NOT a.attisdropped"""
        try:
            row = self.con.execute(sa.text(sql), {"name": name, "col": column}).first()
        except Exception:
            return False
        return row is not None and row[0] == "r" and row[1] in _PLAIN_KEY_TYPES and not row[2] and row[3]

    def columns(self, relation_sql: str) -> list[str]:
        assert self.con is not None
        with self._errors():
            result = self.con.exec_driver_sql(f"SELECT * FROM {relation_sql} AS q WHERE 1 = 0")
            names = list(result.keys())
            result.close()
        return names

    def release(self, small: bool = False) -> None:
        pass  # the kept tables live in the server, not in this process

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
        self.engine.dispose() if hasattr(self, "engine") else None


def _column(values: list[Any]) -> pa.Array:
    """One fetched column as Arrow: exact decimals (MySQL's sums) become doubles."""
    import decimal

    import pyarrow as pa

    if any(isinstance(v, decimal.Decimal) for v in values):
        values = [None if v is None else float(v) for v in values]
    return pa.array(values)


def _password(url: str) -> str | None:
    """The password, to scrub from drivers' messages (only when long enough not to garble them)."""
    m = re.match(r"^[A-Za-z][A-Za-z0-9+._-]*://[^:/@]*:(.*)@[^@]*$", url.split("?", 1)[0])
    return m.group(1) if m and len(m.group(1)) >= 4 else None


def _db_message(exc: BaseException) -> str:
    """The driver's own first line, without SQLAlchemy's wrapper and the statement it echoes."""
    orig = getattr(exc, "orig", None)
    text = first_line(orig if orig is not None else exc)
    return re.sub(r"^\(\d+, ['\"](.*)['\"]\)$", r"\1", text)  # PyMySQL's (1146, "Table … doesn't exist")


def _psycopg(raw: Any) -> bool:
    """Whether a PostgreSQL connection is psycopg 3's, whose COPY the fast paths use (a URL may
    name another driver, such as postgresql+psycopg2://, which then fetches rows instead)."""
    return type(raw).__module__.split(".")[0] == "psycopg"
