"""lambda-start.yml / lambda-stop.yml with plain ansible-playbook against local hosts.

Each host of a 1-master + 2-slave instance is a loopback address with its own root
directory (``ansible_connection=local``); the services are the stand-in distributions.
Everything is checked from outside: ports, Spark's /json/, ZooKeeper's ruok, HDFS safe mode.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from api.adapters.inventory import render_inventory
from api.domain.chains import START_CHAINS, STOP_CHAINS
from api.domain.model import Host, HostRole, Instance, InstanceStatus
from api.settings import FILES_ROOT, Settings
from lambda_testbed import standins
from tests.support import get_json, kill_under, port_open, processes_under, wait_until

pytestmark = pytest.mark.slow

# Each lab's hosts on 127.45.n.x, addresses of their own: this module runs beside the
# demo's (tests/conftest.py).
LOOPBACK_NET = "127.45"
VENV_BIN = Path(sys.executable).parent
ALL = ("hdfs", "yarn", "zookeeper", "kafka", "spark")
MASTER_PORTS = {
    "hdfs": [8020, 9870],
    "yarn": [8032, 8088],
    "zookeeper": [2181],
    "kafka": [9092],
    "spark": [7077, 8080],
}
SLAVE_PORTS = {"hdfs": [9866], "yarn": [8042], "kafka": [9092], "spark": [8081]}


# --- helpers -------------------------------------------------------------------------------------







def zk_word(ip: str, word: str) -> str:
    with socket.create_connection((ip, 2181), timeout=3) as sock:
        sock.sendall(word.encode())
        return b"".join(iter(lambda: sock.recv(4096), b"")).decode()


class Lab:
    """One instance's inventory, host roots and stand-in homes under a tmp dir."""

    def __init__(self, root: Path, subnet: str, services, homes: dict):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        # Mitogen's unix sockets in a dir of the lab's own, not loose in /tmp, and short: a
        # socket's path must fit in 108 bytes, which one under pytest's tmp dirs may not.
        self.tmp = Path(tempfile.mkdtemp(prefix="lambda-lab-"))
        self.master_ip = f"{subnet}.1"
        self.slave_ips = [f"{subnet}.2", f"{subnet}.3"]
        hosts = (
            Host("1", "lambda-master", HostRole.MASTER, self.master_ip),
            Host("2", "lambda-slave-1", HostRole.SLAVE, self.slave_ips[0]),
            Host("3", "lambda-slave-2", HostRole.SLAVE, self.slave_ips[1]),
        )
        instance = Instance(
            id="5f0c7a36-2f7e-4bb3-a1a5-3c8e0e5d2a10",
            owner="u",
            name="test",
            status=InstanceStatus.STOPPED,
            services=tuple(services),
            hosts=hosts,
        )
        self.services = tuple(services)
        self.inventory = root / "hosts.ini"
        self.inventory.write_text(
            render_inventory(instance, Settings(ansible_connection="local"))
        )
        self.extravars = dict(
            homes,
            lambda_host_root=f"{root}/hosts/{{{{ inventory_hostname }}}}",
            hadoop_heartbeat_interval=1,
            spark_worker_timeout=10,
            hadoop_stop_timeout=10,
            kafka_check_consume_timeout_ms=3000,
        )

    def playbook(self, name: str, env: dict | None = None, **extra
                 ) -> subprocess.CompletedProcess:
        env = dict(
            os.environ,
            **(env or {}),
            PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",
            ANSIBLE_HOME=str(self.root / "ansible-home"),
            ANSIBLE_LOCAL_TEMP=str(self.root / "ansible-tmp"),
            ANSIBLE_REMOTE_TEMP=str(self.root / "ansible-tmp"),
            TMPDIR=str(self.tmp),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
        )
        extravars = dict(self.extravars, **extra)
        return subprocess.run(
            [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                str(self.inventory),
                str(FILES_ROOT / "playbooks" / name),
                "-e",
                json.dumps(extravars),
            ],
            cwd=FILES_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def expected_ports(self, services=None):
        services = self.services if services is None else services
        ports = [(self.master_ip, p) for s in services for p in MASTER_PORTS.get(s, [])]
        for ip in self.slave_ips:
            ports += [(ip, p) for s in services for p in SLAVE_PORTS.get(s, [])]
        return ports


def recap(result: subprocess.CompletedProcess) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    counts = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match and "ok=" in match.group(2):
            counts[match.group(1)] = {
                key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))
            }
    return counts


def assert_ok(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    counts = recap(result)
    assert set(counts) == {"lambda-master", "lambda-slave-1", "lambda-slave-2"}, result.stdout
    return counts


def assert_ok_run(lab: Lab, playbook: str) -> subprocess.CompletedProcess:
    result = lab.playbook(playbook)
    assert_ok(result)
    return result


def assert_all_down(lab: Lab, homes_root: Path) -> None:
    still_open = [(ip, p) for ip, p in lab.expected_ports(ALL) if port_open(ip, p)]
    assert still_open == []
    assert processes_under(lab.root / "hosts") == []
    assert processes_under(homes_root) == []


def check_messages(result: subprocess.CompletedProcess) -> dict[str, str]:
    """Service -> the message of its "Service check <SERVICE>" task (ok or failed)."""
    found = {}
    for match in re.finditer(r"TASK \[\w+ : Service check (\w+)\].*?\n(?:ok|fatal|failed): "
                             r"\[lambda-master\].*?\"msg\": \"(.*?)\"\n", result.stdout, re.S):
        found[match.group(1)] = match.group(2)
    return found


def assert_checks(lab: Lab, homes) -> None:
    """lambda-check.yml passes and, run again, changes nothing and leaves nothing behind; a
    DataNode that cannot store, a broker that drops messages and a Spark worker that cannot
    register fail it naming the service and the host; report only, the run goes on; fixed,
    it passes again."""
    # A test topic an interrupted check left behind goes with the next check.
    topics = [f"{homes[1]['kafka_home']}/bin/kafka-topics.sh", "--bootstrap-server",
              f"{lab.master_ip}:9092"]
    subprocess.run([*topics, "--create", "--topic", "lambda-check-1", "--replication-factor",
                    "3"], check=True, capture_output=True)
    checked = lab.playbook("lambda-check.yml")
    assert_ok(checked)
    messages = check_messages(checked)
    assert set(messages) == {"HDFS", "YARN", "ZooKeeper", "Kafka", "Spark"}, checked.stdout[-4000:]
    assert all(" passed: " in m for m in messages.values()), messages
    assert "a replica on each of the 2 DataNodes, 2 live" in messages["HDFS"]
    assert "saw 2 of 2 NodeManagers RUNNING" in messages["YARN"]
    assert "saw ruok answered imok" in messages["ZooKeeper"]
    assert ("saw 3 of 3 brokers registered, the message consumed back as produced from the "
            f"leader, broker 1 on lambda-master ({lab.master_ip}:9092), with 3 replicas, the "
            "topic deleted") in messages["Kafka"]
    assert "2 of 2 workers ALIVE, SparkPi finished with Pi is roughly 3." in messages["Spark"]
    again = assert_ok(lab.playbook("lambda-check.yml"))
    assert {host: c["changed"] for host, c in again.items()} == dict.fromkeys(again, 0)
    hdfs = [f"{homes[1]['hadoop_home']}/bin/hdfs", "--config",
            str(lab.root / "hosts/lambda-master/etc/hadoop"), "dfs", "-cat"]
    left = subprocess.run([*hdfs, "/tmp/lambda-check/lambda-master"], capture_output=True)
    assert left.returncode == 1  # the test file is gone
    assert list((lab.root / "hosts/lambda-slave-1/data/hadoop").rglob("blk_*")) == []
    assert list((lab.root / "hosts").glob("*/data/kafka/lambda-check-*")) == []  # no topic
    listed = subprocess.run([*topics, "--list"], check=True, capture_output=True, text=True)
    assert listed.stdout == ""

    datanode = lab.root / "hosts/lambda-slave-2/data/hadoop/data/STANDIN_FAULT_CANNOT_STORE"
    worker = lab.root / "hosts/lambda-slave-1/etc/spark/STANDIN_FAULT_CANNOT_REGISTER"
    broker = lab.root / "hosts/lambda-master/etc/kafka/STANDIN_FAULT_DROPS_MESSAGES"
    datanode.touch()
    worker.touch()
    broker.touch()
    assert wait_until(lambda: get_json(f"http://{lab.master_ip}:8080/json/")["aliveworkers"] == 1)
    failed = lab.playbook("lambda-check.yml")
    assert failed.returncode != 0
    message = check_messages(failed)["HDFS"]  # the master stops at its first failed check
    assert "HDFS on lambda-master failed" in message and "no replica on lambda-slave-2" in message
    assert f"{lab.slave_ips[1]}:9866" in message

    # Report only: each failure is reported and the run goes on to the other checks.
    reported = lab.playbook("lambda-check.yml", lambda_checks_report_only=True)
    assert reported.returncode == 0, reported.stdout[-3000:]
    messages = check_messages(reported)
    assert "no replica on lambda-slave-2" in messages["HDFS"]
    assert "Spark on lambda-master failed" in messages["Spark"]
    assert f"no ALIVE worker on lambda-slave-1 ({lab.slave_ips[0]})" in messages["Spark"]
    assert "ZooKeeper on lambda-master passed" in messages["ZooKeeper"]
    assert "Kafka on lambda-master failed" in messages["Kafka"]
    assert (f"saw 0 messages consumed back within 3000 ms from the leader, broker 1 on "
            f"lambda-master ({lab.master_ip}:9092), which acknowledged the message produced "
            "(Processed a total of 0 messages)") in messages["Kafka"]

    datanode.unlink()
    worker.unlink()
    broker.unlink()
    assert_ok(lab.playbook("lambda-check.yml"))


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    root = tmp_path_factory.mktemp("standins")
    installed = standins.install(root, latency=0)  # a test sets its own
    yield root, installed
    kill_under(root)


@pytest.fixture
def make_lab(tmp_path, homes):
    homes_root, installed = homes
    labs = []

    def make(subnet: str, services=ALL) -> Lab:
        lab = Lab(tmp_path / f"lab{len(labs)}", subnet, services, installed)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        kill_under(lab.root)
        shutil.rmtree(lab.tmp, ignore_errors=True)
    kill_under(homes_root)


# --- tests ---------------------------------------------------------------------------------------


def test_start_is_ordered_ready_and_idempotent_then_stop(make_lab, homes):
    lab = make_lab("127.45.2")
    counts = assert_ok(lab.playbook("lambda-start.yml"))
    assert all(c["changed"] > 0 for c in counts.values())

    closed = [(ip, port) for ip, port in lab.expected_ports() if not port_open(ip, port)]
    assert closed == []
    spark = get_json(f"http://{lab.master_ip}:8080/json/")
    assert spark["status"] == "ALIVE"
    assert spark["aliveworkers"] == 2
    assert sorted(w["host"] for w in spark["workers"] if w["state"] == "ALIVE") == lab.slave_ips
    assert zk_word(lab.master_ip, "ruok") == "imok"
    # Three brokers hold ZooKeeper sessions (zookeeper mode, the default with ZooKeeper).
    assert "Connections: 3" in zk_word(lab.master_ip, "srvr")
    hadoop = f"{homes[1]['hadoop_home']}/bin/hdfs"
    conf = lab.root / "hosts/lambda-master/etc/hadoop"
    safemode = subprocess.run(
        [hadoop, "--config", str(conf), "dfsadmin", "-safemode", "get"],
        capture_output=True, text=True, check=True,
    )
    assert safemode.stdout.strip() == "Safe mode is OFF"
    nodes = get_json(f"http://{lab.master_ip}:8088/ws/v1/cluster/nodes")["nodes"]["node"]
    assert sorted(n["nodeHostName"] for n in nodes if n["state"] == "RUNNING") == lab.slave_ips
    # Per-host state: each host has its own pid files, nothing shared.
    assert list((lab.root / "hosts/lambda-master/run/hadoop").glob("*namenode.pid"))
    assert list((lab.root / "hosts/lambda-slave-1/run/hadoop").glob("*datanode.pid"))

    again = assert_ok(lab.playbook("lambda-start.yml"))
    assert {host: c["changed"] for host, c in again.items()} == dict.fromkeys(again, 0)

    assert_checks(lab, homes)

    stopped = assert_ok(lab.playbook("lambda-stop.yml"))
    assert stopped["lambda-master"]["changed"] > 0
    assert_all_down(lab, homes[0])

    again = assert_ok(lab.playbook("lambda-stop.yml"))
    assert {host: c["changed"] for host, c in again.items()} == dict.fromkeys(again, 0)


def test_kraft_mode_brokers_without_zookeeper(make_lab, homes):
    lab = make_lab("127.45.3", services=("kafka",))
    assert_ok(lab.playbook("lambda-start.yml"))
    for ip in [lab.master_ip, *lab.slave_ips]:
        assert port_open(ip, 9092)
    assert port_open(lab.master_ip, 9093)  # the master is the KRaft controller
    assert not port_open(lab.master_ip, 2181)
    meta = (lab.root / "hosts/lambda-slave-2/data/kafka/meta.properties").read_text()
    assert "node.id=3" in meta and "cluster.id=" in meta
    props = (lab.root / "hosts/lambda-master/etc/kafka/server.properties").read_text()
    assert "process.roles=broker,controller" in props and "zookeeper.connect" not in props

    # A run cut off before it recorded a broker's pid: the next start finds the broker and
    # leaves it running (no second one, nothing reported changed).
    pid_file = lab.root / "hosts/lambda-slave-2/run/kafka/kafka.pid"
    pid = pid_file.read_text()
    pid_file.unlink()
    again = assert_ok(lab.playbook("lambda-start.yml"))
    assert {host: c["changed"] for host, c in again.items()} == dict.fromkeys(again, 0)
    assert pid_file.read_text() == pid

    # The Kafka check in KRaft mode: the brokers registered with the controller, a message
    # delivered through the topic's leader (the master's broker, the first by id).
    checked = lab.playbook("lambda-check.yml")
    assert_ok(checked)
    messages = check_messages(checked)
    assert set(messages) == {"Kafka"}, checked.stdout[-3000:]
    assert "Kafka on lambda-master passed" in messages["Kafka"]
    assert "saw 3 of 3 brokers registered, the message consumed back" in messages["Kafka"]
    # A leader that drops the messages it acknowledges fails the check, naming it.
    broker = lab.root / "hosts/lambda-master/etc/kafka/STANDIN_FAULT_DROPS_MESSAGES"
    broker.touch()
    failed = lab.playbook("lambda-check.yml")
    assert failed.returncode != 0
    message = check_messages(failed)["Kafka"]
    assert "Kafka on lambda-master failed" in message, message
    assert (f"saw 0 messages consumed back within 3000 ms from the leader, broker 1 on "
            f"lambda-master ({lab.master_ip}:9092), which acknowledged") in message
    broker.unlink()
    # A broker gone is no longer registered; the check names it.
    os.kill(int(pid), signal.SIGTERM)
    assert wait_until(lambda: not port_open(lab.slave_ips[1], 9092))
    gone = lab.playbook("lambda-check.yml", kafka_check_retries=1)
    assert gone.returncode != 0
    message = check_messages(gone)["Kafka"]
    assert f"saw broker not registered on lambda-slave-2 ({lab.slave_ips[1]}:9092)" in message
    assert_ok(lab.playbook("lambda-start.yml"))  # the retry after the fix
    assert " passed: " in check_messages(assert_ok_run(lab, "lambda-check.yml"))["Kafka"]

    assert_ok(lab.playbook("lambda-stop.yml"))
    assert_all_down(lab, homes[0])


def test_only_listed_services_are_touched(make_lab, homes):
    lab = make_lab("127.45.4", services=("hdfs", "spark"))
    assert_ok(lab.playbook("lambda-start.yml"))
    assert [(ip, p) for ip, p in lab.expected_ports() if not port_open(ip, p)] == []
    unlisted = lab.expected_ports(("yarn", "zookeeper", "kafka"))
    assert [(ip, p) for ip, p in unlisted if port_open(ip, p)] == []
    assert not (lab.root / "hosts/lambda-master/etc/kafka").exists()

    assert_ok(lab.playbook("lambda-stop.yml"))
    assert_all_down(lab, homes[0])


def test_daemon_that_cannot_bind_fails_the_play_naming_host_and_task(make_lab, homes):
    lab = make_lab("127.45.5", services=("spark",))
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind((lab.master_ip, 7077))
    squatter.listen()
    try:
        result = lab.playbook("lambda-start.yml")
    finally:
        squatter.close()
    assert result.returncode != 0
    assert recap(result)["lambda-master"]["failed"] == 1
    failure = re.search(
        r"TASK \[spark : Ensure the Spark master is started\].*?fatal: \[lambda-master\]: "
        r"FAILED!(.*?)\n",
        result.stdout,
        re.S,
    )
    assert failure, result.stdout[-4000:]
    assert "7077" in failure.group(1)
    # Stopping after a failed start succeeds and leaves nothing behind.
    assert_ok(lab.playbook("lambda-stop.yml"))
    assert_all_down(lab, homes[0])


# --- the chains side by side ---------------------------------------------------------------------

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (.*)$")
# Each daemon's log files, by a pattern of their names under a host's directory.
DAEMON_LOGS = {
    "namenode": "*namenode*", "datanode": "*datanode*",
    "resourcemanager": "*resourcemanager*", "nodemanager": "*nodemanager*",
    "zookeeper": "zookeeper*", "kafka": "kafka*/*", "spark-master": "*Master*",
    "spark-worker": "*Worker*",
}


def daemon_times(lab: Lab, daemon: str) -> list[dict]:
    """Per host running ``daemon``: when its process began (its "starting up" line), when it
    was ready (its log's first line after) and when it was told to stop."""
    found = []
    for host in sorted((lab.root / "hosts").iterdir()):
        lines = []
        for path in host.rglob(DAEMON_LOGS[daemon]):
            if path.is_file() and path.suffix in (".log", ".out"):
                for line in path.read_text(errors="replace").splitlines():
                    match = STAMP.match(line)
                    if match:
                        when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                        lines.append((when, match.group(2)))
        if not lines:
            continue
        lines.sort()
        began = next(t for t, text in lines if "starting up" in text)
        ready = next(t for t, text in lines if t >= began and "starting up" not in text)
        stopped = [t for t, text in lines if "shutting down" in text]
        found.append({"host": host.name, "began": began, "ready": ready,
                      "stopped": stopped[-1] if stopped else None})
    assert found, f"no log of {daemon}"
    return found


def run_side_by_side(lab: Lab, playbooks, env: dict) -> None:
    with ThreadPoolExecutor(len(playbooks)) as pool:
        results = list(pool.map(lambda name: lab.playbook(name, env=env), playbooks))
    for result in results:
        assert_ok(result)


def test_chains_side_by_side_keep_each_chain_s_order_and_gates(make_lab, homes):
    """The chain playbooks run at once (as the service runs them): inside a chain each
    daemon begins only once the step before is ready, and the chains overlap; the stop
    chains likewise stop each chain in reverse and leave nothing running."""
    lab = make_lab("127.45.6")
    # Small start-to-ready delays (a tenth of the real figures): steps take visible time.
    env = {"LAMBDA_STANDIN_LATENCY": "0.1"}
    run_side_by_side(lab, START_CHAINS, env)
    assert [(ip, p) for ip, p in lab.expected_ports() if not port_open(ip, p)] == []

    chains = [("namenode", "datanode", "resourcemanager", "nodemanager"),
              ("zookeeper", "kafka"), ("spark-master", "spark-worker")]
    times = {d: daemon_times(lab, d) for chain in chains for d in chain}
    spans = []
    for chain in chains:
        for before, after in itertools.pairwise(chain):
            last_ready = max(t["ready"] for t in times[before])
            first_began = min(t["began"] for t in times[after])
            assert last_ready <= first_began, (before, after, times[before], times[after])
        spans.append((min(t["began"] for t in times[chain[0]]),
                      max(t["ready"] for t in times[chain[-1]])))
    # Side by side: every chain began before every other ended.
    assert max(began for began, _ in spans) < min(ended for _, ended in spans), spans

    run_side_by_side(lab, STOP_CHAINS, env)
    assert_all_down(lab, homes[0])
    times = {d: daemon_times(lab, d) for chain in chains for d in chain}
    for chain in chains:  # stopped in reverse: a step's daemons after the next step's
        for before, after in itertools.pairwise(chain):
            first_stopped = min(t["stopped"] for t in times[before])
            last_stopped = max(t["stopped"] for t in times[after])
            assert last_stopped <= first_stopped, (before, after)
