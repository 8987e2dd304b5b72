"""Channel digests: segment sizes and churn risk, scored fresh, posted exactly once.

A digest scores the current data (``SEGMENT_DATA``) with the served model as of the run date.
Each run records its counts and the (hashed) ids of its customers at risk, so the next digest's
changes and "moved into at risk" come from the store, not from recomputing the past. A row per
(channel, scheduled time) under a unique constraint is written before anything is posted:
restarts, retries and a second bot process never post twice.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import sqlalchemy as sa
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError

from segmentation.errors import InputError, SegmentationError
from segmentation.model.atrisk import STAKE_NOTE, AtRiskSummary
from segmentation.model.terms import ShopTerms
from segmentation.serving.service import ServedModel, SourceScore

from . import blocks, liveness
from .schedule_spec import Schedule
from .state import StateDB, digest_runs, subscriptions, utcnow

log = logging.getLogger(__name__)
STALE_AFTER_DAYS = 7
# Errors that mean "this channel can't get digests until someone acts"; shown in /segment digest list.
CHANNEL_ERRORS = {
    "channel_not_found": "the channel is gone or private without me: /invite @segment",
    "not_in_channel": "I'm not in the channel: /invite @segment",
    "is_archived": "the channel is archived",
    "invalid_auth": "the bot token is invalid",
    "token_revoked": "the bot token was revoked",
    "account_inactive": "the bot's account is inactive",
}


@dataclass
class DigestData:
    run_date: dt.date
    latest_order: dt.date
    model_version: str
    customers: int
    terms: ShopTerms
    segments: list[dict[str, Any]]  # name, customers, at_risk, share, change (None: no previous), new
    at_risk: AtRiskSummary
    moved_into_at_risk: int | None
    previous_date: dt.date | None
    data_source: str = ""
    not_comparable: str | None = None  # why the previous digest is not compared with, if it is not
    at_risk_hashes: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, np.uint64))

    @property
    def counts(self) -> dict[str, int]:
        return {s["name"]: s["customers"] for s in self.segments}


@dataclass(frozen=True)
class PreviousRun:
    scheduled_for: dt.datetime
    counts: dict[str, int]
    at_risk_hashes: np.ndarray | None
    model_version: str | None = None
    data_source: str | None = None


def hash_ids(ids: pd.Series) -> np.ndarray:
    """Stable 64-bit hashes of customer ids, sorted (collisions: ~1e-7 for a million ids)."""
    return np.sort(pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy(np.uint64))


def pack_hashes(h: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(h, dtype="<u8").tobytes(), 1)


def unpack_hashes(data: bytes | None) -> np.ndarray | None:
    return None if data is None else np.frombuffer(zlib.decompress(data), dtype="<u8")


def compute(
    served: ServedModel, score: SourceScore, previous: PreviousRun | None, run_date: dt.date, data_source: str = ""
) -> DigestData:
    """Compare a source scored with the served model (inside its engine: ``score_source``) with
    the previous digest, only if that one was built with the same model on the same data (like
    with like)."""
    not_comparable = None
    if previous is not None and previous.model_version != served.version:
        not_comparable = (
            f"model changed since the last digest ({previous.model_version or 'unknown'} → "
            f"{served.version}): sizes are not compared"
        )
    elif previous is not None and previous.data_source is not None and previous.data_source != data_source:
        not_comparable = "the data source changed since the last digest: sizes are not compared"
    compared = previous if not_comparable is None else None
    summary = score.at_risk
    counts, risky_counts = score.counts, score.at_risk_counts
    n = score.customers
    segments = []
    for s in served.trained.all_segments:  # served order: most valuable first, then reserved ones
        c = s.cluster
        if s.reserved and not counts[c]:
            continue
        prev = compared.counts.get(s.name) if compared else None
        segments.append(
            {
                "name": s.name,
                "base": s.base,
                "customers": int(counts[c]),
                "at_risk": int(risky_counts[c]),
                "share": counts[c] / n if n else 0.0,
                "change": None if prev is None else int(counts[c]) - prev,
                "new": compared is not None and prev is None,
            }
        )
    hashes = hash_ids(score.at_risk_rows["customer_id"])
    moved = None
    if compared is not None and compared.at_risk_hashes is not None:
        moved = int((~np.isin(hashes, compared.at_risk_hashes, assume_unique=True)).sum())
    return DigestData(
        run_date=run_date,
        latest_order=score.latest_purchase,
        model_version=served.version,
        customers=n,
        terms=served.terms,
        segments=segments,
        at_risk=summary,
        moved_into_at_risk=moved,
        previous_date=compared.scheduled_for.date() if compared else None,
        data_source=data_source,
        not_comparable=not_comparable,
        at_risk_hashes=hashes,
    )


def write_at_risk_as_of(ctx, as_of: dt.date, path, served: ServedModel) -> tuple[list[str], int]:
    """The at-risk customers of the current data scored as of ``as_of`` with ``served`` (the
    digest's own list, by the one at-risk definition)."""
    source, _ = ctx.service.source(ctx.settings.data)
    return served.export_at_risk(path, source_score=served.score_source(source, as_of))


def export_value(value: Any) -> tuple[str, dt.date | None]:
    """(model version, as-of date or None) from an export button's value, checked: it came back
    from Slack, so it is never trusted (the date is checked against the model in ``check_as_of``)."""
    try:
        spec = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), str):
        raise InputError("That export button is not one of mine; ask with /segment at-risk again.")
    as_of = spec.get("as_of")
    if as_of is None:
        return spec["model"], None
    try:
        day = dt.date.fromisoformat(str(as_of))
    except ValueError:
        raise InputError("That export button carries a bad date; ask with /segment at-risk again.") from None
    return spec["model"], day


def check_as_of(day: dt.date, snapshot: dt.date, today: dt.date | None = None) -> dt.date:
    """A digest's date could only be between its model's data date and today: anything else did
    not come from one of its buttons."""
    today = today or dt.datetime.now(dt.UTC).date()
    if not snapshot <= day <= today + dt.timedelta(days=1):
        raise InputError("That export button is not from one of my digests; ask with /segment at-risk again.")
    return day


def _change(s: dict[str, Any]) -> str:
    if s["new"]:
        return " · new"
    d = s["change"]
    if d is None:
        return ""
    return " · =" if d == 0 else f" · {'▲' if d > 0 else '▼'}{abs(d):,}"


def message(data: DigestData) -> blocks.Message:
    age = (data.run_date - data.latest_order).days
    fresh = f"Data up to {data.latest_order:%a %d %b %Y} (latest order)"
    if age > STALE_AFTER_DAYS:
        fresh = f":warning: {fresh}, {age:,} days before this digest: is SEGMENT_DATA up to date?"
    since = f" since {data.previous_date:%d %b}" if data.previous_date else ""
    lines = "\n".join(f"*{s['name']}*: {s['customers']:,} ({s['share']:.1%}){_change(s)}" for s in data.segments)
    risk = data.at_risk
    money = data.terms.money
    risk_lines = (
        "\n".join(f"• *{r.name}*: {r.customers:,} customers, {money(r.revenue)} at stake" for r in risk.by_segment)
        or "• none"
    )
    moved = (
        "" if data.moved_into_at_risk is None else f"\n*{data.moved_into_at_risk:,}* customers became at risk{since}."
    )
    b = [
        blocks.header(f"Customer digest · {data.run_date:%a %d %b %Y}"),
        blocks.context(f"{fresh} · model {data.model_version}"),
        blocks.section(f"*{data.customers:,} customers*" + (f" · changes{since}" if since else "")),
        blocks.section(lines),
        {"type": "divider"},
        blocks.section(
            f"*Churn risk: {risk.customers:,} customers* ({risk.share_of_customers:.1%}), revenue at stake "
            f"{risk.stake(money)}" + moved + "\n" + risk_lines
        ),
        blocks.context(f"At risk: {risk.definition} · {STAKE_NOTE}"),
    ]
    if data.not_comparable:
        b.insert(3, blocks.context(f":information_source: {_cap(data.not_comparable)}."))
    elements = [blocks.button("All segments", "show_segments")]
    if risk.customers:  # nothing to export when no one is at risk
        elements.insert(
            0,
            blocks.button(
                "Export at-risk customers",
                "export_at_risk",
                json.dumps({"as_of": data.run_date.isoformat(), "model": data.model_version}),
                style="primary",
            ),
        )
    b.append({"type": "actions", "elements": elements})
    text = f"Customer digest {data.run_date:%Y-%m-%d}: {data.customers:,} customers, {risk.customers:,} at risk"
    return {"text": text, "blocks": b}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def chart_png(data: DigestData) -> bytes:
    """Horizontal bars of segment sizes, the customers at risk in red."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    names = [s["name"] for s in data.segments][::-1]
    values = np.array([s["customers"] for s in data.segments][::-1])
    risky = np.array([s["at_risk"] for s in data.segments][::-1])
    fig = Figure(figsize=(8, 0.42 * len(names) + 1.2), dpi=100)
    ax = fig.subplots()
    ax.barh(names, risky, color="#d64545", label="at risk")
    bars = ax.barh(names, values - risky, left=risky, color="#3b7dd8", label="not at risk")
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set_title(f"Customers per segment · {data.run_date:%d %b %Y} · model {data.model_version}", fontsize=10)
    ax.set_xlabel("customers")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.15)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


METADATA_EVENT = "segment_digest"
# A run left "running" by a process on another host is taken over after this long (a digest
# takes seconds to a minute; on this host a dead process is recognised at once).
ORPHANED_AFTER = dt.timedelta(minutes=10)


def run_metadata(channel_id: str, when: dt.datetime) -> dict[str, Any]:
    """The message metadata that identifies one run: its channel and scheduled time."""
    return {"event_type": METADATA_EVENT, "event_payload": {"run": f"{channel_id}@{when:%Y-%m-%dT%H:%M:%S}"}}


def _runner_dead(runner: str | None, started_at: dt.datetime) -> str | None:
    """Why the process that started a run is certainly gone, or None while it may be alive."""
    if liveness.mine(runner):
        return None  # this very process is running it, however long it takes
    why = liveness.gone(runner)
    if why is not None:
        return why
    if utcnow() - started_at > ORPHANED_AFTER:
        return f"started {int((utcnow() - started_at).total_seconds())} s ago by a process that stopped"
    return None


@dataclass(frozen=True)
class RunOutcome:
    status: str  # ok, failed, duplicate
    error: str | None = None
    run_id: int | None = None


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

    def subscriptions(self) -> list[dict[str, Any]]:
        with self.state.engine.connect() as con:
            subs = [dict(r) for r in con.execute(subscriptions.select().order_by(subscriptions.c.id)).mappings()]
            for s in subs:
                last = (
                    con.execute(
                        sa.select(digest_runs.c.scheduled_for, digest_runs.c.status, digest_runs.c.error)
                        .where(digest_runs.c.channel_id == s["channel_id"])
                        .order_by(digest_runs.c.scheduled_for.desc(), digest_runs.c.id.desc())
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
                s["last_run"] = dict(last) if last else None
        return subs

    def subscription(self, channel_id: str) -> dict[str, Any] | None:
        with self.state.engine.connect() as con:
            row = con.execute(subscriptions.select().where(subscriptions.c.channel_id == channel_id)).mappings().first()
        return dict(row) if row else None

    def latest(self, model_version: str, data_source: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
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
        latest = {**row, "counts": json.loads(row["counts"] or "{}")}
        if before is None or (before["model_version"], before["data_source"]) != (model_version, data_source[:500]):
            return latest, None
        return latest, {**before, "counts": json.loads(before["counts"] or "{}")}

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

    def _run_date(self, channel_id: str, when: dt.datetime) -> dt.date:
        sub = self.subscription(channel_id)
        tz = ZoneInfo(sub["timezone"] if sub else self.ctx.settings.timezone)
        return when.replace(tzinfo=dt.UTC).astimezone(tz).date()

    def _deliver(self, run_id: int, channel_id: str, when: dt.datetime) -> RunOutcome:
        """Compute the run's digest, record its numbers, post it with its run key in the message
        metadata (so a leader taking over after a crash can tell whether it reached Slack), then
        mark the run done."""
        run_date = self._run_date(channel_id, when)
        try:
            source, _ = self.ctx.service.source(self.ctx.settings.data)
            served = self.ctx.service.served()
            score = served.score_source(source, run_date)
            with self.state.engine.connect() as con:
                previous = self._previous(con, channel_id, when)
            data = compute(served, score, previous, run_date, source.describe())
            numbers = dict(
                model_version=data.model_version,
                latest_order=data.latest_order,
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
                "digest run %s for %s was interrupted (%s) and the channel cannot be checked (%s)",
                run_id,
                channel,
                why,
                code,
            )
            self._finish(run_id, status="failed", error=f"interrupted ({why}); could not check the channel: {code}")
            return RunOutcome("failed", code, run_id)
        if ts is not None:
            log.info(
                "digest run %s for %s was posted before its process stopped (%s); marked done", run_id, channel, why
            )
            self._finish(run_id, status="ok", message_ts=ts)
            return RunOutcome("ok", None, run_id)
        log.warning(
            "digest run %s for %s was interrupted before reaching Slack (%s); posting it now", run_id, channel, why
        )
        return self._deliver(run_id, channel, when)

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
