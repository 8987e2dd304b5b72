"""The ``segment`` command with the bot's subcommands: ``bot`` and ``chat``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import urllib.error
from collections.abc import Sequence
from pathlib import Path

from segment_cli import settings as settings_mod
from segment_cli.args import Command
from segment_cli.main import main as segmentation_main
from segmentation import runtime
from segmentation.errors import SegmentationError

log = logging.getLogger("bot")


def _ensure_model(ctx) -> None:
    """Check SEGMENT_DATA at once (a typo fails the start, not the first digest). A bot with no
    model yet trains one on it first, so it can answer at once. A damaged served model does not
    stop the bot: it says so in every answer, and an admin can roll back or retrain from Slack."""
    if ctx.settings.data:  # checked, not read (the built-in sample is only made when it is needed)
        ctx.service.source(ctx.settings.data)
    if ctx.service.has_model():
        try:
            ctx.service.served()
        except SegmentationError as exc:
            log.warning("the served model cannot be used: %s", exc)
            print(
                f"Warning: the served model cannot be used ({exc}). Answers will say so until an admin "
                "runs /segment rollback or /segment retrain.",
                file=sys.stderr,
                flush=True,
            )
        return
    source = ctx.service.source(ctx.settings.data).source
    log.info("No model yet: training on %s", source.describe())
    print(f"No model yet: training one on {source.describe()}…", file=sys.stderr, flush=True)
    ctx.service.train(ctx.settings.data, trained_by="startup")


def _raise_interrupt(signum, frame) -> None:  # SIGTERM ends the bot like Ctrl-C: cleanly
    raise KeyboardInterrupt


def run_bot(args: argparse.Namespace) -> int:
    from .app import (  # lazy: Slack's SDK takes seconds to import; most commands never need it
        build_context,
        configure_logging,
        create_app,
        start_scheduler,
    )

    configure_logging()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    settings = settings_mod.load(artifacts=args.artifacts)  # --artifacts wins over .env
    runtime.configure(settings.runtime)
    ctx = build_context(settings)
    read_only = ctx.service.tidy()
    if read_only:
        log.warning("%s", read_only)
    _ensure_model(ctx)
    app = _app_or_one_line(create_app, ctx)
    start_scheduler(ctx)
    try:  # every way out (Ctrl-C, SIGTERM, a crash) releases the digest scheduler's lease
        if settings.socket_mode:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            log.info("Starting in Socket Mode (model %s)", ctx.service.describe_current())
            SocketModeHandler(app, settings.app_token).start()
        else:
            from .server import HttpServer, response_hosts  # lazy: the HTTP server only in HTTP mode

            server = HttpServer(
                app,
                settings.signing_secret,
                ctx.state,
                host=settings.bind_address,
                port=settings.port,
                response_hosts=response_hosts(settings.api_url),
            )
            log.info("Listening on %s (model %s)", server.url, ctx.service.describe_current())
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        shutdown(ctx)
    return 0


class SlackUnreachable(SegmentationError):
    """Slack's Web API did not answer or refused the token at start-up."""


def _app_or_one_line(create_app, ctx):
    """The Bolt app, whose creation checks the token with Slack (auth.test); no network or a
    refused token is one line naming what to check, not a traceback."""
    from slack_sdk.errors import SlackApiError  # lazy: Slack's SDK takes seconds to import

    where = ctx.settings.api_url or "https://slack.com/api/"
    try:
        return create_app(ctx)
    except SlackApiError as exc:
        code = exc.response.get("error") or f"HTTP {exc.response.status_code}"
        raise SlackUnreachable(f"Slack refused the bot token ({code}): check SLACK_BOT_TOKEN") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SlackUnreachable(
            f"Slack cannot be reached at {where} ({reason}): check the network, a proxy, or SLACK_API_URL"
        ) from None


def shutdown(ctx) -> None:
    """Stop scheduling and release the lease so another bot takes over at once."""
    if ctx.scheduler is not None:
        ctx.scheduler.stop()
    ctx.follow_ups.shutdown()


def run_chat(args: argparse.Namespace) -> int:
    from .app import build_context, create_app, start_scheduler  # lazy: Slack's SDK takes seconds to import
    from .console import Console  # lazy: the console only for segment chat

    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    base = settings_mod.load(require_slack=False, artifacts=args.artifacts)
    runtime.configure(base.runtime)
    # The console keeps its own state (audit, subscriptions, schedule) so it can never take over
    # the real bot's digest scheduler or write subscriptions for channels that only exist here.
    # Models are shared: a retrain or rollback typed here is as real as `segment train`.
    base = dataclasses.replace(
        base, database_url=f"sqlite:///{Path(args.artifacts) / 'console.db'}", digest_channel=None, digest_cron=None
    )
    ctx_holder = {}

    def factory(s):
        ctx = build_context(s)
        ctx_holder["ctx"] = ctx
        return create_app(ctx, process_before_response=True)

    console = Console(factory, base, user_id=args.user)
    try:
        _ensure_model(ctx_holder["ctx"])
        start_scheduler(ctx_holder["ctx"])
        console.loop()
    finally:
        ctx = ctx_holder["ctx"]
        ctx.retrainer.join(timeout=600)
        if ctx.scheduler:
            ctx.scheduler.stop()
        ctx.follow_ups.shutdown()
        console.close()
    return 0


def _configure_chat(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", default="U0CONSOLE", help="Slack user id to act as (the console user is an admin)")


COMMANDS = [
    Command("bot", "run the Slack bot (Socket Mode with SLACK_APP_TOKEN, else HTTP on PORT)", lambda p: None, run_bot),
    Command("chat", "try the bot in this terminal, no Slack workspace needed", _configure_chat, run_chat),
]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``segment`` command. ``.env`` is read first (without overriding the environment), so the
    CLI and the bot agree on SEGMENT_ARTIFACTS, the model key and the rest."""
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)
    return segmentation_main(argv, extra=COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
