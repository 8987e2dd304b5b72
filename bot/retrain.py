"""Admin retraining: one at a time (a lease in the state database), off the request thread.

The new model becomes current only once the store has written and verified it; on failure
the error is posted and the previous model keeps serving.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from segmentation.errors import ModelNotFoundError, SegmentationError
from segmentation.service import SegmentService
from segmentation.training import train

from . import blocks
from .settings import Settings
from .state import StateDB

log = logging.getLogger(__name__)
LEASE = "retrain"
# The lease is renewed while training runs, so a process that dies mid-training blocks the next
# retrain for at most LEASE_TTL, not for hours.
LEASE_TTL = dt.timedelta(minutes=2)
RENEW_EVERY = 30.0

TrainFn = Callable[..., dict[str, Any]]


class Retrainer:
    def __init__(self, settings: Settings, service: SegmentService, state: StateDB, train_fn: TrainFn = train):
        self.settings = settings
        self.service = service
        self.state = state
        self.train_fn = train_fn
        self._threads: list[threading.Thread] = []

    def source_label(self) -> str:
        return self.settings.data or "the built-in sample data"

    def request(self, user_id: str, channel_id: str, client: WebClient,
                respond: Callable[..., Any] | None = None) -> str:
        """Start a retrain unless one is running. Returns the line to acknowledge with."""
        holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        ok, lease = self.state.try_acquire(
            LEASE, holder, LEASE_TTL,
            {"user_id": user_id, "channel_id": channel_id, "started_at": dt.datetime.now(dt.timezone.utc).isoformat()},
        )
        if not ok:
            since = lease.acquired_at.strftime("%Y-%m-%d %H:%M UTC") if lease else "a moment ago"
            who = f"<@{lease.detail.get('user_id')}>" if lease and lease.detail.get("user_id") else "someone"
            self.state.audit(user_id, "retrain", "", True, f"busy: running since {since}", channel_id)
            return f"A retrain is already running, started by {who} since {since}. I'll post its result when it's done."
        self.state.audit(user_id, "retrain", self.source_label(), True, "started", channel_id)
        t = threading.Thread(
            target=self._run, args=(holder, user_id, channel_id, client, respond), name="retrain", daemon=True
        )
        self._threads.append(t)
        t.start()
        return f"Retraining on {self.source_label()}… I'll post the result here."

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

    def _run(self, holder: str, user_id: str, channel_id: str, client: WebClient,
             respond: Callable[..., Any] | None) -> None:
        done = threading.Event()
        threading.Thread(target=self._keep_lease, args=(holder, done), name="retrain-lease", daemon=True).start()
        try:
            try:
                previous = self.service.served()
            except SegmentationError:  # none yet, or damaged: a retrain is exactly the way out
                previous = None
            version, trained = self.service.train(self.settings.data, trained_by=user_id, train_fn=self.train_fn)
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
        self.state.audit(user_id, "retrain", self.source_label(), True, result, channel_id)
        self._post(client, channel_id, message, respond)

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
