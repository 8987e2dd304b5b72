"""The bot's state database (SQLAlchemy Core): audit log and leases.

``DATABASE_URL`` picks the database: SQLite by default, PostgreSQL (``postgresql+psycopg://``)
for a shared deployment. Times are stored as naive UTC.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .sightings import Sightings
from .state_file import StateError, check_sqlite_file, create_sqlite_file, sqlite_pragmas

metadata = sa.MetaData()

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime, nullable=False),
    sa.Column("user_id", sa.String(64), nullable=False),
    sa.Column("command", sa.String(64), nullable=False),
    sa.Column("args", sa.Text, nullable=False, default=""),
    sa.Column("allowed", sa.Boolean, nullable=False),
    sa.Column("result", sa.Text, nullable=False),
    sa.Column("channel_id", sa.String(64), nullable=True),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(128), nullable=False),
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
)


subscriptions = sa.Table(
    "digest_subscriptions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel_id", sa.String(64), nullable=False, unique=True),
    sa.Column("cron", sa.String(128), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("schedule_text", sa.String(200), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

digest_runs = sa.Table(
    "digest_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("channel_id", sa.String(64), nullable=False),
    sa.Column("scheduled_for", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=True),
    sa.Column("status", sa.String(32), nullable=False),  # running, ok, failed, skipped
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("model_version", sa.String(32), nullable=True),
    sa.Column("latest_order", sa.Date, nullable=True),
    sa.Column("customers", sa.Integer, nullable=True),
    sa.Column("counts", sa.Text, nullable=True),  # JSON {segment name: customers}
    sa.Column("at_risk_ids", sa.LargeBinary, nullable=True),  # zlib of sorted, newline-joined ids
    sa.Column("message_ts", sa.String(32), nullable=True),
    sa.Column("runner", sa.String(128), nullable=True),  # host:pid:id of the process posting it
    sa.Column("data_source", sa.String(500), nullable=True),  # the data it was computed on
    sa.Column("at_risk_customers", sa.Integer, nullable=True),
    sa.Column("at_risk_revenue", sa.Float, nullable=True),
    sa.Column("scored_as_of", sa.Date, nullable=True),  # the day its customers were scored as of
    sa.UniqueConstraint("channel_id", "scheduled_for", name="digest_runs_once"),
)

# Who has opened the app's Home tab (and their direct-message channel with the app), so the
# tab can be published again for them when the served model changes.
home_views = sa.Table(
    "home_views",
    metadata,
    sa.Column("user_id", sa.String(64), primary_key=True),
    sa.Column("channel_id", sa.String(64), nullable=True),
    sa.Column("opened_at", sa.DateTime, nullable=False),
)

seen_requests = sa.Table(
    "seen_requests",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),  # "sig:<hex>" or "trigger:<id>"
    sa.Column("seen_at", sa.DateTime, nullable=False, index=True),
)

# Schema creation runs under this PostgreSQL advisory lock, so bots started together on an
# empty database do not race on CREATE TABLE (pg_type's unique index).
_SCHEMA_LOCK = 0x5E6_3E47


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime
    detail: dict[str, Any]


class StateDB:
    def __init__(self, url: str, engine: Engine | None = None):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            path = Path(url.removeprefix("sqlite:///"))
            check_sqlite_file(path)
            create_sqlite_file(path)
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": True}  # a server may drop idle connections
        if url.startswith("sqlite"):  # a file never does: no round of pings before each transaction
            kwargs.update(pool_pre_ping=False, connect_args={"check_same_thread": False, "timeout": 30})
        self.url = url
        try:
            self.engine = engine or sa.create_engine(url, **kwargs)
            if self.engine.dialect.name == "sqlite" and engine is None:
                sa.event.listen(self.engine, "connect", sqlite_pragmas)
            self._create_schema()
        except (SQLAlchemyError, ImportError) as exc:
            raise StateError(f"DATABASE_URL: cannot open the state database ({_one_line(exc)})") from None
        self._sightings: Sightings | None = None
        self._commits_until_forget = 0

    def _create_schema(self) -> None:
        """Create missing tables, once, even when several bots start together."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as con:  # DDL is transactional: the lock is held until commit
                con.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK})
                metadata.create_all(con)
                _upgrade(con)
            return
        for attempt in range(5):  # SQLite: another process may create a table between check and create
            try:
                with self.engine.begin() as con:
                    metadata.create_all(con)
                    _upgrade(con)
                return
            except SQLAlchemyError:
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))

    # -- audit --------------------------------------------------------------------------
    def audit(
        self, user_id: str, command: str, args: str, allowed: bool, result: str, channel_id: str | None = None
    ) -> int:
        """One row per admin-gated attempt. Text is stored as typed, except NUL (which PostgreSQL
        refuses) and other control characters, which are escaped."""
        with self.engine.begin() as con:
            key = con.execute(
                audit_log.insert().values(
                    at=utcnow(),
                    user_id=clean_text(user_id)[:64],
                    command=clean_text(command)[:64],
                    args=clean_text(args)[:500],
                    allowed=allowed,
                    result=clean_text(result)[:2000],
                    channel_id=None if channel_id is None else clean_text(channel_id)[:64],
                )
            )
        return int(key.inserted_primary_key[0]) if key.inserted_primary_key else 0

    def close_unfinished(
        self, command: str, unfinished: str, since: dt.datetime, result: str, channel_id: str | None = None
    ) -> int:
        """Give the audit rows of ``command`` still saying ``unfinished`` (started at ``since`` or
        later, in ``channel_id`` if given) their outcome, once the work they record is known to
        have stopped; returns how many."""
        where = [audit_log.c.command == command, audit_log.c.result.startswith(unfinished), audit_log.c.at >= since]
        if channel_id is not None:
            where.append(audit_log.c.channel_id == channel_id)
        with self.engine.begin() as con:
            return con.execute(audit_log.update().where(*where).values(result=clean_text(result)[:2000])).rowcount

    def audit_result(self, row: int, result: str) -> None:
        """Fill in the outcome of an attempt audited when it started (one row per attempt)."""
        with self.engine.begin() as con:
            con.execute(audit_log.update().where(audit_log.c.id == row).values(result=clean_text(result)[:2000]))

    # -- replay protection --------------------------------------------------------------
    def first_sighting(self, keys: list[str], window_seconds: float) -> bool:
        """Record ``keys``; False if any of them was recorded within the window (a replay).
        Concurrent requests share one transaction (``sightings``)."""
        if self._sightings is None or self._sightings.window != window_seconds:
            self._sightings = Sightings(lambda k: self.record_sightings(k, window_seconds), window_seconds)
        return self._sightings.first(keys)

    def record_sightings(self, keys: list[str], window_seconds: float) -> set[str]:
        """Insert ``keys`` in one transaction; returns those that were not there. Now and then
        forgets what is outside the window."""
        now = utcnow()
        insert = (sqlite_insert if self.engine.dialect.name == "sqlite" else postgresql_insert)(seen_requests)
        rows = [{"key": k[:128], "seen_at": now} for k in keys]
        with self.engine.begin() as con:
            if self._commits_until_forget <= 0:
                self._commits_until_forget = 200
                con.execute(
                    seen_requests.delete().where(
                        seen_requests.c.seen_at < now - dt.timedelta(seconds=2 * window_seconds)
                    )
                )
            self._commits_until_forget -= 1
            new = con.execute(
                insert.on_conflict_do_nothing(index_elements=["key"]).returning(seen_requests.c.key), rows
            )
            inserted = {r[0] for r in new}
        return {k for k in keys if k[:128] in inserted}

    def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.engine.connect() as con:
            rows = con.execute(audit_log.select().order_by(audit_log.c.id.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    # -- leases -------------------------------------------------------------------------
    def try_acquire(
        self, name: str, holder: str, ttl: dt.timedelta, detail: dict[str, Any] | None = None
    ) -> tuple[bool, Lease | None]:
        """Take the lease ``name`` unless someone else holds an unexpired one.

        Returns (True, lease) when taken (or already ours, then renewed), else (False, holder's lease).
        """
        now = utcnow()
        with self.engine.begin() as con:
            con.execute(leases.delete().where(leases.c.name == name, leases.c.expires_at < now))
            con.execute(
                leases.update().where(leases.c.name == name, leases.c.holder == holder).values(expires_at=now + ttl)
            )
        try:
            with self.engine.begin() as con:
                con.execute(
                    leases.insert().values(
                        name=name,
                        holder=holder,
                        acquired_at=now,
                        expires_at=now + ttl,
                        detail=json.dumps(detail or {}),
                    )
                )
        except IntegrityError:
            current = self.lease(name)
            return (current is not None and current.holder == holder), current
        return True, self.lease(name)

    def renew(self, name: str, holder: str, ttl: dt.timedelta) -> bool:
        with self.engine.begin() as con:
            n = con.execute(
                leases.update()
                .where(leases.c.name == name, leases.c.holder == holder)
                .values(expires_at=utcnow() + ttl)
            ).rowcount
        return n == 1

    def release(self, name: str, holder: str) -> None:
        with self.engine.begin() as con:
            con.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))

    def lease(self, name: str) -> Lease | None:
        with self.engine.connect() as con:
            row = con.execute(leases.select().where(leases.c.name == name)).mappings().first()
        if row is None:
            return None
        return Lease(
            row["name"], row["holder"], row["acquired_at"], row["expires_at"], json.loads(row["detail"] or "{}")
        )

    # -- the Home tab -------------------------------------------------------------------
    def home_opened(self, user_id: str, channel_id: str | None) -> None:
        """Remember that ``user_id`` looks at the Home tab (the last time wins)."""
        values = {"opened_at": utcnow(), **({"channel_id": channel_id[:64]} if channel_id else {})}
        with self.engine.begin() as con:
            if not con.execute(
                home_views.update().where(home_views.c.user_id == user_id[:64]).values(**values)
            ).rowcount:
                try:
                    with con.begin_nested():
                        con.execute(home_views.insert().values(user_id=user_id[:64], **values))
                except IntegrityError:  # another process inserted it meanwhile
                    con.execute(home_views.update().where(home_views.c.user_id == user_id[:64]).values(**values))

    def home_viewers(self, within: dt.timedelta = dt.timedelta(days=30)) -> list[tuple[str, str | None]]:
        """(user, DM channel) of everyone who opened the Home tab within ``within``."""
        with self.engine.connect() as con:
            rows = con.execute(
                sa.select(home_views.c.user_id, home_views.c.channel_id).where(
                    home_views.c.opened_at >= utcnow() - within
                )
            ).all()
        return [(r[0], r[1]) for r in rows]

    def home_channel(self, user_id: str) -> str | None:
        with self.engine.connect() as con:
            return con.execute(sa.select(home_views.c.channel_id).where(home_views.c.user_id == user_id[:64])).scalar()

    def dispose(self) -> None:
        self.engine.dispose()


# Columns added after a table was first released: (table, column, DDL type).
_ADDED_COLUMNS = [
    ("digest_runs", "runner", "VARCHAR(128)"),
    ("digest_runs", "data_source", "VARCHAR(500)"),
    ("digest_runs", "at_risk_customers", "INTEGER"),
    ("digest_runs", "at_risk_revenue", "FLOAT"),
    ("digest_runs", "scored_as_of", "DATE"),
]


def _upgrade(con: sa.Connection) -> None:
    """Add the columns a database created by an earlier release lacks."""
    inspector = sa.inspect(con)
    for table, column, ddl in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            con.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_text(text: str) -> str:
    """``text`` with control characters (NUL, newlines) shown as escapes, safe for any database and log."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
