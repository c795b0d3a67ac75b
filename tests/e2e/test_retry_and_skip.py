"""A start that leaves out a slave whose VM will not boot, retried after a failure in the
middle of its playbook, then a start that brings the slave back: through the real server,
the emulator over HTTP and the stand-in daemons on loopback hosts."""

from __future__ import annotations

import socket

import pytest

from tests.e2e.conftest import DEMO_INSTANCE_ID
from tests.support import get_json, port_open

pytestmark = pytest.mark.slow

URL = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
MASTER, SLAVE_1, SLAVE_2 = "lambda-1-master", "lambda-1-slave-1", "lambda-1-slave-2"
SLAVE_1_SERVER, SLAVE_1_IP, SLAVE_2_IP = "1011", "127.42.1.2", "127.42.1.3"
DATANODE_PORT = 9866


def steps(action: dict) -> dict:
    return {s["name"]: s["message"] for s in action["steps"]}


def start(product, **data) -> dict:
    resp = product.call("POST", URL, data={"action": "start", **data})
    assert resp.status_code == 202, resp.text
    return product.wait_action(resp.headers["Location"], timeout=300)


def config_texts(product, host: str) -> dict:
    return {p: p.read_text() for p in (product.state / "hosts" / host / "etc").rglob("*")
            if p.is_file()}


def broker_id(product, host: str) -> str:
    path = product.state / "hosts" / host / "etc/kafka/server.properties"
    return next(line for line in path.read_text().splitlines() if line.startswith("broker."))


def test_leave_out_a_broken_slave_retry_a_failed_start_then_bring_the_slave_back(product):
    product.emulator.set_status(SLAVE_1_SERVER, "ERROR")  # Cyclades will not start it
    # Something else holds slave 2's DataNode port: its DataNode exits at start, once the
    # NameNode is up: the start fails in the middle of the playbook.
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((SLAVE_2_IP, DATANODE_PORT))
    squatter.listen()
    try:
        failed = start(product, exclude=SLAVE_1)
    finally:
        squatter.close()  # repaired
    assert failed["state"] == "failed"
    assert f"host {SLAVE_2} failed at task 'Ensure the DataNode is started'" in failed["error"]
    instance = product.wait_status(DEMO_INSTANCE_ID, {"FAILED"})
    assert instance["info"]["left_out_hosts"] == []  # only a start that succeeds sets them

    # The retry goes on from what already holds.
    action = start(product, exclude=SLAVE_1)
    assert action["state"] == "succeeded", action["error"]
    assert action["excluded_hosts"] == [SLAVE_1]
    assert steps(action)["power_on"] == (
        f"already ACTIVE, not powered on: {MASTER}, {SLAVE_2}; left out: {SLAVE_1}")
    # The chains beside HDFS's ran to their end in the failed start: their services are
    # among those left as they were too.
    held, _, started = steps(action)["playbook"].partition("; started or reconfigured: ")
    assert f"already running, left as they were: HDFS NameNode ({MASTER})" in held, held
    assert f"HDFS DataNodes ({SLAVE_2}), YARN ResourceManager ({MASTER})" in started, started
    assert set(action["playbook"]["hosts"]) == {MASTER, SLAVE_2}
    instance = product.wait_status(DEMO_INSTANCE_ID, {"STARTED"})
    assert instance["info"]["left_out_hosts"] == [SLAVE_1]
    history = product.call("GET", f"{URL}actions/").json()["data"]
    assert [a["excluded_hosts"] for a in history] == [[SLAVE_1], [SLAVE_1]]
    assert product.emulator.server_status(SLAVE_1_SERVER) == "ERROR"  # never started
    # Nothing was written for the slave left out, and no service's configuration names it.
    assert not (product.state / "hosts" / SLAVE_1).exists()
    for host in (MASTER, SLAVE_2):
        for path, text in config_texts(product, host).items():
            assert SLAVE_1_IP not in text and SLAVE_1 not in text, path
    spark = get_json("http://127.42.1.1:8080/json/")
    assert [w["host"] for w in spark["workers"]] == [SLAVE_2_IP]
    assert broker_id(product, SLAVE_2) == "broker.id=3"  # its number, whoever is left out

    product.emulator.set_status(SLAVE_1_SERVER, "STOPPED")  # the VM is repaired
    action = start(product)  # from STARTED: it brings the slave back
    assert action["state"] == "succeeded", action["error"]
    assert action["excluded_hosts"] == []
    assert steps(action)["power_on"] == (
        f"already ACTIVE, not powered on: {MASTER}, {SLAVE_2}; powered on: {SLAVE_1}")
    assert (f"already running, left as they were: HDFS NameNode ({MASTER}), HDFS DataNodes "
            f"({SLAVE_2})") in steps(action)["playbook"]
    assert f"HDFS DataNodes ({SLAVE_1})" in steps(action)["playbook"].split("started")[1]
    instance = product.wait_status(DEMO_INSTANCE_ID, {"STARTED"})
    assert instance["info"]["left_out_hosts"] == []
    assert port_open(SLAVE_1_IP, DATANODE_PORT) and port_open(SLAVE_1_IP, 9092)
    assert (broker_id(product, SLAVE_1), broker_id(product, SLAVE_2)) == ("broker.id=2",
                                                                          "broker.id=3")
    again = product.call("POST", URL, data={"action": "start"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["detail"] == \
        "The specified lambda instance is already started."
