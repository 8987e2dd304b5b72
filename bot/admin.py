"""Use cases the command, button and Home listeners share, each written once."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from segmentation.errors import SegmentationError

from .digest_data import check_as_of, export_value, write_at_risk_as_of
from .exports import send_csv
from .retrain import busy_line

if TYPE_CHECKING:
    from .context import BotContext


def export_at_risk(ctx: BotContext, client: WebClient, user: str, value: str) -> str:
    """Send ``user`` the at-risk customers a button's ``value`` names (it came back from Slack
    and is checked: a version the store keeps, and a date the model can score as of); the line
    to answer with."""
    version, as_of = export_value(value)
    served = ctx.service.served(version)  # a version the store keeps, or one line of refusal
    if as_of is not None:  # from a digest: the customers that digest counted, scored as of its date
        check_as_of(as_of, served.info.snapshot_day)
        return send_csv(
            client,
            user,
            f"at-risk-{as_of}-{version}.csv",
            f"At-risk customers as of {as_of} ({version})",
            lambda path: write_at_risk_as_of(ctx, as_of, path, served),
            f"scored as of {as_of} with model {version}",
        )
    return send_csv(
        client,
        user,
        f"at-risk-{version}.csv",
        f"At-risk customers ({version})",
        lambda path: served.export_at_risk(path),
        f"at risk in model {version}",
    )


def rollback(ctx: BotContext, user_id: str, args: str, channel_id: str) -> tuple[bool, str]:
    """Serve the previous model version for an admin (the caller checked that), unless a retrain
    is running; one audit row either way. Returns (rolled back, the line to answer with)."""
    return _switch(ctx, user_id, "rollback", args, channel_id, ctx.service.rollback, "Rolled back")


def serve(ctx: BotContext, user_id: str, args: str, channel_id: str) -> tuple[bool, str]:
    """Serve the version ``args`` names (checked by the store: a kept version that verifies) for
    an admin, unless a retrain is running; one audit row either way."""
    return _switch(ctx, user_id, "serve", args, channel_id, lambda: ctx.service.serve(args), "Switched")


def _switch(
    ctx: BotContext,
    user_id: str,
    command: str,
    args: str,
    channel_id: str,
    change: Callable[[], tuple[str | None, str]],
    done: str,
) -> tuple[bool, str]:
    running, note = ctx.retrainer.running()
    if running is not None:
        line = busy_line(running)
        ctx.state.audit(user_id, command, args, True, f"busy: {line}", channel_id)
        return False, f"{line} Try again after its result is posted."
    prefix = f"{note} " if note else ""
    try:
        old, new = change()
    except SegmentationError as exc:
        ctx.state.audit(user_id, command, args, True, f"failed: {exc}", channel_id)
        return False, prefix + str(exc)
    ctx.state.audit(user_id, command, args, True, f"succeeded: {old} -> {new}", channel_id)
    return True, prefix + f"{done}: now serving model {new} (was {old or 'none'})."
