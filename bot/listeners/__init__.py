"""Listeners grouped by kind; each module registers its own handlers."""

from __future__ import annotations

from slack_bolt import App

from ..context import BotContext
from . import actions, commands, events, home


def register_listeners(app: App, ctx: BotContext) -> None:
    commands.register(app, ctx)
    actions.register(app, ctx)
    events.register(app, ctx)
    home.register(app, ctx)
