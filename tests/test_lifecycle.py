"""Starting and stopping: bots started together on one empty database, a bot stopped by Ctrl-C
in Socket Mode, what killed saves leave behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from slackkit import copy_artifacts

from bot.emulator import SlackEmulator
from bot.state import StateDB


def _bot_process(artifacts, env) -> subprocess.Popen:
    """`segment bot` as a separate process, as an operator starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "--artifacts", str(artifacts), "bot"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _together(n: int, fn) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def run():
        barrier.wait()
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL (TEST_DATABASE_URL)")
def test_bots_starting_together_on_an_empty_postgresql_database():
    url = os.environ["TEST_DATABASE_URL"]
    admin = sa.create_engine(url)
    for _ in range(6):
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with admin.begin() as con:
            con.execute(sa.text(f"CREATE SCHEMA {schema}"))
        engines = []

        def start(schema=schema, engines=engines):
            engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
            engines.append(engine)
            StateDB(url, engine=engine)

        try:
            assert _together(4, start) == []
        finally:
            for e in engines:
                e.dispose()
            with admin.begin() as con:
                con.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


def test_the_default_subscription_written_by_two_bots_at_once(state_db, tmp_path):
    from bot.app import build_context
    from segment_cli.settings import Settings
    from segmentation.serving.schedule_spec import parse

    contexts = []
    for _ in range(4):
        settings = Settings(bot_token="xoxb-t", signing_secret="s", database_url=state_db.url, artifacts=tmp_path)
        contexts.append(build_context(settings, state=state_db.clone()))
    schedule = parse("daily 09:00", "UTC")
    for _ in range(5):
        pending = list(contexts)
        assert (
            _together(
                4, lambda pending=pending: pending.pop().digests.subscribe("C0DIGEST", schedule, "DIGEST_CHANNEL")
            )
            == []
        )
        assert [s.channel_id for s in contexts[0].digests.subscriptions()] == ["C0DIGEST"]
    for c in contexts:
        c.state.dispose()


def test_ctrl_c_in_socket_mode_releases_the_digest_lease(tmp_path, trained):
    """The scheduler's lease is released on the way out, so another bot takes over at once
    instead of 30 s later."""
    with SlackEmulator() as slack:
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-x",
            "SLACK_APP_TOKEN": "xapp-1-x",
            "SLACK_API_URL": slack.api_url,
            "DIGEST_CHANNEL": "C0DIGEST",
            "DIGEST_CRON": "daily 09:00",
            "SEGMENT_DATA": "",
        }
        copy_artifacts(trained, tmp_path)
        (tmp_path / "models" / ".v0002.joblib.x1.tmp").write_bytes(b"left by a killed save")
        p = _bot_process(tmp_path, env)
        db = tmp_path / "segment.db"
        leases: list = []
        deadline = time.time() + 60
        while time.time() < deadline and not (leases and slack.api_calls("apps.connections.open")):
            time.sleep(0.3)
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:  # never creates it
                    leases = con.execute("SELECT name FROM leases").fetchall()
            except sqlite3.Error:
                pass
        assert leases == [("digest-scheduler",)] and p.poll() is None
        assert slack.api_calls("apps.connections.open")  # it really is in Socket Mode
        assert not list((tmp_path / "models").glob(".*.tmp"))  # cleaned at start
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err[-2000:]
        with sqlite3.connect(db) as con:
            assert con.execute("SELECT name FROM leases").fetchall() == []


def test_a_bot_with_a_damaged_current_pointer_starts_and_is_repaired_from_slack(tmp_path, trained):
    import http.client
    import json
    import socket
    import urllib.parse

    from slackkit import SECRET, sign

    copy_artifacts(trained, tmp_path)
    (tmp_path / "models" / "CURRENT").write_text("../../etc/passwd\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with SlackEmulator() as slack:
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": "xoxb-x",
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_APP_TOKEN": "",
            "SLACK_API_URL": slack.api_url,
            "PORT": str(port),
            "SEGMENT_ADMIN_USER_IDS": "UADMIN01",
            "SEGMENT_DATA": "",
        }
        p = _bot_process(tmp_path, env)
        try:
            body = urllib.parse.urlencode(
                {
                    "command": "/segment",
                    "text": "rollback",
                    "user_id": "UADMIN01",
                    "channel_id": "C1",
                    "response_url": slack.response_url("r1"),
                    "trigger_id": "t-damaged-current",
                }
            )
            reply = None
            deadline = time.time() + 60
            while reply is None and time.time() < deadline and p.poll() is None:
                ts = str(int(time.time()))
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request(
                        "POST",
                        "/slack/events",
                        body=body,
                        headers={
                            "Content-Type": "application/x-www-form-urlencoded",
                            "X-Slack-Request-Timestamp": ts,
                            "X-Slack-Signature": sign(body, ts),
                        },
                    )
                    resp = conn.getresponse()
                    reply = (resp.status, json.loads(resp.read() or b"{}"))
                except OSError:
                    time.sleep(0.3)
            assert p.poll() is None, p.stderr.read()[-2000:] if p.stderr else ""
            assert reply is not None and reply[0] == 200
            assert "Rolled back: now serving model v0001" in reply[1]["text"]
        finally:
            p.send_signal(signal.SIGINT)
            p.communicate(timeout=30)


def test_a_bot_that_cannot_reach_slack_says_so_in_one_line(trained, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_SIGNING_SECRET": "s",
        "SLACK_API_URL": f"http://127.0.0.1:{port}/api/",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "PORT": "0",
    }
    proc = _bot_process(copy_artifacts(trained, tmp_path / "art"), env)
    _, err = proc.communicate(timeout=60)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == 1 and "Traceback" not in err
    assert last.startswith("segment: Slack cannot be reached at http://127.0.0.1:") and "SLACK_API_URL" in last
