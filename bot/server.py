"""HTTP mode: the Bolt app behind the gate (size, signature, replay, shape: see ``gate``) and
waitress, a production WSGI server (Bolt's own is for development)."""

from __future__ import annotations

import threading

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

from .gate import MAX_BODY, SlackGate
from .state import StateDB

PATH = "/slack/events"


class HttpServer:
    def __init__(
        self, app: App, signing_secret: str, state: StateDB, host: str = "127.0.0.1", port: int = 3000, threads: int = 8
    ):
        gate = SlackGate(SlackRequestHandler(app, path=PATH), signing_secret, state)
        self.server = create_server(
            gate, host=host, port=port, threads=threads, ident="segment-bot", max_request_body_size=MAX_BODY
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
