"""The scale run's worker (``python -m benchmarks.scale_worker``) as the scale driver runs it:
a real ``lambda-service serve``, PostgreSQL, RabbitMQ with a queue of its own, the Synnefo
emulator over HTTP for power, and the simulated playbook runner replaying the recorded
timings (sped up) with its journal and its SQL statement stats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_scaleout import (
    Cluster,
    free_port,
    instance_id,
    make_cluster,  # noqa: F401 (a fixture)
    pg_url,  # noqa: F401 (a fixture)
    rabbitmq,  # noqa: F401 (a fixture)
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.celery, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def start_scale_worker(cluster: Cluster, **env) -> subprocess.Popen:
    name = f"scale-worker-{len(cluster.procs)}"
    log_path = cluster.logs / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.scale_worker", "--concurrency", "2"],
            env={**cluster.base_env, "PYTHONPATH": str(ROOT),
                 "LAMBDA_WORKER_METRICS_BIND": f"127.0.0.1:{free_port()}", **env},
            stdout=log, stderr=subprocess.STDOUT, cwd=cluster.tmp)
    proc.log_path = log_path
    cluster.procs.append(proc)  # stopped (SIGTERM) by the cluster's close
    wait_for(lambda: cluster._ready(proc, " ready."), 60, f"{name} to be ready")
    return proc


def test_a_start_then_a_stop_on_the_simulated_runner(rabbitmq, make_cluster, tmp_path):  # noqa: F811
    cluster = make_cluster(rabbitmq, instances=1)
    journal = tmp_path / "journal.jsonl"
    stats = tmp_path / "stats"
    # The product's playbooks, chains side by side and their checks, as in production.
    sim = {"LAMBDA_PLAYBOOK_CHAINS": "side-by-side", "LAMBDA_CHECKS": "enforce",
           "LAMBDA_SIM_SPEED": "0.05",
           "LAMBDA_SIM_JOURNAL": str(journal), "LAMBDA_SIM_STATS_DIR": str(stats)}
    worker = start_scale_worker(cluster, **sim)
    api = cluster.start_api(LAMBDA_PLAYBOOK_CHAINS="side-by-side", LAMBDA_CHECKS="enforce")
    hosts = cluster.seed["instances"][0]["hosts"]
    names = sorted(h["name"] for h in hosts)

    start_id = cluster.accept(api, instance_id(1), "start")
    started = cluster.wait_finished(start_id, 120)
    assert started.state.value == "succeeded", started.error
    assert [(s.name.value, s.state.value) for s in started.steps] == [
        ("power_on", "succeeded"), ("wait_ssh", "skipped"), ("playbook", "succeeded"),
        ("service_checks", "succeeded")]
    assert "3 chains side by side" in started.steps[2].message
    assert started.tasks and {t.host for t in started.tasks} == set(names)
    assert all(cluster.emulator.server_status(h["server_id"]) == "ACTIVE" for h in hosts)
    assert cluster.instance(1).status.name == "STARTED"

    stop_id = cluster.accept(api, instance_id(1), "stop")
    stopped = cluster.wait_finished(stop_id, 120)
    assert stopped.state.value == "succeeded", stopped.error
    assert stopped.tasks and {t.host for t in stopped.tasks} == set(names)
    assert cluster.instance(1).status.name == "STOPPED"
    assert all(cluster.emulator.server_status(h["server_id"]) == "STOPPED" for h in hosts)

    # One start and one end line per run: three chains, their checks, three chains.
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(lines) == 18
    assert all(line["pid"] == worker.pid and sorted(line["hosts"]) == names for line in lines)
    ends = [line for line in lines if line["event"] == "end"]
    assert {line["status"] for line in ends} == {"successful"}
    assert sorted(line["playbook"] for line in ends if line["group"] == start_id) == sorted(
        ["lambda-start-hdfs-yarn.yml", "lambda-start-zookeeper-kafka.yml",
         "lambda-start-spark.yml"])
    assert len([line for line in ends if line["group"] == f"{start_id}-checks"]) == 3

    worker.terminate()  # a warm shutdown; its stats are written once more at exit
    worker.wait(30)
    assert worker.returncode == 0, worker.log_path.read_text()[-3000:]
    data = json.loads((stats / f"{worker.pid}.json").read_text())
    assert data["pid"] == worker.pid and data["statements"] > 0 and data["rss_bytes"] > 0
