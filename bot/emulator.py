"""A local stand-in for the Slack Web API, response URLs and file uploads.

It answers the few methods the bot uses, records every call, and can be told to fail a
method (rate limits, ``channel_not_found``…). ``segment chat`` uses it to show the bot's
messages in a terminal; the tests use it to assert on what the bot actually sent.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Call:
    kind: str  # "api", "response_url" or "upload"
    method: str  # Web API method, response id or file id
    args: dict[str, Any]
    headers: dict[str, str]
    body: bytes = b""
    at: float = field(default_factory=time.time)


@dataclass
class Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    times: int


class SlackEmulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, on_call: Callable[[Call], None] | None = None):
        self.calls: list[Call] = []
        self.on_call = on_call
        self._failures: dict[str, list[Failure]] = {}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._ids = itertools.count(1)
        self.uploads: dict[str, bytes] = {}
        self.filenames: dict[str, str] = {}  # file id -> the file name the bot gave
        self.channels: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[dict[str, Any]]] = {}  # channel -> messages posted, oldest first
        self.response_delay = 0.0  # seconds a response_url POST takes (Slack is sometimes slow)
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, payload, headers = emulator._handle(self.path, dict(self.headers), body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="slack-emulator", daemon=True
        )

    # -- lifecycle ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def response_url(self, key: str | None = None) -> str:
        return f"{self.base_url}/response/{key or next(self._ids)}"

    def start(self) -> SlackEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> SlackEmulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- test helpers -------------------------------------------------------------------
    def fail(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail (``error`` as Slack's error code)."""
        body = {"ok": False, "error": error or "ratelimited"}
        with self._lock:
            self._failures.setdefault(method, []).append(Failure(status, body, headers or {}, times))

    def api_calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == "api" and (method is None or c.method == method)]

    def responses(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == "response_url"]

    def wait_for(self, predicate: Callable[[list[Call]], Any], timeout: float = 10.0) -> Any:
        """Block until ``predicate(calls)`` is truthy; return its value (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate(list(self.calls))
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting; calls so far: {[(c.kind, c.method) for c in self.calls]}")
                self._cond.wait(left)

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()

    # -- protocol -----------------------------------------------------------------------
    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        parts = urllib.parse.urlsplit(path).path.strip("/").split("/")
        if parts[0] == "upload" and len(parts) == 2:
            call = Call("upload", parts[1], {}, headers, body)
            self.uploads[parts[1]] = body
            self._record(call)
            return 200, {"ok": True}, {}
        args = _parse_body(headers, body)
        if parts[0] == "response" and len(parts) == 2:
            if self.response_delay:
                time.sleep(self.response_delay)
            self._record(Call("response_url", parts[1], args, headers, body))
            return 200, {"ok": True}, {}
        if parts[0] != "api" or len(parts) != 2:
            return 404, {"ok": False, "error": "unknown_path"}, {}
        method = parts[1]
        call = Call("api", method, args, headers, body)
        failure = self._take_failure(method)
        self._record(call)
        if failure:
            return failure.status, failure.body, failure.headers
        return 200, self._answer(method, args), {}

    def _take_failure(self, method: str) -> Failure | None:
        with self._lock:
            queue = self._failures.get(method)
            if not queue:
                return None
            f = queue[0]
            f.times -= 1
            if f.times <= 0:
                queue.pop(0)
            return f

    def _record(self, call: Call) -> None:
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        if self.on_call:
            self.on_call(call)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        n = next(self._ids)
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://local.slack/",
                "team": "Local",
                "user": "segment",
                "team_id": "T0LOCAL",
                "user_id": "U0BOT",
                "bot_id": "B0BOT",
            }
        if method == "chat.postMessage":
            ts = f"{int(time.time())}.{n:06d}"
            message = {"type": "message", "ts": ts, "text": args.get("text"), "blocks": args.get("blocks")}
            metadata = args.get("metadata")
            if isinstance(metadata, str):
                metadata = json.loads(metadata)
            if metadata:
                message["metadata"] = metadata
            with self._lock:
                self.history.setdefault(str(args.get("channel")), []).append(message)
            return {"ok": True, "channel": args.get("channel"), "ts": ts, "message": message}
        if method == "conversations.history":  # newest first, metadata only when asked for
            with self._lock:
                messages = list(reversed(self.history.get(str(args.get("channel")), [])))
            oldest = float(args.get("oldest") or 0)
            messages = [m for m in messages if float(m["ts"]) >= oldest][: int(args.get("limit") or 100)]
            if str(args.get("include_all_metadata")).lower() not in {"true", "1"}:
                messages = [{k: v for k, v in m.items() if k != "metadata"} for m in messages]
            return {"ok": True, "messages": messages, "has_more": False}
        if method == "apps.connections.open":  # Socket Mode: a URL where nothing listens
            return {"ok": True, "url": f"ws://127.0.0.1:9/socket-{n}"}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{int(time.time())}.{n:06d}"}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(args.get("users", "U")).split(",")[0].lstrip("UW")}}
        if method == "views.publish":
            return {"ok": True, "view": {"id": f"V{n:08d}", "type": "home"}}
        if method == "conversations.info":
            ch = args.get("channel", "")
            return {"ok": True, "channel": self.channels.get(ch, {"id": ch, "is_member": True, "is_private": False})}
        if method == "files.getUploadURLExternal":
            fid = f"F{n:08d}"
            with self._lock:
                self.filenames[fid] = str(args.get("filename") or fid)
            return {"ok": True, "upload_url": f"{self.base_url}/upload/{fid}", "file_id": fid}
        if method == "files.completeUploadExternal":
            files = args.get("files")
            if isinstance(files, str):
                files = json.loads(files)
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files or []]}
        return {"ok": True}


def _parse_body(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    ctype = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    if not body:
        return {}
    if "json" in ctype:
        try:
            return json.loads(body)
        except ValueError:
            return {"_raw": body.decode("utf-8", "replace")}
    if "x-www-form-urlencoded" in ctype:
        args: dict[str, Any] = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
        for key in ("blocks", "attachments", "files"):
            if isinstance(args.get(key), str):
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    pass
        return args
    return {"_raw": body.decode("utf-8", "replace")}
