"""A start where one service is broken on purpose fails naming the service, the host and what
was seen; once the fault is repaired, a retry succeeds and every service check passes. Through
the real server, the emulator over HTTP and the stand-in daemons on loopback hosts, with the
service checks enforced (the product's default)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import DEMO_INSTANCE_ID

pytestmark = pytest.mark.slow

# The hosts on addresses of their own: this module runs beside the demo's (tests/conftest.py).
LOOPBACK_NET = "127.44"
URL = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
MASTER, SLAVE_1, SLAVE_2 = "lambda-1-master", "lambda-1-slave-1", "lambda-1-slave-2"
MASTER_IP, SLAVE_1_IP, SLAVE_2_IP = (f"{LOOPBACK_NET}.1.{n}" for n in (1, 2, 3))

# Each fault is a stand-in's switch file (README, "Stand-ins"): where it goes, and what the
# failed start must say about it.
FAULTS = {
    "datanode-cannot-store": {
        "switch": f"{SLAVE_2}/data/hadoop/data/STANDIN_FAULT_CANNOT_STORE",
        "says": ["step service_checks", f"service check failed: HDFS on {MASTER} failed",
                 f"no replica on {SLAVE_2}", f"{SLAVE_2_IP}:9866"],
    },
    "broker-drops-messages": {  # the master's broker leads the check's topic
        "switch": f"{MASTER}/etc/kafka/STANDIN_FAULT_DROPS_MESSAGES",
        "says": ["step service_checks", f"service check failed: Kafka on {MASTER} failed",
                 "saw 0 messages consumed back within 3000 ms from the leader, broker 1 on "
                 f"{MASTER} ({MASTER_IP}:9092), which acknowledged the message produced"],
    },
    "spark-worker-cannot-register": {
        "switch": f"{SLAVE_1}/etc/spark/STANDIN_FAULT_CANNOT_REGISTER",
        "says": ["step playbook", "Spark workers not ALIVE on the master after 10 s: "
                 f"{SLAVE_1} ({SLAVE_1_IP}); the master at {MASTER_IP}:8080 lists ALIVE: "
                 f"{SLAVE_2_IP}"],
    },
}


def start(product) -> dict:
    resp = product.call("POST", URL, data={"action": "start"})
    assert resp.status_code == 202, resp.text
    return product.wait_action(resp.headers["Location"], timeout=300)


# The Spark master waits for its workers 10 s (not 120) before the start gives up on one;
# the Kafka check's consumer waits 3 s (not 15) for a message that never comes.
@pytest.mark.parametrize("product", [{"LAMBDA_CHECKS": "enforce",
                                      "extravars": {"spark_wait_timeout": 10,
                                                    "kafka_check_consume_timeout_ms": 3000}}],
                         indirect=True)
@pytest.mark.parametrize("fault", sorted(FAULTS, reverse=True))
def test_a_broken_service_fails_the_start_naming_it_and_a_retry_after_repair_succeeds(
        product, fault):
    switch = product.state / "hosts" / FAULTS[fault]["switch"]
    switch.parent.mkdir(parents=True, exist_ok=True)
    switch.touch()

    failed = start(product)
    assert failed["state"] == "failed"
    for words in FAULTS[fault]["says"]:
        assert words in failed["error"], failed["error"]
    instance = product.wait_status(DEMO_INSTANCE_ID, {"FAILED"})
    print(instance)

    switch.unlink()  # repaired
    action = start(product)
    assert action["state"] == "succeeded", action["error"]
    assert action["steps"][0]["message"].startswith("already ACTIVE, not powered on:")
    checks = {c["service"]: c for c in action["checks"]}
    assert set(checks) == {"HDFS", "YARN", "ZooKeeper", "Kafka", "Spark"}, action["checks"]
    assert all(c["passed"] for c in checks.values()), checks
    assert "a replica on each of the 2 DataNodes, 2 live" in checks["HDFS"]["seen"]
    assert "2 of 2 workers ALIVE" in checks["Spark"]["seen"]
    assert "3 of 3 brokers registered, the message consumed back" in checks["Kafka"]["seen"]
    product.wait_status(DEMO_INSTANCE_ID, {"STARTED"})
