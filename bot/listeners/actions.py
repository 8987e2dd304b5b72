"""Button clicks: share a prediction in the channel, export the at-risk customers."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from segmentation.inputs import parse_rfm

from .. import blocks
from ..context import BotContext
from ..digests import write_at_risk_as_of
from ..exports import send_csv, send_segments_csv
from ..followup import guarded


def share_prediction(body: dict[str, Any], respond: Respond, ctx: BotContext) -> None:
    value = json.loads(body["actions"][0]["value"])
    rfm = parse_rfm([f"r={value['r']}", f"f={value['f']}", f"m={value['m']}"])  # re-checked, never trusted
    p = ctx.service.predict(rfm)
    respond(response_type="in_channel", replace_original=False,
            **blocks.prediction(p, ctx.service.version, shareable=False, asked_by=body["user"]["id"]))


def export_at_risk(body: dict[str, Any], respond: Respond, client: WebClient, ctx: BotContext) -> None:
    value = body["actions"][0].get("value") or ""
    if value:  # from a digest: the customers that digest counted, scored as of its date
        spec = json.loads(value)
        as_of = dt.date.fromisoformat(spec["as_of"])
        version = spec.get("model") or ctx.service.version
        line = send_csv(client, body["user"]["id"], f"at-risk-{as_of}-{version}.csv",
                        f"At-risk customers as of {as_of} ({version})",
                        lambda path: write_at_risk_as_of(ctx, as_of, path, version),
                        f"scored as of {as_of} with model {version}")
        respond(response_type="ephemeral", replace_original=False, **blocks.plain(line))
        return
    summary = ctx.service.at_risk()
    if not summary["segments"]:
        respond(response_type="ephemeral", replace_original=False, **blocks.plain("No customers are at risk in this model."))
        return
    line = send_segments_csv(client, ctx.service, body["user"]["id"], summary["segments"], "at-risk",
                             summary["model_version"])
    respond(response_type="ephemeral", replace_original=False, **blocks.plain(line))


def show_segments(respond: Respond, ctx: BotContext) -> None:
    s = ctx.service
    respond(response_type="ephemeral", replace_original=False, **blocks.segments(s.segments(), s.version, s.metadata))


def register(app: App, ctx: BotContext) -> None:
    @app.action("show_segments")
    def on_segments(ack: Ack, respond: Respond) -> None:
        ack()
        guarded(respond, show_segments, respond, ctx)

    @app.action("share_prediction")
    def on_share(ack: Ack, body: dict[str, Any], respond: Respond) -> None:
        ack()
        guarded(respond, share_prediction, body, respond, ctx)

    @app.action("export_at_risk")
    def on_export(ack: Ack, body: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        ctx.follow_ups.submit(respond, export_at_risk, body, respond, client, ctx)
