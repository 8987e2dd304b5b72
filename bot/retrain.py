"""Admin retraining: one at a time (a lease in the state database), off the request thread.

The new model becomes current only once the store has written and verified it; on failure
the error is posted and the previous model keeps serving.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from segment_cli.settings import Settings
from segmentation.errors import ModelNotFoundError, SegmentationError
from segmentation.model.segments import TrainedModel
from segmentation.serving.options import TrainOptions
from segmentation.serving.service import SegmentService
from segmentation.serving.training import train

from . import blocks, liveness
from .mrkdwn import as_text, user
from .state import Lease, StateDB, utcnow

log = logging.getLogger(__name__)
LEASE = "retrain"
# The lease is renewed while training runs, so a process that dies mid-training blocks the next
# retrain for at most LEASE_TTL, not for hours.
LEASE_TTL = dt.timedelta(minutes=2)
RENEW_EVERY = 30.0

TrainFn = Callable[..., "tuple[str, TrainedModel]"]


class Retrainer:
    def __init__(self, settings: Settings, service: SegmentService, state: StateDB, train_fn: TrainFn = train):
        self.settings = settings
        self.service = service
        self.state = state
        self.train_fn = train_fn
        self._threads: list[threading.Thread] = []
        self.after_success: Callable[[], Any] | None = None  # called once a new model serves

    def source_label(self) -> str:
        return self.service.source_description(self.settings.data)

    def running(self) -> tuple[Lease | None, str | None]:
        """(the lease of a retrain that is really running, or None; a note when a dead one was
        cleared). A holder is dead when its process is gone (same host) or its heartbeat stopped."""
        lease = self.state.lease(LEASE)
        if lease is None:
            return None, None
        why = _dead(lease)
        if why is None:
            return lease, None
        self.state.release(LEASE, lease.holder)
        self.state.close_unfinished(
            "retrain",
            "started",
            lease.acquired_at - dt.timedelta(seconds=5),
            f"failed: stopped without finishing ({why})",
        )
        who = lease.detail.get("user_id") or "someone"
        note = (
            f"The retrain started by {user(who) if who != 'someone' else who} at {lease.acquired_at:%H:%M} UTC stopped ({why}) "
            "without finishing; the served model was not changed."
        )
        log.warning("cleared the lease of a dead retrain (%s, %s)", lease.holder, why)
        return None, note

    def request(
        self,
        user_id: str,
        channel_id: str,
        client: WebClient,
        respond: Callable[..., Any] | None = None,
        options: TrainOptions | None = None,
    ) -> str:
        """Start a retrain unless one is running. Returns the line to acknowledge with."""
        options = options or TrainOptions()
        try:
            self.service.data_of_checked(self.settings.data)  # which data, known before anything starts
        except SegmentationError as exc:
            self.state.audit(user_id, "retrain", _describe(options), True, f"refused: {exc}", channel_id)
            raise
        running, note = self.running()
        prefix = f"{note} " if note else ""
        holder = liveness.new_holder()
        ok, lease = (
            self.state.try_acquire(
                LEASE,
                holder,
                LEASE_TTL,
                {"user_id": user_id, "channel_id": channel_id, "started_at": dt.datetime.now(dt.UTC).isoformat()},
            )
            if running is None
            else (False, running)
        )
        if not ok:
            liveness.release(holder)
            line = busy_line(lease)
            self.state.audit(user_id, "retrain", _describe(options), True, f"busy: {line}", channel_id)
            return prefix + line + " I'll post its result when it's done."
        # one audit row per attempt: written now, its result filled in when the retrain ends
        row = self.state.audit(user_id, "retrain", _describe(options), True, "started", channel_id)
        t = threading.Thread(
            target=self._run,
            args=(holder, row, user_id, channel_id, client, respond, options),
            name="retrain",
            daemon=True,
        )
        self._threads.append(t)
        t.start()
        settings = f" with {_describe(options)}" if options.describe() else ""
        return prefix + f"Retraining on {as_text(self.source_label())}{settings}… I'll post the result here."

    def join(self, timeout: float | None = None) -> None:
        for t in list(self._threads):
            t.join(timeout)

    def _keep_lease(self, holder: str, done: threading.Event) -> None:
        while not done.wait(RENEW_EVERY):
            try:
                if not self.state.renew(LEASE, holder, LEASE_TTL):
                    log.warning("the retrain lease was lost (expired or taken); another retrain may start")
            except Exception:  # noqa: BLE001 - a database hiccup; the next beat tries again
                log.warning("could not renew the retrain lease", exc_info=True)

    def _run(
        self,
        holder: str,
        audit_row: int,
        user_id: str,
        channel_id: str,
        client: WebClient,
        respond: Callable[..., Any] | None,
        options: TrainOptions,
    ) -> None:
        done = threading.Event()
        threading.Thread(target=self._keep_lease, args=(holder, done), name="retrain-lease", daemon=True).start()
        try:
            try:
                previous = self.service.served()
            except SegmentationError:  # none yet, or damaged: a retrain is exactly the way out
                previous = None
            if previous is not None:  # keep the served model's settings unless the admin gave new ones
                options = options.keeping(previous.info.k, previous.info.seed)
            version, trained = self.service.train(
                self.settings.data, trained_by=user_id, options=options, train_fn=self.train_fn
            )
            message = blocks.retrain_result(version, trained, previous)
            result = f"succeeded: {version}"
        except SegmentationError as exc:
            message = blocks.error_line(f"Retrain failed: {str(exc).rstrip('.')}. {self._serving()}")
            result = f"failed: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported to the admin, logged with traceback
            log.exception("retrain failed")
            message = blocks.error_line(
                f"Retrain failed unexpectedly ({type(exc).__name__}); the details are in the bot's log. "
                + self._serving()
            )
            result = f"failed: {type(exc).__name__}: {exc}"
        finally:
            done.set()
            self.state.release(LEASE, holder)
            liveness.release(holder)
        self.state.audit_result(audit_row, result)
        self._post(client, channel_id, message, respond)
        if result.startswith("succeeded") and self.after_success is not None:
            try:
                self.after_success()
            except Exception:  # noqa: BLE001 - the new model serves; only the refresh failed
                log.warning("could not refresh after the retrain", exc_info=True)

    def _serving(self) -> str:
        """What answers now, said truthfully."""
        try:
            return f"Still serving {self.service.served().version}."
        except ModelNotFoundError:
            return "No model is serving yet."
        except SegmentationError as exc:
            return f"The current model cannot be served ({exc})"

    @staticmethod
    def _post(client: WebClient, channel_id: str, message: dict[str, Any], respond: Callable[..., Any] | None) -> None:
        try:
            client.chat_postMessage(channel=channel_id, **message)
        except SlackApiError as exc:
            log.warning("could not post the retrain result to %s: %s", channel_id, exc.response.get("error"))
            if respond is not None:  # not in that channel: answer through the command's response URL
                respond(response_type="ephemeral", replace_original=False, **message)


def _describe(options: TrainOptions) -> str:
    return options.describe()


def busy_line(lease: Lease | None) -> str:
    if lease is None:
        return "A retrain is already running."
    who = user(lease.detail["user_id"]) if lease.detail.get("user_id") else "someone"
    beat = max(0, int((utcnow() - (lease.expires_at - LEASE_TTL)).total_seconds()))
    return (
        f"A retrain started by {who} at {lease.acquired_at:%Y-%m-%d %H:%M} UTC is running "
        f"(last heartbeat {beat} s ago)."
    )


def _dead(lease: Lease) -> str | None:
    """Why the holder of ``lease`` is certainly gone, or None while it may be alive."""
    why = liveness.gone(lease.holder)
    if why is not None:
        return why
    silent = (utcnow() - (lease.expires_at - LEASE_TTL)).total_seconds()
    if silent > 2 * RENEW_EVERY + 5:
        return f"no heartbeat for {int(silent)} s"
    return None
