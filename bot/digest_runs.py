"""One digest run: how it ends (RunOutcome), how its message is marked in Slack, when its process is gone, and which channel errors need someone to act."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from . import liveness
from .state import utcnow

# Errors that mean "this channel can't get digests until someone acts"; shown in /segment digest list.
CHANNEL_ERRORS = {
    "channel_not_found": "the channel is gone or private without me: /invite @segment",
    "not_in_channel": "I'm not in the channel: /invite @segment",
    "is_archived": "the channel is archived",
    "invalid_auth": "the bot token is invalid",
    "token_revoked": "the bot token was revoked",
    "account_inactive": "the bot's account is inactive",
}


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


@dataclass(frozen=True)
class LastRun:
    scheduled_for: dt.datetime
    status: str
    error: str | None = None


@dataclass(frozen=True)
class Subscription:
    """A channel's digest subscription, with how its last run ended."""

    channel_id: str
    cron: str
    timezone: str
    schedule_text: str
    created_by: str
    created_at: dt.datetime
    last_run: LastRun | None = None


@dataclass(frozen=True)
class RecordedDigest:
    """What a posted digest recorded: its sizes and churn risk, with the model and data it used."""

    channel_id: str
    scheduled_for: dt.datetime
    counts: dict[str, int]
    customers: int | None
    latest_order: dt.date | None
    at_risk_customers: int | None
    at_risk_revenue: float | None
    model_version: str | None
    data_source: str | None
    scored_as_of: dt.date | None = None  # None: the run date (digests recorded before it was kept)

    @property
    def as_of(self) -> dt.date:
        return self.scored_as_of or self.scheduled_for.date()
