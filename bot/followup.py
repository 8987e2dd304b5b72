"""Work done after the acknowledgement (uploads), on a small pool so no request waits for it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import Respond

from segmentation.errors import SegmentationError

from . import blocks

log = logging.getLogger(__name__)


class FollowUps:
    def __init__(self, workers: int = 4):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="follow-up")

    def submit(self, respond: Respond | Callable[..., Any], fn: Callable[..., Any], *args: Any) -> Future:
        return self._pool.submit(guarded, respond, fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def guarded(respond: Respond | Callable[..., Any], fn: Callable[..., Any], *args: Any) -> None:
    """Run ``fn``; tell the user in one line if it fails (details go to the log, never to Slack)."""
    try:
        fn(*args)
    except SegmentationError as exc:
        respond(response_type="ephemeral", replace_original=False, **blocks.error_line(str(exc)))
    except Exception as exc:  # noqa: BLE001
        log.exception("follow-up %s failed", getattr(fn, "__name__", fn))
        respond(
            response_type="ephemeral",
            replace_original=False,
            **blocks.error_line(f"That did not work ({type(exc).__name__}); the details are in the bot's log."),
        )
