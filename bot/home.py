"""The App Home tab: the overview a marketer sees when opening the app.

What it shows, for the person looking: the served model (version, when and by whom it was
trained, its data and how fresh that is), every segment with its size and its change since the
previous digest, the customers at risk and their revenue, the workspace's digest subscriptions
with their next run, and buttons: the at-risk export and all segments for everyone, retrain and
roll back for admins only (and only shown to them; a click is checked again). Sizes and the
churn numbers come from the newest digest built with the served model on the current data, when
there is one; otherwise from training, and the tab says which.

The tab is published (``views.publish``) when someone opens it and again for everyone who has
opened it when the served model changes (a retrain, a rollback).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from segmentation.errors import SegmentationError
from segmentation.serving import schedule_spec
from segmentation.serving.answers import share_text

from . import blocks
from .digest_data import STALE_AFTER_DAYS, DigestSegment
from .mrkdwn import as_text, channel, user

log = logging.getLogger(__name__)

MAX_HOME_BLOCKS = 100  # Slack's limit for a Home tab view


@dataclass(frozen=True)
class HomeData:
    version: str
    trained: str  # "2026-12-02 14:30 UTC by U123"
    source: str
    latest_order: dt.date
    today: dt.date
    sizes_from: str  # where the sizes come from, in words
    segments: tuple[DigestSegment, ...]
    at_risk: str  # the churn line, with its numbers
    subscriptions: tuple[str, ...]  # one line each
    admin: bool
    export_value: str  # the at-risk export button's value; empty: no one is at risk, no button


def view(data: HomeData) -> dict[str, Any]:
    """The Home tab's view; at most ``MAX_HOME_BLOCKS`` blocks whatever the number of segments."""
    age = (data.today - data.latest_order).days
    fresh = f"latest order {data.latest_order:%d %b %Y}" + (
        f" :warning: {age:,} days ago: is SEGMENT_DATA up to date?" if age > STALE_AFTER_DAYS else f" ({age} days ago)"
    )
    head: list[dict[str, Any]] = [
        blocks.header("Segment assistant"),
        blocks.section(f"*Model {data.version}* · trained {data.trained}\nData: {data.source} · {fresh}"),
        {"type": "divider"},
        blocks.section(f"*Segments* · {data.sizes_from}"),
    ]
    tail: list[dict[str, Any]] = [
        blocks.section(data.at_risk),
        {
            "type": "actions",
            "elements": [
                *(
                    [
                        blocks.button(
                            "Export at-risk customers", "home_export_at_risk", data.export_value, style="primary"
                        )
                    ]
                    if data.export_value
                    else []
                ),
                blocks.button("All segments", "home_show_segments"),
            ],
        },
        {"type": "divider"},
        blocks.section(
            "*Digests in this workspace*\n"
            + (
                "\n".join(data.subscriptions)
                if data.subscriptions
                else "None yet: in a channel, `/segment digest subscribe daily 09:00`."
            )
        ),
    ]
    if data.admin:
        tail += [
            {"type": "divider"},
            blocks.section("*Admin* (only admins see this)"),
            {
                "type": "actions",
                "elements": [
                    {
                        **blocks.button("Retrain", "home_retrain"),
                        "confirm": _confirm(
                            "Retrain the model?", "It trains on SEGMENT_DATA with the served K and seed."
                        ),
                    },
                    {
                        **blocks.button("Roll back", "home_rollback", style="danger"),
                        "confirm": _confirm("Roll back?", "The previous model version will be served."),
                    },
                ],
            },
        ]
    tail.append(blocks.context("`/segment help` for everything · this tab refreshes when the model changes"))
    lines = [
        f"*{s.name}* · {s.customers:,} ({share_text(s.share)}){s.change_text()}"
        + (f" · {s.at_risk:,} at risk" if s.at_risk else "")
        for s in data.segments
    ]
    room = MAX_HOME_BLOCKS - len(head) - len(tail)
    body = [blocks.section(line) for line in lines] if len(lines) <= room else _packed(lines, room)
    return {"type": "home", "blocks": head + body + tail}


def _packed(lines: list[str], room: int) -> list[dict[str, Any]]:
    """Segment lines several to a section, when one each would not fit."""
    per = -(-len(lines) // max(room, 1))
    return [blocks.section("\n".join(lines[i : i + per])) for i in range(0, len(lines), per)]


def _confirm(title: str, text: str) -> dict[str, Any]:
    return {
        "title": {"type": "plain_text", "text": title},
        "text": {"type": "mrkdwn", "text": text},
        "confirm": {"type": "plain_text", "text": "Yes"},
        "deny": {"type": "plain_text", "text": "Cancel"},
    }


def unavailable(problem: str) -> dict[str, Any]:
    """The tab when no model can be served: what is wrong and how to repair it."""
    return {
        "type": "home",
        "blocks": [
            blocks.header("Segment assistant"),
            blocks.section(f":warning: {problem}"),
            blocks.context("An admin can repair it with `/segment retrain` or `/segment rollback`."),
        ],
    }


class Home:
    """Builds and publishes the Home tab (``ctx.home``)."""

    def __init__(self, ctx, client: WebClient):
        self.ctx = ctx
        self.client = client

    def data(self, user_id: str, today: dt.date | None = None) -> HomeData:
        ctx = self.ctx
        served = ctx.service.served()
        info, terms = served.info, served.terms
        today = today or dt.datetime.now(dt.UTC).date()
        runs = ctx.digests.latest(served.version, ctx.service.source_description(ctx.settings.data))
        trained_at = info.trained_minute
        who = user(info.trained_by)
        if runs is None:
            latest_order = info.latest_purchase_day
            counts = {s.name: s.customers for s in served.trained.all_segments}
            total = info.customers
            sizes_from = "sizes at training (no digest with this model yet)"
            previous = None
            summary = served.at_risk()
            at_risk_line = (
                f"*At risk: {summary.customers:,} customers* ({share_text(summary.share_of_customers)} of {summary.all_customers:,}), "
                f"revenue at stake {summary.stake(terms.money)}, at training (data as of {info.snapshot_date})"
            )
            export = json.dumps({"model": served.version}) if summary.customers else ""
        else:
            latest, before = runs
            latest_order = latest.latest_order or info.latest_purchase_day
            counts, total = latest.counts, latest.customers or sum(latest.counts.values())
            when = latest.scheduled_for
            sizes_from = f"from the digest of {when:%a %d %b %H:%M} UTC in {channel(latest.channel_id)}"
            day_after = latest.latest_order + dt.timedelta(days=1) if latest.latest_order else None
            stale = latest.latest_order is not None and (when.date() - latest.latest_order).days > STALE_AFTER_DAYS
            if stale and latest.scored_as_of is not None and latest.scored_as_of == day_after:
                sizes_from += f", scored as of {latest.as_of:%d %b %Y} (the day after the newest order: stale data)"
            previous = before.counts if before else None
            if before:
                sizes_from += f", changes since the one of {before.scheduled_for:%a %d %b}"
            n = latest.at_risk_customers
            revenue = latest.at_risk_revenue
            at_risk_line = (
                f"*At risk: {n:,} customers* ({share_text(n / total)} of {total:,}), revenue at stake "
                f"{terms.money(revenue)} in that digest"
                if n is not None and revenue is not None and total
                else "At risk: not recorded by that digest (it predates this tab); the next digest records it."
            )
            export = json.dumps({"model": served.version, "as_of": latest.as_of.isoformat()}) if n != 0 else ""
        risky = {s.name: s.at_risk for s in served.trained.all_segments} if runs is None else {}
        segments = tuple(
            DigestSegment(
                name=s.name,
                customers=int(counts.get(s.name, 0)),
                share=int(counts.get(s.name, 0)) / total if total else 0.0,
                at_risk=int(risky.get(s.name, 0)),
                change=None
                if previous is None or s.name not in previous
                else int(counts.get(s.name, 0)) - previous[s.name],
                new=previous is not None and s.name not in previous,
            )
            for s in served.trained.all_segments
            if not s.reserved or counts.get(s.name)
        )
        return HomeData(
            version=served.version,
            trained=f"{trained_at} UTC by {who}",
            source=blocks.hide_paths(as_text(info.source)),
            latest_order=latest_order,
            today=today,
            sizes_from=sizes_from,
            segments=segments,
            at_risk=at_risk_line,
            subscriptions=tuple(self._subscription_lines()),
            admin=ctx.settings.is_admin(user_id),
            export_value=export,
        )

    def _subscription_lines(self) -> list[str]:
        ctx = self.ctx
        next_runs = ctx.scheduler.next_runs() if ctx.scheduler else {}
        now = dt.datetime.now(dt.UTC)
        out = []
        for sub in ctx.digests.subscriptions()[:40]:
            nxt = next_runs.get(sub.channel_id) or schedule_spec.make_trigger(
                sub.cron, sub.timezone
            ).get_next_fire_time(None, now)
            last = sub.last_run
            status = "no digest yet" if last is None else f"last {last.status} {last.scheduled_for:%d %b %H:%M} UTC"
            out.append(
                f"• {channel(sub.channel_id)} {sub.schedule_text} · next {schedule_spec.when_text(nxt, sub.timezone)} · {status}"
            )
        return out

    def build(self, user_id: str) -> dict[str, Any]:
        try:
            return view(self.data(user_id))
        except SegmentationError as exc:
            return unavailable(blocks.hide_paths(str(exc)))

    def publish(self, user_id: str, channel_id: str | None = None) -> None:
        """Publish the tab for one person (and remember them, to refresh it later)."""
        self.ctx.state.home_opened(user_id, channel_id)
        self.client.views_publish(user_id=user_id, view=self.build(user_id))

    def refresh_all(self) -> int:
        """Publish the tab again for everyone who opened it lately; returns how many."""
        n = 0
        for user_id, _ in self.ctx.state.home_viewers():
            try:
                self.client.views_publish(user_id=user_id, view=self.build(user_id))
                n += 1
            except SlackApiError as exc:  # a user gone from the workspace: the others still get it
                log.warning("could not refresh the Home tab of %s: %s", user_id, exc.response.get("error"))
        return n

    def dm(self, user_id: str) -> str:
        """The person's direct-message channel with the app."""
        return self.ctx.state.home_channel(user_id) or self.client.conversations_open(users=user_id)["channel"]["id"]
