"""Button clicks: share a prediction in the channel, export the at-risk customers."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from segmentation.errors import InputError
from segmentation.serving.inputs import parse_rfm

from .. import admin, blocks
from ..context import BotContext


def share_prediction(body: dict[str, Any], respond: Respond, ctx: BotContext) -> None:
    """Post the answer that was shown: the same profile answered by the same model version. The
    button's value came back from Slack, so every field of it is checked again."""
    try:
        value = json.loads(body["actions"][0]["value"])
        r, f, m, version = value["r"], value["f"], value["m"], value.get("v")
    except (KeyError, IndexError, TypeError, ValueError):
        raise InputError("That button is not one of mine; ask again with /segment R F M.") from None
    rfm = parse_rfm([f"r={r}", f"f={f}", f"m={m}"])
    served = ctx.service.served(version) if version is not None else ctx.service.served()
    respond(
        response_type="in_channel",
        replace_original=False,
        **blocks.prediction(served.predict(rfm), shareable=False, asked_by=body["user"]["id"]),
    )


def export_at_risk(body: dict[str, Any], respond: Respond, client: WebClient, ctx: BotContext) -> None:
    line = admin.export_at_risk(ctx, client, body["user"]["id"], body["actions"][0].get("value") or "")
    respond(response_type="ephemeral", replace_original=False, **blocks.plain(line))


def show_segments(respond: Respond, ctx: BotContext) -> None:
    respond(response_type="ephemeral", replace_original=False, **blocks.segments(ctx.service.served()))


def register(app: App, ctx: BotContext) -> None:
    """Every click is acknowledged at once; the answer goes through the response URL from the
    follow-up pool, so a slow response URL never delays the ack past Slack's 3 seconds."""

    @app.action("show_segments")
    def on_segments(ack: Ack, respond: Respond) -> None:
        ack()
        ctx.follow_ups.submit(respond, show_segments, respond, ctx)

    @app.action("share_prediction")
    def on_share(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        ctx.follow_ups.submit(respond, share_prediction, body, respond, ctx)

    @app.action("export_at_risk")
    def on_export(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        ctx.follow_ups.submit(respond, export_at_risk, body, respond, client, ctx)
