"""Digests: content, changes, exactly-once, restarts, two processes, Slack refusing.

The scheduler is driven by moving stored run times (never by waiting for the clock); the Web API
is the recording stand-in."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import reference
import sqlalchemy as sa
from slackkit import ADMIN, USER, buttons, copy_artifacts, far_daily, start_bot

from bot.app import build_context, start_scheduler
from bot.scheduling import DigestScheduler, job_store
from bot.state import digest_runs
from segment_cli.settings import Settings
from segmentation.data.kinds import OlistSource
from segmentation.data.sources import load_rfm
from segmentation.serving.options import TrainOptions
from segmentation.serving.schedule_spec import parse

UTC = dt.UTC


def make_ctx(slack, artifacts, state, data, **overrides):
    settings = Settings(
        bot_token="xoxb-test",
        signing_secret="s",
        api_url=slack.api_url,
        data=str(data),
        artifacts=artifacts,
        database_url=state.url,
        admin_user_ids=frozenset({ADMIN}),
        **overrides,
    )
    return build_context(settings, state=state)


@pytest.fixture
def ctx(slack, trained, sample_folder, tmp_path, state_db):
    return make_ctx(slack, copy_artifacts(trained, tmp_path / "art"), state_db, sample_folder)


def posts(slack, channel=None):
    return [c for c in slack.api_calls("chat.postMessage") if channel is None or c.args["channel"] == channel]


def expected_counts(ctx, folder, as_of):
    """Segment sizes and the customers at risk, worked out independently of the product's scoring."""
    table = load_rfm(OlistSource(folder), as_of=as_of)
    served = ctx.service.served()
    f = table.frame
    chance = served.trained.chance  # its NumPy equals its SQL (test_compiled); the rule is re-read here
    args = [f[c].to_numpy() for c in ("recency", "occasions", "monetary", "gap")]
    p, p0 = chance.now(*args), chance.right_after(*args)
    risky = np.array(
        [
            reference.at_risk(served.trained.rule, served.terms, r, o, m, a, b)
            for r, o, m, a, b in zip(f["recency"], f["occasions"], f["monetary"], p, p0)
        ],
        dtype=bool,
    )
    kinds = np.where(risky, 2, np.where(f["occasions"] >= 2, 1, 0))
    labels = reference.segment_labels(
        served.trained.model, f[["recency", "occasions", "monetary"]].to_numpy(float), kinds
    )

    at_risk_ids = set(f["customer_id"][risky])
    counts = {
        s.name: int((labels == s.cluster).sum())
        for s in served.trained.all_segments
        if not s.reserved or (labels == s.cluster).any()
    }  # reserved segments show once they have customers
    return table, counts, at_risk_ids


def text_of(call) -> str:
    return json.dumps(call.args["blocks"], ensure_ascii=False)


# -- content --------------------------------------------------------------------------------


def test_digest_content_and_chart(ctx, slack, sample_folder):
    when = dt.datetime(2025, 1, 5, 9, 0, tzinfo=UTC)
    outcome = ctx.digests.run("C1", scheduled_for=when)
    assert outcome.status == "ok"
    post = posts(slack, "C1")[0]
    body = text_of(post)
    table, counts, at_risk_ids = expected_counts(ctx, sample_folder, dt.date(2025, 1, 5))
    assert "Customer digest · Sun 05 Jan 2025" in body
    assert f"Data up to {table.latest_purchase:%a %d %b %Y} (latest order)" in body
    assert f"*{table.customers:,} customers*" in body
    for name, n in counts.items():
        assert f"*{name}*: {n:,} ({n / table.customers:.1%})" in body
    assert f"*Churn risk: {len(at_risk_ids):,} customers*" in body
    risky = table.frame.set_index("customer_id").loc[sorted(at_risk_ids)]
    served = ctx.service.served()
    chance = served.trained.chance.now(*(risky[c].to_numpy() for c in ("recency", "occasions", "monetary", "gap")))
    at_stake = float((chance * risky["monetary"] / risky["occasions"]).sum())  # chance x typical spend per purchase day
    assert f"revenue at stake {served.terms.money(at_stake)} expected within {served.trained.horizon:,} days" in body
    assert "At risk: repeat buyers" in body  # the definition it stands on
    assert "▲" not in body and "▼" not in body and "became at risk" not in body  # nothing to compare with yet
    assert [b["action_id"] for b in buttons(post.args)] == ["export_at_risk", "show_segments"]
    # the chart: a PNG in the digest's thread
    done = slack.wait_for(lambda calls: [c for c in calls if c.method == "files.completeUploadExternal"])[0]
    assert done.args["channel_id"] == "C1" and done.args["thread_ts"]
    png = slack.uploads[done.args["files"][0]["id"]]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


def test_changes_between_two_digests(slack, trained, sample_folder, tmp_path, state_db):
    # the data ends 2024-12-30: scored as of each run date, so customers age between the two digests
    ctx = make_ctx(slack, copy_artifacts(trained, tmp_path / "art"), state_db, sample_folder, digest_as_of="today")
    first, second = dt.date(2025, 1, 5), dt.date(2025, 3, 20)
    ctx.digests.run("C1", dt.datetime.combine(first, dt.time(9), UTC))
    ctx.digests.run("C1", dt.datetime.combine(second, dt.time(9), UTC))
    _, before, risk_before = expected_counts(ctx, sample_folder, first)
    _, after, risk_after = expected_counts(ctx, sample_folder, second)
    body = text_of(posts(slack, "C1")[1])
    for name in after:
        d = after[name] - before[name]
        marker = "=" if d == 0 else f"{'▲' if d > 0 else '▼'}{abs(d):,}"
        assert f"*{name}*: {after[name]:,} ({after[name] / sum(after.values()):.1%}) · {marker}" in body
    moved = len(risk_after - risk_before)
    assert f"*{moved:,}* customers became at risk since 05 Jan" in body
    assert moved > 0  # customers age into risk between the two dates
    # another channel's history is its own
    ctx.digests.run("C2", dt.datetime.combine(second, dt.time(9), UTC))
    assert "became at risk" not in text_of(posts(slack, "C2")[0])


def test_stale_data_is_flagged(ctx, slack):
    ctx.digests.run("C1", dt.datetime(2026, 6, 1, 9, tzinfo=UTC))
    assert "is SEGMENT_DATA up to date?" in text_of(posts(slack)[0])


def test_stale_data_is_scored_as_of_its_last_day_and_says_so(ctx, slack, sample_folder):
    served = ctx.service.served()
    end = served.info.latest_purchase_day  # 2024-12-30
    ctx.digests.run("C1", dt.datetime(2026, 6, 1, 9, tzinfo=UTC))
    body = text_of(posts(slack)[0])
    day_after = end + dt.timedelta(days=1)
    assert f"Scored as of {day_after:%d %b %Y}, the day after the newest order, not today" in body
    assert "SEGMENT_DIGEST_AS_OF=today" in body
    _, counts, risky = expected_counts(ctx, sample_folder, day_after)
    assert sum(counts.values()) == served.info.customers  # the training data, as of its own end
    for name, n in counts.items():
        assert f"*{name}*: {n:,} (" in body
    assert f"*Churn risk: {len(risky):,} customers*" in body and len(risky) > 0
    export = next(
        el
        for b in posts(slack)[0].args["blocks"]
        if b["type"] == "actions"
        for el in b["elements"]
        if el["action_id"] == "export_at_risk"
    )
    assert json.loads(export["value"])["as_of"] == day_after.isoformat()
    assert ctx.digests.latest(served.version, ctx.service.source_description(ctx.settings.data))[0].as_of == day_after


def test_today_scores_stale_data_as_of_the_run_date(slack, trained, sample_folder, tmp_path, state_db):
    ctx = make_ctx(slack, copy_artifacts(trained, tmp_path / "art"), state_db, sample_folder, digest_as_of="today")
    ctx.digests.run("C1", dt.datetime(2026, 6, 1, 9, tzinfo=UTC))
    body = text_of(posts(slack)[0])
    assert "Scored as of" not in body and "is SEGMENT_DATA up to date?" in body
    _, counts, _ = expected_counts(ctx, sample_folder, dt.date(2026, 6, 1))
    for name, n in counts.items():
        assert f"*{name}*: {n:,} (" in body
    assert counts != expected_counts(ctx, sample_folder, dt.date(2024, 12, 31))[1]  # everyone aged 17 months


# -- exactly once -----------------------------------------------------------------------------


def test_same_scheduled_time_posts_once_even_from_two_processes(ctx, slack, state_db, trained, sample_folder, tmp_path):
    other = make_ctx(slack, copy_artifacts(trained, tmp_path / "art2"), state_db.clone(), sample_folder)
    when = dt.datetime(2025, 1, 5, 9, tzinfo=UTC)
    outcomes = []
    threads = [
        threading.Thread(target=lambda c=c: outcomes.append(c.digests.run("C1", when))) for c in (ctx, other, ctx)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.status for o in outcomes) == ["duplicate", "duplicate", "ok"]
    assert len(posts(slack)) == 1


# -- Slack saying no ----------------------------------------------------------------------------


def test_rate_limited_post_is_retried(ctx, slack):
    slack.fail("chat.postMessage", "ratelimited", status=429, headers={"Retry-After": "1"})
    outcome = ctx.digests.run("C1", dt.datetime(2025, 1, 5, 9, tzinfo=UTC))
    assert outcome.status == "ok"
    assert len(posts(slack)) == 2  # refused once, then posted


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "is_archived", "token_revoked"])
def test_refusals_are_recorded_and_shown(ctx, slack, error):
    ctx.digests.subscribe("C1", parse("daily 09:00"), USER)
    slack.fail("chat.postMessage", error)
    outcome = ctx.digests.run("C1", dt.datetime(2025, 1, 5, 9, tzinfo=UTC))
    assert (outcome.status, outcome.error) == ("failed", error)
    last = ctx.digests.subscriptions()[0].last_run
    assert (last.status, last.error) == ("failed", error)


class _StoreOwner:
    """Just enough of a scheduler to open the job store directly (no scheduler may run meanwhile)."""

    timezone = UTC

    def _create_lock(self):
        return threading.RLock()


def set_next_run(state, channel, when, token="xoxb-test"):
    """Move a stored job's next run time, as if the bot had been down when it came."""
    store = job_store(state, token)
    store.start(_StoreOwner(), "default")
    job = store.lookup_job(f"digest:{channel}")
    job._modify(next_run_time=when)
    store.update_job(job)


def fast(digests) -> DigestScheduler:
    return DigestScheduler(digests, lease_ttl=1.0, heartbeat=0.1)


def test_failed_digest_does_not_stop_the_others(ctx, slack):
    for ch in ("C1", "C2"):
        ctx.digests.subscribe(ch, parse(far_daily()), USER)
    sched = fast(ctx.digests).start()
    try:
        sched.stop(release=True)
        now = dt.datetime.now(UTC)
        set_next_run(ctx.state, "C1", now - dt.timedelta(minutes=1))
        set_next_run(ctx.state, "C2", now - dt.timedelta(minutes=1))
        slack.fail("chat.postMessage", "is_archived")
        sched = fast(ctx.digests).start()
        slack.wait_for(lambda calls: len([c for c in calls if c.method == "chat.postMessage"]) >= 2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            statuses = {s.channel_id: s.last_run and s.last_run.status for s in ctx.digests.subscriptions()}
            if None not in statuses.values() and "running" not in statuses.values():
                break
            time.sleep(0.05)
        assert sorted(statuses.values()) == ["failed", "ok"]
        assert sched.leading  # still scheduling
    finally:
        sched.stop()


# -- restarts -----------------------------------------------------------------------------------


def _runs(state):
    with state.engine.connect() as con:
        return [dict(r) for r in con.execute(sa.select(digest_runs).order_by(digest_runs.c.id)).mappings()]


def test_restart_inside_grace_posts_exactly_once(ctx, slack):
    ctx.digests.subscribe("C1", parse(far_daily()), USER)
    first = fast(ctx.digests).start()
    assert first.leading and first.next_runs()["C1"] > dt.datetime.now(UTC)
    first.stop()
    due = (dt.datetime.now(UTC) - dt.timedelta(minutes=20)).replace(microsecond=0)
    set_next_run(ctx.state, "C1", due)  # it came while we were down
    second = fast(ctx.digests).start()
    try:
        slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"])
    finally:
        second.stop()
    third = fast(ctx.digests).start()  # and another restart does not post it again
    time.sleep(0.5)
    third.stop()
    assert len(posts(slack)) == 1
    runs = _runs(ctx.state)
    assert [(r["status"], r["scheduled_for"]) for r in runs] == [("ok", due.replace(tzinfo=None))]
    assert third.next_runs()["C1"] > dt.datetime.now(UTC)


def test_restart_outside_grace_posts_nothing_and_says_so(ctx, slack, caplog):
    # a daily run missed three hours ago: its next one is tomorrow, whatever the time of day now
    due = (dt.datetime.now(UTC) - dt.timedelta(hours=3)).replace(second=0, microsecond=0)
    ctx.digests.subscribe("C1", parse(f"daily {due:%H:%M}"), USER)
    fast(ctx.digests).start().stop()
    set_next_run(ctx.state, "C1", due)
    with caplog.at_level(logging.WARNING):
        sched = fast(ctx.digests).start()
        deadline = time.monotonic() + 5
        while not _runs(ctx.state) and time.monotonic() < deadline:
            time.sleep(0.05)
        sched.stop()
    assert posts(slack) == []
    runs = _runs(ctx.state)
    assert [(r["status"], r["scheduled_for"]) for r in runs] == [("skipped", due.replace(tzinfo=None))]
    assert "bot was down" in runs[0]["error"]
    assert any("skipped the digest for C1" in r.getMessage() for r in caplog.records)
    assert ctx.digests.subscriptions()[0].last_run.status == "skipped"


def test_two_processes_one_scheduler_and_takeover(ctx, slack, state_db, trained, sample_folder, tmp_path):
    other = make_ctx(slack, copy_artifacts(trained, tmp_path / "art2"), state_db.clone(), sample_folder)
    ctx.digests.subscribe("C1", parse("daily 09:00"), USER)
    a, b = fast(ctx.digests).start(), fast(other.digests).start()
    try:
        assert [a.leading, b.leading].count(True) == 1
        leader, follower = (a, b) if a.leading else (b, a)
        leader.scheduler.modify_job("digest:C1", next_run_time=dt.datetime.now(UTC))
        slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"])
        time.sleep(0.5)
        assert len(posts(slack)) == 1
        # a subscription made through the follower is scheduled by the leader
        other.digests.subscribe("C9", parse("weekly mon 08:00"), USER)
        follower.changed()
        deadline = time.monotonic() + 3
        while "C9" not in leader.next_runs() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "C9" in leader.next_runs()
        leader.stop(release=False)  # dies without a word: the lease expires, the other takes over
        deadline = time.monotonic() + 5
        while not follower.leading and time.monotonic() < deadline:
            time.sleep(0.05)
        assert follower.leading
    finally:
        a.stop()
        b.stop()


def test_default_subscription_from_the_environment(slack, trained, sample_folder, tmp_path, state_db):
    ctx = make_ctx(
        slack,
        copy_artifacts(trained, tmp_path / "art"),
        state_db,
        sample_folder,
        digest_channel="CDEFAULT",
        digest_cron="30 8 * * 1",
        timezone="Europe/Berlin",
    )
    start_scheduler(ctx, lease_ttl=1.0, heartbeat=0.1)
    try:
        sub = ctx.digests.subscription("CDEFAULT")
        assert (sub.cron, sub.timezone, sub.created_by) == ("30 8 * * 1", "Europe/Berlin", "DIGEST_CHANNEL")
        nxt = ctx.scheduler.next_runs()["CDEFAULT"].astimezone(dt.timezone(dt.timedelta(hours=1)))
        assert nxt.weekday() == 0  # Monday, in the standard cron numbering
    finally:
        ctx.scheduler.stop()


# -- the commands, through signed requests ----------------------------------------------------


@pytest.fixture
def bot(slack, trained, sample_folder, tmp_path, state_db):
    running = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(sample_folder))
    yield running
    running.stop()


def test_digest_commands(bot, slack):
    r = bot.command("digest subscribe daily 08:00")
    assert "Subscribed <#C0MARKETING> to the digest daily at 08:00 UTC" in r.text
    r = bot.command("digest subscribe weekly mon 09:00 Europe/Berlin")  # replaces it, and says so
    assert "Changed <#C0MARKETING>'s digest from daily at 08:00 UTC to every Mon at 09:00 Europe/Berlin" in r.text
    assert "already gets" in bot.command("digest subscribe weekly mon 09:00 Europe/Berlin").text
    assert slack.api_calls("conversations.info")[0].args["channel"] == "C0MARKETING"
    r = bot.command("digest list")
    assert "<#C0MARKETING> every Mon at 09:00 Europe/Berlin · next Mon" in r.text and "last: no digest yet" in r.text
    r = bot.command("digest now")
    assert "Building the digest" in r.text
    slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"])
    deadline = time.monotonic() + 5
    while "last: ok" not in bot.command("digest list").text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "last: ok" in bot.command("digest list").text
    assert "Unsubscribed" in bot.command("digest unsubscribe").text
    assert "No digest subscriptions yet" in bot.command("digest list").text
    assert "has no digest subscription" in bot.command("digest unsubscribe").text
    assert "I can't read the schedule 'hourly'" in bot.command("digest subscribe hourly").text
    assert "Unknown time zone 'Mars/Base'" in bot.command("digest subscribe daily 09:00 Mars/Base").text
    assert "Digests" in bot.command("digest").text


def test_private_channel_without_the_bot_says_how_to_invite(bot, slack):
    slack.channels["GPRIVATE"] = {"id": "GPRIVATE", "is_private": True, "is_member": False}
    r = bot.command("digest subscribe daily 09:00", channel="GPRIVATE")
    assert "/invite @segment" in r.text
    slack.fail("conversations.info", "channel_not_found")
    r = bot.command("digest subscribe daily 09:00", channel="GHIDDEN")
    assert "If it is private, invite me first with `/invite @segment`" in r.text
    assert bot.ctx.digests.subscriptions() == []


def test_digest_now_reports_a_refusal(bot, slack):
    slack.fail("chat.postMessage", "not_in_channel")
    bot.command("digest now")
    reply = slack.wait_for(lambda calls: [c for c in calls if c.kind == "response_url"])[0]
    assert "The digest could not be posted: I'm not in the channel: /invite @segment." in reply.args["text"]


def test_all_segments_button(bot, slack):
    bot.ctx.digests.run("C0MARKETING", dt.datetime(2025, 1, 5, 9, tzinfo=UTC))
    button = [b for b in buttons(posts(slack)[0].args) if b["action_id"] == "show_segments"][0]
    bot.click(button)
    reply = slack.wait_for(lambda calls: [c for c in calls if c.kind == "response_url"])[0]
    assert reply.args["text"].startswith("Segments:") and reply.args["response_type"] == "ephemeral"


def test_admin_only_digests(slack, trained, sample_folder, tmp_path, state_db):
    from dataclasses import replace

    running = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(sample_folder))
    running.ctx.settings = replace(running.ctx.settings, digest_admin_only=True)
    try:
        assert "Only admins manage digests" in running.command("digest subscribe daily 09:00", user=USER).text
        assert "Subscribed" in running.command("digest subscribe daily 09:00", user=ADMIN).text
        assert "Digest subscriptions" in running.command("digest list", user=USER).text
    finally:
        running.stop()


def test_server_errors_are_retried(ctx, slack):
    slack.fail("chat.postMessage", "internal_error", status=500)
    assert ctx.digests.run("C1", dt.datetime(2025, 1, 5, 9, tzinfo=UTC)).status == "ok"
    assert len(posts(slack)) == 2


def test_digest_export_button_exports_the_digests_own_customers(bot, slack, sample_folder):
    import csv
    import io

    bot.ctx.digests.run("C0MARKETING", dt.datetime(2025, 1, 5, 9, tzinfo=UTC))
    digest = posts(slack)[0]
    _, _, at_risk_ids = expected_counts(bot.ctx, sample_folder, dt.date(2025, 1, 5))
    assert f"*Churn risk: {len(at_risk_ids):,} customers*" in text_of(digest)
    button = [b for b in buttons(digest.args) if b["action_id"] == "export_at_risk"][0]
    assert json.loads(button["value"]) == {"as_of": "2025-01-05", "model": "v0001"}
    bot.click(button)
    done = slack.wait_for(
        lambda calls: [
            c for c in calls if c.method == "files.completeUploadExternal" and c.args["channel_id"].startswith("D")
        ]
    )[0]
    rows = list(csv.DictReader(io.StringIO(slack.uploads[done.args["files"][0]["id"]].decode())))
    assert {r["customer_id"] for r in rows} == at_risk_ids
    assert "2025-01-05" in done.args["initial_comment"]


def _crashed_run(ctx, when, *, runner: str, started: dt.datetime | None = None) -> int:
    """A run claimed by a process that died before finishing it."""
    run_id = ctx.digests.claim("C1", when.replace(tzinfo=None))
    with ctx.state.engine.begin() as con:
        con.execute(
            digest_runs.update()
            .where(digest_runs.c.id == run_id)
            .values(runner=runner, started_at=started or dt.datetime.now(UTC).replace(tzinfo=None))
        )
    return run_id


def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_run_that_never_reached_slack_is_posted_by_the_next_leader(ctx, slack):
    import socket

    when = dt.datetime(2025, 1, 5, 9, tzinfo=UTC)
    _crashed_run(ctx, when, runner=f"{socket.gethostname()}:{_dead_pid()}:x")  # killed 0.3 s into the run
    sched = fast(ctx.digests).start()
    try:
        slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"], timeout=30)
        deadline = time.time() + 30
        while _runs(ctx.state)[0]["status"] == "running" and time.time() < deadline:
            time.sleep(0.1)
    finally:
        sched.stop()
    run = _runs(ctx.state)[0]
    assert run["status"] == "ok" and run["message_ts"] == slack.history["C1"][0]["ts"]
    post = posts(slack)[0]
    meta = post.args["metadata"]
    meta = json.loads(meta) if isinstance(meta, str) else meta
    assert meta == {"event_type": "segment_digest", "event_payload": {"run": "C1@2025-01-05T09:00:00"}}
    assert "Customer digest · Sun 05 Jan 2025" in text_of(post)
    assert len(posts(slack)) == 1
    fast(ctx.digests).start().stop()  # another leader later: nothing more
    assert ctx.digests.run("C1", when).status == "duplicate" and len(posts(slack)) == 1


def test_a_run_that_reached_slack_before_the_crash_is_not_posted_again(ctx, slack):
    import socket

    when = dt.datetime(2025, 1, 5, 9, tzinfo=UTC)
    assert ctx.digests.run("C1", when).status == "ok"
    ts = slack.history["C1"][-1]["ts"]
    with ctx.state.engine.begin() as con:  # as if the process died after the post, before recording it
        con.execute(
            digest_runs.update().values(
                status="running", message_ts=None, runner=f"{socket.gethostname()}:{_dead_pid()}:x"
            )
        )
    slack.clear()
    ctx.digests.recover()
    run = _runs(ctx.state)[0]
    assert (run["status"], run["message_ts"]) == ("ok", ts)
    assert posts(slack) == [] and slack.api_calls("conversations.history")


def test_an_interrupted_run_that_cannot_be_checked_is_reported_not_reposted(ctx, slack):
    import socket

    when = dt.datetime(2025, 1, 5, 9, tzinfo=UTC)
    _crashed_run(ctx, when, runner=f"{socket.gethostname()}:{_dead_pid()}:x")
    slack.fail("conversations.history", "missing_scope")
    ctx.digests.recover()
    run = _runs(ctx.state)[0]
    assert run["status"] == "failed" and "could not check the channel: missing_scope" in run["error"]
    assert posts(slack) == []


def test_a_run_of_a_live_process_elsewhere_is_left_alone_until_it_is_orphaned(ctx, slack):
    when = dt.datetime(2025, 1, 5, 9, tzinfo=UTC)
    run_id = _crashed_run(ctx, when, runner="another-host:123:x")
    assert ctx.digests.recover() == [] and _runs(ctx.state)[0]["status"] == "running"
    with ctx.state.engine.begin() as con:
        con.execute(
            digest_runs.update()
            .where(digest_runs.c.id == run_id)
            .values(started_at=dt.datetime.now(UTC).replace(tzinfo=None) - dt.timedelta(minutes=11))
        )
    assert [o.status for o in ctx.digests.recover()] == ["ok"] and len(posts(slack)) == 1


def test_a_catch_up_run_compares_with_the_digest_before_it(ctx, slack):
    ctx.digests.run("C1", dt.datetime(2025, 3, 20, 9, tzinfo=UTC))
    ctx.digests.run("C1", dt.datetime(2025, 1, 5, 9, tzinfo=UTC))  # earlier scheduled time, posted later
    assert "became at risk" not in text_of(posts(slack)[1])  # nothing before it to compare with


def test_a_forged_job_row_is_never_unpickled(ctx, slack, tmp_path):
    import pickle

    ctx.digests.subscribe("C1", parse(far_daily()), USER)
    fast(ctx.digests).start().stop()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with ctx.state.engine.begin() as con:  # someone with write access to the database, not the token
        con.execute(sa.text("UPDATE apscheduler_jobs SET job_state = :s"), {"s": b"\0" * 32 + pickle.dumps(Evil())})
    sched = fast(ctx.digests).start()
    try:
        assert not marker.exists()
        assert sched.next_runs()["C1"] > dt.datetime.now(UTC)  # dropped and re-created from the subscription
        with ctx.state.engine.connect() as con:
            state = con.execute(sa.text("SELECT job_state FROM apscheduler_jobs")).scalar_one()
        assert pickle.dumps(Evil()) not in bytes(state)
    finally:
        sched.stop()


def test_a_digest_after_a_retrain_does_not_compare_sizes_across_models(ctx, slack):
    ctx.digests.run("C1", dt.datetime(2025, 1, 5, 9, tzinfo=UTC))
    ctx.service.train(ctx.settings.data, trained_by="test", options=TrainOptions(k=7))
    ctx.digests.run("C1", dt.datetime(2025, 1, 12, 9, tzinfo=UTC))
    second = text_of(posts(slack, "C1")[1])
    assert "Model changed since the last digest (v0001 → v0002): sizes are not compared" in second
    assert "▲" not in second and "▼" not in second and "became at risk" not in second and "changes since" not in second
    ctx.digests.run("C1", dt.datetime(2025, 1, 19, 9, tzinfo=UTC))  # same model again: compared
    third = text_of(posts(slack, "C1")[2])
    assert "changes since 12 Jan" in third and "became at risk since 12 Jan" in third and "Model changed" not in third


def test_a_digest_with_no_one_at_risk_has_no_export_button(ctx):
    import dataclasses

    from bot.digest_data import compute
    from bot.digest_render import message

    served = ctx.service.served()
    score = served.score_source(OlistSource(Path(ctx.settings.data)), dt.date(2025, 1, 5))
    data = compute(served, score, None, dt.date(2025, 1, 5))
    assert [b["action_id"] for b in buttons(message(data))] == ["export_at_risk", "show_segments"]
    nobody = dataclasses.replace(
        data, at_risk=dataclasses.replace(data.at_risk, customers=0, revenue=0.0, by_segment=())
    )
    msg = message(nobody)
    assert [b["action_id"] for b in buttons(msg)] == ["show_segments"]
    assert "*Churn risk: 0 customers*" in json.dumps(msg["blocks"], ensure_ascii=False)


def test_subscribing_a_dm_without_the_scope_answers_clearly(slack, trained, tmp_path, state_db):
    bot = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db)
    try:
        slack.channels["D0DIRECT"] = {"id": "D0DIRECT", "is_im": True}
        r = bot.command("digest subscribe daily 09:00", channel="D0DIRECT")
        assert "Subscribed <#D0DIRECT>" in r.text  # a DM the app can see
        slack.fail("conversations.info", "missing_scope")
        r = bot.command("digest subscribe daily 09:00", channel="G0GROUPDM")
        assert "not allowed to look at this conversation" in r.text and "mpim:read" in r.text
        assert "went wrong" not in r.text
    finally:
        bot.stop()


@pytest.mark.parametrize("at_risk_share", [0.0, 0.2, 1.0])
def test_the_digest_chart_legend_covers_no_bar(at_risk_share):
    """The legend sits outside the bars whatever their lengths (it used to sit on the longest)."""
    from unittest import mock

    from bot.digest_data import DigestData, DigestSegment
    from bot.digest_render import chart_figure

    sizes = [751, 24_021, 3_946, 642, 498, 24_435, 26_700, 124, 42_240]  # the last (lowest) bar the longest
    segs = [DigestSegment(f"Segment {i}", n, n / sum(sizes), int(n * at_risk_share)) for i, n in enumerate(sizes)]
    data = DigestData(
        dt.date(2026, 12, 3), dt.date(2026, 12, 2), "v0001", sum(sizes), mock.Mock(), segs, mock.Mock(), None, None
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = chart_figure(data)
    renderer = FigureCanvasAgg(fig).get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for p in ax.patches if p.get_width() > 0]
    assert bars and not [b for b in bars if b.overlaps(legend)]
    assert not legend.overlaps(ax.title.get_window_extent(renderer))


def test_digest_now_is_one_a_minute_per_channel_and_recorded_before_the_answer(bot, slack, monkeypatch):
    """30 `digest now` in a burst post one digest; the others get one line each. The run is in
    the state database before the answer, so a crash after it is recovered, not lost."""
    import threading

    gate = threading.Event()
    real = bot.ctx.digests.deliver

    def held(*args):
        gate.wait(10)
        return real(*args)

    monkeypatch.setattr(bot.ctx.digests, "deliver", held)
    now = dt.datetime(2026, 12, 3, 9, 30, 17, tzinfo=UTC)  # the burst falls in one minute, whatever the clock
    real_slot = bot.ctx.digests.manual_slot
    monkeypatch.setattr(bot.ctx.digests, "manual_slot", lambda: real_slot(now))
    assert real_slot(now) == real_slot(now.replace(second=59)) != real_slot(now + dt.timedelta(minutes=1))
    assert real_slot(now).second == 1  # never second 0, where scheduled runs fall
    replies = [bot.command("digest now").text for _ in range(30)]
    with bot.ctx.state.engine.connect() as con:
        runs = con.execute(sa.select(digest_runs.c.status, digest_runs.c.channel_id)).all()
    assert runs == [("running", "C0MARKETING")]  # recorded before the first answer was sent
    assert "Building the digest" in replies[0]
    assert all("one a minute at most" in r for r in replies[1:])
    assert "Building the digest" in bot.command("digest now", channel="C0OTHER").text  # another channel is not held
    gate.set()
    slack.wait_for(lambda calls: len([c for c in calls if c.method == "chat.postMessage"]) >= 2)
    time.sleep(0.3)
    assert sorted(c.args["channel"] for c in posts(slack)) == ["C0MARKETING", "C0OTHER"]


def test_heavy_work_has_its_own_bounded_pool():
    import threading

    from bot.followup import FollowUps, Heavy

    pool = FollowUps(workers=1, heavy_workers=1, heavy_queue=1)
    release = threading.Event()
    assert pool.reserve_heavy() and pool.reserve_heavy()
    assert not pool.reserve_heavy()  # one running and one queued: the third is refused at once
    done = []
    for _ in range(2):
        pool.submit(print, Heavy(lambda: release.wait(5)))
    light = pool.submit(print, lambda: done.append("click"))
    light.result(timeout=2)  # a light job is not queued behind the heavy ones
    assert done == ["click"]
    release.set()
    pool.shutdown()
    assert pool.reserve_heavy()  # their places were given back


def test_a_dead_leader_on_this_host_is_replaced_at_the_next_heartbeat(ctx, state_db, slack, tmp_path):
    """Its lease has 30 s left, but its process is certainly gone: the follower takes over at once."""
    from bot import liveness

    other = make_ctx(slack, ctx.settings.artifacts, state_db, None)
    leader = DigestScheduler(ctx.digests, lease_ttl=30.0, heartbeat=60.0).start()
    follower = DigestScheduler(other.digests, lease_ttl=30.0, heartbeat=60.0).start()
    try:
        assert leader.leading and not follower.leading
        leader.stop(release=False)
        follower.beat()
        assert not follower.leading  # alive as far as anyone can tell: its lease is respected
        liveness.release(leader.holder)  # what its death does: no live process holds that name
        follower.beat()
        assert follower.leading
    finally:
        leader.stop()
        follower.stop()
