"""The WSGI endpoint behind the gate: each request handed to Bolt as the gate decided it.

Bolt's own WSGI adapter parses the body again and guesses its kind from its text (in Bolt 1.30 a
form body that merely contains "payload", as ``/segment customer payload-42`` does, is taken for
an interaction and dropped with 404). Here Bolt gets the raw body (its own signature check still
runs over it) with the fields the gate parsed, so routing follows the one decision.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from slack_bolt import App, BoltContext
from slack_bolt.request import BoltRequest
from slack_bolt.request.internals import build_context

from .gate import DECIDED, Decided

StartResponse = Callable[..., Any]
log = logging.getLogger(__name__)


def _headers(environ: dict[str, Any]) -> dict[str, str | Sequence[str]]:
    out: dict[str, str | Sequence[str]] = {
        key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            out[key.replace("_", "-").lower()] = environ[key]
    return out


def _status(code: int) -> str:
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Unknown"


class BoltEndpoint:
    """Answers POSTs to ``path`` that carry the gate's decision; 404 or 405 for anything else."""

    def __init__(self, app: App, path: str):
        self.app, self.path = app, path

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        decided = environ.get(DECIDED)
        if environ.get("PATH_INFO") != self.path:
            return self._answer(start_response, 404, b"Not Found")
        if environ.get("REQUEST_METHOD") != "POST" or not isinstance(decided, Decided):
            return self._answer(start_response, 405, b"Method Not Allowed")
        try:
            request = BoltRequest(body=decided.text, query=environ.get("QUERY_STRING") or "", headers=_headers(environ))
            request.body = decided.fields  # the gate's parse, not Bolt's guess from the text
            request.context = build_context(BoltContext({}), decided.fields)
            response = self.app.dispatch(request)
        except (TypeError, KeyError, AttributeError, IndexError, ValueError) as exc:
            # a signed body whose fields Bolt cannot read (listeners' own errors never get here)
            log.warning("refused a %s Bolt could not read: %s", decided.kind, type(exc).__name__)
            return self._answer(start_response, 400, b'{"error": "malformed Slack payload"}')
        body = response.body.encode() if isinstance(response.body, str) else response.body
        headers = [(name, value) for name, values in response.headers.items() for value in values]
        headers = [(n, v) for n, v in headers if n.lower() != "content-length"] + [("Content-Length", str(len(body)))]
        start_response(_status(response.status), headers)
        return [body]

    @staticmethod
    def _answer(start_response: StartResponse, code: int, body: bytes) -> Iterable[bytes]:
        start_response(
            _status(code), [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        )
        return [body]
