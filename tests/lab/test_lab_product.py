"""The product end to end on the lab.

The API server (`lambda-service serve`) serves; the emulator's power hooks boot and kill
the lab hosts; the product powers them on, waits for their sshd, runs lambda-start.yml
over SSH (real Spark and ZooKeeper, stand-in HDFS/YARN/Kafka), then stops everything and
powers the hosts off.
"""

from __future__ import annotations

import time

import pytest

from lambda_testbed.lab.provision import missing_requirements
from tests.lab.conftest import require
from tests.lab.labproduct import (
    daemons_on,
    lab_product,
    open_ports,
    run_processes,
    ruok,
    spark_alive_workers,
    wait_until,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    require(missing_requirements(), "the lab product test needs the real daemons")
    with lab_product(tmp_path_factory.mktemp("product"), "lambdalabq", "10.213.206.0/24") as p:
        yield p


def test_start_then_stop_through_the_http_api(product) -> None:
    lab = product.lab
    assert not any(lab.is_on(h.name) for h in lab.hosts), "every host starts powered off"
    assert product.status()["status"]["message"] == "STOPPED"

    location = product.act("start")
    action, instance, took = product.wait_ended(location, timeout=400)
    print(f"\nLAB product start: {took:.1f}s from 202 to the action's end")
    assert action["state"] == "succeeded", action["error"]
    assert instance["status"]["message"] == "STARTED"
    steps = {s["name"]: s for s in action["steps"]}
    assert [s["name"] for s in action["steps"]] == [
        "power_on", "wait_ssh", "playbook", "service_checks"]
    assert all(s["state"] == "succeeded" for s in steps.values()), steps
    # The service checks passed, with the real ZooKeeper (zkCli.sh), the Kafka stand-in's
    # brokers registered in it, and the real Spark (SparkPi run on the workers).
    checks = {c["service"]: c for c in action["checks"]}
    assert set(checks) == {"HDFS", "YARN", "ZooKeeper", "Kafka", "Spark"}, action["checks"]
    assert all(c["passed"] for c in checks.values()), action["checks"]
    assert "SparkPi finished with Pi is roughly 3." in checks["Spark"]["seen"]
    for check in action["checks"]:
        print(f"LAB product check {check['service']}: {check['seconds']}s, {check['seen']}")
    for step in action["steps"]:
        print(f"LAB product start step {step['name']}: {step['duration']}s")
    assert action["playbook"]["hosts"].keys() == {h.name for h in lab.hosts}
    assert not any(c["failed"] or c["unreachable"] for c in action["playbook"]["hosts"].values())

    # Verified from outside, not from the roles' word.
    assert all(lab.is_on(h.name) for h in lab.hosts)
    assert spark_alive_workers(product.master.ip) == sorted(h.ip for h in product.slaves)
    assert ruok(product.master.ip) == "imok"
    assert open_ports(lab) == [
        (h.name, p) for h in lab.hosts
        for p in ((8020, 9870, 8032, 8088, 2181, 9092, 7077, 8080) if h.role == "master"
                  else (9866, 8042, 9092, 8081))
    ]
    assert "java" in daemons_on(lab, product.master.name)  # the real Spark master and ZK

    action_id = location.rstrip("/").rsplit("/", 1)[1]
    assert wait_until("no process of the start run left", lambda: not run_processes(action_id),
                      timeout=30)

    location = product.act("stop")
    action, instance, took = product.wait_ended(location, timeout=300)
    print(f"LAB product stop: {took:.1f}s from 202 to the action's end")
    assert action["state"] == "succeeded", action["error"]
    assert instance["status"]["message"] == "STOPPED"
    assert [(s["name"], s["state"]) for s in action["steps"]] == [
        ("playbook", "succeeded"), ("power_off", "succeeded")]
    for host in lab.hosts:
        assert not lab.is_on(host.name), host.name
        assert daemons_on(lab, host.name) == []
    assert all(product.emulator.server_status(s) == "STOPPED" for s in product.server_to_host)
    assert open_ports(lab) == []
    stop_id = location.rstrip("/").rsplit("/", 1)[1]
    deadline = time.monotonic() + 30
    while run_processes(stop_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run_processes(stop_id) == []
