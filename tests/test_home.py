"""The App Home tab through the protocol: a signed app_home_opened event, the views.publish call
recorded by the stand-in, the tab's buttons clicked as Slack sends them (no response URL), the
refresh after a retrain and a rollback, and Block Kit's limits."""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse

import pytest
from slackkit import ADMIN, USER, copy_artifacts, far_daily, start_bot

from bot.digest_data import DigestSegment
from bot.home import MAX_HOME_BLOCKS, HomeData, view
from segmentation.serving.schedule_spec import parse

DM = "D0USERDM"


def open_home(bot, user=USER, channel=DM, event_id=None):
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0TEAM",
            "api_app_id": "A0APP",
            "event_id": event_id or f"Ev{time.time_ns()}",
            "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": user, "channel": channel, "tab": "home"},
        }
    )
    headers = bot.signed_headers(body)
    headers["Content-Type"] = "application/json"
    return bot.post(body, headers)


def published(slack, user, n=1, timeout=30):
    calls = slack.wait_for(
        lambda calls: (
            found
            if len(found := [c for c in calls if c.method == "views.publish" and c.args.get("user_id") == user]) >= n
            else None
        ),
        timeout=timeout,
    )
    v = calls[n - 1].args["view"]
    return json.loads(v) if isinstance(v, str) else v


def home_click(bot, action_id, value="", user=USER, view_id="V0HOME"):
    payload = {
        "type": "block_actions",
        "team": {"id": "T0TEAM"},
        "user": {"id": user},
        "api_app_id": "A0APP",
        "container": {"type": "view", "view_id": view_id},
        "view": {"id": view_id, "type": "home"},
        "trigger_id": f"{time.time_ns()}.1",
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value, "action_ts": "1"}],
    }
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    return bot.post(body, bot.signed_headers(body))


def text(v) -> str:
    return json.dumps(v["blocks"], ensure_ascii=False)


def home_buttons(v):
    return {el["action_id"]: el for b in v["blocks"] if b["type"] == "actions" for el in b["elements"]}


def test_opening_the_home_tab_publishes_the_overview(bot, slack):
    r = open_home(bot)
    assert r.status == 200 and r.seconds < 3
    v = published(slack, USER)
    assert v["type"] == "home" and len(v["blocks"]) <= MAX_HOME_BLOCKS
    served = bot.ctx.service.served()
    body = text(v)
    assert f"*Model {served.version}*" in body and "sizes at training (no digest with this model yet)" in body
    for s in served.segments():
        assert f"*{s.name}* · {s.customers:,} ({s.share:.1%})" in body
    risk = served.at_risk()
    assert f"*At risk: {risk.customers:,} customers*" in body and served.terms.money(risk.revenue) in body
    assert "None yet" in body  # no digest subscriptions
    assert set(home_buttons(v)) == {"home_export_at_risk", "home_show_segments"}  # no admin buttons for a user
    assert bot.ctx.state.home_channel(USER) == DM
    open_home(bot, user=ADMIN, channel="D0ADMIN")
    admin_view = published(slack, ADMIN)
    assert {"home_retrain", "home_rollback"} <= set(home_buttons(admin_view))
    assert all("confirm" in home_buttons(admin_view)[a] for a in ("home_retrain", "home_rollback"))


def test_sizes_and_churn_come_from_the_latest_digest(slack, trained, sample_folder, tmp_path, state_db):
    running = start_bot(
        slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(sample_folder), digest_as_of="today"
    )  # the data ends 2024-12-30: scored as of each run date, so customers age between the two digests
    try:
        ctx = running.ctx
        daily = far_daily()  # "daily HH:MM"
        ctx.digests.subscribe("C1", parse(daily, "UTC"), ADMIN)
        first, second = (dt.datetime(2025, 1, 5, 9, tzinfo=dt.UTC), dt.datetime(2025, 3, 20, 9, tzinfo=dt.UTC))
        ctx.digests.run("C1", first)
        ctx.digests.run("C1", second)
        digest = [c for c in slack.api_calls("chat.postMessage") if c.args["channel"] == "C1"][-1]
        digest_text = json.dumps(digest.args["blocks"], ensure_ascii=False)
        open_home(running)
        body = text(published(slack, USER))
        assert "from the digest of Thu 20 Mar 09:00 UTC in <#C1>, changes since the one of Sun 05 Jan" in body
        digest_lines = [
            ln for b in digest.args["blocks"] if b.get("type") == "section" for ln in b["text"]["text"].split("\n")
        ]
        for s in ctx.service.served().segments():
            line = next(ln for ln in digest_lines if ln.startswith(f"*{s.name}*: "))
            count_and_change = line.split(": ", 1)[1]  # "1,234 (12.3%) · ▲5"
            assert f"*{s.name}* · {count_and_change}" in body
        n = int(digest_text.split("*Churn risk: ")[1].split(" customers*")[0].replace(",", ""))
        assert f"*At risk: {n:,} customers*" in body and "in that digest" in body
        assert f"<#C1> daily at {daily.split()[1]} UTC · next" in body and "last ok 20 Mar 09:00 UTC" in body
        export = json.loads(home_buttons(published(slack, USER))["home_export_at_risk"]["value"])
        assert export == {"model": ctx.service.served().version, "as_of": "2025-03-20"}
    finally:
        running.stop()


def test_home_buttons_answer_in_the_direct_message(bot, slack):
    open_home(bot)
    v = published(slack, USER)
    r = home_click(bot, "home_show_segments")
    assert r.status == 200 and r.seconds < 3
    post = slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"])[0]
    assert post.args["channel"] == DM and post.args["text"].startswith("Segments: ")
    r = home_click(bot, "home_export_at_risk", home_buttons(v)["home_export_at_risk"]["value"])
    assert r.status == 200
    upload = slack.wait_for(lambda calls: [c for c in calls if c.method == "files.completeUploadExternal"])[0]
    served = bot.ctx.service.served()
    rows = slack.uploads[upload.args["files"][0]["id"]].decode().strip().splitlines()
    assert len(rows) - 1 == served.at_risk().customers
    # a value that did not come from one of its buttons: one line in the DM, nothing sent
    home_click(bot, "home_export_at_risk", "../../etc/passwd")
    refusal = slack.wait_for(
        lambda calls: [
            c for c in calls if c.method == "chat.postMessage" and "not one of mine" in (c.args.get("text") or "")
        ]
    )
    assert refusal[0].args["channel"] == DM


def test_admin_buttons_are_checked_again_and_audited(bot, slack):
    open_home(bot)  # a user who is not an admin
    published(slack, USER)
    assert home_click(bot, "home_retrain").status == 200  # forged: the button is not on their tab
    home_click(bot, "home_rollback")
    slack.wait_for(lambda calls: len([c for c in calls if c.method == "chat.postMessage"]) >= 2)
    texts = [c.args["text"] for c in slack.api_calls("chat.postMessage")]
    assert any("Only admins can retrain" in t for t in texts) and any("Only admins can roll back" in t for t in texts)
    rows = [(e["command"], e["allowed"], e["result"]) for e in bot.ctx.state.audit_entries()]
    assert ("retrain", False, "refused: not an admin") in rows and ("rollback", False, "refused: not an admin") in rows
    assert bot.store.current_version() == "v0001" and bot.ctx.retrainer.running()[0] is None


def test_the_tab_refreshes_after_a_retrain_and_a_rollback(slack, trained, sample_folder, tmp_path, state_db):
    running = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(sample_folder))
    try:
        open_home(running, user=ADMIN, channel="D0ADMIN")
        open_home(running, user=USER)
        published(slack, ADMIN)
        published(slack, USER)
        home_click(running, "home_retrain", user=ADMIN)
        result = slack.wait_for(
            lambda calls: [
                c for c in calls if c.method == "chat.postMessage" and "Retrained" in (c.args.get("text") or "")
            ],
            timeout=120,
        )
        assert result[0].args["channel"] == "D0ADMIN"
        for user in (ADMIN, USER):  # everyone who looked sees the new model
            assert "*Model v0002*" in text(published(slack, user, n=2))
        home_click(running, "home_rollback", user=ADMIN)
        for user in (ADMIN, USER):
            assert "*Model v0001*" in text(published(slack, user, n=3))
        assert running.store.current_version() == "v0001"
        results = [(e["command"], e["result"]) for e in reversed(running.ctx.state.audit_entries())]
        assert results == [("retrain", "succeeded: v0002"), ("rollback", "succeeded: v0002 -> v0001")]
    finally:
        running.stop()


def test_a_home_click_is_refused_without_what_slack_always_sends(bot):
    payload = {
        "type": "block_actions",
        "user": {"id": USER},
        "container": {"type": "view"},
        "actions": [{"action_id": "home_show_segments"}],
    }
    for bad in (
        payload,  # no view
        {**payload, "view": {"id": "V1", "type": "modal"}},  # not the Home tab
        {
            **payload,
            "view": {"id": "V1", "type": "home"},
            "actions": [{"action_id": "export_at_risk"}],
        },  # not a tab button
    ):
        body = urllib.parse.urlencode({"payload": json.dumps(bad)})
        assert bot.post(body, bot.signed_headers(body)).status == 400
    event = json.dumps({"type": "event_callback", "event": {"type": "app_home_opened", "tab": "home"}})  # no user
    headers = bot.signed_headers(event)
    headers["Content-Type"] = "application/json"
    assert bot.post(event, headers).status == 400
    assert open_home(bot, event_id="Ev0SAME").status == 200
    assert open_home(bot, event_id="Ev0SAME").status == 409  # Slack's retry of the same event


@pytest.mark.parametrize("k", [30, 120])
def test_the_view_stays_within_block_kits_limits(k):
    segments = tuple(DigestSegment(f"Segment {i} — {'x' * 60}", 1000 + i, 0.01, i, change=i - 5) for i in range(k))
    data = HomeData(
        version="v0001",
        trained="2026-01-01 09:00 UTC by cli",
        source="orders.parquet",
        latest_order=dt.date(2026, 1, 1),
        today=dt.date(2026, 1, 2),
        sizes_from="sizes at training",
        segments=segments,
        at_risk="*At risk: 10 customers*",
        subscriptions=tuple(f"• <#C{i}> daily at 09:00 UTC" for i in range(40)),
        admin=True,
        export_value='{"model": "v0001"}',
    )
    v = view(data)
    assert len(v["blocks"]) <= MAX_HOME_BLOCKS
    body = text(v)
    assert all(f"*Segment {i} — " in body for i in range(k)) and "▲" in body and "▼" in body
    for b in v["blocks"]:
        if b["type"] == "section":
            assert len(b["text"]["text"]) <= 3000


def test_no_export_of_nobody_on_the_home_tab(slack, trained, sample_folder, tmp_path, state_db):
    running = start_bot(
        slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(sample_folder), digest_as_of="today"
    )
    try:
        open_home(running)
        assert "home_export_at_risk" in home_buttons(published(slack, USER))  # at training, some are at risk
        running.ctx.digests.run("C1", dt.datetime(2030, 1, 1, 9, tzinfo=dt.UTC))  # years later: nobody is
        assert "*Churn risk: 0 customers*" in json.dumps(
            [c for c in slack.api_calls("chat.postMessage") if c.args["channel"] == "C1"][-1].args["blocks"]
        )
        open_home(running)
        view = published(slack, USER, n=2)
        assert "*At risk: 0 customers*" in text(view) and "home_export_at_risk" not in home_buttons(view)
    finally:
        running.stop()
