"""Failures on the lab end in FAILED (or STOPPED) with a message naming the host, the step
and the task, within a bounded time, with no process of the run left.

One lab and one product for the module; the scenarios run in order on the same instance
(each start is allowed from FAILED, and the roles are idempotent):

1. a server stuck in BUILD            -> start FAILED at power_on, naming server and host
2. a daemon that cannot start         -> start FAILED at playbook, naming host and task
3. a host's link drops mid-playbook   -> start FAILED at playbook, host unreachable
4. stop while a host is already off   -> STOPPED, every host off
"""

from __future__ import annotations

import re

import pytest

from lambda_testbed.lab.provision import missing_requirements
from tests.lab.conftest import require
from tests.lab.labproduct import (
    daemons_on,
    lab_product,
    open_ports,
    port_open,
    run_processes,
    wait_until,
)

pytestmark = pytest.mark.lab

POWER_TIMEOUT = 8
# Short role waits: a host lost mid-play must not keep the master waiting for minutes.
FAST_WAITS = {"spark_wait_timeout": 20, "hadoop_wait_timeout": 20,
              "hadoop_safemode_timeout": 20, "kafka_wait_timeout": 20,
              "zookeeper_wait_timeout": 20}


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    require(missing_requirements(), "the lab failure tests need the real daemons")
    env = {"LAMBDA_POWER_TIMEOUT": str(POWER_TIMEOUT), "LAMBDA_SSH_TIMEOUT": "20"}
    with lab_product(tmp_path_factory.mktemp("failures"), "lambdalabf", "10.213.207.0/24",
                     env=env, extravars=FAST_WAITS) as p:
        yield p


def action_id(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[1]


def assert_nothing_left(location: str) -> None:
    """No ansible-playbook, ssh client or ssh control master of the action's runs."""
    wait_until("the run's processes gone", lambda: not run_processes(action_id(location)),
               timeout=30)


def test_1_server_stuck_in_build_fails_at_power_on(product) -> None:
    slave = product.slaves[1]
    server = product.host_to_server[slave.name]
    product.emulator.set_faults(stuck={server: "BUILD"})
    try:
        location = product.act("start")
        action, instance, took = product.wait_ended(location, timeout=POWER_TIMEOUT + 60)
    finally:
        product.emulator.set_faults(stuck={})
    print(f"\nLAB failure stuck-BUILD: FAILED {took:.1f}s after the 202")
    assert action["state"] == "failed"
    assert instance["status"]["message"] == "FAILED"
    message = instance["status"]["failure_message"]
    assert "power_on" in message and server in message and slave.name in message, message
    assert [(s["name"], s["state"]) for s in action["steps"]] == [("power_on", "failed")]
    assert not product.lab.is_on(slave.name)  # never booted
    assert_nothing_left(location)


def test_2_daemon_that_cannot_start_fails_naming_host_and_task(product) -> None:
    lab, slave = product.lab, product.slaves[1]
    # The VM is up (booted by the cloud) and something else holds the DataNode's port on
    # it: the DataNode dies on start, while the port still answers.
    lab.power_on(slave.name)
    product.emulator.set_status(product.host_to_server[slave.name], "ACTIVE")
    squat = (
        "import socket, time; s = socket.socket();"
        " s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        f" s.bind(('{slave.ip}', 9866)); s.listen(); time.sleep(900)"
    )
    lab.ssh(slave.name, f"setsid /usr/bin/python3 -c \"{squat}\" </dev/null >/dev/null 2>&1 &"
            " echo $! > /opt/lambda/squatter.pid")
    wait_until("the squatter listening", lambda: port_open(slave.ip, 9866), timeout=30)
    try:
        location = product.act("start")
        action, instance, took = product.wait_ended(location, timeout=240)
    finally:
        lab.ssh(slave.name, "kill $(cat /opt/lambda/squatter.pid)")
    print(f"LAB failure daemon-start: FAILED {took:.1f}s after the 202")
    assert action["state"] == "failed"
    message = instance["status"]["failure_message"]
    assert instance["status"]["message"] == "FAILED"
    assert "step playbook" in message and f"host {slave.name}" in message, message
    assert "task 'Ensure the DataNode is started'" in message and "9866" in message, message
    steps = [(s["name"], s["state"]) for s in action["steps"]]
    assert steps == [("power_on", "succeeded"), ("wait_ssh", "succeeded"),
                     ("playbook", "failed")]
    failed = [t for t in action["playbook"]["tasks"] if t["status"] == "failed"]
    # The first failure is the DataNode's; the master's wait for every Spark worker then
    # fails too (that worker was never started), which is the expected follow-on.
    assert (failed[0]["host"], failed[0]["role"]) == (slave.name, "hadoop")
    assert_nothing_left(location)


def test_3_link_down_mid_playbook_fails_naming_the_unreachable_host(product) -> None:
    lab, slave = product.lab, product.slaves[0]
    location = product.act("start")
    # Mid-playbook: once this run has done a few tasks on the slave (the earlier failed start
    # left daemons up, so ports say nothing about how far this run is).
    def slave_tasks() -> int:
        tasks = product.action(location)["playbook"]["tasks"]
        return sum(1 for t in tasks if t["host"] == slave.name)

    wait_until("the playbook working on the slave", lambda: slave_tasks() >= 3, timeout=300)
    lab.link_down(slave.name)
    try:
        action, instance, took = product.wait_ended(location, timeout=180)
    finally:
        lab.link_up(slave.name)
    print(f"LAB failure link-down: FAILED {took:.1f}s after the link went down")
    assert action["state"] == "failed"
    message = instance["status"]["failure_message"]
    assert instance["status"]["message"] == "FAILED"
    assert "step playbook" in message, message
    assert f"host {slave.name} was unreachable at task '" in message, message
    # The chain whose play lost the host names its playbook (the chains run side by side).
    assert re.search(r"of lambda-start-(hdfs-yarn|zookeeper-kafka|spark)\.yml: ", message), message
    unreachable = [t for t in action["playbook"]["tasks"] if t["status"] == "unreachable"]
    assert {t["host"] for t in unreachable} == {slave.name}
    assert_nothing_left(location)


def test_4_stop_while_a_host_is_already_off_ends_stopped(product) -> None:
    lab, off = product.lab, product.slaves[1]
    server = product.host_to_server[off.name]
    # The VM is shut down behind the product's back (its daemons die with it).
    lab.power_off(off.name)
    product.emulator.set_status(server, "STOPPED")
    assert daemons_on(lab, product.master.name), "the failed start left daemons running"

    location = product.act("stop")
    action, instance, took = product.wait_ended(location, timeout=240)
    print(f"LAB failure stop-with-host-off: {action['state']} {took:.1f}s after the 202")
    assert action["state"] == "succeeded", action["error"]
    assert instance["status"]["message"] == "STOPPED"
    playbook = next(s for s in action["steps"] if s["name"] == "playbook")
    assert playbook["state"] == "succeeded"
    assert f"skipped hosts already off: {off.name}" in playbook["message"]
    assert off.name not in action["playbook"]["hosts"]
    for host in lab.hosts:
        assert not lab.is_on(host.name), host.name
    assert open_ports(lab) == []
    assert_nothing_left(location)
