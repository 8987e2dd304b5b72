"""The Home tab: published when someone opens it; its buttons answer in the person's direct
messages with the app (a Home tab has no response URL)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from segmentation.serving.options import TrainOptions

from .. import admin, blocks
from ..context import BotContext
from ..followup import guarded

log = logging.getLogger(__name__)


def _logged(**message: Any) -> None:
    """Where a failure with no one to tell goes: the log (the pool logs the traceback too)."""
    log.warning("Home tab: %s", message.get("text", ""))


def dm_responder(client: WebClient, channel: str) -> Callable[..., Any]:
    """A ``respond`` that posts to a direct-message channel (what the follow-up pool answers with)."""

    def respond(**message: Any) -> None:
        message.pop("response_type", None)
        message.pop("replace_original", None)
        client.chat_postMessage(channel=channel, **message)

    return respond


def on_opened(event: dict[str, Any], client: WebClient, ctx: BotContext) -> None:
    if event.get("tab", "home") != "home":
        return  # the Messages tab: nothing to publish
    ctx.home.publish(event["user"], event.get("channel"))


def show_segments(user_id: str, respond: Callable[..., Any], ctx: BotContext) -> None:
    respond(**blocks.segments(ctx.service.served()))


def export_at_risk(body: dict[str, Any], respond: Callable[..., Any], client: WebClient, ctx: BotContext) -> None:
    """As the digest's and the at-risk answer's export: the value came back from Slack and is checked."""
    line = admin.export_at_risk(ctx, client, body["user"]["id"], body["actions"][0].get("value") or "")
    respond(**blocks.plain(line))


def retrain(user_id: str, dm: str, respond: Callable[..., Any], client: WebClient, ctx: BotContext) -> None:
    """Admins only, checked again here (a click is a request like any other); one audit row."""
    if not ctx.settings.is_admin(user_id):
        ctx.state.audit(user_id, "retrain", "home", False, "refused: not an admin", dm)
        respond(**blocks.error_line("Only admins can retrain."))
        return
    line = ctx.retrainer.request(user_id, dm, client, respond, TrainOptions())
    respond(**blocks.plain(line))


def rollback(user_id: str, dm: str, respond: Callable[..., Any], ctx: BotContext) -> None:
    if not ctx.settings.is_admin(user_id):
        ctx.state.audit(user_id, "rollback", "home", False, "refused: not an admin", dm)
        respond(**blocks.error_line("Only admins can roll back."))
        return
    done, line = admin.rollback(ctx, user_id, "home", dm)
    respond(**(blocks.plain(line) if done else blocks.error_line(line)))
    if not done:
        return
    ctx.home.refresh_all()


def register(app: App, ctx: BotContext) -> None:
    """The event and every click are acknowledged at once; the work runs in the follow-up pool."""

    @app.event("app_home_opened")
    def on_home_opened(event: dict[str, Any], client: WebClient) -> None:
        ctx.follow_ups.submit(_logged, on_opened, event, client, ctx)

    def clicked(name: str, work: Callable[..., None]) -> None:
        @app.action(name)
        def on_click(ack: Ack, body: dict[str, Any], client: WebClient) -> None:
            ack()
            user = body["user"]["id"]

            def run() -> None:  # where to answer is found after the ack too (it may need Slack)
                dm = ctx.home.dm(user)
                respond = dm_responder(client, dm)
                guarded(respond, work, user, dm, respond, body, client)

            ctx.follow_ups.submit(_logged, run)

    clicked("home_show_segments", lambda user, dm, respond, body, client: show_segments(user, respond, ctx))
    clicked("home_export_at_risk", lambda user, dm, respond, body, client: export_at_risk(body, respond, client, ctx))
    clicked("home_retrain", lambda user, dm, respond, body, client: retrain(user, dm, respond, client, ctx))
    clicked("home_rollback", lambda user, dm, respond, body, client: rollback(user, dm, respond, ctx))
