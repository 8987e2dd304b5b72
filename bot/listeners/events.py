"""Events: a mention of the bot gets the help text in a thread."""

from __future__ import annotations

from typing import Any

from slack_bolt import App, Say

from .. import blocks
from ..context import BotContext


def register(app: App, ctx: BotContext) -> None:
    @app.event("app_mention")
    def on_mention(event: dict[str, Any], say: Say) -> None:
        say(thread_ts=event.get("thread_ts") or event.get("ts"), **blocks.help_message())
