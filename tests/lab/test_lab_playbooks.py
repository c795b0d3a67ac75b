"""lambda-start.yml and lambda-stop.yml over SSH on lab hosts, with the real Spark (pyspark's
JVMs) and the real ZooKeeper (Debian's), the stand-ins for HDFS, YARN and Kafka; every
start verified by the test from outside the hosts, never from the roles' own word."""

from __future__ import annotations

import pytest

from lambda_testbed.lab import Lab
from lambda_testbed.lab.provision import host_names, install_distributions, missing_requirements
from lambda_testbed.lab.smoke import recap, run_playbook, write_inputs
from tests.lab.conftest import require, require_lab
from tests.lab.labproduct import (
    MASTER_PORTS,
    SLAVE_PORTS,
    daemons_on,
    open_ports,
    ruok,
    spark_alive_workers,
)

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    require_lab()
    require(missing_requirements(), "the lab playbook tests need the real daemons")
    the_lab = Lab("lambdalabp", hosts=host_names(2), subnet="10.213.205.0/24")
    try:
        the_lab.up()
        install_distributions(the_lab)
        yield the_lab
    finally:
        the_lab.down()


def test_start_verified_from_outside_then_stop(lab: Lab, tmp_path) -> None:
    inventory, extravars = write_inputs(lab, tmp_path)
    master, slaves = lab.hosts[0], lab.hosts[1:]
    assert "lambda-1-master ansible_host=" in inventory.read_text()

    started = run_playbook("lambda-start.yml", inventory, extravars, tmp_path, timeout=600)
    print(f"\nLAB lambda-start.yml: {started.seconds:.1f}s")
    assert started.ok, started.stdout[-5000:]
    assert all(c["failed"] == 0 and c["unreachable"] == 0
               for c in recap(started.stdout).values()), started.stdout[-3000:]

    assert spark_alive_workers(master.ip) == sorted(h.ip for h in slaves)
    assert ruok(master.ip) == "imok"
    expected = [(h.name, p) for h in lab.hosts
                for p in (MASTER_PORTS if h.role == "master" else SLAVE_PORTS)]
    assert open_ports(lab) == expected
    # The real daemons are JVMs on the hosts, the stand-ins Python processes.
    assert daemons_on(lab, master.name).count("java") == 2  # Spark master, ZooKeeper
    assert all(daemons_on(lab, h.name).count("java") == 1 for h in slaves)  # Spark workers

    again = run_playbook("lambda-start.yml", inventory, extravars, tmp_path, timeout=600)
    assert again.ok, again.stdout[-5000:]
    assert all(c["changed"] == 0 for c in recap(again.stdout).values()), "start is idempotent"

    stopped = run_playbook("lambda-stop.yml", inventory, extravars, tmp_path, timeout=600)
    print(f"LAB lambda-stop.yml: {stopped.seconds:.1f}s")
    assert stopped.ok, stopped.stdout[-5000:]
    assert open_ports(lab) == []
    for host in lab.hosts:
        assert daemons_on(lab, host.name) == [], host.name
    assert spark_alive_workers(master.ip) == []
