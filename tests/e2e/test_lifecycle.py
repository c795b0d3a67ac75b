"""An instance followed through its action resource: STARTED, STOPPED, restarts."""

from __future__ import annotations

import signal

import pytest

from tests.e2e.conftest import DEMO_INSTANCE_ID, DEMO_TOKEN
from tests.support import join_calls, port_open, sse_events, start_calls, wait_until

URL = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
MASTER_IP = "127.42.1.1"
PORTS = {"namenode": 8020, "resourcemanager": 8032, "zookeeper": 2181, "kafka": 9092,
         "spark-master": 7077}

pytestmark = pytest.mark.slow


def start_and_wait_for_the_playbook(product) -> str:
    """Start the instance; return the action's location once its playbook step runs."""
    location = product.call("POST", URL, data={"action": "start"}).headers["Location"]

    def playbook_running():
        steps = product.call("GET", location).json()["data"]["steps"]
        return any(s["name"] == "playbook" for s in steps)

    assert wait_until(playbook_running, timeout=60, interval=0.25)
    return location


@pytest.mark.parametrize("product", [{"LAMBDA_CHECKS": "enforce"}], indirect=True)
def test_start_then_stop_through_the_action_resource(product):
    resp = product.call("POST", URL, data={"action": "start"})
    assert resp.status_code == 202
    location = resp.headers["Location"]
    action = product.wait_action(location)
    assert action["state"] == "succeeded", action["error"]
    assert [s["name"] for s in action["steps"]] == [
        "power_on", "wait_ssh", "playbook", "service_checks"]
    assert all(s["state"] in ("succeeded", "skipped") for s in action["steps"])
    # Every service check passed, on the action resource and in its events.
    checks = {c["service"]: c for c in action["checks"]}
    assert set(checks) == {"HDFS", "YARN", "ZooKeeper", "Kafka", "Spark"}, action["checks"]
    assert all(c["passed"] and c["host"] == "lambda-1-master" for c in checks.values()), checks
    assert "a replica on each of the 2 DataNodes, 2 live" in checks["HDFS"]["seen"]
    assert checks["YARN"]["seen"] == "2 of 2 NodeManagers RUNNING"
    assert checks["ZooKeeper"]["seen"].startswith("ruok answered imok")
    assert checks["Kafka"]["seen"].startswith("3 of 3 brokers registered, the message consumed")
    assert "SparkPi finished with Pi is roughly 3." in checks["Spark"]["seen"]
    assert action["steps"][-1]["message"].startswith("lambda-check.yml: ")
    assert "checks 5 passed: HDFS (lambda-1-master)" in action["steps"][-1]["message"]
    events = read_stream(product, location)
    checked = [e for e in events if e["type"] == "task" and e["task"].startswith("Service check")]
    assert sorted(e["task"] for e in checked) == [
        "Service check HDFS", "Service check Kafka", "Service check Spark",
        "Service check YARN", "Service check ZooKeeper"]
    assert all(" passed: tried " in e["message"] for e in checked)
    assert action["playbook"]["hosts"].keys() == {"lambda-1-master", "lambda-1-slave-1",
                                                  "lambda-1-slave-2"}
    assert all(counts["failed"] == 0 for counts in action["playbook"]["hosts"].values())
    assert product.wait_status(DEMO_INSTANCE_ID, {"STARTED"})["status"]["code"] == "0"
    assert {s["status"] for s in product.emulator.state()["servers"]
            if s["id"] in ("1010", "1011", "1012")} == {"ACTIVE"}
    for name, port in PORTS.items():
        assert port_open(MASTER_IP, port), name

    again = product.call("POST", URL, data={"action": "start"})
    assert again.status_code == 409
    assert again.json()["errors"][0]["detail"] == \
        "The specified lambda instance is already started."

    resp = product.call("POST", URL, json={"action": "stop"})
    assert resp.status_code == 202
    action = product.wait_action(resp.headers["Location"])
    assert action["state"] == "succeeded", action["error"]
    assert [s["name"] for s in action["steps"]] == ["playbook", "power_off"]
    product.wait_status(DEMO_INSTANCE_ID, {"STOPPED"})
    for name, port in PORTS.items():
        assert not port_open(MASTER_IP, port), name


def read_stream(product, location: str, after: int | None = None) -> list[dict]:
    headers = {"Authorization": f"Token {DEMO_TOKEN}"}
    if after is not None:
        headers["Last-Event-ID"] = str(after)
    with product.session.get(f"{product.base}{location}/events", stream=True,
                             timeout=(5, 40), headers=headers) as resp:
        assert resp.status_code == 200
        return list(sse_events(resp))


def test_a_server_restart_mid_action_resumes_it(product):
    location = start_and_wait_for_the_playbook(product)
    streams, streamed = start_calls(lambda _: read_stream(product, location), [0])
    wait_until(lambda: product.call("GET", location).json()["data"]["events"]["last_id"] > 0)
    product.stop(signal.SIGTERM)  # gracefully, in the middle of the playbook
    join_calls(streams)
    # The open stream did not hold the shutdown back: it ended as a whole response (cut
    # off at the end of the grace time, it would raise here), before the action's end.
    [before] = streamed
    assert not isinstance(before, Exception), before
    assert before and before[-1].get("state") != "succeeded"
    product.start()
    after = read_stream(product, location, after=before[-1]["seq"])  # resumed, to the end
    assert [e["seq"] for e in before + after] == list(range(1, len(before + after) + 1))
    assert after[-1]["type"] == "state" and after[-1]["state"] == "succeeded", after[-1]["error"]
    action = product.wait_action(location, timeout=180)
    assert action["state"] == "succeeded", action["error"]
    # Resumed: the handed-back playbook, then the one that ran to its end. A hand-back is
    # no failed attempt, so it is still the first.
    playbooks = [s for s in action["steps"] if s["name"] == "playbook"]
    assert [s["state"] for s in playbooks] == ["failed", "succeeded"], action["steps"]
    assert "shutdown" in playbooks[0]["message"]
    assert action["attempts"] == 1
    product.wait_status(DEMO_INSTANCE_ID, {"STARTED"})


def test_a_killed_server_mid_action_is_resumed_after_the_lease(product):
    location = start_and_wait_for_the_playbook(product)
    product.stop(signal.SIGKILL)
    product.start()
    action = product.wait_action(location, timeout=180)
    assert action["state"] == "succeeded", action["error"]
    product.wait_status(DEMO_INSTANCE_ID, {"STARTED"})
