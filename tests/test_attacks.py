"""Attacks on the HTTP endpoint, through the real protocol: forged, replayed, oversized and
malformed requests, button values that try to reach files, audit rows that must not go missing."""

from __future__ import annotations

import http.client
import json
import logging
import time
import urllib.parse

import pytest
from slackkit import ADMIN, CHANNEL, USER, buttons, copy_artifacts, start_bot


def _click_body(bot, action_id: str, value: str, user: str = USER) -> str:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "team": {"id": "T0TEAM"},
        "channel": {"id": CHANNEL},
        "trigger_id": f"t{time.time_ns()}",
        "response_url": bot.slack.response_url(f"atk{time.time_ns()}"),
        "actions": [{"type": "button", "action_id": action_id, "value": value, "action_ts": "1"}],
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


# -- 1. values that come back from Slack -------------------------------------------------------


@pytest.mark.parametrize("model", ["/tmp/x/evil", "../../evil", "v9999", "v0001/../../x", "", 7, None])
def test_an_export_button_cannot_name_a_file_or_an_unknown_version(bot, slack, model):
    loaded = []
    real_open = bot.store.open
    bot.store.open = lambda v=None: loaded.append(v) or real_open(v)
    body = _click_body(bot, "export_at_risk", json.dumps({"as_of": "2018-08-01", "model": model}))
    r = bot.post(body, bot.signed_headers(body))
    assert r.status == 200
    reply = slack.wait_for(lambda calls: [c for c in calls if c.kind == "response_url"])[0].args
    assert "not one of mine" in reply["text"] or "not kept any more" in reply["text"]
    assert len(reply["text"].splitlines()) == 1
    assert not slack.api_calls("files.uploadV2") and not slack.api_calls("files.getUploadURLExternal")
    assert all(v in (None,) for v in loaded)  # nothing but the current version was ever opened


# -- 3. replays ----------------------------------------------------------------------------------


def test_a_captured_admin_rollback_runs_once(bot, slack, state_db, trained, tmp_path):
    bot.command("retrain", user=ADMIN)
    bot.ctx.retrainer.join(60)
    bot.command("retrain", user=ADMIN)
    bot.ctx.retrainer.join(60)
    versions = bot.store.versions()
    assert bot.store.current_version() == versions[-1] and len(versions) >= 3
    body = bot.command_body("rollback", user=ADMIN)
    headers = bot.signed_headers(body)
    statuses = [bot.post(body, headers).status for _ in range(4)]
    assert statuses == [200, 409, 409, 409]
    assert bot.store.current_version() == versions[-2]  # one step back, not four
    # the same trigger_id with a fresh signature (a retry built from the captured body) is refused too
    later = bot.signed_headers(body, timestamp=int(time.time()) + 1)
    assert bot.post(body, later).status == 409
    # and another bot process on the same database refuses it as well
    other = start_bot(slack, tmp_path / "art", state_db.clone())
    try:
        assert other.post(body, headers).status == 409
    finally:
        other.stop()
    rollbacks = [a for a in bot.ctx.state.audit_entries() if a["command"] == "rollback"]
    assert len(rollbacks) == 1


def test_a_replayed_button_click_is_refused(bot, slack):
    share = buttons(bot.command("30 2 150").json)[0]
    body = _click_body(bot, "share_prediction", share["value"])
    headers = bot.signed_headers(body)
    assert bot.post(body, headers).status == 200
    assert bot.post(body, headers).status == 409
    time.sleep(0.3)
    assert len([c for c in slack.responses()]) == 1


def test_forged_and_stale_requests_are_refused(bot, slack):
    body = bot.command_body("rollback", user=ADMIN)
    assert bot.post(body, bot.signed_headers(body, secret="wrong")).status == 401
    assert bot.post(body, bot.signed_headers(body, timestamp=int(time.time()) - 301)).status == 401
    assert bot.post(body, bot.signed_headers(body, timestamp=int(time.time()) + 301)).status == 401
    assert bot.store.current_version() == "v0001"


# -- 4. size and logs ---------------------------------------------------------------------------


def _raw(bot, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", bot.port, timeout=30)
    conn.putrequest("POST", "/slack/events")
    for k, v in {"Content-Length": str(len(body)), **headers}.items():
        conn.putheader(k, v)
    conn.endheaders()
    try:
        conn.send(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may refuse before reading it all
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def test_an_oversized_body_is_refused_and_never_logged(bot, caplog):
    caplog.set_level(logging.DEBUG)
    big = b"text=" + b"A" * (50 * 1024 * 1024)
    status, _ = _raw(
        bot,
        big,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=" + "0" * 64,
        },
    )
    assert status == 413
    assert max((len(r.getMessage()) for r in caplog.records), default=0) < 500


def test_an_unsigned_body_is_not_logged_and_cannot_forge_a_log_line(bot, caplog):
    caplog.set_level(logging.DEBUG)
    body = "text=hello\n2026-01-01 00:00:00 INFO bot: admin UADMIN01 granted&user_id=UEVIL"
    r = bot.post(
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(int(time.time())),
            "X-Slack-Signature": "v0=" + "1" * 64,
        },
    )
    assert r.status == 401
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "granted" not in logged and "hello" not in logged
    assert "refused a request" in logged


def test_user_input_is_logged_on_one_line(bot, caplog):
    from bot.app import OneLine

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "typed %s", ("a\nFORGED b\r",), None)
    assert OneLine().filter(record) and "\n" not in record.getMessage() and "\\n" in record.getMessage()


# -- 5. malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize("timestamp", ["", "abc", "12.5", "-1", "9" * 30])
def test_bad_signature_headers_get_401(bot, timestamp, caplog):
    caplog.set_level(logging.INFO)
    body = bot.command_body("30 2 150")
    headers = bot.signed_headers(body)
    headers["X-Slack-Request-Timestamp"] = timestamp
    r = bot.post(body, headers)
    assert r.status == 401
    assert not [rec for rec in caplog.records if rec.exc_info]


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "",
        "[]",
        "null",
        "{}",
        '{"type": "block_actions"}',
        '{"type": "block_actions", "user": {"id": "U1"}}',
        '{"type": "block_actions", "user": {"id": "U1"}, "actions": []}',
        '{"type": "block_actions", "actions": [{"action_id": "share_prediction"}]}',
        '{"type": "block_actions", "user": "U1", "actions": [{"action_id": "x"}]}',
    ],
)
def test_malformed_signed_payloads_get_400_with_one_log_line(bot, payload, caplog):
    caplog.set_level(logging.INFO)
    body = urllib.parse.urlencode({"payload": payload})
    r = bot.post(body, bot.signed_headers(body))
    assert r.status == 400
    mine = [rec for rec in caplog.records if "refused a request" in rec.getMessage()]
    assert len(mine) == 1 and not [rec for rec in caplog.records if rec.exc_info]


def test_a_signed_button_value_that_is_garbage_gets_one_line(bot, slack):
    for value in ["{", "[]", json.dumps({"r": "x", "f": 1, "m": 1}), json.dumps({"r": 1e308, "f": 1, "m": 1})]:
        slack.clear()
        body = _click_body(bot, "share_prediction", value)
        assert bot.post(body, bot.signed_headers(body)).status == 200
        reply = slack.wait_for(lambda calls: [c for c in calls if c.kind == "response_url"])[0].args
        assert reply["response_type"] == "ephemeral" and len(reply["text"].splitlines()) == 1


# -- 6. audit -----------------------------------------------------------------------------------


@pytest.fixture
def admin_only_bot(slack, trained, tmp_path, state_db):
    running = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db, digest_admin_only=True)
    yield running
    running.stop()


def test_every_admin_gated_attempt_leaves_one_audit_row(admin_only_bot):
    bot = admin_only_bot
    attempts = ["digest subscribe daily 09:00", "digest unsubscribe", "digest now", "retrain", "rollback"]
    for text in attempts:
        r = bot.command(text, user=USER)
        assert r.status == 200 and "Only admins" in r.text
    rows = bot.ctx.state.audit_entries()
    assert sorted(row["command"] for row in rows) == sorted(
        ["digest subscribe", "digest unsubscribe", "digest now", "retrain", "rollback"]
    )
    assert all(row["allowed"] is False and row["user_id"] == USER for row in rows)


def test_nul_and_newlines_in_user_input_are_audited_not_fatal(bot):
    r = bot.command("rollback \x00\nrm -rf", user="UEVIL\x00X")
    assert r.status == 200 and "Only admins" in r.text and "went wrong" not in r.text
    row = bot.ctx.state.audit_entries()[0]
    assert row["user_id"] == "UEVIL\\x00X" and "\\x00" in row["args"] and "\n" not in row["args"]


# -- 7. no server paths in replies; a private bind address by default ---------------------------


def test_error_replies_do_not_show_server_paths(bot, tmp_path):
    (tmp_path / "art" / "models" / "v0001.joblib").write_bytes(b"tampered")
    bot.ctx.service._current = None
    r = bot.command("30 2 150")
    assert "v0001.joblib" in r.text and str(tmp_path) not in r.text and "/models" not in r.text
    r = bot.command("model")
    assert str(tmp_path) not in r.text


def test_the_http_server_binds_to_localhost_unless_told(tmp_path):
    from segment_cli import settings as settings_mod

    base = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "SEGMENT_ARTIFACTS": str(tmp_path)}
    assert settings_mod.load(base, dotenv=False).bind_address == "127.0.0.1"
    assert settings_mod.load({**base, "BIND_ADDRESS": "0.0.0.0"}, dotenv=False).bind_address == "0.0.0.0"
    with pytest.raises(settings_mod.SettingsError, match="BIND_ADDRESS"):
        settings_mod.load({**base, "BIND_ADDRESS": "example.com"}, dotenv=False)


# -- 13. acks never wait for Slack -----------------------------------------------------------


def test_clicks_are_acknowledged_before_a_slow_response_url(bot, slack):
    share = buttons(bot.command("30 2 150").json)[0]
    slack.response_delay = 4.0  # Slack's response_url answering slowly
    for button in (share, {"action_id": "show_segments"}):
        r = bot.click(button)
        assert r.status == 200 and r.seconds < 1.0, (button["action_id"], r.seconds)
    answers = slack.wait_for(
        lambda calls: len([c for c in calls if c.kind == "response_url"]) >= 2 and calls, timeout=20
    )
    assert answers


# -- found by an outside review ----------------------------------------------------------------


def test_nothing_posted_shows_the_data_path(slack, trained, sample_folder, tmp_path, state_db):
    bot = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(sample_folder))
    try:
        r = bot.command("retrain", user=ADMIN)
        assert "Retraining on" in r.text and str(sample_folder.parent) not in r.text
        posted = slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"], timeout=60)[0]
        assert "Retrained" in posted.args["text"] and sample_folder.name in json.dumps(posted.args)
        assert str(sample_folder.parent) not in json.dumps(posted.args)
        for text in ("model", "segments"):
            assert str(sample_folder.parent) not in bot.command(text).body
    finally:
        bot.stop()


def test_every_retrain_attempt_is_one_audit_row(bot, slack):
    r = bot.command("retrain k=\u00b2", user=ADMIN)  # a superscript two: a digit to str.isdigit, not to int()
    assert "k must be a whole number" in r.text and "went wrong" not in r.text
    r = bot.command("retrain", user=ADMIN)
    bot.ctx.retrainer.join(60)
    rows = [row for row in bot.ctx.state.audit_entries() if row["command"] == "retrain"]
    assert len(rows) == 2
    assert rows[0]["result"].startswith("succeeded: v0002") and rows[1]["result"].startswith("refused: ")


@pytest.mark.parametrize(
    "body, content_type",
    [
        ('{"type": "event_callback", "event": "x"}', "application/json"),
        ('{"type": "event_callback"}', "application/json"),
        (
            "payload="
            + urllib.parse.quote(
                json.dumps(
                    {
                        "type": "block_actions",
                        "user": {"id": "U1"},
                        "response_url": "http://x/r",
                        "actions": [{"action_id": "export_at_risk", "value": {"model": "v0001"}}],
                    }
                )
            ),
            "application/x-www-form-urlencoded",
        ),
        (
            "payload="
            + urllib.parse.quote(
                json.dumps(
                    {
                        "type": "block_actions",
                        "user": {"id": "U1"},
                        "actions": [{"action_id": "share_prediction", "value": "{}"}],
                    }
                )
            ),
            "application/x-www-form-urlencoded",
        ),
        ("command=%2Fsegment&user_id=U1&text=export+Champions", "application/x-www-form-urlencoded"),
    ],
    ids=[
        "event not an object",
        "event missing",
        "button value not a string",
        "click without response_url",
        "command without response_url",
    ],
)
def test_signed_requests_missing_what_slack_always_sends_get_400(bot, body, content_type, caplog):
    caplog.set_level(logging.INFO)
    headers = bot.signed_headers(body)
    headers["Content-Type"] = content_type
    assert bot.post(body, headers).status == 400
    assert not [rec for rec in caplog.records if rec.exc_info]


def test_a_state_database_failure_is_503_in_one_line(bot, caplog, monkeypatch):
    from sqlalchemy.exc import OperationalError

    def broken(*a, **k):
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(bot.ctx.state, "first_sighting", broken)
    caplog.set_level(logging.INFO)
    r = bot.command("30 2 150")
    assert r.status == 503 and "state database unavailable" in r.body
    assert not [rec for rec in caplog.records if rec.exc_info]


@pytest.mark.parametrize("as_of", ["2099-01-01", "0001-01-01", "2000-01-01"])
def test_an_export_date_no_digest_could_have_had_is_refused(bot, slack, as_of):
    body = _click_body(bot, "export_at_risk", json.dumps({"as_of": as_of, "model": "v0001"}))
    assert bot.post(body, bot.signed_headers(body)).status == 200
    reply = slack.wait_for(lambda calls: [c for c in calls if c.kind == "response_url"])[0].args
    assert "not from one of my digests" in reply["text"]
    assert not slack.api_calls("files.getUploadURLExternal")


def test_long_ids_and_names_are_not_echoed_whole(bot):
    for text in ("customer " + "c" * 2000, "export " + "s" * 2000, "30_0 2 150"):
        r = bot.command(text)
        assert len(r.json["text"]) < 700 and ":warning:" in r.text, r.json["text"][:100]


def test_work_left_by_an_earlier_process_with_the_same_pid_is_recovered(bot, slack):
    """A container restarted as pid 1 on the same host name: the old process's runs and leases
    are not mistaken for this process's own."""
    import datetime as dt
    import os
    import socket

    from bot.retrain import LEASE, LEASE_TTL
    from bot.state import digest_runs

    old = f"{socket.gethostname()}:{os.getpid()}:earlier"
    run_id = bot.ctx.digests.claim("C1", dt.datetime(2025, 1, 5, 9))
    with bot.ctx.state.engine.begin() as con:
        con.execute(digest_runs.update().where(digest_runs.c.id == run_id).values(runner=old))
    outcomes = bot.ctx.digests.recover()
    assert [o.status for o in outcomes] == ["ok"] and len(slack.api_calls("chat.postMessage")) == 1
    bot.ctx.state.try_acquire(LEASE, old, LEASE_TTL, {"user_id": ADMIN})
    r = bot.command("rollback", user=ADMIN)
    assert "an earlier process with the same id" in r.text and "is running" not in r.text


def test_an_exited_but_unreaped_process_counts_as_gone():
    import socket
    import subprocess

    from bot import liveness

    p = subprocess.Popen(["true"])
    try:
        deadline = time.time() + 10
        while not liveness._is_zombie(p.pid) and time.time() < deadline:
            time.sleep(0.05)
        assert liveness.gone(f"{socket.gethostname()}:{p.pid}:x") == f"its process {p.pid} has exited"
    finally:
        p.wait()
    assert liveness.gone(f"{socket.gethostname()}:{p.pid}:x") == f"its process {p.pid} is gone"
    assert liveness.gone("another-host:1:x") is None
    mine = liveness.new_holder()
    assert liveness.gone(mine) is None
    liveness.release(mine)
    assert "earlier process" in liveness.gone(mine)


@pytest.mark.parametrize(
    "payload",
    [
        {"type": "view_submission", "user": {"id": "U1"}, "view": {}},
        {
            "type": "block_actions",
            "user": {"id": "U1"},
            "container": {"type": "view"},
            "actions": [{"action_id": "show_segments", "value": "x"}],
        },
    ],
    ids=["an interaction this app never asks for", "a click outside a message"],
)
def test_interactions_the_app_does_not_use_get_400(bot, payload):
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    assert bot.post(body, bot.signed_headers(body)).status == 400


def test_a_mention_without_a_channel_and_a_command_without_one_get_400(bot):
    event = json.dumps({"type": "event_callback", "event": {"type": "app_mention", "ts": "1.2"}})
    headers = bot.signed_headers(event)
    headers["Content-Type"] = "application/json"
    assert bot.post(event, headers).status == 400
    body = bot.command_body("digest subscribe daily 09:00").replace("channel_id=C0MARKETING", "channel_id=")
    assert bot.post(body, bot.signed_headers(body)).status == 400
    assert bot.ctx.digests.subscriptions() == []


def test_long_schedules_and_foreign_digits_are_not_echoed_or_read(bot):
    r = bot.command("digest subscribe " + "x" * 5000)
    assert len(r.json["text"]) < 400 and "I can't read the schedule" in r.text
    r = bot.command("\uff13\uff10 2 150")  # full-width digits
    assert "must be a number" in r.text


def test_an_event_slack_retries_is_answered_once(bot, slack):
    event = json.dumps(
        {
            "type": "event_callback",
            "event_id": "Ev0RETRY",
            "team_id": "T0TEAM",
            "event": {"type": "app_mention", "channel": CHANNEL, "user": USER, "ts": "1.2", "text": "<@U0BOT> help"},
        }
    )
    statuses = []
    for retry in range(2):  # Slack's retry comes later, signed anew
        headers = bot.signed_headers(event, timestamp=int(time.time()) + retry)
        headers["Content-Type"] = "application/json"
        headers["X-Slack-Retry-Num"] = str(retry)
        statuses.append(bot.post(event, headers).status)
    assert statuses == [200, 409]
    time.sleep(0.3)
    assert len(slack.api_calls("chat.postMessage")) == 1


# -- 8. what the gate decides before Bolt sees a request ----------------------------------------


@pytest.mark.parametrize("body", [b"\xff\xfe", b"text=\xff\xfe&command=%2Fsegment", b"\x80" * 100])
def test_a_body_that_is_not_utf8_gets_401_unsigned_and_400_signed(bot, body, caplog):
    caplog.set_level(logging.INFO)
    headers = bot.signed_headers(body)
    forged = dict(headers, **{"X-Slack-Signature": "v0=" + "0" * 64})
    assert bot.post(body, forged).status == 401  # the signature is checked over the bytes
    assert bot.post(body, headers).status == 400  # signed, but not text: not one of Slack's
    assert len([r for r in caplog.records if "refused a request" in r.getMessage()]) == 2
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize(
    "body, content_type",
    [
        (urllib.parse.urlencode({"payload": "[" * 50_000}), "application/x-www-form-urlencoded"),
        ("[" * 50_000, "application/json"),
        ('{"type": "event_callback", "event": ' + "[" * 50_000 + "}", "application/json"),
    ],
    ids=["payload field", "JSON body", "inside an event"],
)
def test_deeply_nested_json_gets_400_in_one_line(bot, body, content_type, caplog):
    caplog.set_level(logging.INFO)
    headers = dict(bot.signed_headers(body), **{"Content-Type": content_type})
    assert bot.post(body, headers).status == 400
    assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("text", ["customer payload-42", "export payload", "help payload"])
def test_commands_containing_the_word_payload_are_answered(bot, text):
    r = bot.command(text)
    assert r.status == 200, r.body
    assert r.text  # an answer, not Bolt's "unhandled request"


def test_a_command_from_a_channel_named_payloads_is_answered(bot):
    body = bot.command_body("30 2 150").replace("channel_name=marketing", "channel_name=payloads-team")
    r = bot.post(body, bot.signed_headers(body))
    assert r.status == 200 and "segment" in r.text.lower()


@pytest.mark.parametrize(
    "content_type", ["text/plain", "multipart/form-data; boundary=x", "application/xml", "", "application/jsonx"]
)
def test_content_types_slack_never_sends_are_refused(bot, content_type):
    body = bot.command_body("30 2 150")
    headers = bot.signed_headers(body)
    headers["Content-Type"] = content_type
    assert bot.post(body, headers).status == 415


def test_a_click_sent_as_json_is_not_run(bot, slack):
    """A block_actions object as a JSON body skips none of the interaction checks: it is refused."""
    payload = json.loads(urllib.parse.parse_qs(_click_body(bot, "share_prediction", "{}"))["payload"][0])
    for body in (json.dumps(payload), json.dumps(dict(payload, response_url=None, actions=[{"action_id": 5}]))):
        headers = dict(bot.signed_headers(body), **{"Content-Type": "application/json"})
        assert bot.post(body, headers).status == 400
    assert not slack.api_calls("chat.postMessage") and not slack.responses()


def test_a_form_body_that_looks_like_json_is_not_a_command(bot, slack):
    body = '{"command": "/segment", "text": "30 2 150", "user_id": "U1", "channel_id": "C1", "response_url": "x"}'
    assert bot.post(body, bot.signed_headers(body)).status == 400


# -- 9. what came from data or input is shown as text -------------------------------------------

HOSTILE = ["<http://evil.example|verify your account>", "<!everyone>", "<@U0ADMIN>", "a&lt;b"]


@pytest.mark.parametrize("typed", HOSTILE)
def test_input_echoed_in_a_reply_is_never_markup(bot, typed):
    for text in (f"customer {typed}", typed, f"export {typed}", f"digest subscribe {typed}"):
        r = bot.command(text)
        assert r.status == 200
        for part in r.text.split("\n"):
            assert "<http" not in part and "<!" not in part and "<@U0ADMIN>" not in part, (text, part)
    assert ("&lt;" if "<" in typed else "&amp;") in bot.command(f"customer {typed}").text


def test_values_from_the_data_are_escaped_in_every_message_builder(trained):
    """A customer id from the shop's data that looks like markup is shown as typed."""
    import dataclasses

    import pandas as pd

    from bot import blocks
    from bot.mrkdwn import as_text
    from segmentation.serving.service import SegmentService
    from segmentation.serving.store import ModelStore

    assert as_text("<!channel> & <http://x|y>") == "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
    store = ModelStore(trained)
    some_id = pd.read_parquet(store.assignments_path(store.current_version()))["customer_id"].iloc[0]
    answer = dataclasses.replace(SegmentService(store).served().customer(some_id), customer_id="<!here|x>")
    text = json.dumps(blocks.customer(answer))
    assert "<!here" not in text and "&lt;!here|x&gt;" in text


def test_no_reply_names_a_database_address():
    from bot import blocks

    source = "postgresql://shop:***@db.internal.example:5432/sales (public.orders)"
    for message in (
        blocks.error_line(f"No customer 'x' in model v0001 (10 customers from {source})."),
        blocks.plain(f"Retraining on {source}…"),
    ):
        text = json.dumps(message)
        assert "db.internal" not in text and "5432" not in text and "shop:" not in text
        assert "a PostgreSQL database (public.orders)" in text


def test_the_state_database_file_is_its_owners_only(tmp_path):
    import stat

    from bot.state import StateDB

    path = tmp_path / "state" / "bot.sqlite"
    StateDB(f"sqlite:///{path}").audit("U1", "help", "", False, "ok", "C1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/hook",
        "http://hooks.slack.com/commands/1",  # Slack's host, but not over https
        "https://user:pw@hooks.slack.com/x",
        "not a url",
    ],
)
def test_a_response_url_on_another_host_is_refused(bot, slack, url):
    body = bot.command_body("30 2 150").replace(
        "response_url=" + urllib.parse.quote(bot.slack.response_url("x"), safe=""), ""
    )
    body = urllib.parse.urlencode({**dict(urllib.parse.parse_qsl(body)), "response_url": url})
    assert bot.post(body, bot.signed_headers(body)).status == 400
    click = json.loads(urllib.parse.parse_qs(_click_body(bot, "share_prediction", "{}"))["payload"][0])
    body = urllib.parse.urlencode({"payload": json.dumps(dict(click, response_url=url))})
    assert bot.post(body, bot.signed_headers(body)).status == 400
    assert not slack.responses()


def test_response_urls_of_slack_and_of_a_stand_in_are_accepted():
    from bot.gate import _response_url_ok, response_hosts

    hosts = response_hosts("http://127.0.0.1:9999/api/")
    assert _response_url_ok("https://hooks.slack.com/commands/T1/2/x", hosts)
    assert _response_url_ok("http://127.0.0.1:9999/response/1", hosts)
    assert not _response_url_ok("http://127.0.0.1.evil.example/response/1", hosts)
    assert response_hosts(None) == response_hosts("https://slack.com/api/") == {"hooks.slack.com"}


def test_a_body_of_exactly_the_cap_is_read_and_one_byte_more_is_not(bot):
    from bot.gate import MAX_BODY

    exact = "x" * MAX_BODY
    assert bot.post(exact, bot.signed_headers(exact)).status == 400  # read, checked, not Slack's
    over = exact + "x"
    status, _ = _raw(bot, over.encode(), bot.signed_headers(over))
    assert status == 413


def test_the_queue_depth_warning_is_one_line_per_minute():
    from bot.server import OncePerEpisode

    now = [0.0]
    only = OncePerEpisode(60, clock=lambda: now[0])
    records = [
        logging.LogRecord("waitress.queue", logging.WARNING, "x", 1, "Task queue depth is %d", (i,), None)
        for i in range(1, 1900)
    ]
    passed = [r for r in records[:1000] if only.filter(r)]
    now[0] = 61.0
    passed += [r for r in records[1000:] if only.filter(r)]
    assert len(passed) == 2
    assert "999 such lines left out" in passed[1].getMessage()


def test_two_hundred_slow_clients_do_not_stop_a_signed_command(bot):
    """A slow-loris: 200 connections that send half a request and wait. Waitress hands a worker
    only whole requests, and takes up to CONNECTION_LIMIT connections (its default of 100 let
    105 half-open ones make a signed request wait 15 s)."""
    import socket

    idle = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", bot.port), timeout=5)
            s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n")
            idle.append(s)
        r = bot.command("30 2 150")
        assert r.status == 200 and r.seconds < 5
    finally:
        for s in idle:
            s.close()


def test_a_damaged_or_empty_state_database_stops_the_bot_in_one_line(tmp_path):
    from bot.state import StateDB, StateError

    path = tmp_path / "bot.sqlite"
    state = StateDB(f"sqlite:///{path}")
    for i in range(300):  # enough pages that damage in the middle hits a table
        state.audit("U1", "help", "x" * 200, False, f"row {i}", "C1")
    state.engine.dispose()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))
    with pytest.raises(StateError, match="is damaged .*restore it from a backup") as info:
        StateDB(f"sqlite:///{path}")
    assert "\n" not in str(info.value)

    path.write_bytes(b"")
    with pytest.raises(StateError, match=r"is empty \(0 bytes\).*delete the empty file to start a new one"):
        StateDB(f"sqlite:///{path}")
    path.unlink()
    StateDB(f"sqlite:///{path}").audit("U1", "help", "", False, "ok", "C1")  # a new one, once told


def test_audit_rows_of_work_killed_mid_way_get_their_outcome(bot, slack):
    """A retrain and a `digest now` whose process died: recovery closes their audit rows, which
    used to say "started" and "Building the digest…" for ever."""
    import os
    import socket

    from bot.retrain import LEASE, LEASE_TTL
    from bot.state import digest_runs

    old = f"{socket.gethostname()}:{os.getpid()}:killed"
    state = bot.ctx.state
    state.try_acquire(LEASE, old, LEASE_TTL, {"user_id": ADMIN})
    retrain_row = state.audit(ADMIN, "retrain", "", True, "started", CHANNEL)
    slot = bot.ctx.digests.manual_slot()
    run_id = bot.ctx.digests.claim(CHANNEL, slot)
    with state.engine.begin() as con:
        con.execute(digest_runs.update().where(digest_runs.c.id == run_id).values(runner=old))
    digest_row = state.audit(USER, "digest now", "", True, "Building the digest for this channel…", CHANNEL)

    assert bot.ctx.retrainer.running()[0] is None
    assert [o.status for o in bot.ctx.digests.recover()] == ["ok"]
    results = {e["id"]: e["result"] for e in state.audit_entries()}
    assert results[retrain_row].startswith("failed: stopped without finishing (an earlier process")
    assert results[digest_row].startswith("ok after a restart (an earlier process")

    assert len([e for e in state.audit_entries() if e["command"] in ("retrain", "digest now")]) == 2


# -- 10. what an independent review found ---------------------------------------------------------


def test_driver_errors_name_no_host_port_user_or_database():
    from bot import blocks

    for said in (
        'Retrain failed: a PostgreSQL database cannot connect (connection failed: connection to server at "10.1.2.3", '
        'port 5432 failed: FATAL:  role "shopadmin" does not exist)',
        'cannot connect (connection to server at "db.internal" (10.1.2.3), port 5999 failed: Connection refused)',
        'cannot connect (FATAL: database "sales_prod" does not exist)',
        "cannot connect (failed to resolve host 'db-internal.corp': Name or service not known)",
        "cannot connect ((1045, \"Access denied for user 'shopadmin'@'10.1.2.3' (using password: YES)\"))",
    ):
        text = json.dumps(blocks.error_line(said))
        for secret in ("10.1.2.3", "5432", "5999", "shopadmin", "sales_prod", "db-internal", "db.internal"):
            assert secret not in text, (secret, text)


def test_who_trained_a_model_is_a_mention_only_when_it_is_a_user_id(trained):
    import dataclasses

    from bot import blocks
    from segmentation.serving.service import SegmentService
    from segmentation.serving.store import ModelStore

    served = SegmentService(ModelStore(trained)).served()
    for who, shown in (
        ("<!everyone> & <http://x|y>", "&lt;!everyone&gt; &amp; &lt;http://x|y&gt;"),
        ("UADMIN01", "<@UADMIN01>"),
    ):
        info = dataclasses.replace(served.info, trained_by=who)
        forged = dataclasses.replace(served, trained=dataclasses.replace(served.trained, info=info))
        text = json.dumps(blocks.model_info(forged), ensure_ascii=False)
        assert shown in text and ("<!everyone>" not in text)


def _signed_json(bot, obj) -> tuple[str, dict[str, str]]:
    body = json.dumps(obj)
    return body, dict(bot.signed_headers(body), **{"Content-Type": "application/json"})


_COMMAND_FIELDS = {"command": "/segment", "text": "help", "user_id": ADMIN, "channel_id": CHANNEL}


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "event_callback", "event": {"type": "reaction_added"}, "user": 5},
        {"type": "event_callback", "event": {"type": "reaction_added"}, "authorizations": 5},
        {"type": "event_callback", "event": {"type": "app_mention", "channel": "C1", "ts": "1", "user": 5}},
        {"type": "event_callback", "event": {"type": "message", "channel": 5}},
        {"type": "event_callback", "event": {"type": "app_home_opened", "user": "U1", "channel": {"a": 1}}},
        {"type": "app_rate_limited", "user": 7},
        {"type": "event_callback", "event": {"type": "reaction_added"}, **_COMMAND_FIELDS},
        {"type": "app_rate_limited", **_COMMAND_FIELDS, "text": "model"},
    ],
    ids=[
        "user int",
        "authorizations int",
        "mention user int",
        "channel int",
        "home channel dict",
        "rate limited user",
        "event with a command",
        "rate limited with a command",
    ],
)
def test_events_bolt_cannot_read_or_that_carry_a_command_get_400(bot, slack, obj, caplog):
    caplog.set_level(logging.INFO)
    body, headers = _signed_json(
        bot, dict(obj, response_url=bot.slack.response_url("stolen")) if "command" in obj else obj
    )
    assert bot.post(body, headers).status == 400
    assert not [r for r in caplog.records if r.exc_info] and not slack.responses()


@pytest.mark.parametrize("extra", [{"team": 5}, {"channel": 5}, {"authorizations": 5}, _COMMAND_FIELDS])
def test_clicks_bolt_cannot_read_or_that_carry_a_command_get_400(bot, slack, extra, caplog):
    caplog.set_level(logging.INFO)
    click = json.loads(urllib.parse.parse_qs(_click_body(bot, "show_segments", ""))["payload"][0])
    body = urllib.parse.urlencode({"payload": json.dumps(dict(click, **extra))})
    assert bot.post(body, bot.signed_headers(body)).status == 400
    assert not [r for r in caplog.records if r.exc_info] and not slack.responses()


def test_a_command_form_with_an_interactions_fields_gets_400(bot, caplog):
    caplog.set_level(logging.INFO)
    body = bot.command_body("help") + "&type=block_actions&actions=xyz"
    assert bot.post(body, bot.signed_headers(body)).status == 400
    assert not [r for r in caplog.records if r.exc_info]


def test_a_signed_request_to_another_path_does_not_use_up_its_replay_key(bot):
    body = bot.command_body("30 2 150")
    headers = bot.signed_headers(body)
    conn = http.client.HTTPConnection("127.0.0.1", bot.port, timeout=10)
    conn.request("POST", "/other", body=body.encode(), headers=headers)
    assert conn.getresponse().status == 404
    conn.close()
    assert bot.post(body, headers).status == 200
