"""Use cases the command, button and Home listeners share, each written once."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from slack_sdk import WebClient

from .digest_data import check_as_of, export_value, write_at_risk_as_of
from .exports import send_csv

if TYPE_CHECKING:
    from .context import BotContext


def export_at_risk(ctx: BotContext, client: WebClient, user: str, value: str) -> str:
    """Send ``user`` the at-risk customers a button's ``value`` names (it came back from Slack
    and is checked: a version the store keeps, and a date the model can score as of); the line
    to answer with."""
    version, as_of = export_value(value)
    served = ctx.service.served(version)  # a version the store keeps, or one line of refusal
    if as_of is not None:  # from a digest: the customers that digest counted, scored as of its date
        check_as_of(as_of, dt.date.fromisoformat(served.info.snapshot_date))
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
