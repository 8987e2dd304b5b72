"""Latency of signed `/segment R F M` requests at the HTTP endpoint vs a Bolt command that does nothing,
and of the gate (size, signature, replay record in the state database, shape) vs the same no-op
command served by Bolt's own handler without the gate.

All cases are served by the same app (waitress servers in one process), interleaved request by
request in one run, so the machine's noise hits them alike.
Usage: python bench/bench_bot.py [--requests N]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import os
import platform
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import numpy as np
from slack_bolt.adapter.wsgi import SlackRequestHandler
from waitress.server import create_server

from bot.app import build_context, create_app
from bot.emulator import SlackEmulator
from bot.server import HttpServer
from segment_cli.settings import Settings
from segmentation.data.kinds import OlistSource
from segmentation.data.sample import write_sample
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train

SECRET = "bench-secret"


def body(command: str, text: str, response_url: str) -> str:
    return urllib.parse.urlencode(
        {
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": "U1",
            "command": command,
            "text": text,
            "response_url": response_url,
            "trigger_id": uuid.uuid4().hex,
            "api_app_id": "A1",
        }
    )


def headers(b: str) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:{b}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sig,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as slack:
        store = ModelStore(Path(tmp) / "art")
        train(OlistSource(write_sample(Path(tmp) / "data", orders=100_000)), store)
        settings = Settings(
            bot_token="xoxb-bench",
            signing_secret=SECRET,
            api_url=slack.api_url,
            artifacts=store.root,
            database_url=f"sqlite:///{tmp}/s.db",
        )
        ctx = build_context(settings, service=SegmentService(store))
        app = create_app(ctx)

        @app.command("/noop")
        def noop(ack):
            ack()

        server = HttpServer(app, SECRET, ctx.state, host="127.0.0.1", port=0).start()
        bare = create_server(SlackRequestHandler(app, path="/slack/events"), host="127.0.0.1", port=0, threads=8)
        threading.Thread(target=bare.run, daemon=True).start()
        conn = http.client.HTTPConnection("127.0.0.1", server.port)
        bare_conn = http.client.HTTPConnection("127.0.0.1", bare.effective_port)
        rng = np.random.default_rng(0)
        names = ["/segment R F M", "no-op command", "no-op, no gate"]
        cases: dict[str, list[float]] = {n: [] for n in names}
        for i in range(args.requests * 3 + 300):
            case = names[i % 3]
            is_segment = case == "/segment R F M"
            text = f"{rng.integers(0, 700)} {rng.integers(1, 8)} {rng.uniform(5, 2000):.2f}" if is_segment else ""
            b = body("/segment" if is_segment else "/noop", text, slack.response_url())
            h = headers(b)
            c = bare_conn if case == "no-op, no gate" else conn
            t = time.perf_counter()
            c.request("POST", "/slack/events", body=b.encode(), headers=h)
            resp = c.getresponse()
            resp.read()
            dt_ms = (time.perf_counter() - t) * 1000
            assert resp.status == 200, resp.status
            if i >= 300:  # warm-up
                cases[case].append(dt_ms)
        server.stop()
        bare.close()
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.requests} requests each, interleaved, one keep-alive connection"
    )
    stats = {}
    for name, t in cases.items():
        a = np.array(t)
        stats[name] = (np.percentile(a, 50), np.percentile(a, 99), 1000 / a.mean())
        print(f"{name:16s} p50 {stats[name][0]:6.2f} ms  p99 {stats[name][1]:6.2f} ms  {stats[name][2]:6.0f} req/s")
    s, n, g = stats["/segment R F M"], stats["no-op command"], stats["no-op, no gate"]
    print(f"added by the handler: p50 {s[0] - n[0]:+.2f} ms, p99 {s[1] - n[1]:+.2f} ms")
    print(
        f"added by the gate:    p50 {n[0] - g[0]:+.2f} ms, p99 {n[1] - g[1]:+.2f} ms "
        f"(SQLite state database; one replay record per request)"
    )


if __name__ == "__main__":
    main()
