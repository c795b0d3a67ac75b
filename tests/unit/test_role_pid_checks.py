"""The roles' test that a pid file names a running daemon, not a pid reused by the check
itself: run as the roles run it (sh), against real processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"


def older_than_this_check(role: str) -> str:
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    return defaults[f"{role}_pid_older_than_this_check"]


def verdict(check: str, pid_expression: str, setup: str = "") -> str:
    script = f"{setup}\npid={pid_expression}\nif {check}; then echo daemon; else echo not; fi"
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                          check=True).stdout.strip()


@pytest.mark.parametrize("role", ["hadoop", "kafka", "zookeeper", "spark"])
def test_only_a_process_older_than_the_check_counts(role):
    check = older_than_this_check(role)
    # A daemon: started by an earlier task, so before the checking shell (a clock tick,
    # 10 ms, at least; the checks run tasks apart).
    daemon = subprocess.Popen(["sleep", "30"])
    time.sleep(0.05)
    try:
        assert verdict(check, str(daemon.pid)) == "daemon"
    finally:
        daemon.kill()
        daemon.wait()
    # What a stale pid can turn out to be when pids start over at boot: the check's shell,
    # one of its subshells, or a command it runs (grep's own command line holds the path).
    assert verdict(check, "$$") == "not"
    assert verdict(check, "$(sh -c 'echo $PPID')") == "not"
    assert verdict(check, "$!", setup="sleep 5 >/dev/null 2>&1 &") == "not"
    assert verdict(check, "999999999") == "not"  # no such process
