"""Real ZooKeeper (Debian's) and real Spark (pyspark's) started over SSH inside lab hosts,
with the same command contract the Ansible roles use.

Readiness times are printed (run with `-s` to see them), never asserted.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from lambda_testbed.lab import Lab
from lambda_testbed.lab.zookeeper_home import install_zookeeper_home
from tests.support import port_open

pytestmark = pytest.mark.lab

ZK_HOME = "/opt/lambda/zookeeper"  # the role's `zookeeper_home` on a lab host
ZK_CONF = "/opt/lambda/zookeeper-conf"


def wait_until(what: str, predicate: Callable[[], object], timeout: float = 120) -> float:
    """Poll until `predicate()` is truthy; return the seconds it took (hang guard only)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not after {timeout}s")
        time.sleep(0.1)
    return time.monotonic() - started


def four_letter(ip: str, word: bytes, port: int = 2181) -> bytes:
    try:
        with socket.create_connection((ip, port), timeout=2) as conn:
            conn.sendall(word)
            conn.settimeout(2)
            return conn.recv(4096)
    except OSError:
        return b""


def ssh_ok(lab: Lab, host: str, command: str, timeout: float = 120) -> str:
    result = lab.ssh(host, command, timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_debian_zkserver_ignores_zoocfgdir_hence_the_wrapper(debian_zookeeper: None) -> None:
    """Why lambda_testbed.lab.zookeeper_home exists: Debian's zkEnv.sh overrides the contract."""
    # zkServer.sh makes the dataDir of the config it reads, Debian's /tmp/zookeeper.
    data_dir = Path("/tmp/zookeeper")
    made_here = not data_dir.exists()
    try:
        debian = subprocess.run(
            ["/usr/share/zookeeper/bin/zkServer.sh", "print-cmd"],
            env={"ZOOCFGDIR": "/somewhere/else", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        if made_here:
            with contextlib.suppress(OSError):  # only if still empty: rmdir, not rmtree
                data_dir.rmdir()
    assert "/etc/zookeeper/conf/zoo.cfg" in debian.stdout + debian.stderr


def test_real_zookeeper_starts_answers_and_stops(running_lab: Lab, debian_zookeeper: None) -> None:
    master, slave = running_lab.host("master"), running_lab.host("slave-1")
    for host in (master, slave):  # every VM has its own install (the client runs on slave-1)
        install_zookeeper_home(host.outside(ZK_HOME))
    conf = master.outside(ZK_CONF)
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "zoo.cfg").write_text(
        "tickTime=2000\n"
        "dataDir=/opt/lambda/zookeeper-data\n"
        "clientPort=2181\n"
        f"clientPortAddress={master.ip}\n"
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=ruok,srvr,stat,mntr,conf\n"
    )
    env = (
        f"ZOOCFGDIR={ZK_CONF} ZOO_LOG_DIR=/opt/lambda/logs/zookeeper"
        " ZOOPIDFILE=/opt/lambda/run/zookeeper.pid"
    )
    zk = f"{env} {ZK_HOME}/bin/zkServer.sh"
    try:
        started = time.monotonic()
        assert "STARTED" in ssh_ok(running_lab, master.name, f"{zk} start")
        wait_until("ruok -> imok", lambda: four_letter(master.ip, b"ruok") == b"imok")
        print(f"\nREADINESS zookeeper imok {time.monotonic() - started:.2f}s after start")

        assert "Mode: standalone" in ssh_ok(running_lab, master.name, f"{zk} status")
        # Apache's `--config <dir>` form works too.
        by_flag = f"ZOOPIDFILE=/opt/lambda/run/zookeeper.pid {ZK_HOME}/bin/zkServer.sh"
        assert "Mode: standalone" in ssh_ok(
            running_lab, master.name, f"{by_flag} --config {ZK_CONF} status"
        )
        # A real client on another host, by host name.
        cli = f"{ZK_HOME}/bin/zkCli.sh -server master:2181"
        ssh_ok(running_lab, slave.name, f"{cli} create /lambda-lab from-slave-1")
        assert "from-slave-1" in ssh_ok(running_lab, slave.name, f"{cli} get /lambda-lab")
        assert (master.root / "logs/zookeeper").is_dir()
        pid = (master.root / "run/zookeeper.pid").read_text().strip()
        assert pid.isdigit()

        assert "STOPPED" in ssh_ok(running_lab, master.name, f"{zk} stop")
        took = wait_until("port 2181 closed", lambda: not port_open(master.ip, 2181))
        wait_until(
            "the server process exited",
            lambda: running_lab.ssh(master.name, f"kill -0 {pid}").returncode != 0,
        )
        print(f"READINESS zookeeper port closed {took:.2f}s after stop returned")
        assert not (master.root / "run/zookeeper.pid").exists()
    finally:
        running_lab.ssh(master.name, f"{zk} stop")


def spark_env(spark_home: str, ip: str) -> str:
    return (
        f"SPARK_HOME={spark_home} SPARK_LOG_DIR=/opt/lambda/logs/spark"
        f" SPARK_PID_DIR=/opt/lambda/run SPARK_WORKER_DIR=/opt/lambda/spark-work"
        f" SPARK_LOCAL_IP={ip}"
    )


def test_real_spark_master_and_worker_on_two_hosts(running_lab: Lab, spark_home: str) -> None:
    master, slave = running_lab.host("master"), running_lab.host("slave-2")
    daemon = f"{spark_home}/sbin/spark-daemon.sh"
    master_class = "org.apache.spark.deploy.master.Master"
    worker_class = "org.apache.spark.deploy.worker.Worker"
    on_master = f"{spark_env(spark_home, master.ip)} {daemon}"
    on_slave = f"{spark_env(spark_home, slave.ip)} {daemon}"

    def master_json() -> dict:
        try:
            with urllib.request.urlopen(f"http://{master.ip}:8080/json/", timeout=2) as resp:
                return json.load(resp)
        except (OSError, ValueError):
            return {}

    def alive_workers() -> list[dict]:
        return [w for w in master_json().get("workers", []) if w.get("state") == "ALIVE"]

    try:
        started = time.monotonic()
        ssh_ok(
            running_lab,
            master.name,
            f"{on_master} start {master_class} 1 --host {master.ip} --port 7077 --webui-port 8080",
        )
        wait_until("master ALIVE", lambda: master_json().get("status") == "ALIVE")
        print(f"\nREADINESS spark master ALIVE {time.monotonic() - started:.2f}s after start")

        started = time.monotonic()
        ssh_ok(
            running_lab,
            slave.name,
            f"{on_slave} start {worker_class} 1 --host {slave.ip} --cores 1 --memory 512m"
            " --webui-port 8081 spark://master:7077",
        )
        wait_until("worker ALIVE", alive_workers)
        print(f"READINESS spark worker ALIVE {time.monotonic() - started:.2f}s after start")
        (worker,) = alive_workers()
        assert worker["host"] == slave.ip
        assert (slave.root / "logs/spark").is_dir() and (slave.root / "run").is_dir()

        ssh_ok(running_lab, slave.name, f"{on_slave} stop {worker_class} 1")
        ssh_ok(running_lab, master.name, f"{on_master} stop {master_class} 1")
        took = wait_until(
            "ports closed",
            lambda: not port_open(master.ip, 8080) and not port_open(slave.ip, 8081),
        )
        print(f"READINESS spark master+worker down {took:.2f}s after stop returned")
        status = running_lab.ssh(master.name, f"{on_master} status {master_class} 1")
        assert "not running" in status.stdout
    finally:
        running_lab.ssh(slave.name, f"{on_slave} stop {worker_class} 1")
        running_lab.ssh(master.name, f"{on_master} stop {master_class} 1")
