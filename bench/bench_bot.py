"""Latency of signed `/segment R F M` requests at the HTTP endpoint vs a Bolt command that does nothing,
and of the gate (size, signature, replay record in the state database, shape) vs the same no-op
command served by Bolt's own handler without the gate.

All cases are served by the same app (waitress servers in one process), interleaved request by
request in one run, so the machine's noise hits them alike.

``--concurrency N``: N client threads, each on its own keep-alive connection, send signed
requests as fast as they are answered, in alternating rounds of ``--seconds`` each: the signed
`/segment R F M` through the gate, and a Bolt command that does nothing, through the gate and
without it, so the three face the same machine. Each round also replays captured requests, which
must all be refused (409). ``--database postgresql+psycopg://…`` uses that state database
instead of SQLite.
Usage: python bench/bench_bot.py [--requests N] [--concurrency 20 [--seconds 5] [--database URL]]
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
from bot.server import HttpServer, response_hosts
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
    ap.add_argument("--concurrency", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--database", default=None)
    args = ap.parse_args()
    if args.concurrency:
        return concurrent(args)
    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as slack:
        ctx, server, bare = _serve(tmp, slack, args.database)
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


def _serve(tmp: str, slack: SlackEmulator, database: str | None):
    """The app behind the gate and behind Bolt's own handler, on one trained model."""
    store = ModelStore(Path(tmp) / "art")
    train(OlistSource(write_sample(Path(tmp) / "data", orders=100_000)), store)
    settings = Settings(
        bot_token="xoxb-bench",
        signing_secret=SECRET,
        api_url=slack.api_url,
        artifacts=store.root,
        database_url=database or f"sqlite:///{tmp}/s.db",
    )
    ctx = build_context(settings, service=SegmentService(store))
    app = create_app(ctx)

    @app.command("/noop")
    def noop(ack):
        ack()

    threads = int(os.environ.get("BENCH_THREADS", "8"))
    server = HttpServer(
        app, SECRET, ctx.state, host="127.0.0.1", port=0, threads=threads, response_hosts=response_hosts(slack.api_url)
    )
    bare = create_server(SlackRequestHandler(app, path="/slack/events"), host="127.0.0.1", port=0, threads=8)
    threading.Thread(target=bare.run, daemon=True).start()
    return ctx, server.start(), bare


def _client(port: int, case: str, stop: float, k: int, response_url: str, captured: list) -> list[float]:
    """One client: signed requests on one keep-alive connection until ``stop`` (wall clock)."""
    rng = np.random.default_rng(k)
    out: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    is_segment = case == "/segment R F M"
    while time.time() < stop:
        text = f"{rng.integers(0, 700)} {rng.integers(1, 8)} {rng.uniform(5, 2000):.2f}" if is_segment else ""
        b = body("/segment" if is_segment else "/noop", text, response_url)
        h = headers(b)
        t = time.perf_counter()
        conn.request("POST", "/slack/events", body=b.encode(), headers=h)
        resp = conn.getresponse()
        resp.read()
        out.append((time.perf_counter() - t) * 1000)
        assert resp.status == 200, resp.status
        if case != "no-op, no gate" and rng.random() < 0.02:
            captured.append((b, h))
    conn.close()
    return out


def _clients(task: dict) -> dict:
    """A round of ``task["n"]`` client threads, run in a process of its own (the server keeps its
    interpreter to itself, as behind a real network), then the captured requests replayed."""
    captured: list = []
    outs: list[list[float]] = [[] for _ in range(task["n"])]

    def run(k: int) -> None:
        outs[k] = _client(task["port"], task["case"], task["stop"], k, task["response_url"], captured)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(task["n"])]
    started = time.time()  # the round's own length: the pool may hand the task over late
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    refused = 0
    conn = http.client.HTTPConnection("127.0.0.1", task["gate_port"], timeout=30)
    for b, h in captured[:200]:
        conn.request("POST", "/slack/events", body=b.encode(), headers=h)
        resp = conn.getresponse()
        resp.read()
        refused += resp.status == 409
    return {
        "latencies": [x for o in outs for x in o],
        "elapsed": elapsed,
        "replayed": min(len(captured), 200),
        "refused": refused,
    }


def concurrent(args: argparse.Namespace) -> None:
    """N clients at once, in rounds per case (see the module docstring)."""
    import multiprocessing

    with tempfile.TemporaryDirectory() as tmp, SlackEmulator() as slack:
        ctx, server, bare = _serve(tmp, slack, args.database)
        ports = {"/segment R F M": server.port, "no-op command": server.port, "no-op, no gate": bare.effective_port}
        latencies: dict[str, list[float]] = {n: [] for n in ports}
        seconds: dict[str, float] = {n: 0.0 for n in ports}
        replays = {"sent": 0, "refused": 0}
        cpu_ms: dict[str, float] = {n: 0.0 for n in ports}  # the server process's CPU time per case
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            for _ in range(args.rounds):
                for case, port in ports.items():
                    task = {
                        "n": args.concurrency,
                        "port": port,
                        "gate_port": server.port,
                        "case": case,
                        "stop": time.time() + args.seconds + 0.5,
                        "response_url": slack.response_url("bench"),
                    }
                    cpu = time.process_time()
                    got = pool.apply(_clients, (task,))
                    cpu_ms[case] += (time.process_time() - cpu) * 1000  # includes the replays: a few
                    seconds[case] += got["elapsed"]
                    latencies[case] += got["latencies"]
                    replays["sent"] += got["replayed"] if case != "no-op, no gate" else 0
                    replays["refused"] += got["refused"] if case != "no-op, no gate" else 0
        server.stop()
        bare.close()
    db = "PostgreSQL" if args.database and args.database.startswith("postgresql") else "SQLite"
    print(
        f"machine: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"{args.concurrency} concurrent clients (one process of their own, on this machine), {args.rounds} rounds "
        f"of {args.seconds:g} s per case, state database {db}"
    )
    stats = {}
    for name, t in latencies.items():
        a = np.array(t)
        stats[name] = (np.percentile(a, 50), np.percentile(a, 99), len(a) / seconds[name])
        print(
            f"{name:16s} p50 {stats[name][0]:6.2f} ms  p99 {stats[name][1]:6.2f} ms  {stats[name][2]:6.0f} req/s  "
            f"server CPU {cpu_ms[name] / len(t):.2f} ms per request"
        )
    s, n, g = stats["/segment R F M"], stats["no-op command"], stats["no-op, no gate"]
    print(
        f"/segment vs the no-op through the gate: p99 x{s[1] / n[1]:.2f}; vs the no-op without the gate: "
        f"p99 x{s[1] / g[1]:.2f}; throughput {s[2]:.0f} req/s"
    )
    print(f"replays: {replays['refused']:,} of {replays['sent']:,} refused with 409")


if __name__ == "__main__":
    main()
