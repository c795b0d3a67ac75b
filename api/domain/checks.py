"""Service checks: what lambda-check.yml found, read from its task results.

Each service check of the playbook ends with one task named "Service check <SERVICE>" whose
message reads "<SERVICE> on <host> passed|failed: tried ...; saw ...; took <s>s" (the roles'
``tasks/check.yml`` write it). The task results are stored and streamed as events like any
other; this module turns them into the action's ``checks`` and the step's message.
"""

from __future__ import annotations

import re

from api.domain.model import TaskResult

# The last task of each service check (lambda-check.yml) is named "Service check <SERVICE>"
# and its message reads "<SERVICE> on <host> passed|failed: tried ...; saw ...; took <s>s".
CHECK_TASK = "Service check "
# The order the checks are shown in: lambda-check.yml's, chain by chain (side by side,
# their results arrive in any order).
SERVICE_ORDER = ("HDFS", "YARN", "ZooKeeper", "Kafka", "Spark")
_CHECK_MESSAGE = re.compile(
    r"^(?:ignored: )?(?P<service>\S+) on (?P<host>\S+) (?P<verdict>passed|failed): "
    r"tried (?P<tried>.*); saw (?P<seen>.*); took (?P<seconds>[0-9.]+)s$", re.S)


def service_checks(tasks: list[TaskResult]) -> list[dict]:
    """The service checks among an action's task results, the latest per service and host,
    in ``SERVICE_ORDER``: {service, host, passed, tried, seen, seconds}. A check whose
    message is not of the shape above (a task that crashed) is failed, with its message as
    what was seen."""
    checks: dict[tuple[str, str], dict] = {}
    for task in tasks:
        if not task.task.startswith(CHECK_TASK) or task.status == "skipped":
            continue
        service = task.task.removeprefix(CHECK_TASK)
        match = _CHECK_MESSAGE.match(task.message or "")
        if match:
            check = {"service": match["service"], "host": match["host"],
                     "passed": match["verdict"] == "passed" and task.status == "ok",
                     "tried": match["tried"], "seen": match["seen"],
                     "seconds": float(match["seconds"])}
        else:
            check = {"service": service, "host": task.host, "passed": False, "tried": None,
                     "seen": task.message or task.status, "seconds": task.duration}
        checks[(service, task.host)] = check
    return sorted(checks.values(), key=_shown_order)


def _shown_order(check: dict) -> tuple[int, str]:
    service = check["service"]
    rank = SERVICE_ORDER.index(service) if service in SERVICE_ORDER else len(SERVICE_ORDER)
    return rank, check["host"]


def checks_summary(tasks: list[TaskResult], report_only: bool = False) -> str:
    """E.g. "3 checks passed: HDFS (m) 1.2s, YARN (m) 0.4s, ZooKeeper (m) 0.9s", with the
    failed ones first and what they saw (report only: the start succeeded anyway)."""
    checks = service_checks(tasks)
    if not checks:
        return "no service to check"
    passed = [c for c in checks if c["passed"]]
    failed = [c for c in checks if not c["passed"]]
    parts = []
    if failed:
        label = " (report only, the start goes on)" if report_only else ""
        parts.append(f"{len(failed)} failed{label}: " + "; ".join(
            f"{c['service']} on {c['host']}: saw {c['seen']}" for c in failed))
    if passed:
        parts.append(f"{len(passed)} passed: " + ", ".join(
            f"{c['service']} ({c['host']}) {c['seconds']:.1f}s" for c in passed))
    return "checks " + "; ".join(parts)
