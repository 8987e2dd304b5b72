"""The Slack bot through the real protocol: signed HTTP requests to the running app, its Web API
calls and response_url posts going to a local stand-in that records them."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from slackkit import (
    ADMIN,
    CHANNEL,
    USER,
    GatedTrain,
    buttons,
    copy_artifacts,
    start_bot,
)

from segmentation.data.sample import write_sample
from segmentation.serving.inputs import parse_rfm


def _response(slack, key_prefix: str = ""):
    return slack.wait_for(
        lambda calls: [c for c in calls if c.kind == "response_url" and c.method.startswith(key_prefix)]
    )


def test_startup_talks_to_the_configured_api_url_only(bot, slack):
    # Bolt verifies the token at start-up: the call went to SLACK_API_URL, not slack.com.
    auth = slack.api_calls("auth.test")
    assert auth and auth[0].headers.get("Authorization") == "Bearer xoxb-test-token"


def test_predict_answers_in_the_ack_with_block_kit(bot, slack):
    r = bot.command("30 2 150")
    assert r.status == 200
    d = r.json
    expected = bot.ctx.service.served().predict(parse_rfm("30 2 150"))
    assert d["response_type"] == "ephemeral"
    assert d["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": expected.segment, "emoji": True}}
    assert expected.description in r.text
    for action in expected.actions:
        assert action in r.text
    assert "*Recency*\n30 days" in r.text and "*Frequency*\n2 orders" in r.text and "*Monetary*\nR$150.00" in r.text
    assert f"{expected.typical}." in r.text and expected.definition in r.text  # the numbers it stands on
    assert "*Churn risk*\n" in r.text
    assert not slack.responses()  # no second round trip
    for spelling in ("r=30 f=2 m=150", "30d 2 $150", "m=150,00 r=30 f=2", "30 2 150,0"):
        assert bot.command(spelling).json["blocks"][0]["text"]["text"] == expected.segment, spelling

    share = buttons(d)[0]
    assert share["action_id"] == "share_prediction"
    assert bot.click(share).status == 200
    posted = _response(slack, "act")[0].args
    assert posted["response_type"] == "in_channel" and posted["replace_original"] is False
    assert posted["blocks"][0]["text"]["text"] == expected.segment
    assert f"<@{USER}>" in json.dumps(posted["blocks"])


def test_a_profile_is_named_by_a_definition_it_meets_and_a_customer_who_does_not_fit_is_told(bot):
    served = bot.ctx.service.served()
    profiles = [f"{r} {f} {m}" for r in (5, 40, 90, 200, 400) for f in (1, 2, 4) for m in (20, 80, 150, 400, 2000)]
    answers = {p: served.predict(parse_rfm(p)) for p in profiles}
    moved = [p for p, a in answers.items() if a.nearest or a.own_name]
    plain = [p for p, a in answers.items() if not (a.nearest or a.own_name)]
    assert moved and plain and all(a.fits_definition for a in answers.values())
    for p in (moved[0], plain[0]):
        reply = bot.command(p)
        assert reply.json["blocks"][0]["text"]["text"] == answers[p].segment
        assert "does not meet" not in reply.text if p in plain else answers[p].outside in reply.text
    frame = served.assignments.frame()
    for row in frame.itertuples():
        answer = served.customer(str(row.customer_id))
        if not answer.fits_definition:
            assert "This customer does not meet it" in bot.command(f"customer {row.customer_id}").text
            break
    else:
        pytest.fail("every customer of the sample fits their segment's definition")


@pytest.mark.parametrize(
    "text, message",
    [
        ("30 2", "Give exactly three values"),
        ("30 2 abc", "monetary must be a number, not 'abc'"),
        ("30 -2 150", "frequency must be between 1"),
        ("30 2 nan", "finite number"),
        ("1e9 2 150", "recency must be between"),
        ("customer", "Which customer?"),
        ("customer nobody-here", "No customer 'nobody-here'"),
        ("export", "Which segment?"),
        ("export VIPs", "No segment 'VIPs'"),
    ],
)
def test_wrong_arguments_get_one_friendly_line(bot, text, message):
    r = bot.command(text)
    assert r.status == 200
    d = r.json
    assert d["response_type"] == "ephemeral"
    assert len(d["blocks"]) == 1 and message in d["text"]
    assert "Traceback" not in r.body


@pytest.mark.parametrize("text", ["", "help", "frobnicate now"])
def test_help(bot, text):
    r = bot.command(text)
    if text == "frobnicate now":  # one line with a hint, not the whole help
        assert "I don't know `frobnicate`" in r.text and "`/segment help`" in r.text and len(r.json["blocks"]) == 1
    else:
        assert "/segment 30 2 150" in r.text and "/segment at-risk" in r.text


def test_customer_segments_and_model(bot):
    served = bot.ctx.service.served()
    segs = served.segments()
    r = bot.command("segments")
    for s in segs:
        assert f"*{s.name}* · {s.customers:,} customers ({s.share:.1%})" in r.text
        assert s.actions[0] in r.text and s.definition in r.text
    import pandas as pd

    row = pd.read_parquet(bot.store.assignments_path(served.version)).iloc[7]
    cid, rec, freq, cluster = row["customer_id"], int(row["recency"]), int(row["frequency"]), int(row["cluster"])
    r = bot.command(f"customer {cid}")
    name = served.segment(cluster).name
    assert r.json["blocks"][0]["text"]["text"] == name
    assert f"`{cid}`" in r.text and f"*Recency*\n{rec:,} days" in r.text
    assert f"*Frequency*\n{freq} order" in r.text and "purchase day" in r.text
    # the chance to buy again, as stored for this customer, with its horizon
    from segmentation.serving.answers import percent

    horizon = served.trained.horizon
    assert f"*Chance to buy again*\n{percent(float(row['chance']))} in the next {horizon:,} days" in r.text
    assert "_What it did next:_" in r.text and f"bought again within {horizon:,} days" in r.text
    r = bot.command("model")
    info = served.info
    assert "Model v0001" in r.text and f"{info.customers:,}" in r.text and f"*K*\n{info.k} (seed 42)" in r.text
    assert f"Olist folder {Path(info.source).name}" in r.text and "*Silhouette*" in r.text and "Return time" in r.text
    assert "/tmp" not in r.text  # the folder's name, never the server path


def _csv_rows(slack, file_id: str) -> list[dict[str, str]]:
    data = slack.wait_for(lambda calls: slack.uploads.get(file_id))
    return list(csv.DictReader(io.StringIO(data.decode())))


def test_at_risk_and_its_export_button(bot, slack):
    served = bot.ctx.service.served()
    summary = served.at_risk()
    assert summary.customers > 0  # the sample always has customers at risk: the rule is per customer
    r = bot.command("at-risk")
    assert f"*{summary.customers:,} customers at risk*" in r.text
    assert served.terms.money(summary.revenue) in r.text and summary.definition in r.text
    for row in summary.by_segment:
        assert f"*{row.name}*: {row.customers:,} customers" in r.text
    button = buttons(r.json)[0]
    assert button["action_id"] == "export_at_risk" and json.loads(button["value"]) == {"model": "v0001"}
    bot.click(button)
    complete = slack.wait_for(lambda calls: [c for c in calls if c.method == "files.completeUploadExternal"])[0]
    dm = slack.api_calls("conversations.open")[0]
    assert dm.args["users"] == USER
    assert complete.args["channel_id"].startswith("D")  # a DM for the person who clicked
    file_id = complete.args["files"][0]["id"]
    rows = _csv_rows(slack, file_id)
    assert len(rows) == summary.customers and {row["at_risk"] for row in rows} == {"yes"}
    assert {row["segment"] for row in rows} == {s.name for s in summary.by_segment}
    # each at-risk customer with their chance to buy again, inside the rule's bounds
    rule = served.trained.rule
    chances = [float(row["chance_to_buy_again"]) for row in rows]
    assert all(c < rule.ceiling for c in chances) and {row["within_days"] for row in rows} == {
        str(served.trained.horizon)
    }
    assert "in a direct message" in _response(slack, "act")[0].args["text"]


@pytest.mark.parametrize(
    "value, message",
    [
        ('{"model": "../../evil"}', "not kept any more"),
        ('{"model": "/tmp/x/evil"}', "not kept any more"),
        ('{"model": "v9999"}', "not kept any more"),
        ('{"model": 7}', "not one of mine"),
        ("not json", "not one of mine"),
        ('{"model": "v0001", "as_of": "yesterday"}', "bad date"),
    ],
)
def test_export_buttons_refuse_values_that_are_not_ours(bot, slack, value, message):
    bot.click({"action_id": "export_at_risk", "value": value})
    reply = _response(slack, "act")[0].args
    assert message in reply["text"] and not slack.api_calls("files.completeUploadExternal")


def test_share_posts_the_answer_that_was_shown_even_after_a_rollback(bot, slack, sample_folder):
    from segmentation.data.kinds import OlistSource
    from segmentation.serving.training import train

    train(OlistSource(sample_folder), bot.store, k=4)  # v0002, a different model
    shown = bot.command("400 1 20").json
    assert "Model v0002" in json.dumps(shown)
    bot.store.rollback()  # back to v0001 before anyone clicks
    bot.click(buttons(shown)[0])
    posted = _response(slack, "act")[0].args
    assert posted["blocks"][0] == shown["blocks"][0] and "Model v0002" in json.dumps(posted["blocks"])
    for value in ('{"r": 1, "f": 1, "m": 1, "v": "v0999"}', '{"r": "x", "f": 1, "m": 1}', "[]", "null"):
        before = len(slack.responses())
        bot.click({"action_id": "share_prediction", "value": value})
        slack.wait_for(lambda calls, n=before + 1: len([c for c in calls if c.kind == "response_url"]) >= n)
    replies = [c.args["text"] for c in slack.calls if c.kind == "response_url"][1:]
    assert len(replies) == 4 and all(":warning:" not in t and t for t in replies)
    assert "not kept any more" in replies[0] and "must be a number" in replies[1]
    assert all("not one of mine" in t for t in replies[2:])


def test_export_uploads_a_csv_for_the_person_who_asked(bot, slack):
    seg = bot.ctx.service.served().segments()[0]
    r = bot.command(f"export {seg.name.lower()}")
    assert "Preparing the export" in r.text
    complete = slack.wait_for(lambda calls: [c for c in calls if c.method == "files.completeUploadExternal"])[0]
    rows = _csv_rows(slack, complete.args["files"][0]["id"])
    assert len(rows) == seg.customers and rows[0]["segment"] == seg.name
    assert slack.api_calls("conversations.open")[0].args["users"] == USER
    get_url = slack.api_calls("files.getUploadURLExternal")[0]
    assert get_url.args["filename"].endswith(".csv")
    assert "in a direct message" in _response(slack, "cmd")[0].args["text"]


# -- the protocol's security ---------------------------------------------------------------


def test_bad_signatures_are_rejected_before_any_listener(bot, slack):
    body = bot.command_body("retrain", user=ADMIN)
    good = bot.signed_headers(body)
    cases = {
        "forged": {**good, "X-Slack-Signature": "v0=" + "0" * 64},
        "wrong secret": bot.signed_headers(body, secret="not-the-secret"),
        "old timestamp": bot.signed_headers(body, timestamp=int(time.time()) - 6 * 60),
        "no headers": {"Content-Type": "application/x-www-form-urlencoded"},
        "no signature": {k: v for k, v in good.items() if k != "X-Slack-Signature"},
    }
    before = len(slack.calls)
    for name, headers in cases.items():
        r = bot.post(body, headers)
        assert r.status == 401, name
    tampered = body.replace("retrain", "rollback")
    assert bot.post(tampered, good).status == 401
    time.sleep(0.2)
    assert len(slack.calls) == before  # nothing was posted
    assert bot.ctx.state.audit_entries() == []  # no listener ran
    assert bot.ctx.state.lease("retrain") is None


# -- admins and audit ---------------------------------------------------------------------


def test_non_admins_are_refused_and_audited(bot):
    for cmd in ("retrain", "rollback"):
        r = bot.command(cmd, user=USER)
        assert f"Only admins can {cmd}" in r.text
    entries = bot.ctx.state.audit_entries()
    assert [(e["user_id"], e["command"], e["allowed"], e["result"]) for e in reversed(entries)] == [
        (USER, "retrain", False, "refused: not an admin"),
        (USER, "rollback", False, "refused: not an admin"),
    ]
    assert bot.store.current_version() == "v0001"


def test_admins_serve_a_kept_version_by_name_audited(bot, slack):
    bot.command("retrain", user=ADMIN)
    bot.ctx.retrainer.join(60)
    assert "now serving model v0001 (was v0002)" in bot.command("rollback", user=ADMIN).text
    assert "Only admins can serve" in bot.command("serve v0002", user=USER).text
    assert bot.store.current_version() == "v0001"
    r = bot.command("serve v0002", user=ADMIN)
    assert "Switched: now serving model v0002 (was v0001)" in r.text
    assert bot.ctx.service.served().version == "v0002"
    for text, said in [("serve", "Which version?"), ("serve v0042", "is not kept"), ("serve <!channel>", "looks like")]:
        assert said in bot.command(text, user=ADMIN).text
    rows = [(e["user_id"], e["command"], e["allowed"], e["result"]) for e in bot.ctx.state.audit_entries()]
    assert (USER, "serve", False, "refused: not an admin") in rows
    assert (ADMIN, "serve", True, "succeeded: v0001 -> v0002") in rows
    assert (ADMIN, "serve", True, "failed: Model version v0042 is not kept (kept: v0001, v0002)") in rows


def test_nobody_is_admin_by_default(slack, trained, tmp_path, state_db):
    running = start_bot(slack, copy_artifacts(trained, tmp_path / "a"), state_db, admins=frozenset())
    try:
        assert "Only admins" in running.command("retrain", user=ADMIN).text
    finally:
        running.stop()


@pytest.fixture
def gated(slack, trained, sample_folder, tmp_path, state_db):
    gate = GatedTrain()
    running = start_bot(
        slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(sample_folder), train_fn=gate
    )
    yield running, gate
    gate.gate.set()
    running.stop()


def test_retrain_acks_at_once_and_serves_meanwhile(gated, slack):
    bot, gate = gated
    expected = {t: bot.ctx.service.served().predict(parse_rfm(t)).segment for t in ("30 2 150", "400 1 20", "5 6 900")}
    r = bot.command("retrain", user=ADMIN)
    assert r.seconds < 3 and "Retraining on" in r.text and "I'll post the result here" in r.text
    assert gate.started.wait(5)
    lease = bot.ctx.state.lease("retrain")
    assert lease is not None and lease.detail["user_id"] == ADMIN  # training still running after the ack
    for _ in range(5):  # answers keep coming, and correct, while training runs
        for text, segment in expected.items():
            reply = bot.command(text)
            assert reply.status == 200 and reply.json["blocks"][0]["text"]["text"] == segment
    assert not slack.api_calls("chat.postMessage")
    gate.gate.set()
    posted = slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"], timeout=60)[0]
    assert posted.args["channel"] == CHANNEL
    assert "Retrained: model v0002 is now serving" in posted.args["text"]
    table = json.dumps(posted.args["blocks"], ensure_ascii=False)
    for s in bot.store.load()[1].segments:
        assert s.name in table
    assert "compared with v0001" in table and "At risk:" in table
    assert bot.store.current_version() == "v0002"
    assert bot.ctx.service.served().version == "v0002"
    results = [(e["command"], e["result"]) for e in reversed(bot.ctx.state.audit_entries())]
    assert results == [("retrain", "succeeded: v0002")]  # one row per attempt, its result filled in at the end

    r = bot.command("rollback", user=ADMIN)
    assert "now serving model v0001 (was v0002)" in r.text
    assert bot.ctx.service.served().version == "v0001"
    assert bot.ctx.state.audit_entries()[0]["result"] == "succeeded: v0002 -> v0001"


def test_two_retrains_at_once_run_one_training(gated, slack):
    bot, gate = gated
    replies = []
    threads = [threading.Thread(target=lambda: replies.append(bot.command("retrain", user=ADMIN))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    texts = sorted(r.text for r in replies)
    assert sum("Retraining on" in t for t in texts) == 1
    busy = next(t for t in texts if "is running (last heartbeat" in t)
    assert f"<@{ADMIN}>" in busy and "UTC" in busy
    gate.gate.set()
    slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"], timeout=60)
    bot.ctx.retrainer.join(30)
    assert gate.calls == 1
    assert bot.store.versions() == ["v0001", "v0002"]
    # and once it is over, a new retrain may start
    assert bot.ctx.state.lease("retrain") is None


def test_a_retrain_on_missing_data_is_refused_at_once(slack, trained, tmp_path, state_db):
    bot = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(tmp_path / "missing"))
    try:
        r = bot.command("retrain", user=ADMIN)
        assert "no such file or folder" in r.text and "Retraining on" not in r.text
        assert bot.ctx.state.audit_entries()[0]["result"].startswith("refused: ")
        assert bot.ctx.state.lease("retrain") is None and bot.store.versions() == ["v0001"]
    finally:
        bot.stop()


def test_a_retrain_without_segment_data_uses_the_served_models_own_data(bot, slack, sample_folder):
    served = bot.ctx.service.served()
    assert served.info.source == f"Olist folder {sample_folder}" and bot.ctx.settings.data is None
    r = bot.command("retrain", user=ADMIN)
    assert f"Retraining on Olist folder {sample_folder.name}" in r.text and "built-in sample" not in r.text
    bot.ctx.retrainer.join(60)
    assert bot.ctx.service.served().info.source == served.info.source
    assert not (bot.store.root / "samples").exists()  # the built-in sample was never made


def test_a_retrain_on_other_data_says_so_instead_of_comparing(slack, trained, tmp_path, state_db):
    other = write_sample(tmp_path / "other", orders=3_000, seed=11)
    bot = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(other))
    try:
        bot.command("retrain", user=ADMIN)
        posted = slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"], timeout=60)[0]
        text = json.dumps(posted.args["blocks"])
        assert "Trained on other data than v0001" in text and "sizes are not compared" in text
        assert not re.search(r"[▲▼]|  = ", text) and "compared with v0001" not in text
        assert bot.ctx.service.served().trained.changes is None  # no renames across shops either
    finally:
        bot.stop()


def test_a_model_whose_data_needs_a_password_is_not_retrained_blindly(bot, slack, monkeypatch):
    import dataclasses

    served = bot.ctx.service.served()
    locked = dataclasses.replace(served.info, source="postgresql://shop:***@db/shop (orders)", data_spec=None)
    as_trained = dataclasses.replace(served, trained=dataclasses.replace(served.trained, info=locked))
    monkeypatch.setattr(bot.ctx.service, "served", lambda version=None: as_trained)
    r = bot.command("retrain", user=ADMIN)
    assert "set SEGMENT_DATA" in r.text and "Retraining" not in r.text
    assert "a PostgreSQL database (orders)" in r.text and "db/shop" not in r.text  # no address in Slack
    assert bot.ctx.state.audit_entries()[0]["result"].startswith("refused: ")


def test_failed_retrain_posts_the_error_and_keeps_serving(slack, trained, sample_folder, tmp_path, state_db):
    broken = shutil.copytree(sample_folder, tmp_path / "broken")
    (broken / "olist_orders_dataset.csv").write_text("order_id,customer_id\nx,y\n")  # readable, but not orders
    bot = start_bot(slack, copy_artifacts(trained, tmp_path / "art"), state_db, data=str(broken))
    try:
        before = bot.command("30 2 150").json["blocks"][0]
        r = bot.command("retrain", user=ADMIN)
        assert "Retraining on" in r.text
        posted = slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"], timeout=30)[0]
        assert "Retrain failed" in posted.args["text"] and "olist_orders_dataset" in posted.args["text"]
        assert "Still serving v0001" in posted.args["text"]
        assert bot.command("30 2 150").json["blocks"][0] == before
        assert bot.store.current_version() == "v0001"
        assert bot.ctx.state.audit_entries()[0]["result"].startswith("failed: ")
        assert bot.ctx.state.lease("retrain") is None
    finally:
        bot.stop()


def test_retrain_result_falls_back_to_response_url_outside_the_channel(gated, slack):
    bot, gate = gated
    slack.fail("chat.postMessage", "not_in_channel")
    gate.gate.set()
    bot.command("retrain", user=ADMIN)
    posted = slack.wait_for(lambda calls: [c for c in calls if c.kind == "response_url"], timeout=60)[0]
    assert "Retrained: model v0002" in posted.args["text"]


def test_url_encoded_body_is_what_slack_sends(bot):
    body = bot.command_body("30 2 150")
    fields = dict(urllib.parse.parse_qsl(body))
    assert fields["command"] == "/segment" and fields["text"] == "30 2 150"


def test_retrain_lease_is_renewed_while_training(gated, monkeypatch):
    import datetime as dt

    import bot.retrain as retrain_mod

    monkeypatch.setattr(retrain_mod, "RENEW_EVERY", 0.1)
    monkeypatch.setattr(retrain_mod, "LEASE_TTL", dt.timedelta(seconds=2))
    running, gate = gated
    running.command("retrain", user=ADMIN)
    assert gate.started.wait(5)
    first = running.ctx.state.lease("retrain").expires_at
    time.sleep(0.5)
    assert running.ctx.state.lease("retrain").expires_at > first  # a dead process would stop renewing
    gate.gate.set()
    running.ctx.retrainer.join(60)
    assert running.ctx.state.lease("retrain") is None


def test_retrain_repairs_a_damaged_current_model(slack, trained, sample_folder, tmp_path, state_db):
    art = copy_artifacts(trained, tmp_path / "art")
    path = art / "models" / "v0001.joblib"
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    bot = start_bot(slack, art, state_db, data=str(sample_folder))
    try:
        assert "refusing to load it" in bot.command("30 2 150").text
        bot.command("retrain", user=ADMIN)
        posted = slack.wait_for(lambda calls: [c for c in calls if c.method == "chat.postMessage"], timeout=60)[0]
        assert "Retrained: model v0002 is now serving" in posted.args["text"]
        assert bot.command("30 2 150").json["blocks"][0]["type"] == "header"
    finally:
        bot.stop()


def test_rollback_waits_for_a_running_retrain(gated):
    running, gate = gated
    running.command("retrain", user=ADMIN)
    assert gate.started.wait(5)
    r = running.command("rollback", user=ADMIN)
    assert "is running (last heartbeat" in r.text and "Try again after its result is posted" in r.text
    assert running.ctx.state.audit_entries()[0]["result"].startswith("busy: A retrain started by")
    gate.gate.set()


def test_a_retrain_whose_process_died_does_not_block(bot, slack):
    """A lease left by a killed process on this host (its pid is gone), or by one whose heartbeat
    stopped, is cleared at once with a true message, not "a retrain is running"."""
    import datetime as dt
    import socket
    import subprocess

    from bot.retrain import LEASE, LEASE_TTL

    gone = subprocess.Popen(["true"])
    gone.wait()
    bot.ctx.state.try_acquire(LEASE, f"{socket.gethostname()}:{gone.pid}:x", LEASE_TTL, {"user_id": ADMIN})
    r = bot.command("retrain", user=ADMIN)
    assert f"stopped (its process {gone.pid} is gone) without finishing" in r.text and "Retraining on" in r.text
    assert "is running" not in r.text
    bot.ctx.retrainer.join(60)
    assert bot.ctx.state.lease(LEASE) is None and bot.store.current_version() == "v0002"
    # another host's holder that stopped renewing for more than two heartbeats
    bot.ctx.state.try_acquire(LEASE, "elsewhere:1", LEASE_TTL, {"user_id": ADMIN, "host": "elsewhere", "pid": 1})
    with bot.ctx.state.engine.begin() as con:
        from bot.state import leases

        expires = bot.ctx.state.lease(LEASE).expires_at
        con.execute(leases.update().values(expires_at=expires - dt.timedelta(seconds=70)))
    r = bot.command("rollback", user=ADMIN)
    assert "stopped (no heartbeat for 7" in r.text and "Rolled back: now serving model v0001" in r.text
    # a live holder elsewhere (recent heartbeat) is respected
    bot.ctx.state.try_acquire(LEASE, "elsewhere:2", LEASE_TTL, {"user_id": ADMIN, "host": "elsewhere", "pid": 2})
    r = bot.command("retrain", user=ADMIN)
    assert "is running (last heartbeat 0 s ago)" in r.text


def test_retrain_keeps_the_served_k_unless_given(bot, slack):
    k = bot.ctx.service.served().info.k
    bot.command("retrain", user=ADMIN)
    bot.ctx.retrainer.join(60)
    assert bot.ctx.service.served().info.k == k
    r = bot.command("retrain k=7 seed=3", user=ADMIN)
    assert "with k=7 seed=3" in r.text
    bot.ctx.retrainer.join(60)
    info = bot.ctx.service.served().info
    assert (info.k, info.seed) == (7, 3)
    bot.command("retrain", user=ADMIN)
    bot.ctx.retrainer.join(60)
    assert bot.ctx.service.served().info.k == 7  # the served model's K is kept from now on
    for bad in ("k=1", "k=x", "depth=3", "k=" + "9" * 200):
        r = bot.command(f"retrain {bad}", user=ADMIN)
        assert r.text.startswith(":warning:") or "must be" in r.text or "don't know" in r.text
        assert len(r.json["text"]) < 200 and "\n" not in r.json["text"]


def test_values_beyond_the_training_data_are_flagged(bot):
    r = bot.command("36500 1 100")
    assert ":information_source: Beyond the training data: recency 36,500" in r.text
    assert "Beyond the training data" not in bot.command("30 2 150").text


def test_every_example_in_the_help_works_on_the_served_model(bot, slack):
    import re

    help_text = bot.command("help").text
    examples = sorted(set(re.findall(r"`/segment ([^`<]+)`", help_text)) | set(re.findall(r"`(\d[^`<]*)`", help_text)))
    assert "30 2 150,50" in examples and any(e.startswith("export ") for e in examples)
    for example in examples:
        if example.split()[0] in {"retrain", "rollback", "serve", "digest"}:
            continue  # they act; tested on their own
        r = bot.command(example, user=ADMIN)
        assert r.status == 200 and ":warning:" not in r.text, (example, r.text[:200])
    assert "30 2 1,250" in examples and "R$1,250.00" in bot.command("30 2 1,250").text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("nan", "Give exactly three values, R F M, e.g. 30 2 150"),
        ("inf", "Give exactly three values, R F M, e.g. 30 2 150"),
        ("banana", "I don't know `banana`"),
        ("nan 2 150", "recency must be a finite number"),
        ("30 2 inf", "monetary must be a finite number"),
        ("30 2 150,5,5", "monetary must be a number, not '150,5,5'"),
        ("x" * 5000, "I don't know `xxxxxxxxxxxxxxxxxxxxxxxxxxxxx…`"),
        ("30 2 " + "9" * 5000, "monetary must be a finite number, not '999"),
        ("30 2 " + "9" * 20, "monetary must be between 0 and 10,000,000,000"),
    ],
)
def test_bad_input_gets_one_short_line(bot, text, expected):
    r = bot.command(text)
    line = r.json["text"]
    assert expected in line and "\n" not in line and len(line) < 300, line[:300]
    assert len(r.json["blocks"]) == 1
