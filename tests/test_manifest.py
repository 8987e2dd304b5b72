"""The two Slack app manifests: every Web API method the bot calls has its scope, HTTP mode has
its request URLs where Slack's schema puts them, the usage hint lists the subcommands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Web API method -> the bot scopes it needs (any one of a set, per conversation type)
NEEDS = {
    "chat_postMessage": {"chat:write"},
    "files_upload_v2": {"files:write"},
    "conversations_open": {"im:write"},
    "conversations_info": {"channels:read", "groups:read", "im:read", "mpim:read"},
    "conversations_history": {"channels:history", "groups:history", "im:history", "mpim:history"},
    "views_publish": set(),  # needs no scope: the app publishes its own Home tab
}


def _manifest(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _called_methods() -> set[str]:
    code = "\n".join(p.read_text() for p in (ROOT / "bot").rglob("*.py"))
    return set(re.findall(r"client\.(\w+)\(", code))


@pytest.mark.parametrize("name", ["slack-manifest.yml", "slack-manifest-http.yml"])
def test_every_called_method_has_its_scopes(name):
    scopes = set(_manifest(name)["oauth_config"]["scopes"]["bot"])
    called = _called_methods()
    assert called <= NEEDS.keys(), f"new Web API methods need an entry here: {called - NEEDS.keys()}"
    for method in called:
        assert NEEDS[method] <= scopes, (method, NEEDS[method] - scopes)
    hint = _manifest(name)["features"]["slash_commands"][0]["usage_hint"]
    for word in ("customer", "segments", "at-risk", "export", "digest", "model", "retrain", "rollback", "help"):
        assert word in hint


@pytest.mark.parametrize("name", ["slack-manifest.yml", "slack-manifest-http.yml"])
def test_the_home_tab_is_on_and_its_event_subscribed(name):
    m = _manifest(name)
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in m["settings"]["event_subscriptions"]["bot_events"]


def test_http_manifest_has_its_request_urls_where_slack_reads_them():
    http = _manifest("slack-manifest-http.yml")
    socket = _manifest("slack-manifest.yml")
    url = http["features"]["slash_commands"][0]["url"]
    assert url.endswith("/slack/events")
    assert http["settings"]["interactivity"]["request_url"] == url
    assert http["settings"]["event_subscriptions"]["request_url"] == url
    assert http["settings"]["socket_mode_enabled"] is False and socket["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in socket["settings"]["interactivity"]
    assert {k: v for k, v in http.items() if k != "settings" and k != "features"} == {
        k: v for k, v in socket.items() if k != "settings" and k != "features"
    }
