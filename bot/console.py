"""``segment chat``: try the bot in a terminal, without a Slack workspace.

Every line is sent as a signed slash-command request through the same Bolt app and listeners
as in Slack; the bot's Web API calls go to a local emulator that prints them. Files the bot
uploads (CSV exports, digest charts) are saved under ``<artifacts>/console/`` so they can be opened.
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from slack_bolt import App, BoltRequest
from slack_sdk.signature import SignatureVerifier

from segment_cli.settings import Settings

from .emulator import Call, SlackEmulator
from .render import render

CHANNEL = "C0CONSOLE"
HOME_CHANNEL = "D0CONSOLE"  # your direct messages with the app, where its Home buttons answer
TEAM = "T0LOCAL"


class Console:
    def __init__(
        self,
        app_factory: Callable[[Settings], App],
        settings: Settings,
        user_id: str = "U0CONSOLE",
        out: IO[str] = sys.stdout,
    ):
        self.out = out
        self.user_id = user_id
        self.files = Path(settings.artifacts) / "console"
        self._print_lock = threading.Lock()
        self._at_prompt = False  # a "> " prompt is showing: text arriving now must reprint it
        self.buttons: list[dict[str, Any]] = []
        self._home_shown = threading.Event()
        self.emulator = SlackEmulator(on_call=self._on_call).start()
        self.secret = secrets.token_hex(16)
        self.settings = replace(
            settings,
            bot_token="xoxb-local-console",
            signing_secret=self.secret,
            app_token="",
            api_url=self.emulator.api_url,
            admin_user_ids=settings.admin_user_ids | {user_id},
        )
        self.app = app_factory(self.settings)
        self.verifier = SignatureVerifier(self.secret)

    def close(self) -> None:
        self.emulator.stop()

    # -- output -------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        with self._print_lock:
            if self._at_prompt:  # a reply that arrives after the prompt: below it, then the prompt again
                self.out.write("\n" + text.lstrip("\n") + "\n> ")
                self.out.flush()
            else:
                print(text, file=self.out, flush=True)

    def _save(self, file_id: str, data: bytes) -> Path:
        """Keep an uploaded file where the user can open it; never overwrite an earlier one."""
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.emulator.filenames.get(file_id, file_id)).name).strip(".-")
        self.files.mkdir(parents=True, exist_ok=True)
        path = self.files / (name or file_id)
        n = 1
        while path.exists():
            n += 1
            path = self.files / f"{Path(name).stem}-{n}{Path(name).suffix}"
        path.write_bytes(data)
        return path

    def _on_call(self, call: Call) -> None:
        if call.kind == "api" and call.method == "views.publish":
            view = call.args.get("view")
            view = json.loads(view) if isinstance(view, str) else view or {}
            first = len(self.buttons)
            text = render(view, self.buttons)
            for button in self.buttons[first:]:
                button["_home"] = True  # clicked from the Home tab: no response URL
            self._print("\n[Home tab]\n" + text)
            self._home_shown.set()
        elif call.kind == "api" and call.method == "chat.postMessage":
            self._print(f"\n[bot → #{call.args.get('channel')}]\n" + render(call.args, self.buttons))
        elif call.kind == "response_url":
            where = "channel" if call.args.get("response_type") == "in_channel" else "only you"
            self._print(f"\n[bot → {where}]\n" + render(call.args, self.buttons))
        elif call.kind == "api" and call.method == "files.completeUploadExternal":
            files = call.args.get("files")
            files = json.loads(files) if isinstance(files, str) else files or []
            for f in files:
                data = self.emulator.uploads.get(f["id"], b"")
                rows = max(data.count(b"\n") - 1, 0)
                channel = call.args.get("channel_id", "")
                where = "your DM" if channel.startswith("D") else f"#{channel}"
                kind = "an image" if data.startswith(b"\x89PNG") else f"a file ({rows:,} rows)"
                saved = self._save(f["id"], data)
                self._print(
                    f"\n[bot uploaded {kind} to {where}: {f.get('title')}, {len(data):,} bytes; saved as {saved}]"
                )

    # -- input --------------------------------------------------------------------------
    def _signed(self, body: str, content_type: str = "application/x-www-form-urlencoded") -> BoltRequest:
        ts = str(int(time.time()))
        signature = self.verifier.generate_signature(timestamp=ts, body=body) or ""
        headers: dict[str, str | Sequence[str]] = {
            "content-type": [content_type],
            "x-slack-request-timestamp": [ts],
            "x-slack-signature": [signature],
        }
        return BoltRequest(body=body, headers=headers)

    def command(self, text: str) -> str:
        body = urllib.parse.urlencode(
            {
                "token": "local",
                "team_id": TEAM,
                "team_domain": "local",
                "channel_id": CHANNEL,
                "channel_name": "console",
                "user_id": self.user_id,
                "user_name": "you",
                "command": "/segment",
                "text": text,
                "api_app_id": "A0LOCAL",
                "response_url": self.emulator.response_url(),
                "trigger_id": secrets.token_hex(8),
            }
        )
        return self._reply(self.app.dispatch(self._signed(body)))

    def home(self) -> str:
        """Open the app's Home tab, as Slack tells the app when someone does."""
        body = json.dumps(
            {
                "type": "event_callback",
                "team_id": TEAM,
                "api_app_id": "A0LOCAL",
                "event_id": "Ev" + secrets.token_hex(6),
                "event_time": int(time.time()),
                "event": {"type": "app_home_opened", "user": self.user_id, "channel": HOME_CHANNEL, "tab": "home"},
            }
        )
        self._home_shown.clear()
        reply = self._reply(self.app.dispatch(self._signed(body, "application/json")))
        # the tab is published after the acknowledgement: show it before the next prompt
        if not self._home_shown.wait(30):
            return "(the Home tab was not published; see the log)"
        return reply

    def click(self, n: int) -> str:
        if not 1 <= n <= len(self.buttons):
            return f"There is no button [{n}]." if self.buttons else "There are no buttons yet."
        button = self.buttons[n - 1]
        where: dict[str, Any] = (
            {"container": {"type": "view", "view_id": "V0HOME"}, "view": {"id": "V0HOME", "type": "home"}}
            if button.get("_home")
            else {
                "channel": {"id": CHANNEL, "name": "console"},
                "container": {"type": "message", "channel_id": CHANNEL},
                "response_url": self.emulator.response_url(),
            }
        )
        payload = {
            "type": "block_actions",
            "team": {"id": TEAM},
            "user": {"id": self.user_id, "name": "you"},
            "api_app_id": "A0LOCAL",
            **where,
            "trigger_id": secrets.token_hex(8),
            "actions": [
                {
                    "type": "button",
                    "action_id": button["action_id"],
                    "block_id": "b",
                    "value": button.get("value", ""),
                    "text": button["text"],
                    "action_ts": str(time.time()),
                }
            ],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return self._reply(self.app.dispatch(self._signed(body)))

    def _reply(self, response) -> str:
        if response.status != 200:
            return f"(the bot answered HTTP {response.status})"
        if not response.body:
            return ""
        try:
            return render(json.loads(response.body), self.buttons)
        except ValueError:
            return response.body

    def handle_line(self, line: str) -> str | None:
        """The text to show for one typed line; None to quit."""
        line = line.strip()
        if line in {"quit", "exit", "/quit", "/exit"}:
            return None
        if not line:
            return ""
        if line in {"home", "/home"}:
            return self.home()
        if line.startswith("click"):
            arg = line[5:].strip()
            return self.click(int(arg)) if arg.isdigit() else "Type click and a button number, e.g. click 1"
        if line.startswith("/segment"):
            line = line[len("/segment") :]
        elif line.startswith("/"):
            return "Only /segment is known here. Try /segment help"
        return self.command(line.strip())

    def loop(self, stdin: IO[str] = sys.stdin) -> None:
        self._print(
            "Local console: type /segment commands (e.g. /segment 30 2 150, /segment at-risk), "
            "home for the app's Home tab, click N for a button, quit to leave."
        )
        tty = stdin.isatty()
        while True:
            if tty:
                with self._print_lock:
                    self.out.write("> ")
                    self.out.flush()
                    self._at_prompt = True
            line = stdin.readline()
            with self._print_lock:
                self._at_prompt = False
            if not line:
                break
            text = self.handle_line(line)
            if text is None:
                break
            if text:
                self._print(text)
