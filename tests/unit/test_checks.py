"""The service checks read from a start's task results (api.domain.checks)."""

from __future__ import annotations

from api.domain.checks import checks_summary, service_checks
from api.domain.model import TaskResult


def check(service: str, verdict: str = "passed", seconds: str = "1.0") -> TaskResult:
    return TaskResult("m", f"Service check {service}", "ok" if verdict == "passed" else "failed",
                      message=f"{service} on m {verdict}: tried it; saw {verdict}; "
                              f"took {seconds}s")


def test_checks_are_shown_chain_by_chain_whatever_order_they_ended_in():
    # Side by side, the Spark chain's check may end first.
    tasks = [check("Spark"), check("ZooKeeper", "failed"), check("Kafka"), check("HDFS"),
             TaskResult("m", "Run the HDFS and YARN checks", "ok"), check("YARN")]
    assert [c["service"] for c in service_checks(tasks)] == [
        "HDFS", "YARN", "ZooKeeper", "Kafka", "Spark"]
    assert checks_summary(tasks) == (
        "checks 1 failed: ZooKeeper on m: saw failed; "
        "4 passed: HDFS (m) 1.0s, YARN (m) 1.0s, Kafka (m) 1.0s, Spark (m) 1.0s")


def test_the_latest_result_of_a_check_counts_and_a_crashed_one_is_failed():
    crashed = TaskResult("m", "Service check HDFS", "failed", message="MODULE FAILURE")
    tasks = [check("HDFS", "failed"), check("HDFS", "passed", "2.5"), crashed]
    [hdfs] = service_checks(tasks)
    assert (hdfs["passed"], hdfs["seen"]) == (False, "MODULE FAILURE")
    assert service_checks(tasks[:2])[0]["seconds"] == 2.5
