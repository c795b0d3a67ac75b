"""Fixtures for the SSH lab tests.

They need root and working `ip netns`; elsewhere they skip, unless LAMBDA_REQUIRE_LAB=1
(set by CI), in which case a missing capability is a failure, not a skip.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from lambda_testbed.lab import Lab
from lambda_testbed.lab.netns import check_usable

REQUIRE_LAB = os.environ.get("LAMBDA_REQUIRE_LAB") == "1"
# Every lab a test builds is named "lambdalab*" (so `lambda-service lab purge` finds a
# crashed run's leftovers) and lives in its own subnet.
SESSION_LAB = ("lambdalabt", "10.213.200.0/24")


@functools.cache
def lab_unusable_reason() -> str | None:
    for tool in ("ip", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/usr/sbin/sshd").exists():
        return "openssh-server is not installed (scripts/install-lab-deps.sh)"
    return check_usable()


def require(condition_missing: str | None, what: str) -> None:
    """Skip (or, under LAMBDA_REQUIRE_LAB=1, fail) when something the test needs is missing."""
    if condition_missing is None:
        return
    message = f"{what}: {condition_missing}"
    if REQUIRE_LAB:
        pytest.fail(f"{message} (LAMBDA_REQUIRE_LAB=1)", pytrace=False)
    pytest.skip(message)


def require_lab() -> None:
    require(lab_unusable_reason(), "lab tests need root and ip netns")


@pytest.fixture(autouse=True)
def _lab_gate(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("lab"):
        require_lab()


@pytest.fixture(scope="session")
def lab() -> Lab:
    """Three hosts (master, slave-1, slave-2) for the whole session, always torn down."""
    require_lab()
    name, subnet = SESSION_LAB
    the_lab = Lab(name, hosts=3, subnet=subnet)
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


@pytest.fixture
def running_lab(lab: Lab) -> Lab:
    """The session lab with every host powered on and linked (tests may cut either)."""
    for host in lab.hosts:
        lab.link_up(host.name)
        lab.power_on(host.name)
    yield lab
    for host in lab.hosts:
        lab.link_up(host.name)


@pytest.fixture
def spark_home() -> str:
    """pyspark's directory (it carries bin/spark-class and sbin/spark-daemon.sh)."""
    spec = importlib.util.find_spec("pyspark")
    missing = None if spec and spec.origin else "pyspark is not installed in this venv"
    if shutil.which("java") is None:
        missing = "java is not installed"
    require(missing, "the real Spark test needs pyspark (scripts/install-lab-deps.sh)")
    from lambda_testbed.lab.provision import spark_home as visible_spark_home

    return visible_spark_home()  # outside /tmp, which is private inside a host


@pytest.fixture
def debian_zookeeper() -> None:
    from lambda_testbed.lab.zookeeper_home import debian_zookeeper_available

    missing = None if debian_zookeeper_available() else "Debian's zookeeper is not installed"
    if shutil.which("java") is None:
        missing = "java is not installed"
    require(missing, "the real ZooKeeper test needs it (scripts/install-lab-deps.sh)")
