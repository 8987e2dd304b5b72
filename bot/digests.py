"""Channel digests: segment sizes and churn risk, scored fresh, posted exactly once.

A digest scores the current data (``SEGMENT_DATA``) with the served model as of the run date.
Each run records its counts and the (hashed) ids of its at-risk customers, so the next digest's
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

from segmentation import playbook as playbook_mod
from segmentation.cli import source_from_data_spec
from segmentation.errors import SegmentationError
from segmentation.sources import load_rfm

from . import blocks
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
    segments: list[dict[str, Any]]  # name, base, customers, share, change (None: no previous)
    at_risk: list[dict[str, Any]]  # name, customers, revenue
    at_risk_customers: int
    at_risk_revenue: float
    moved_into_at_risk: int | None
    previous_date: dt.date | None
    at_risk_hashes: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0, np.uint64))

    @property
    def counts(self) -> dict[str, int]:
        return {s["name"]: s["customers"] for s in self.segments}


@dataclass(frozen=True)
class PreviousRun:
    scheduled_for: dt.datetime
    counts: dict[str, int]
    at_risk_hashes: np.ndarray | None


def hash_ids(ids: pd.Series) -> np.ndarray:
    """Stable 64-bit hashes of customer ids, sorted (collisions: ~1e-7 for a million ids)."""
    return np.sort(pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy(np.uint64))


def pack_hashes(h: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(h, dtype="<u8").tobytes(), 1)


def unpack_hashes(data: bytes | None) -> np.ndarray | None:
    return None if data is None else np.frombuffer(zlib.decompress(data), dtype="<u8")


def compute(service, rfm_table, previous: PreviousRun | None, run_date: dt.date) -> DigestData:
    """Score every customer with the served model and compare with the previous digest."""
    bundle = service.bundle
    frame = rfm_table.frame
    labels = bundle["model"].predict(frame[["recency", "frequency", "monetary"]].to_numpy(np.float64))
    book = playbook_mod.load()
    by_cluster = {s["cluster"]: s for s in bundle["segments"]}
    counts = np.bincount(labels, minlength=len(by_cluster))
    revenue = np.bincount(labels, weights=frame["monetary"].to_numpy(np.float64), minlength=len(by_cluster))
    n = len(frame)
    segments, at_risk = [], []
    for s in bundle["segments"]:  # served order: most valuable first
        c = s["cluster"]
        prev = previous.counts.get(s["name"]) if previous else None
        segments.append({
            "name": s["name"], "base": s["base"], "customers": int(counts[c]),
            "share": counts[c] / n if n else 0.0,
            "change": None if prev is None else int(counts[c]) - prev,
            "new": previous is not None and prev is None,
        })
        if book.is_at_risk(s["base"]):
            at_risk.append({"name": s["name"], "customers": int(counts[c]), "revenue": float(revenue[c])})
    risky = np.isin(labels, [s["cluster"] for s in bundle["segments"] if book.is_at_risk(s["base"])])
    hashes = hash_ids(frame["customer_id"][risky])
    moved = None
    if previous is not None and previous.at_risk_hashes is not None:
        moved = int((~np.isin(hashes, previous.at_risk_hashes, assume_unique=True)).sum())
    return DigestData(
        run_date=run_date,
        latest_order=rfm_table.latest_purchase,
        model_version=bundle["version"],
        customers=n,
        segments=segments,
        at_risk=at_risk,
        at_risk_customers=int(risky.sum()),
        at_risk_revenue=float(frame["monetary"].to_numpy()[risky].sum()),
        moved_into_at_risk=moved,
        previous_date=previous.scheduled_for.date() if previous else None,
        at_risk_hashes=hashes,
    )


def write_at_risk_as_of(ctx, as_of: dt.date, path, version: str | None = None) -> tuple[list[str], int]:
    """The at-risk customers of the current data scored as of ``as_of`` with model ``version``
    (the digest's own list; the served model if that version is no longer kept)."""
    source, _ = source_from_data_spec(ctx.settings.data, ctx.store.root)
    frame = load_rfm(source, as_of=as_of).frame
    try:
        bundle = ctx.store.load(version) if version else ctx.service.bundle
    except SegmentationError:
        bundle = ctx.service.bundle
    book = playbook_mod.load()
    names = {s["cluster"]: s["name"] for s in bundle["segments"] if book.is_at_risk(s["base"])}
    labels = bundle["model"].predict(frame[["recency", "frequency", "monetary"]].to_numpy(np.float64))
    risky = np.isin(labels, list(names))
    out = frame[risky].assign(segment=[names[c] for c in labels[risky]])
    out = out.sort_values(["monetary", "customer_id"], ascending=[False, True])
    out = out.rename(columns={"recency": "recency_days"})[["customer_id", "segment", "recency_days", "frequency", "monetary"]]
    out.to_csv(path, index=False, float_format="%.2f")
    return sorted(set(out["segment"])) or list(names.values()), len(out)


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
    risk_lines = "\n".join(f"• *{r['name']}*: {r['customers']:,} customers, revenue {blocks.money(r['revenue'])}"
                           for r in data.at_risk) or "• No segment of the served model is at risk."
    moved = ("" if data.moved_into_at_risk is None
             else f"\n*{data.moved_into_at_risk:,}* customers moved into an at-risk segment{since}.")
    b = [
        blocks.header(f"Customer digest · {data.run_date:%a %d %b %Y}"),
        blocks.context(f"{fresh} · model {data.model_version}"),
        blocks.section(f"*{data.customers:,} customers*" + (f" · changes{since}" if since else "")),
        blocks.section(lines),
        {"type": "divider"},
        blocks.section("*Churn risk*\n" + risk_lines
                        + f"\n*Total at risk:* {data.at_risk_customers:,} customers, revenue "
                          f"{blocks.money(data.at_risk_revenue)}" + moved),
        {"type": "actions", "elements": [
            blocks.button("Export at-risk customers", "export_at_risk",
                           json.dumps({"as_of": data.run_date.isoformat(), "model": data.model_version}),
                           style="primary"),
            blocks.button("All segments", "show_segments"),
        ]},
    ]
    text = (f"Customer digest {data.run_date:%Y-%m-%d}: {data.customers:,} customers, "
            f"{data.at_risk_customers:,} at risk")
    return {"text": text, "blocks": b}


def chart_png(data: DigestData) -> bytes:
    """A horizontal bar chart of segment sizes (at-risk segments in red)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    at_risk = {r["name"] for r in data.at_risk}
    names = [s["name"] for s in data.segments][::-1]
    values = [s["customers"] for s in data.segments][::-1]
    colors = ["#d64545" if n in at_risk else "#3b7dd8" for n in names]
    fig = Figure(figsize=(8, 0.42 * len(names) + 1.2), dpi=100)
    ax = fig.subplots()
    bars = ax.barh(names, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, fontsize=8)
    ax.set_title(f"Customers per segment · {data.run_date:%d %b %Y} · model {data.model_version}", fontsize=10)
    ax.set_xlabel("customers (red: at risk)")
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.15)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


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

    # -- subscriptions ------------------------------------------------------------------
    def subscribe(self, channel_id: str, schedule: Schedule, user_id: str) -> None:
        with self.state.engine.begin() as con:
            con.execute(subscriptions.delete().where(subscriptions.c.channel_id == channel_id))
            con.execute(subscriptions.insert().values(
                channel_id=channel_id, cron=schedule.cron, timezone=schedule.timezone,
                schedule_text=schedule.text, created_by=user_id, created_at=utcnow()))

    def unsubscribe(self, channel_id: str) -> bool:
        with self.state.engine.begin() as con:
            return con.execute(subscriptions.delete().where(subscriptions.c.channel_id == channel_id)).rowcount > 0

    def subscriptions(self) -> list[dict[str, Any]]:
        with self.state.engine.connect() as con:
            subs = [dict(r) for r in con.execute(subscriptions.select().order_by(subscriptions.c.id)).mappings()]
            for s in subs:
                last = con.execute(
                    sa.select(digest_runs.c.scheduled_for, digest_runs.c.status, digest_runs.c.error)
                    .where(digest_runs.c.channel_id == s["channel_id"])
                    .order_by(digest_runs.c.scheduled_for.desc(), digest_runs.c.id.desc()).limit(1)
                ).mappings().first()
                s["last_run"] = dict(last) if last else None
        return subs

    def subscription(self, channel_id: str) -> dict[str, Any] | None:
        with self.state.engine.connect() as con:
            row = con.execute(subscriptions.select().where(subscriptions.c.channel_id == channel_id)).mappings().first()
        return dict(row) if row else None

    # -- runs ---------------------------------------------------------------------------
    def _previous(self, con, channel_id: str, before: dt.datetime) -> PreviousRun | None:
        row = con.execute(
            sa.select(digest_runs.c.scheduled_for, digest_runs.c.counts, digest_runs.c.at_risk_ids)
            .where(digest_runs.c.channel_id == channel_id, digest_runs.c.status == "ok",
                   digest_runs.c.scheduled_for < before)
            .order_by(digest_runs.c.scheduled_for.desc(), digest_runs.c.id.desc()).limit(1)
        ).mappings().first()
        if row is None:
            return None
        return PreviousRun(row["scheduled_for"], json.loads(row["counts"] or "{}"), unpack_hashes(row["at_risk_ids"]))

    def claim(self, channel_id: str, scheduled_for: dt.datetime, status: str = "running", error: str | None = None) -> int | None:
        """Record (channel, scheduled time) before anything is posted; None if it was already there."""
        try:
            with self.state.engine.begin() as con:
                return con.execute(digest_runs.insert().values(
                    channel_id=channel_id, scheduled_for=scheduled_for, started_at=utcnow(),
                    status=status, error=error)).inserted_primary_key[0]
        except IntegrityError:
            return None

    def _finish(self, run_id: int, **values: Any) -> None:
        with self.state.engine.begin() as con:
            con.execute(digest_runs.update().where(digest_runs.c.id == run_id).values(finished_at=utcnow(), **values))
            if values.get("status") == "ok":  # keep the id hashes of the latest two runs per channel only
                channel = con.execute(sa.select(digest_runs.c.channel_id).where(digest_runs.c.id == run_id)).scalar_one()
                keep = [r[0] for r in con.execute(
                    sa.select(digest_runs.c.id).where(digest_runs.c.channel_id == channel, digest_runs.c.status == "ok")
                    .order_by(digest_runs.c.scheduled_for.desc(), digest_runs.c.id.desc()).limit(2))]
                con.execute(digest_runs.update().where(
                    digest_runs.c.channel_id == channel, digest_runs.c.id.not_in(keep),
                    digest_runs.c.at_risk_ids.is_not(None)).values(at_risk_ids=None))

    def run(self, channel_id: str, scheduled_for: dt.datetime | None = None) -> RunOutcome:
        """Build and post one digest for ``channel_id``, at most once per scheduled time."""
        when = (scheduled_for or dt.datetime.now(dt.timezone.utc)).astimezone(dt.timezone.utc).replace(tzinfo=None)
        run_id = self.claim(channel_id, when)
        if run_id is None:
            log.info("digest for %s at %s was already posted; not posting again", channel_id, when)
            return RunOutcome("duplicate")
        sub = self.subscription(channel_id)
        tz = ZoneInfo(sub["timezone"] if sub else self.ctx.settings.timezone)
        run_date = when.replace(tzinfo=dt.timezone.utc).astimezone(tz).date()
        try:
            source, _ = source_from_data_spec(self.ctx.settings.data, self.ctx.store.root)
            table = load_rfm(source, as_of=run_date)
            with self.state.engine.connect() as con:
                previous = self._previous(con, channel_id, when)
            data = compute(self.ctx.service, table, previous, run_date)
            posted = self.client.chat_postMessage(channel=channel_id, **message(data))
            ts = posted.get("ts")
            self._finish(run_id, status="ok", model_version=data.model_version, latest_order=data.latest_order,
                         customers=data.customers, counts=json.dumps(data.counts),
                         at_risk_ids=pack_hashes(data.at_risk_hashes), message_ts=ts)
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
            self.client.files_upload_v2(channel=channel_id, thread_ts=ts, content=chart_png(data),
                                        filename=f"segments-{run_date}.png", title="Customers per segment")
        except SlackApiError as exc:
            log.warning("digest chart for %s not uploaded: %s", channel_id, exc.response.get("error"))
        return RunOutcome("ok", None, run_id)

    def mark_interrupted(self, older_than: dt.timedelta = dt.timedelta(minutes=10)) -> int:
        """Runs left "running" by a process that died: say so. They are not posted again (the
        crash may have come after the post), so a crash in that window loses at most one digest."""
        with self.state.engine.begin() as con:
            return con.execute(
                digest_runs.update()
                .where(digest_runs.c.status == "running", digest_runs.c.started_at < utcnow() - older_than)
                .values(status="failed", finished_at=utcnow(), error="interrupted: the bot stopped while posting")
            ).rowcount

    def record_missed(self, channel_id: str, scheduled_for: dt.datetime, late_by: dt.timedelta) -> None:
        when = scheduled_for.astimezone(dt.timezone.utc).replace(tzinfo=None)
        minutes = int(late_by.total_seconds() // 60)
        log.warning("skipped the digest for %s scheduled at %s UTC: %d minutes late (bot was down)",
                    channel_id, when, minutes)
        self.claim(channel_id, when, status="skipped", error=f"missed by {minutes} min (bot was down)")
