"""HTTP mode: the Bolt app behind the gate (size, signature, replay, shape: see ``gate``) and
waitress, a production WSGI server (Bolt's own is for development).

Limits, for a bot that sits behind a proxy or faces the internet directly:

- ``CONNECTION_LIMIT`` open connections (waitress's default is 100: 105 half-open connections
  used to make every signed request wait), watched with ``poll()`` rather than ``select()``
  (which stops at 1,024 descriptors); requests are only handed to a worker thread once they have
  arrived whole, so slow or idle clients hold a socket, never a worker;
- a connection idle for ``CHANNEL_TIMEOUT`` seconds is closed (checked every ``CLEANUP_INTERVAL``);
- bodies up to ``MAX_BODY`` bytes are read (waitress refuses a body *of* its limit, so it is told
  one byte more); the gate refuses larger ones with 413;
- waitress's "Task queue depth" warning, logged once per queued request, is logged once a
  minute at most, with the number of lines left out.

A proxy in front (nginx, a load balancer) should keep its own limits: request headers read
within a few seconds, at most ~1 MiB of body, and a cap on connections per client address.
"""

from __future__ import annotations

import logging
import threading
import time

from slack_bolt import App
from waitress.server import create_server

from .endpoint import BoltEndpoint
from .gate import MAX_BODY, SLACK_RESPONSE_HOSTS, SlackGate, response_hosts

__all__ = ["HttpServer", "response_hosts"]
from .state import StateDB

PATH = "/slack/events"
CONNECTION_LIMIT = 1000
CHANNEL_TIMEOUT = 30
CLEANUP_INTERVAL = 5
QUEUE_WARNING_EVERY = 60.0  # seconds between two "Task queue depth" lines


class OncePerEpisode(logging.Filter):
    """Lets one record through per ``every`` seconds and counts the others into the next one."""

    def __init__(self, every: float = QUEUE_WARNING_EVERY, clock=time.monotonic):
        super().__init__()
        self.every, self.clock = every, clock
        self.last: float | None = None
        self.dropped = 0
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self.lock:
            now = self.clock()
            if self.last is not None and now - self.last < self.every:
                self.dropped += 1
                return False
            if self.dropped:
                record.msg = f"{record.getMessage()} ({self.dropped:,} such lines left out since the last one)"
                record.args = ()
            self.last, self.dropped = now, 0
            return True


_QUEUE_FILTER = OncePerEpisode()
if _QUEUE_FILTER not in logging.getLogger("waitress.queue").filters:
    logging.getLogger("waitress.queue").addFilter(_QUEUE_FILTER)


class HttpServer:
    def __init__(
        self,
        app: App,
        signing_secret: str,
        state: StateDB,
        host: str = "127.0.0.1",
        port: int = 3000,
        threads: int = 8,
        response_hosts: frozenset[str] = SLACK_RESPONSE_HOSTS,
    ):
        gate = SlackGate(BoltEndpoint(app, PATH), signing_secret, state, response_hosts=response_hosts, path=PATH)
        self.server = create_server(
            gate,
            host=host,
            port=port,
            threads=threads,
            ident="segment-bot",
            max_request_body_size=MAX_BODY + 1,  # waitress refuses a body of exactly its limit
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=CHANNEL_TIMEOUT,
            cleanup_interval=CLEANUP_INTERVAL,
            asyncore_use_poll=True,
        )
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def port(self) -> int:
        return self.server.effective_port

    @property
    def url(self) -> str:
        return f"http://{self.server.effective_host}:{self.port}{PATH}"

    def serve_forever(self) -> None:
        self.server.run()

    def _run(self) -> None:
        try:
            self.server.run()
        except (OSError, ValueError):
            if not self._stopping:  # closing the socket under select() is how waitress stops
                raise

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self.server.task_dispatcher.shutdown()
        if self._thread and self._thread.is_alive():
            # closed from inside the loop, woken at once (closing under select() waits out its 1 s timeout)
            try:
                self.server.trigger.pull_trigger(self._close_all)
            except OSError:  # the trigger is closed already: the loop is on its way out
                self._close_all()
            self._thread.join(5)
        else:
            self._close_all()

    def _close_all(self) -> None:
        for dispatcher in list(self.server._map.values()):
            dispatcher.close()
