"""Test helpers: run the bot in HTTP mode and talk to it exactly as Slack does."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import json
import shutil
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.app import build_context, create_app
from bot.context import BotContext
from bot.emulator import SlackEmulator
from bot.gate import response_hosts
from bot.server import HttpServer
from bot.state import StateDB
from segment_cli.settings import Settings
from segmentation.serving.training import train

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ADMIN = "UADMIN01"
USER = "UUSER001"
CHANNEL = "C0MARKETING"


def _trigger_id() -> str:
    """A fresh trigger id, as Slack sends with every command and click."""
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex}"


def sign(body: str | bytes, timestamp: str, secret: str = SECRET) -> str:
    raw = body.encode() if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class Reply:
    status: int
    body: str
    seconds: float

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """All the text of the reply's blocks, for assertions."""
        d = self.json
        parts = [d.get("text", "")]
        for b in d.get("blocks", []):
            for key in ("text",):
                if isinstance(b.get(key), dict):
                    parts.append(b[key]["text"])
            for f in b.get("fields", []) or []:
                parts.append(f["text"])
            for e in b.get("elements", []) or []:
                if isinstance(e.get("text"), dict):
                    parts.append(e["text"]["text"])
                elif isinstance(e.get("text"), str):
                    parts.append(e["text"])
        return "\n".join(parts)


class GatedTrain:
    """The real training, held at a gate so tests can act while it runs."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
        self.started.set()
        if not self.gate.wait(30):
            raise TimeoutError("gate never opened")
        return train(*args, **kwargs)


@dataclass
class RunningBot:
    ctx: BotContext
    server: HttpServer
    slack: SlackEmulator
    _response_ids: int = field(default=0)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def store(self):
        """The model store behind the bot's service (the tests look; the bot never does)."""
        return self.ctx.service.store

    def post(self, body: str | bytes, headers: dict[str, str]) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        t = time.perf_counter()
        conn.request("POST", "/slack/events", body=body.encode() if isinstance(body, str) else body, headers=headers)
        resp = conn.getresponse()
        data = resp.read().decode()
        conn.close()
        return Reply(resp.status, data, time.perf_counter() - t)

    def signed_headers(
        self, body: str | bytes, *, timestamp: int | None = None, secret: str = SECRET
    ) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": sign(body, ts, secret),
        }

    def command_body(self, text: str, user: str = USER, channel: str = CHANNEL) -> str:
        self._response_ids += 1
        return urllib.parse.urlencode(
            {
                "token": "deprecated",
                "team_id": "T0TEAM",
                "team_domain": "shop",
                "channel_id": channel,
                "channel_name": "marketing",
                "user_id": user,
                "user_name": user.lower(),
                "command": "/segment",
                "text": text,
                "api_app_id": "A0APP",
                "is_enterprise_install": "false",
                "response_url": self.slack.response_url(f"cmd{self._response_ids}"),
                "trigger_id": _trigger_id(),
            }
        )

    def command(self, text: str, user: str = USER, channel: str = CHANNEL) -> Reply:
        body = self.command_body(text, user, channel)
        return self.post(body, self.signed_headers(body))

    def click(self, button: dict[str, Any], user: str = USER, channel: str = CHANNEL) -> Reply:
        self._response_ids += 1
        payload = {
            "type": "block_actions",
            "team": {"id": "T0TEAM"},
            "user": {"id": user},
            "api_app_id": "A0APP",
            "channel": {"id": channel},
            "container": {"type": "message", "channel_id": channel},
            "trigger_id": _trigger_id(),
            "response_url": self.slack.response_url(f"act{self._response_ids}"),
            "actions": [
                {
                    "type": "button",
                    "action_id": button["action_id"],
                    "block_id": "b1",
                    "value": button.get("value", ""),
                    "action_ts": str(time.time()),
                }
            ],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return self.post(body, self.signed_headers(body))

    def stop(self) -> None:
        self.ctx.retrainer.join(timeout=60)
        self.ctx.follow_ups.shutdown()  # uploads still under way finish while the stand-in listens
        self.server.stop()


def start_bot(
    slack: SlackEmulator,
    artifacts: Path,
    state: StateDB,
    *,
    data: str | None = None,
    train_fn=None,
    admins: frozenset[str] = frozenset({ADMIN}),
    **settings_kw,
) -> RunningBot:
    settings = Settings(
        bot_token="xoxb-test-token",
        signing_secret=SECRET,
        port=0,
        api_url=slack.api_url,
        data=data,
        admin_user_ids=admins,
        database_url=state.url,
        artifacts=artifacts,
        **settings_kw,
    )
    ctx = build_context(settings, state=state, train_fn=train_fn)
    app = create_app(ctx)
    server = HttpServer(
        app, SECRET, state, host="127.0.0.1", port=0, response_hosts=response_hosts(slack.api_url)
    ).start()
    return RunningBot(ctx, server, slack)


def copy_artifacts(trained: Path, dest: Path) -> Path:
    shutil.copytree(trained / "models", dest / "models")
    shutil.copy2(trained / "model.key", dest / "model.key")  # the key that signed them
    return dest


def buttons(reply_json: dict[str, Any]) -> list[dict[str, Any]]:
    return [el for b in reply_json.get("blocks", []) if b["type"] == "actions" for el in b["elements"]]


def far_daily() -> str:
    """A daily schedule twelve hours away: never due, nor inside its grace, while a test runs
    (a fixed "daily 09:00" is due for a test that runs just after 09:00 UTC)."""
    return f"daily {(dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)):%H:%M}"
