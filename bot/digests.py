"""Channel digests: segment sizes and churn risk, scored fresh, posted exactly once.

A digest scores the current data (``SEGMENT_DATA``) with the served model as of the run date.
Each run records its counts and the (hashed) ids of its customers at risk, so the next digest's
changes and "moved into at risk" come from the store, not from recomputing the past. A row per
(channel, scheduled time) under a unique constraint is written before anything is posted:
restarts, retries and a second bot process never post twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError

from segmentation.errors import SegmentationError
from segmentation.serving.schedule_spec import Schedule

from . import liveness
from .digest_data import PreviousRun, compute, pack_hashes, score_for_digest, unpack_hashes
from .digest_render import chart_png, message
from .digest_runs import METADATA_EVENT, LastRun, RecordedDigest, RunOutcome, Subscription, _runner_dead, run_metadata
from .state import StateDB, digest_runs, subscriptions, utcnow

log = logging.getLogger(__name__)


class Digests:
    """Subscriptions and runs, on the state database."""

    def __init__(self, ctx, client: WebClient):
        self.ctx = ctx
        self.client = client
        self.state: StateDB = ctx.state
        self.runner = liveness.new_holder()  # this process, while it lives

    # -- subscriptions ------------------------------------------------------------------
    def subscribe(self, channel_id: str, schedule: Schedule, user_id: str) -> None:
        """Set the channel's schedule (replacing any) in one upsert, so bots starting together
        with DIGEST_CHANNEL all succeed: the last write wins."""
        values = dict(
            channel_id=channel_id,
            cron=schedule.cron,
            timezone=schedule.timezone,
            schedule_text=schedule.text,
            created_by=user_id,
            created_at=utcnow(),
        )
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = self.state.engine.dialect.name
        insert: Any = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
        if insert is None:  # pragma: no cover - the state database is SQLite or PostgreSQL
            raise NotImplementedError(dialect)
        stmt = insert(subscriptions).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[subscriptions.c.channel_id], set_={k: stmt.excluded[k] for k in values if k != "channel_id"}
        )
        with self.state.engine.begin() as con:
            con.execute(stmt)

    def unsubscribe(self, channel_id: str) -> bool:
        with self.state.engine.begin() as con:
            return con.execute(subscriptions.delete().where(subscriptions.c.channel_id == channel_id)).rowcount > 0

    def subscriptions(self) -> list[Subscription]:
        out = []
        with self.state.engine.connect() as con:
            for row in con.execute(subscriptions.select().order_by(subscriptions.c.id)).mappings():
                last = (
                    con.execute(
                        sa.select(digest_runs.c.scheduled_for, digest_runs.c.status, digest_runs.c.error)
                        .where(digest_runs.c.channel_id == row["channel_id"])
                        .order_by(digest_runs.c.scheduled_for.desc(), digest_runs.c.id.desc())
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
                out.append(_subscription(row, LastRun(**last) if last else None))
        return out

    def subscription(self, channel_id: str) -> Subscription | None:
        with self.state.engine.connect() as con:
            row = con.execute(subscriptions.select().where(subscriptions.c.channel_id == channel_id)).mappings().first()
        return _subscription(row, None) if row else None

    def latest(self, model_version: str, data_source: str) -> tuple[RecordedDigest, RecordedDigest | None] | None:
        """The newest digest built with this model on this data, and the one before it in the
        same channel if that was too (sizes are only compared like with like); None if none."""
        cols = (
            digest_runs.c.channel_id,
            digest_runs.c.scheduled_for,
            digest_runs.c.counts,
            digest_runs.c.customers,
            digest_runs.c.latest_order,
            digest_runs.c.at_risk_customers,
            digest_runs.c.at_risk_revenue,
            digest_runs.c.model_version,
            digest_runs.c.data_source,
            digest_runs.c.scored_as_of,
        )
        alike = (
            digest_runs.c.status == "ok",
            digest_runs.c.model_version == model_version,
            digest_runs.c.data_source == data_source[:500],
        )
        order = (digest_runs.c.scheduled_for.desc(), digest_runs.c.id.desc())
        with self.state.engine.connect() as con:
            row = con.execute(sa.select(*cols).where(*alike).order_by(*order).limit(1)).mappings().first()
            if row is None:
                return None
            before = (
                con.execute(
                    sa.select(*cols)
                    .where(
                        digest_runs.c.channel_id == row["channel_id"],
                        digest_runs.c.status == "ok",
                        digest_runs.c.scheduled_for < row["scheduled_for"],
                    )
                    .order_by(*order)
                    .limit(1)
                )
                .mappings()
                .first()
            )
        latest = RecordedDigest(**{**row, "counts": json.loads(row["counts"] or "{}")})
        if before is None or (before["model_version"], before["data_source"]) != (model_version, data_source[:500]):
            return latest, None
        return latest, RecordedDigest(**{**before, "counts": json.loads(before["counts"] or "{}")})

    # -- runs ---------------------------------------------------------------------------
    def _previous(self, con, channel_id: str, before: dt.datetime) -> PreviousRun | None:
        row = (
            con.execute(
                sa.select(
                    digest_runs.c.scheduled_for,
                    digest_runs.c.counts,
                    digest_runs.c.at_risk_ids,
                    digest_runs.c.model_version,
                    digest_runs.c.data_source,
                )
                .where(
                    digest_runs.c.channel_id == channel_id,
                    digest_runs.c.status == "ok",
                    digest_runs.c.scheduled_for < before,
                )
                .order_by(digest_runs.c.scheduled_for.desc(), digest_runs.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return PreviousRun(
            row["scheduled_for"],
            json.loads(row["counts"] or "{}"),
            unpack_hashes(row["at_risk_ids"]),
            row["model_version"],
            row["data_source"],
        )

    def claim(
        self, channel_id: str, scheduled_for: dt.datetime, status: str = "running", error: str | None = None
    ) -> int | None:
        """Record (channel, scheduled time) before anything is posted; None if it was already there."""
        try:
            with self.state.engine.begin() as con:
                key = con.execute(
                    digest_runs.insert().values(
                        channel_id=channel_id,
                        scheduled_for=scheduled_for,
                        started_at=utcnow(),
                        status=status,
                        error=error,
                        runner=self.runner,
                    )
                ).inserted_primary_key
        except IntegrityError:
            return None
        return None if key is None else int(key[0])

    def _finish(self, run_id: int, **values: Any) -> None:
        with self.state.engine.begin() as con:
            con.execute(digest_runs.update().where(digest_runs.c.id == run_id).values(finished_at=utcnow(), **values))
            if values.get("status") == "ok":  # keep the id hashes of the latest two runs per channel only
                channel = con.execute(
                    sa.select(digest_runs.c.channel_id).where(digest_runs.c.id == run_id)
                ).scalar_one()
                keep = [
                    r[0]
                    for r in con.execute(
                        sa.select(digest_runs.c.id)
                        .where(digest_runs.c.channel_id == channel, digest_runs.c.status == "ok")
                        .order_by(digest_runs.c.scheduled_for.desc(), digest_runs.c.id.desc())
                        .limit(2)
                    )
                ]
                con.execute(
                    digest_runs.update()
                    .where(
                        digest_runs.c.channel_id == channel,
                        digest_runs.c.id.not_in(keep),
                        digest_runs.c.at_risk_ids.is_not(None),
                    )
                    .values(at_risk_ids=None)
                )

    def run(self, channel_id: str, scheduled_for: dt.datetime | None = None) -> RunOutcome:
        """Build and post one digest for ``channel_id``, at most once per scheduled time."""
        when = (scheduled_for or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
        run_id = self.claim(channel_id, when)
        if run_id is None:
            log.info("digest for %s at %s was already posted; not posting again", channel_id, when)
            return RunOutcome("duplicate")
        return self._deliver(run_id, channel_id, when)

    MANUAL_SECOND = 1  # scheduled runs fall on second 0 of their minute: a manual run never takes their key

    def manual_slot(self, now: dt.datetime | None = None) -> dt.datetime:
        """The run key of a digest asked for now: one per channel and minute (naive UTC)."""
        now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)
        return now.replace(second=self.MANUAL_SECOND, microsecond=0)

    def deliver(self, run_id: int, channel_id: str, when: dt.datetime) -> RunOutcome:
        """Build and post a run already recorded (``claim``)."""
        return self._deliver(run_id, channel_id, when)

    def _run_date(self, channel_id: str, when: dt.datetime) -> dt.date:
        sub = self.subscription(channel_id)
        tz = ZoneInfo(sub.timezone if sub else self.ctx.settings.timezone)
        return when.replace(tzinfo=dt.UTC).astimezone(tz).date()

    def _deliver(self, run_id: int, channel_id: str, when: dt.datetime) -> RunOutcome:
        """Compute the run's digest, record its numbers, post it with its run key in the message
        metadata (so a leader taking over after a crash can tell whether it reached Slack), then
        mark the run done."""
        run_date = self._run_date(channel_id, when)
        try:
            source = self.ctx.service.data_of(self.ctx.settings.data).source
            served = self.ctx.service.served()
            score = score_for_digest(served, source, run_date, self.ctx.settings.digest_as_of)
            with self.state.engine.connect() as con:
                previous = self._previous(con, channel_id, when)
            data = compute(served, score, previous, run_date, source.describe())
            numbers = dict(
                model_version=data.model_version,
                latest_order=data.latest_order,
                scored_as_of=data.as_of,
                data_source=data.data_source[:500],
                customers=data.customers,
                counts=json.dumps(data.counts),
                at_risk_ids=pack_hashes(data.at_risk_hashes),
                at_risk_customers=data.at_risk.customers,
                at_risk_revenue=data.at_risk.revenue,
            )
            with self.state.engine.begin() as con:  # the numbers first: recovery needs them if we die posting
                con.execute(digest_runs.update().where(digest_runs.c.id == run_id).values(**numbers))
            posted = self.client.chat_postMessage(
                channel=channel_id, **message(data), metadata=run_metadata(channel_id, when)
            )
            ts = posted.get("ts")
            self._finish(run_id, status="ok", message_ts=ts)
        except SlackApiError as exc:
            code = exc.response.get("error") or f"HTTP {exc.response.status_code}"
            log.warning("digest for %s failed: %s", channel_id, code)
            self._finish(run_id, status="failed", error=code)
            return RunOutcome("failed", code, run_id)
        except SegmentationError as exc:
            self._finish(run_id, status="failed", error=str(exc))
            return RunOutcome("failed", str(exc), run_id)
        except Exception as exc:  # noqa: BLE001 - one bad digest never stops the others
            log.exception("digest for %s failed", channel_id)
            self._finish(run_id, status="failed", error=f"{type(exc).__name__}: {exc}")
            return RunOutcome("failed", type(exc).__name__, run_id)
        try:  # the chart goes in the digest's thread; a failed upload does not undo the digest
            self.client.files_upload_v2(
                channel=channel_id,
                thread_ts=ts,
                content=chart_png(data),
                filename=f"segments-{run_date}.png",
                title="Customers per segment",
            )
        except SlackApiError as exc:
            log.warning("digest chart for %s not uploaded: %s", channel_id, exc.response.get("error"))
        return RunOutcome("ok", None, run_id)

    # -- crash recovery -----------------------------------------------------------------
    def recover(self) -> list[RunOutcome]:
        """Finish the runs a dead process left "running" (called by the scheduling leader on every
        heartbeat). A run whose message is in the channel (found by its metadata) is marked done;
        one that never reached Slack is posted now. Nothing is lost and nothing is posted twice."""
        with self.state.engine.connect() as con:
            rows = (
                con.execute(
                    sa.select(
                        digest_runs.c.id,
                        digest_runs.c.channel_id,
                        digest_runs.c.scheduled_for,
                        digest_runs.c.started_at,
                        digest_runs.c.runner,
                    ).where(digest_runs.c.status == "running")
                )
                .mappings()
                .all()
            )
        outcomes = []
        for row in rows:
            why = _runner_dead(row["runner"], row["started_at"])
            if why is None:
                continue
            outcomes.append(self._recover(row, why))
        return outcomes

    def _recover(self, row: Any, why: str) -> RunOutcome:
        run_id, channel, when = row["id"], row["channel_id"], row["scheduled_for"]
        with self.state.engine.begin() as con:  # take it over; only one leader gets the row
            taken = con.execute(
                digest_runs.update()
                .where(
                    digest_runs.c.id == run_id,
                    digest_runs.c.status == "running",
                    digest_runs.c.runner.is_(None) if row["runner"] is None else digest_runs.c.runner == row["runner"],
                )
                .values(runner=self.runner, started_at=utcnow())
            ).rowcount
        if not taken:
            return RunOutcome("duplicate", None, run_id)
        try:
            ts = self._find_posted(channel, when, since=row["started_at"])
        except SlackApiError as exc:  # cannot tell whether it was posted: never risk posting twice
            code = exc.response.get("error") or "unknown"
            log.warning(
                "digest run %s for %s was interrupted (%s); cannot check the channel (%s)", run_id, channel, why, code
            )
            self._finish(run_id, status="failed", error=f"interrupted ({why}); could not check the channel: {code}")
            self._close_audit(channel, row["started_at"], f"failed: interrupted ({why}); channel unreadable: {code}")
            return RunOutcome("failed", code, run_id)
        if ts is not None:
            log.info("digest run %s for %s was posted before its process stopped (%s); done", run_id, channel, why)
            self._finish(run_id, status="ok", message_ts=ts)
            self._close_audit(channel, row["started_at"], f"ok (posted before a restart: {why})")
            return RunOutcome("ok", None, run_id)
        log.warning(
            "digest run %s for %s was interrupted before reaching Slack (%s); posting now", run_id, channel, why
        )
        outcome = self._deliver(run_id, channel, when)
        self._close_audit(channel, row["started_at"], f"{outcome.status} after a restart ({why})")
        return outcome

    def _close_audit(self, channel_id: str, started_at: dt.datetime, result: str) -> None:
        """A `digest now` whose process stopped: its audit row gets the run's outcome."""
        self.state.close_unfinished("digest now", "Building", started_at - dt.timedelta(seconds=5), result, channel_id)

    def _find_posted(self, channel_id: str, when: dt.datetime, since: dt.datetime) -> str | None:
        """The ts of this run's message in the channel, found by its metadata, or None."""
        key = run_metadata(channel_id, when)["event_payload"]["run"]
        oldest = (since.replace(tzinfo=dt.UTC) - dt.timedelta(minutes=5)).timestamp()
        cursor = None
        for _ in range(10):  # at most 2,000 messages since the run started
            page = self.client.conversations_history(
                channel=channel_id, oldest=f"{oldest:.6f}", limit=200, include_all_metadata=True, cursor=cursor
            )
            messages: list[dict[str, Any]] = page.get("messages") or []
            for m in messages:
                meta = m.get("metadata") or {}
                if meta.get("event_type") == METADATA_EVENT and (meta.get("event_payload") or {}).get("run") == key:
                    return m.get("ts")
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not page.get("has_more") or not cursor:
                return None
        return None

    def record_missed(self, channel_id: str, scheduled_for: dt.datetime, late_by: dt.timedelta) -> None:
        when = scheduled_for.astimezone(dt.UTC).replace(tzinfo=None)
        minutes = int(late_by.total_seconds() // 60)
        log.warning(
            "skipped the digest for %s scheduled at %s UTC: %d minutes late (bot was down)", channel_id, when, minutes
        )
        self.claim(channel_id, when, status="skipped", error=f"missed by {minutes} min (bot was down)")


def _subscription(row: Any, last: LastRun | None) -> Subscription:
    return Subscription(
        row["channel_id"],
        row["cron"],
        row["timezone"],
        row["schedule_text"],
        row["created_by"],
        row["created_at"],
        last,
    )
