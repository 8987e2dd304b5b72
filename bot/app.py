"""The Bolt app factory: settings, model store, state database and Web API client are passed in."""

from __future__ import annotations

import logging
import re

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import (
    BackoffRetryIntervalCalculator,
)

from segment_cli.settings import Settings
from segmentation.serving.schedule_spec import parse
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore

from .context import BotContext
from .digests import Digests
from .home import Home
from .listeners import register_listeners
from .retrain import Retrainer, TrainFn
from .scheduling import DigestScheduler
from .state import StateDB, clean_text

log = logging.getLogger(__name__)
_TOKEN = re.compile(r"xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+")


class RedactTokens(logging.Filter):
    """Keeps Slack tokens out of logs, whatever a library decides to log."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if _TOKEN.search(msg):
            record.msg, record.args = _TOKEN.sub("xox…redacted", msg), None
        return True


class OneLine(logging.Filter):
    """One record, one line: newlines and other control characters in a message (often from user
    input) are escaped, so no one can forge a log line. Tracebacks are formatted separately."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        cleaned = clean_text(msg)
        if cleaned != msg:
            record.msg, record.args = cleaned, None
        return True


class _QuietBoltClientWarning(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN is unused when a client is given: we build that client from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())
        handler.addFilter(OneLine())
        handler.addFilter(_QuietBoltClientWarning())
    logging.getLogger("slack_sdk").setLevel(max(level, logging.INFO))


def make_client(settings: Settings) -> WebClient:
    """A Web API client that retries rate limits (429 + Retry-After), 5xx answers and dropped connections."""
    return WebClient(
        token=settings.bot_token,
        base_url=settings.api_url or WebClient.BASE_URL,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=3, interval_calculator=BackoffRetryIntervalCalculator()),
        ],
    )


def build_context(
    settings: Settings,
    *,
    service: SegmentService | None = None,
    state: StateDB | None = None,
    train_fn: TrainFn | None = None,
    client: WebClient | None = None,
) -> BotContext:

    service = service or SegmentService(
        ModelStore(settings.artifacts, key=settings.model_key, max_bytes=settings.keep_bytes)
    )
    state = state or StateDB(settings.database_url)
    kwargs = {"train_fn": train_fn} if train_fn else {}
    client = client or make_client(settings)
    ctx = BotContext(settings, service, state, Retrainer(settings, service, state, **kwargs), client)
    ctx.digests = Digests(ctx, client)
    ctx.home = Home(ctx, client)
    ctx.retrainer.after_success = ctx.home.refresh_all  # the Home tab shows the new model
    return ctx


def start_scheduler(ctx: BotContext, **kwargs) -> None:
    """Schedule digests (if this process wins the lease), after adding the default subscription."""

    s = ctx.settings
    if s.digest_channel and s.digest_cron:
        schedule = parse(s.digest_cron, s.timezone)
        current = ctx.digests.subscription(s.digest_channel)
        if not current or (current.cron, current.timezone) != (schedule.cron, schedule.timezone):
            ctx.digests.subscribe(s.digest_channel, schedule, "DIGEST_CHANNEL")
    ctx.scheduler = DigestScheduler(ctx.digests, **kwargs).start()


def create_app(ctx: BotContext, *, process_before_response: bool = True) -> App:
    """The Bolt app. Listeners run before the response is sent (``process_before_response``):
    they are all quick, slow work goes to ``ctx.follow_ups`` or the retrainer, and Bolt's
    deferred-ack mode would add a 10 ms polling delay to every answer."""
    settings = ctx.settings
    app = App(
        signing_secret=settings.signing_secret,
        client=ctx.client,  # carries the token and SLACK_API_URL
        process_before_response=process_before_response,
    )
    register_listeners(app, ctx)

    @app.error
    def on_error(error: Exception) -> None:
        """The one place a listener's unexpected exception ends up: logged, never shown to a user
        (listeners already answer with one line for everything they expect)."""
        log.error("a listener failed: %s", type(error).__name__, exc_info=error)

    return app
