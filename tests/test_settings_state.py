from __future__ import annotations

import datetime as dt

import pytest

from bot.app import RedactTokens
from segment_cli import settings as settings_mod
from segment_cli.settings import SettingsError

BASE = {"SLACK_BOT_TOKEN": "xoxb-1-2-abc", "SLACK_SIGNING_SECRET": "s3cret"}


@pytest.mark.parametrize(
    "env, variable",
    [
        ({}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "abc"}, "SLACK_BOT_TOKEN"),
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_SIGNING_SECRET"),
        ({**BASE, "SLACK_APP_TOKEN": "xoxb-wrong"}, "SLACK_APP_TOKEN"),
        ({**BASE, "PORT": "eighty"}, "PORT"),
        ({**BASE, "PORT": "70000"}, "PORT"),
        ({**BASE, "SLACK_API_URL": "localhost:9"}, "SLACK_API_URL"),
        ({**BASE, "SEGMENT_ADMIN_USER_IDS": "U123ABC, bob"}, "SEGMENT_ADMIN_USER_IDS"),
        ({**BASE, "DATABASE_URL": "postgres"}, "DATABASE_URL"),
    ],
)
def test_bad_settings_name_the_variable(env, variable):
    with pytest.raises(SettingsError) as info:
        settings_mod.load(env)
    assert str(info.value).startswith(variable) and "\n" not in str(info.value)


def test_settings_defaults_and_parsing():
    s = settings_mod.load(
        {**BASE, "SEGMENT_ADMIN_USER_IDS": "U01ABC, W02DEF ,", "SLACK_API_URL": "http://127.0.0.1:9/api"}
    )
    assert s.admin_user_ids == {"U01ABC", "W02DEF"} and s.is_admin("U01ABC") and not s.is_admin("U99")
    assert s.api_url == "http://127.0.0.1:9/api/" and s.port == 3000 and not s.socket_mode
    assert s.database_url == "sqlite:///artifacts/segment.db"
    assert settings_mod.load(BASE).admin_user_ids == frozenset()  # nobody by default
    socket = settings_mod.load({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1"})
    assert socket.socket_mode  # Socket Mode needs no signing secret
    assert "xoxb" not in repr(s) and "s3cret" not in repr(s)


def test_cli_bot_without_settings_is_one_line(tmp_path, monkeypatch):
    import io
    from contextlib import redirect_stderr

    import bot.cli

    monkeypatch.chdir(tmp_path)  # no .env here
    for k in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    err = io.StringIO()
    with redirect_stderr(err):
        code = bot.cli.main(["--artifacts", str(tmp_path), "bot"])
    assert code == 1 and err.getvalue().startswith("segment: SLACK_BOT_TOKEN is not set")


def test_log_filter_redacts_tokens():
    import logging

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "calling with %s", ("xoxb-123-456-abcdef",), None)
    RedactTokens().filter(record)
    assert "xoxb-123" not in record.getMessage()


def test_leases_are_exclusive_and_expire(state_db):
    ttl = dt.timedelta(minutes=5)
    ok, lease = state_db.try_acquire("job", "a", ttl, {"user_id": "U1"})
    assert ok and lease.holder == "a" and lease.detail == {"user_id": "U1"}
    ok, lease = state_db.try_acquire("job", "b", ttl)
    assert not ok and lease.holder == "a"
    assert state_db.try_acquire("job", "a", ttl)[0]  # the holder renews
    state_db.release("job", "b")  # not b's to release
    assert state_db.lease("job").holder == "a"
    state_db.release("job", "a")
    assert state_db.try_acquire("job", "b", ttl)[0]
    # an expired lease (its holder died) is taken over
    assert state_db.try_acquire("other", "x", dt.timedelta(seconds=-1))[0]
    ok, lease = state_db.try_acquire("other", "y", ttl)
    assert ok and lease.holder == "y"
    assert not state_db.renew("other", "x", ttl) and state_db.renew("other", "y", ttl)


def test_audit_log_round_trip(state_db):
    state_db.audit("U1", "retrain", "data.csv", True, "started", "C1")
    state_db.audit("U2", "rollback", "", False, "refused: not an admin", "C1")
    entries = state_db.audit_entries()
    assert [(e["user_id"], e["command"], e["allowed"]) for e in entries] == [
        ("U2", "rollback", False),
        ("U1", "retrain", True),
    ]
    assert isinstance(entries[0]["at"], dt.datetime)


@pytest.mark.parametrize(
    "env, variable",
    [
        ({**BASE, "SEGMENT_TIMEZONE": "Mars/Base"}, "SEGMENT_TIMEZONE"),
        ({**BASE, "SEGMENT_DIGEST_ADMIN_ONLY": "maybe"}, "SEGMENT_DIGEST_ADMIN_ONLY"),
        ({**BASE, "DIGEST_CHANNEL": "C1"}, "DIGEST_CRON"),
        ({**BASE, "DIGEST_CRON": "0 9 * * *"}, "DIGEST_CHANNEL"),
        ({**BASE, "DIGEST_CHANNEL": "C1", "DIGEST_CRON": "every day"}, "DIGEST_CRON"),
    ],
)
def test_bad_digest_settings(env, variable):
    with pytest.raises(SettingsError) as info:
        settings_mod.load(env)
    assert str(info.value).startswith(variable)


def test_digest_settings():
    s = settings_mod.load(
        {
            **BASE,
            "SEGMENT_TIMEZONE": "Europe/Berlin",
            "SEGMENT_DIGEST_ADMIN_ONLY": "true",
            "DIGEST_CHANNEL": "C1",
            "DIGEST_CRON": "0 9 * * 1",
        }
    )
    assert (s.timezone, s.digest_admin_only, s.digest_channel, s.digest_cron) == (
        "Europe/Berlin",
        True,
        "C1",
        "0 9 * * 1",
    )
    assert settings_mod.load(BASE).timezone == "UTC"


def test_every_setting_is_documented_in_env_example():
    """The settings module is the one place the environment is read; .env.example names all of it."""
    import re
    from pathlib import Path

    from segmentation.serving import signing

    root = Path(__file__).resolve().parents[1]
    read = set(re.findall(r'get\("([A-Z_]+)"\)', (root / "segment_cli" / "settings.py").read_text()))
    read |= {signing.KEY_ENV, signing.PREVIOUS_KEY_ENV, signing.KEY_FILE_ENV, "SEGMENT_MODELS_MAX_MB"}
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z_]+)=", (root / ".env.example").read_text(), re.M))
    assert len(read) > 20 and read - {"USER"} <= documented, sorted(read - {"USER"} - documented)


def test_replay_records_are_group_committed_and_still_refuse_every_replay(state_db):
    """Concurrent requests share transactions; a replay is refused whether it reaches this process
    (from memory) or another process on the same database (by the database)."""
    import threading
    import uuid

    keys = [[f"sig:{uuid.uuid4().hex}", f"trigger_id:{uuid.uuid4().hex}"] for _ in range(200)]
    results: list[bool] = [False] * len(keys)
    start = threading.Barrier(20)

    def send(i0: int) -> None:
        start.wait()
        for i in range(i0, len(keys), 20):
            results[i] = state_db.first_sighting(keys[i], 300)

    threads = [threading.Thread(target=send, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results)
    assert state_db._sightings is not None and state_db._sightings.commits < len(keys)  # grouped
    assert not any(state_db.first_sighting(k, 300) for k in keys[:20])  # replays to this process
    other = state_db.clone()  # another bot process on the same database
    assert not any(other.first_sighting(k, 300) for k in keys[20:40])
    assert not other.first_sighting([f"sig:{uuid.uuid4().hex}", keys[50][1]], 300)  # a new signature, a seen trigger

    both = [f"sig:{uuid.uuid4().hex}"]
    outcome: list[bool] = []
    race = threading.Barrier(2)

    def racer(db) -> None:
        race.wait()
        outcome.append(db.first_sighting(both, 300))

    pair = [threading.Thread(target=racer, args=(db,)) for db in (state_db, other)]
    for t in pair:
        t.start()
    for t in pair:
        t.join()
    assert sorted(outcome) == [False, True]  # the same request at two processes at once: one runs it


def test_a_replay_record_that_fails_is_an_error_and_a_retry_is_not_a_replay():
    from bot.sightings import Sightings

    calls = []

    def record(keys):
        calls.append(keys)
        if len(calls) == 1:
            raise RuntimeError("database down")
        return set(keys)

    s = Sightings(record, 300)
    with pytest.raises(RuntimeError):
        s.first(["sig:a"])
    assert s.first(["sig:a"])  # Slack's retry after the 503 is run
    assert not s.first(["sig:a"]) and len(calls) == 2  # then a replay, refused from memory
