"""A real Spark standalone cluster, not local mode: a master and two workers of one core each,
started from the pyspark package's own launch classes on 127.0.0.1 and stopped by the test.
Training, a digest's scoring and the backtest run on it (``SEGMENT_SPARK_MASTER``), in a
process of their own, and equal DuckDB's exactly. Skipped only where Java is missing (in CI
that fails)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_databases import _transactions

if not os.environ.get("CI"):
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Java is not installed: the Spark cluster cannot start", allow_module_level=True)


# Run with the cluster's master or with DuckDB, in one process (one Spark application): train,
# then the model's segments, a digest's scoring of every customer 30 days on, and a backtest, as JSON.
FIGURES = """
import datetime as dt, json, sys
from segmentation.analysis import backtest
from segmentation.data.spec import source_from_spec
from segmentation.serving.service import SegmentService
from segmentation.serving.store import ModelStore
from segmentation.serving.training import train
from segmentation import runtime
art, data, master = sys.argv[1:4]
runtime.configure(runtime.Runtime(spark_master=master, spark_partitions=2))  # as the CLI does from SEGMENT_SPARK_*
flags = dict(customer_col="Customer", order_col="order_no", date_col="created_at", amount_col="total")
train(source_from_spec(data, **flags), ModelStore(art), k=6)
served = SegmentService(ModelStore(art)).served()
as_of = dt.date.fromisoformat(served.info.snapshot_date) + dt.timedelta(days=30)
score = served.score_source(source_from_spec(data, **flags), as_of)
bt = backtest.run(source_from_spec(data, **flags), horizon=60, cutoffs=1)
print(json.dumps({
    "segments": [(s.name, s.customers) for s in served.trained.segments],
    "digest": {"customers": score.customers, "counts": [int(c) for c in score.counts],
               "at_risk": score.at_risk.customers, "at_risk_revenue": round(score.at_risk.past_spend, 2)},
    "backtest": [(str(r.cutoff), r.customers, r.returned, [(s.name, s.customers, s.future.returned) for s in r.segments],
                  {k: None if v is None else round(v, 12) for k, v in r.auc.items()}) for r in bt.results],
}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """spark://127.0.0.1:PORT with two one-core workers; everything stopped afterwards."""
    import pyspark

    home = Path(pyspark.__file__).parent
    logs = tmp_path_factory.mktemp("spark-cluster")
    quick = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # short-lived JVMs: the quick compiler only
    conf = logs / "conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text(f"spark.executor.extraJavaOptions {quick}\n")
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_CONF_DIR": str(conf),
        "SPARK_DAEMON_JAVA_OPTS": quick,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    port, ui = _free_port(), _free_port()
    master = f"spark://127.0.0.1:{port}"
    spark_class = str(home / "bin" / "spark-class")
    launched = []

    def launch(name: str, *args: str) -> None:
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([spark_class, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        launched.append((proc, log))

    try:
        launch("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
               "--webui-port", str(ui))  # fmt: skip
        for i in (1, 2):
            launch(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
                   "--memory", "1g", "--webui-port", str(_free_port()), "--work-dir", str(logs / f"work{i}"),
                   master)  # fmt: skip
        deadline, alive = time.monotonic() + 120, 0
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
                    alive = int(json.load(r).get("aliveworkers", 0))
            except OSError:
                alive = 0
            if alive == 2:
                break
            time.sleep(0.5)  # the JVMs take a few seconds to start: polled, not a fixed wait
        if alive != 2:
            tails = {p.name: p.read_text(errors="replace")[-1500:] for p in logs.glob("*.log")}
            pytest.fail(f"the Spark cluster did not come up with two workers: {tails}")
        yield {"master": master, "ui": ui}
    finally:
        for proc, _log in launched:
            proc.terminate()
        for proc, log in launched:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def _start(art: Path, data: str, master: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", FIGURES, str(art), data, master]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _figures(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_training_a_digest_and_the_backtest_on_a_standalone_cluster_equal_duckdb(cluster, tmp_path):
    df = _transactions(seed=31, n=5_000)
    path = tmp_path / "orders.parquet"
    df.to_parquet(path, index=False)
    on_spark = _start(tmp_path / "spark", f"spark:{path}", cluster["master"])
    on_duckdb = _start(tmp_path / "duckdb", str(path), "local[1]")  # the master is unused: DuckDB reads the file
    spark, duck = _figures(on_spark), _figures(on_duckdb)
    with urllib.request.urlopen(f"http://127.0.0.1:{cluster['ui']}/json/", timeout=5) as resp:
        state = json.load(resp)
    apps = [a["name"] for a in state["completedapps"] + state["activeapps"]]  # the master may not have seen it end yet
    assert "segment" in apps, "the work ran in local mode, not on the cluster"
    assert spark["segments"] == duck["segments"]
    assert spark["digest"] == duck["digest"]  # segments, at-risk count, revenue to the cent
    assert spark["digest"]["at_risk"] > 0 and spark["backtest"]
    assert spark["backtest"] == duck["backtest"]
