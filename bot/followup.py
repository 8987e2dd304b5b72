"""Work done after the acknowledgement (uploads), on a small pool so no request waits for it.

Heavy work (a digest on demand scores every customer) has a pool of its own, one worker and a
bounded queue (``HEAVY_QUEUE``): it never takes the threads that answer clicks and uploads, and
a burst of it is refused at once (``reserve_heavy``) instead of piling up."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import Respond

from segmentation.errors import SegmentationError

from . import blocks

log = logging.getLogger(__name__)


HEAVY_QUEUE = 3  # heavy jobs waiting behind the running one, at most


class Heavy:
    """Work after the acknowledgement that belongs on the heavy pool (its slot already reserved)."""

    def __init__(self, fn: Callable[[], Any]):
        self.fn = fn

    def __call__(self) -> Any:
        return self.fn()


class FollowUps:
    def __init__(self, workers: int = 4, heavy_workers: int = 1, heavy_queue: int = HEAVY_QUEUE):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="follow-up")
        self._heavy = ThreadPoolExecutor(max_workers=heavy_workers, thread_name_prefix="heavy")
        self._slots = threading.BoundedSemaphore(heavy_workers + heavy_queue)

    def submit(self, respond: Respond | Callable[..., Any], fn: Callable[..., Any], *args: Any) -> Future:
        if isinstance(fn, Heavy):
            return self._heavy.submit(self._release_after, respond, fn, *args)
        return self._pool.submit(guarded, respond, fn, *args)

    def reserve_heavy(self) -> bool:
        """A place for one heavy job (running or queued), or False when all are taken. The job
        that reserved it gives it back when it ends (``submit`` of a ``Heavy``), or ``release_heavy``."""
        return self._slots.acquire(blocking=False)

    def release_heavy(self) -> None:
        self._slots.release()

    def _release_after(self, respond: Respond | Callable[..., Any], fn: Callable[..., Any], *args: Any) -> None:
        try:
            guarded(respond, fn, *args)
        finally:
            self._slots.release()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self._heavy.shutdown(wait=True)


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
