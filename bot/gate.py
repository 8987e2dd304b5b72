"""The HTTP endpoint's gate: what reaches Bolt is small, signed by Slack, fresh, seen once, and
well formed. Everything else is refused here with a status and one log line that never contains
the request body.

- Size: more than ``MAX_BODY`` bytes is refused with 413 before a byte of it is read (Slack's own
  payloads are a few kilobytes; the largest, a button click on a 50-block message, stays well
  under the cap).
- Signature: Slack's ``v0`` HMAC-SHA256 over timestamp and the body's bytes (whatever they are),
  with the timestamp at most five minutes from now. Missing, malformed or wrong headers: 401.
- Replays: the signature, the ``trigger_id`` of commands and clicks and the ``event_id`` of
  events are remembered in the state database for the five-minute window (shared by every bot
  process): a request seen before is refused with 409, so a captured ``/segment rollback`` runs
  once and an event Slack retries is answered once.
- Kind: decided once, from the content type and the parsed body, and handed to Bolt parsed
  (``Decided``), so Bolt never guesses it again (Bolt 1.30 takes any form body containing the
  text "payload" for an interaction). Slack sends commands and interactions as
  ``application/x-www-form-urlencoded`` and events as ``application/json``: any other content type
  is refused with 415.
- Shape: a signed body that is not a command, an interaction payload (JSON object with a type,
  a user and, for clicks, a list of actions, and a response URL unless the button is on the
  app's Home tab) or an event object, that is not UTF-8, or whose JSON nests deeper than Python
  parses, is refused with 400.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from .state import StateDB

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB
WINDOW_SECONDS = 300  # Slack's own freshness window for signed requests
_SIGNATURE = re.compile(r"^v0=[0-9a-f]{64}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
# Slack posts response URLs on this host; a stand-in of the Web API (SLACK_API_URL) adds its own.
SLACK_RESPONSE_HOSTS = frozenset({"hooks.slack.com"})

StartResponse = Callable[..., Any]
DECIDED = "segment.slack_request"  # the environ key the gate hands its decision on under

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class Decided:
    """What a signed request is, decided once: its kind (command, interaction, event,
    ssl_check), its body as text, and its fields as Slack means them (a command's form, an
    interaction's payload, an event's object)."""

    kind: str
    text: str
    fields: dict[str, Any]


class Refused(Exception):
    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class SlackGate:
    """WSGI middleware in front of Bolt's handler (see the module docstring)."""

    def __init__(
        self,
        inner: Callable[[dict[str, Any], StartResponse], Iterable[bytes]],
        signing_secret: str,
        state: StateDB,
        *,
        max_body: int = MAX_BODY,
        clock: Callable[[], float] = time.time,
        response_hosts: frozenset[str] = frozenset(),
        path: str = "/slack/events",
    ):
        self.inner = inner
        self.path = path  # requests elsewhere are answered 404 by the inner app, their keys unspent
        self.response_hosts = response_hosts or SLACK_RESPONSE_HOSTS
        self.state = state
        self.max_body = max_body
        self.clock = clock
        self.secret = signing_secret.encode()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != self.path:
            return self.inner(environ, start_response)  # the endpoint answers 404 / 405
        try:
            decided = self._check(environ)
        except Refused as refused:
            log.warning("refused a request from %s: %s", environ.get("REMOTE_ADDR", "?"), refused.reason)
            data = json.dumps({"error": refused.reason}).encode()
            start_response(refused.status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        if decided.kind == "ssl_check":  # Slack's SSL check: nothing to do but answer
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        body = decided.text.encode()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ[DECIDED] = decided
        return self.inner(environ, start_response)

    # -- the checks ---------------------------------------------------------------------
    def _check(self, environ: dict[str, Any]) -> Decided:
        text = (environ.get("CONTENT_LENGTH") or "").strip()
        if not text.isdigit():
            raise Refused("411 Length Required", "no valid Content-Length")
        length = int(text)
        if length > self.max_body:
            raise Refused("413 Payload Too Large", f"body of {length:,} bytes is over the {self.max_body:,}-byte cap")
        body = environ["wsgi.input"].read(length)
        timestamp = (environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP") or "").strip()
        signature = (environ.get("HTTP_X_SLACK_SIGNATURE") or "").strip()
        if not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(signature):
            raise Refused("401 Unauthorized", "missing or malformed signature headers")
        if abs(self.clock() - int(timestamp)) > WINDOW_SECONDS:
            raise Refused("401 Unauthorized", "stale timestamp (more than 5 minutes from now)")
        if not self._signed(body, timestamp, signature):
            raise Refused("401 Unauthorized", "invalid signature")
        decided = decide(body, environ.get("CONTENT_TYPE") or "", self.response_hosts)
        if decided.kind == "ssl_check":
            return decided
        parsed, kind = decided.fields, decided.kind
        keys = [f"sig:{signature[3:]}"]
        for field in ("trigger_id", "event_id"):  # Slack's retries of an event carry a new signature
            value = parsed.get(field)
            if isinstance(value, str) and value:
                keys.append(f"{field}:{value[:100]}")
        try:
            first = self.state.first_sighting(keys, WINDOW_SECONDS)
        except SQLAlchemyError as exc:  # cannot tell a replay from a first delivery: refuse, Slack retries
            raise Refused("503 Service Unavailable", f"state database unavailable ({type(exc).__name__})") from None
        if not first:
            raise Refused("409 Conflict", f"replayed {kind} (already handled)")
        return decided

    def _signed(self, body: bytes, timestamp: str, signature: str) -> bool:
        """Slack's v0 signature over the body's bytes (a body that is not UTF-8 is simply unsigned)."""
        mac = hmac.new(self.secret, b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
        return hmac.compare_digest("v0=" + mac.hexdigest(), signature)


def _json(text: str) -> Any:
    """Parsed JSON, or ``Refused`` with 400 (malformed, or nested deeper than Python parses)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise Refused("400 Bad Request", "malformed Slack payload") from None


# The event envelopes Slack posts as JSON to this app.
ENVELOPES = {"url_verification", "event_callback", "app_rate_limited"}


def decide(body: bytes, content_type: str, response_hosts: frozenset[str] = SLACK_RESPONSE_HOSTS) -> Decided:
    """What a signed body is (``Decided``), or ``Refused``: 415 for a content type Slack never
    sends, 400 for a body that is not one of Slack's or whose response URL is on another host
    than ``response_hosts`` (answers are posted there)."""
    bad = Refused("400 Bad Request", "malformed Slack payload")
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in (FORM, JSON):
        raise Refused("415 Unsupported Media Type", f"content type '{media[:40]}' is not one Slack sends")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad from None
    if media == JSON:
        event = _json(text)
        if not isinstance(event, dict) or event.get("type") not in ENVELOPES or not _envelope_ok(event):
            raise bad
        if event["type"] == "event_callback" and not _event_ok(event.get("event")):
            raise bad
        return Decided("event", text, event)
    form = {k: v[-1] for k, v in urllib.parse.parse_qs(text, keep_blank_values=True).items()}
    if form.get("ssl_check") == "1":
        return Decided("ssl_check", text, form)
    if "payload" in form and "command" not in form:
        payload = _json(form["payload"])
        if not _interaction_ok(payload) or not _response_url_ok(payload.get("response_url"), response_hosts, True):
            raise bad
        return Decided("interaction", text, payload)
    if (
        not OTHER_KINDS_FIELDS & form.keys()
        and all(form.get(k) for k in ("command", "user_id", "channel_id", "response_url"))
        and "text" in form
        and _response_url_ok(form["response_url"], response_hosts)
    ):
        return Decided("command", text, form)
    raise bad


def response_hosts(api_url: str | None) -> frozenset[str]:
    """The hosts a response URL may name: Slack's, and the host of ``SLACK_API_URL`` when it
    points at a stand-in (a test double, a proxy)."""
    host = urllib.parse.urlsplit(api_url).hostname if api_url else None
    return SLACK_RESPONSE_HOSTS | ({host} if host and host != "slack.com" else set())


def _response_url_ok(url: Any, hosts: frozenset[str], optional: bool = False) -> bool:
    """A response URL on one of ``hosts``: https on Slack's own host (a stand-in may use http)."""
    if url is None and optional:
        return True
    if not isinstance(url, str):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if host not in hosts or parts.username or parts.password:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and host not in SLACK_RESPONSE_HOSTS)


# The interactions and events this app subscribes to; anything else is not Slack talking to it.
INTERACTIONS = {"block_actions"}


# Fields by which Bolt tells commands, interactions and events apart (it picks listeners by the
# fields present, whatever the request's kind): a request of one kind carrying another kind's
# fields is refused, so what the gate checked is what Bolt runs.
OTHER_KINDS_FIELDS = frozenset({"payload", "type", "actions", "event", "view", "response_urls", "challenge"})
COMMAND_FIELDS = frozenset({"command", "response_url", "response_urls"})
# The fields Bolt reads the team, user and channel from, and the types it expects.
_CONTEXT_TYPES: dict[str, tuple[type, ...]] = {
    "user": (str, dict),
    "team": (str, dict),
    "channel": (str, dict),
    "enterprise": (str, dict),
    "authorizations": (list,),
    "user_id": (str,),
    "team_id": (str,),
    "channel_id": (str,),
    "enterprise_id": (str,),
    "api_app_id": (str,),
}


def _typed(fields: dict[str, Any]) -> bool:
    """The context fields Bolt reads have the types it expects (else it fails with a TypeError)."""
    for key, types in _CONTEXT_TYPES.items():
        value = fields.get(key)
        if value is None:
            continue
        if not isinstance(value, types):
            return False
        if isinstance(value, dict) and not all(isinstance(value.get(k, ""), str) for k in ("id", "team_id")):
            return False
        if isinstance(value, list) and not all(isinstance(a, dict) for a in value):
            return False
    return True


def _envelope_ok(envelope: dict[str, Any]) -> bool:
    """An event envelope with no command's or interaction's fields, typed as Bolt reads it."""
    if COMMAND_FIELDS & envelope.keys() or {"actions", "payload", "view"} & envelope.keys():
        return False
    event = envelope.get("event")
    return _typed(envelope) and (event is None or (isinstance(event, dict) and _typed(event)))


def _event_ok(event: Any) -> bool:
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return False
    if event["type"] == "app_mention":  # answered in its channel's thread
        return isinstance(event.get("channel"), str) and isinstance(event.get("ts"), str)
    if event["type"] == "app_home_opened":  # the tab is published for this user
        return (
            isinstance(event.get("user"), str)
            and bool(event["user"])
            and isinstance(event.get("tab", ""), str)
            and isinstance(event.get("channel", ""), str)
        )
    return True


def _interaction_ok(payload: Any) -> bool:
    if not isinstance(payload, dict) or payload.get("type") not in INTERACTIONS:
        return False
    if {"command", "response_urls", "event", "challenge"} & payload.keys():
        return False  # another kind's fields: Bolt would run that kind's listener
    if not _typed(payload):
        return False
    user = payload.get("user")
    if not isinstance(user, dict) or not isinstance(user.get("id"), str) or not user["id"]:
        return False
    if payload["type"] == "block_actions":
        actions = payload.get("actions")
        well_formed = (
            isinstance(actions, list)
            and bool(actions)
            and all(
                isinstance(a, dict) and isinstance(a.get("action_id"), str) and isinstance(a.get("value", ""), str)
                for a in actions
            )
        )
        if _from_home(payload):  # a Home tab button: answered in the person's DM, no response URL
            return (
                well_formed and isinstance(actions, list) and all(a["action_id"].startswith("home_") for a in actions)
            )
        return well_formed and isinstance(payload.get("response_url"), str)  # answers go there
    return True


def _from_home(payload: dict[str, Any]) -> bool:
    container, view = payload.get("container"), payload.get("view")
    return (
        isinstance(container, dict)
        and container.get("type") == "view"
        and isinstance(view, dict)
        and view.get("type") == "home"
        and isinstance(view.get("id"), str)
    )
