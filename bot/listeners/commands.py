"""The /segment command and its subcommands.

Every subcommand returns the message to acknowledge with (ephemeral) and, optionally, work to
do after the acknowledgement (uploads). Answers go in the ack itself: no second round trip.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from segmentation.errors import InputError, SegmentationError
from segmentation.serving import schedule_spec
from segmentation.serving.inputs import parse_rfm, shown
from segmentation.serving.options import BOUNDS, TrainOptions

from .. import admin, blocks
from ..context import BotContext
from ..digest_runs import CHANNEL_ERRORS
from ..exports import send_segments_csv
from ..followup import Heavy
from ..mrkdwn import channel

COMMAND = "/segment"
log = logging.getLogger(__name__)
After = Callable[[], str | None]  # work after the ack; may return its outcome for the audit log


@dataclass
class Request:
    ctx: BotContext
    args: str
    user_id: str
    channel_id: str
    client: WebClient
    respond: Respond


Reply = tuple[blocks.Message, After | None]


def do_predict(req: Request) -> Reply:
    rfm = parse_rfm(req.args)
    return blocks.prediction(req.ctx.service.served().predict(rfm)), None


def do_customer(req: Request) -> Reply:
    if not req.args.strip():
        raise InputError("Which customer? Example: /segment customer 861eff4711a542e4b93843c6dd7febb0")
    return blocks.customer(req.ctx.service.served().customer(req.args.strip())), None


def do_segments(req: Request) -> Reply:
    return blocks.segments(req.ctx.service.served()), None


def do_at_risk(req: Request) -> Reply:
    served = req.ctx.service.served()
    return blocks.at_risk(served.at_risk(), served.terms), None


def do_export(req: Request) -> Reply:
    if not req.args.strip():
        example = _example_segment(req) or "Champions"
        raise InputError(f"Which segment? Example: /segment export {example}  (see /segment segments for names)")
    served = req.ctx.service.served()  # the upload uses this version even if a retrain lands meanwhile
    matched = served.resolve(req.args)
    label = req.args.strip()

    def upload() -> None:
        line = send_segments_csv(req.client, served, req.user_id, matched, label)
        req.respond(response_type="ephemeral", replace_original=False, **blocks.plain(line))

    names = "; ".join(s.name for s in matched)
    return blocks.plain(f"Preparing the export of {names}… I'll send the CSV in a direct message."), upload


def do_model(req: Request) -> Reply:
    return blocks.model_info(req.ctx.service.served()), None


def _refuse(req: Request, command: str) -> Reply | None:
    if req.ctx.settings.is_admin(req.user_id):
        return None
    req.ctx.state.audit(req.user_id, command, req.args, False, "refused: not an admin", req.channel_id)
    return blocks.error_line(
        f"Only admins can {command}. Ask one of them, or have your user id added to SEGMENT_ADMIN_USER_IDS."
    ), None


RETRAIN_HELP = "`/segment retrain` keeps the served model's K and seed; give new ones as `/segment retrain k=12 seed=7`"


def retrain_options(args: str) -> TrainOptions:
    """``k=12 seed=7`` → TrainOptions(k=12, seed=7); anything else is one line of refusal."""
    given: dict[str, int] = {}
    for token in args.split():
        key, sep, value = token.partition("=")
        key = key.lower()
        if not sep or key not in BOUNDS:
            raise InputError(f"I don't know the retrain option '{shown(token, 40)}'. {RETRAIN_HELP}.")
        lo, hi = BOUNDS[key]
        if not re.fullmatch(r"[0-9]{1,10}", value) or not lo <= int(value) <= hi:
            raise InputError(f"{key} must be a whole number from {lo} to {hi:,}, not '{shown(value, 40)}'.")
        given[key] = int(value)
    return TrainOptions(**given)


def do_retrain(req: Request) -> Reply:
    refused = _refuse(req, "retrain")
    if refused:
        return refused
    try:
        options = retrain_options(req.args)
    except InputError as exc:
        req.ctx.state.audit(req.user_id, "retrain", req.args, True, f"refused: {exc}", req.channel_id)
        raise
    except Exception as exc:
        req.ctx.state.audit(req.user_id, "retrain", req.args, True, f"failed: {type(exc).__name__}", req.channel_id)
        raise
    line = req.ctx.retrainer.request(req.user_id, req.channel_id, req.client, req.respond, options)
    return blocks.plain(line), None


def do_rollback(req: Request) -> Reply:
    return _switch(req, "rollback", admin.rollback)


def do_serve(req: Request) -> Reply:
    return _switch(req, "serve", admin.serve)


def _switch(req: Request, command: str, use_case: Callable[..., tuple[bool, str]]) -> Reply:
    refused = _refuse(req, command)
    if refused:
        return refused
    if command == "serve" and not req.args.strip():
        raise InputError("Which version? Example: /segment serve v0003 (/segment model lists them)")
    done, line = use_case(req.ctx, req.user_id, req.args.strip(), req.channel_id)
    if not done:
        return blocks.error_line(line), None

    def refresh_home() -> None:  # the Home tab shows the model that serves now
        req.ctx.home.refresh_all()

    return blocks.plain(line), refresh_home


DIGEST_HELP = (
    "`/segment digest subscribe daily 09:00` (or `weekly mon 09:00`, or a cron line such as "
    "`0 9 * * 1-5`, optionally followed by a time zone like `Europe/Berlin`) · `/segment digest list` · "
    "`/segment digest unsubscribe` · `/segment digest now`"
)


def _check_channel(req: Request) -> str | None:
    """Why the bot can't post here, or None if it can."""
    try:
        info = req.client.conversations_info(channel=req.channel_id)["channel"]
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error in {"channel_not_found", "not_in_channel"}:
            return (
                "I can't see this channel. If it is private, invite me first with `/invite @segment`, "
                "then subscribe again."
            )
        if error == "missing_scope":
            needed = exc.response.get("needed") or "im:read, mpim:read"
            return (
                f"I'm not allowed to look at this conversation (Slack needs the {needed} permission). "
                "An admin can reinstall the app from slack-manifest.yml, which asks for it."
            )
        raise
    if not info.get("is_im") and not info.get("is_member", True):
        return "I'm not a member of this channel yet: invite me with `/invite @segment`, then subscribe again."
    return None


def do_digest(req: Request) -> Reply:
    """``/segment digest …``. Changes (subscribe, unsubscribe, now) leave one audit row each,
    allowed or refused."""
    word = req.args.strip().partition(" ")[0].lower()
    if word not in {"subscribe", "unsubscribe", "now"}:
        return _digest(req)
    command, args = f"digest {word}", req.args.strip().partition(" ")[2]
    audit = lambda allowed, result: req.ctx.state.audit(  # noqa: E731
        req.user_id, command, args, allowed, result, req.channel_id
    )
    if not req.ctx.can_manage_digests(req.user_id):
        audit(False, "refused: not an admin (SEGMENT_DIGEST_ADMIN_ONLY)")
        return blocks.error_line("Only admins manage digests here (SEGMENT_DIGEST_ADMIN_ONLY is on)."), None
    try:
        message, after = _digest(req)
    except SegmentationError as exc:
        audit(True, f"failed: {exc}")
        raise
    except Exception as exc:
        audit(True, f"failed: {type(exc).__name__}")
        raise
    row = audit(True, message["text"][:300])
    if after is None:
        return message, after
    work = after

    def after_then_audit() -> str | None:  # "digest now": the row gets the run's outcome
        try:
            outcome = work()
        except Exception as exc:
            req.ctx.state.audit_result(row, f"failed: {type(exc).__name__}: {exc}")
            raise
        req.ctx.state.audit_result(row, outcome or "done")
        return outcome

    return message, (Heavy(after_then_audit) if isinstance(work, Heavy) else after_then_audit)


def _digest(req: Request) -> Reply:
    ctx = req.ctx
    word, _, rest = req.args.strip().partition(" ")
    word = word.lower()
    if word == "subscribe":
        schedule = schedule_spec.parse(rest, ctx.settings.timezone)
        problem = _check_channel(req)
        if problem:
            return blocks.error_line(problem), None
        before = ctx.digests.subscription(req.channel_id)
        ctx.digests.subscribe(req.channel_id, schedule, req.user_id)
        if ctx.scheduler:
            ctx.scheduler.changed()
        nxt = schedule.trigger().get_next_fire_time(None, dt.datetime.now(dt.UTC))
        if before is not None and (before.cron, before.timezone) == (schedule.cron, schedule.timezone):
            done = f"{channel(req.channel_id)} already gets the digest {schedule.text}; nothing changed."
        elif before is not None:
            done = (
                f"Changed {channel(req.channel_id)}'s digest from {before.schedule_text} to {schedule.text} "
                "(a channel has one schedule)."
            )
        else:
            done = f"Subscribed {channel(req.channel_id)} to the digest {schedule.text}."
        return blocks.plain(f"{done} Next one: {schedule_spec.when_text(nxt, schedule.timezone)}."), None
    if word == "unsubscribe":
        removed = ctx.digests.unsubscribe(req.channel_id)
        if ctx.scheduler:
            ctx.scheduler.changed()
        return blocks.plain(
            "Unsubscribed: no more digests here." if removed else "This channel has no digest subscription."
        ), None
    if word == "list":
        subs = ctx.digests.subscriptions()
        if not subs:
            return blocks.plain("No digest subscriptions yet. " + DIGEST_HELP), None
        next_runs = ctx.scheduler.next_runs() if ctx.scheduler else {}
        now = dt.datetime.now(dt.UTC)
        lines = []
        for sub in subs:
            nxt = next_runs.get(sub.channel_id) or schedule_spec.make_trigger(
                sub.cron, sub.timezone
            ).get_next_fire_time(None, now)
            last = sub.last_run
            status = (
                "no digest yet"
                if last is None
                else (
                    f"{last.status}"
                    + (f" ({last.error})" if last.error else "")
                    + f" at {last.scheduled_for:%d %b %H:%M} UTC"
                )
            )
            lines.append(
                f"• {channel(sub.channel_id)} {sub.schedule_text} · next {schedule_spec.when_text(nxt, sub.timezone)} · last: {status}"
            )
        return blocks.plain("*Digest subscriptions*\n" + "\n".join(lines)), None
    if word == "now":
        # One digest on demand per channel and minute, recorded before the acknowledgement (a
        # crash after it leaves a run that recovery finishes), on the heavy pool.
        slot = ctx.digests.manual_slot()
        if not ctx.follow_ups.reserve_heavy():
            return blocks.error_line("I'm building other digests right now; try again in a minute."), None
        run_id = ctx.digests.claim(req.channel_id, slot)
        if run_id is None:
            ctx.follow_ups.release_heavy()
            wait = max(1, 60 - dt.datetime.now(dt.UTC).second)
            return blocks.error_line(
                f"A digest for this channel was already asked for at {slot:%H:%M} UTC; one a minute at most, "
                f"so try again in {wait} s."
            ), None

        def post() -> str:
            outcome = ctx.digests.deliver(run_id, req.channel_id, slot)
            if outcome.status == "failed":
                hint = CHANNEL_ERRORS.get(outcome.error or "", outcome.error)
                req.respond(
                    response_type="ephemeral",
                    replace_original=False,
                    **blocks.error_line(f"The digest could not be posted: {hint}."),
                )
            return outcome.status + (f": {outcome.error}" if outcome.error else "")

        return blocks.plain("Building the digest for this channel…"), Heavy(post)
    return blocks.help_message("*Digests*: " + DIGEST_HELP), None


def do_help(req: Request) -> Reply:
    return blocks.help_message(segment=_example_segment(req)), None


def _example_segment(req: Request) -> str | None:
    """A segment name of the served model, so the help's export example works as typed."""
    try:
        served = req.ctx.service.served()
    except SegmentationError:
        return None
    risky = [r.name for r in served.at_risk().by_segment]
    return risky[0] if risky else served.trained.segments[0].name


SUBCOMMANDS: dict[str, Callable[[Request], Reply]] = {
    "help": do_help,
    "customer": do_customer,
    "segments": do_segments,
    "at-risk": do_at_risk,
    "atrisk": do_at_risk,
    "at_risk": do_at_risk,
    "export": do_export,
    "model": do_model,
    "retrain": do_retrain,
    "rollback": do_rollback,
    "serve": do_serve,
    "digest": do_digest,
    "digests": do_digest,
}


def route(text: str) -> tuple[Callable[[Request], Reply] | None, str]:
    """The subcommand for ``text`` and its arguments; (None, word) when unrecognised."""
    text = " ".join(text.split())
    if not text:
        return do_help, ""
    word, _, rest = text.partition(" ")
    handler = SUBCOMMANDS.get(word.lower())
    if handler:
        return handler, rest
    if any(ch.isdigit() for ch in text) or "=" in word or word.lower().lstrip("+-") in _NUMBER_WORDS:
        return do_predict, text
    return None, word


_NUMBER_WORDS = {"nan", "inf", "infinity"}


def handle_segment(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient, ctx: BotContext) -> None:
    handler, args = route(command.get("text") or "")
    if handler is None:
        ack(
            response_type="ephemeral",
            **blocks.error_line(
                f"I don't know `{shown(args)}`. Try `/segment 30 2 150` (days since the last order, orders, "
                "spend), `/segment customer <id>`, or `/segment help` for everything."
            ),
        )
        return
    req = Request(ctx, args, command.get("user_id", ""), command.get("channel_id", ""), client, respond)
    after: After | None = None
    try:
        message, after = handler(req)
    except SegmentationError as exc:  # bad input or an unusable model/data: one line, as is
        message = blocks.error_line(str(exc))
    except Exception:  # noqa: BLE001 - never a traceback at a user
        log.exception("/segment %s failed", handler.__name__)
        message = blocks.error_line(
            "Something went wrong on our side; the details are in the bot's log. Please try again."
        )
    ack(response_type="ephemeral", **message)
    if after is not None:
        ctx.follow_ups.submit(respond, after)


def register(app: App, ctx: BotContext) -> None:
    @app.command(COMMAND)
    def segment_command(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        handle_segment(ack, command, respond, client, ctx)
