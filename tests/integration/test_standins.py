"""Each stand-in distribution driven by its real command line on a loopback address."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from lambda_testbed import standins
from tests.support import get_json, kill_under, port_open, wait_until

# Addresses of their own: this module runs beside the demo's (tests/conftest.py).
LOOPBACK_NET = "127.45"
IP = f"{LOOPBACK_NET}.200.1"
IP2 = f"{LOOPBACK_NET}.200.2"


# --- helpers -------------------------------------------------------------------------------------






def four_letter_word(ip: str, word: str, port: int = 2181) -> str:
    with socket.create_connection((ip, port), timeout=3) as sock:
        sock.sendall(word.encode())
        return b"".join(iter(lambda: sock.recv(4096), b"")).decode()


def xml(path: Path, props: dict) -> None:
    body = "".join(
        f"<property><name>{k}</name><value>{v}</value></property>" for k, v in props.items()
    )
    path.write_text(f"<?xml version='1.0'?><configuration>{body}</configuration>")


@pytest.fixture
def dist(tmp_path):
    homes = standins.install(tmp_path / "dist", latency=0)
    yield tmp_path, homes
    kill_under(tmp_path)


def run(argv, env=None, check=False) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(a) for a in argv],
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


# --- Hadoop --------------------------------------------------------------------------------------


def hadoop_conf(root: Path, ip: str, name: str) -> Path:
    conf = root / name / "conf"
    conf.mkdir(parents=True)
    xml(conf / "core-site.xml", {"fs.defaultFS": f"hdfs://{IP}:8020"})
    xml(conf / "hdfs-site.xml", {
        "dfs.namenode.name.dir": f"file://{root}/{name}/name",
        "dfs.namenode.http-address": f"{IP}:9870",
        "dfs.datanode.address": f"{ip}:9866",
        "dfs.datanode.http.address": f"{ip}:9864",
        "dfs.datanode.ipc.address": f"{ip}:9867",
        "dfs.datanode.data.dir": f"{root}/{name}/data",
        "dfs.heartbeat.interval": "1",
    })
    xml(conf / "yarn-site.xml", {
        "yarn.resourcemanager.hostname": IP,
        "yarn.nodemanager.hostname": ip,
        "yarn.nodemanager.address": f"{ip}:8041",
    })
    (conf / "hadoop-env.sh").write_text(
        f"export HADOOP_PID_DIR={root}/{name}/pid HADOOP_LOG_DIR={root}/{name}/log\n"
    )
    return conf


def test_a_daemon_runs_but_does_not_listen_for_its_start_to_ready_delay(dist):
    root, homes = dist
    hdfs = f"{homes['hadoop_home']}/bin/hdfs"
    master = hadoop_conf(root, IP, "master")
    run([hdfs, "--config", master, "namenode", "-format", "-nonInteractive"], check=True)
    env = dict(os.environ, LAMBDA_STANDIN_READY_NAMENODE="1.5")  # installed with 0
    start = subprocess.Popen([str(hdfs), "--config", str(master), "--daemon", "start",
                              "namenode"], env=env, stdout=subprocess.DEVNULL)
    pidfile = root / "master/pid/hadoop-{}-namenode.pid".format(os.environ.get("USER", "root"))
    wait_until(pidfile.exists, timeout=10)
    assert not port_open(IP, 8020)  # running (its pid file), not listening yet
    assert start.wait(timeout=30) == 0  # the launcher waits until it is ready, as before
    assert port_open(IP, 8020)
    out = next((root / "master/log").glob("*namenode*.out")).read_text()
    assert "starting up (1.5s before it is ready)" in out
    run([hdfs, "--config", master, "--daemon", "stop", "namenode"], check=True)


def test_hadoop_hdfs_and_yarn(dist):
    root, homes = dist
    hdfs, yarn = f"{homes['hadoop_home']}/bin/hdfs", f"{homes['hadoop_home']}/bin/yarn"
    master, slave = hadoop_conf(root, IP, "master"), hadoop_conf(root, IP2, "slave")

    refused = run([hdfs, "--config", master, "--daemon", "start", "namenode"])
    assert refused.returncode != 0 and "not formatted" in refused.stderr
    run([hdfs, "--config", master, "namenode", "-format", "-nonInteractive"], check=True)
    again = run([hdfs, "--config", master, "namenode", "-format", "-nonInteractive"])
    assert again.returncode == 1 and "Not formatting" in again.stderr

    run([hdfs, "--config", master, "--daemon", "start", "namenode"], check=True)
    pidfile = root / "master/pid/hadoop-{}-namenode.pid".format(os.environ.get("USER", "root"))
    assert pidfile.exists()
    assert run([hdfs, "--config", master, "--daemon", "status", "namenode"]).returncode == 0
    assert port_open(IP, 8020) and port_open(IP, 9870)
    assert not port_open("127.0.0.1", 8020)  # bound to its host's address only
    safemode = [hdfs, "--config", master, "dfsadmin", "-safemode"]
    assert run([*safemode, "get"]).stdout.strip() == "Safe mode is ON"

    run([hdfs, "--config", slave, "--daemon", "start", "datanode"], check=True)
    waited = run([*safemode, "wait"], check=True)
    assert waited.stdout.strip() == "Safe mode is OFF"
    report = run([hdfs, "--config", master, "dfsadmin", "-report"], check=True).stdout
    assert "Live datanodes (1)" in report and f"{IP2}:9866" in report
    jmx = get_json(f"http://{IP}:9870/jmx")["beans"][0]
    assert list(jmx["LiveNodes"]) == [f"{IP2}:9866"]
    assert run([*safemode, "enter"]).stdout.strip() == "Safe mode is ON"
    assert run([*safemode, "leave"]).stdout.strip() == "Safe mode is OFF"

    # A file goes to the DataNode and comes back from it; a DataNode that cannot store
    # leaves the write with no replica, and the put fails as the real client's does.
    dfs = [hdfs, "--config", master, "dfs"]
    local = root / "hello.txt"
    local.write_bytes(b"hello\x00hdfs\n")
    run([*dfs, "-put", local, "/hello"], check=True)
    blocks = list((root / "slave/data/current/blocks").iterdir())
    assert [b.read_bytes() for b in blocks] == [b"hello\x00hdfs\n"]
    cat = subprocess.run([hdfs, "--config", master, "dfs", "-cat", "/hello"], capture_output=True)
    assert cat.returncode == 0 and cat.stdout == b"hello\x00hdfs\n"
    assert "File exists" in run([*dfs, "-put", local, "/hello"]).stderr
    fsck = run([hdfs, "--config", master, "fsck", "/hello", "-files", "-blocks", "-locations"],
               check=True).stdout
    assert f"[DatanodeInfoWithStorage[{IP2}:9866" in fsck and "HEALTHY" in fsck
    blocks[0].unlink()  # a lost replica is not read back from anywhere else
    assert "Could not obtain block" in run([*dfs, "-cat", "/hello"]).stderr
    run([*dfs, "-rm", "/hello"], check=True)
    assert "No such file" in run([*dfs, "-cat", "/hello"]).stderr
    (root / "slave/data/STANDIN_FAULT_CANNOT_STORE").touch()
    broken = run([*dfs, "-put", local, "/broken"])
    assert broken.returncode == 1 and "0 of the 1 minReplication" in broken.stderr
    assert f"bad datanode {IP2}:9866" in broken.stderr

    run([yarn, "--config", master, "--daemon", "start", "resourcemanager"], check=True)
    run([yarn, "--config", slave, "--daemon", "start", "nodemanager"], check=True)

    def nodes():
        body = get_json(f"http://{IP}:8088/ws/v1/cluster/nodes")["nodes"]
        return body and [n for n in body["node"] if n["state"] == "RUNNING"]

    registered = wait_until(nodes)
    assert [n["id"] for n in registered] == [f"{IP2}:8041"]
    assert registered[0]["nodeHTTPAddress"] == f"{IP2}:8042"
    assert "Total Nodes:1" in run([yarn, "--config", master, "node", "-list"], check=True).stdout

    # A second daemon on a taken port fails at start, saying why.
    busy = run([hdfs, "--config", slave, "--daemon", "start", "namenode"])
    assert busy.returncode != 0

    for command, conf, daemon in [
        (yarn, slave, "nodemanager"),
        (yarn, master, "resourcemanager"),
        (hdfs, slave, "datanode"),
        (hdfs, master, "namenode"),
    ]:
        run([command, "--config", conf, "--daemon", "stop", daemon], check=True)
        assert run([command, "--config", conf, "--daemon", "status", daemon]).returncode != 0
    assert not pidfile.exists()
    for ip, port in [(IP, 8020), (IP, 9870), (IP2, 9866), (IP, 8032), (IP, 8088), (IP2, 8042)]:
        assert not port_open(ip, port)
    # Stopping what is not running is fine.
    run([hdfs, "--config", master, "--daemon", "stop", "namenode"], check=True)


def test_hadoop_start_fails_when_its_port_is_taken(dist):
    root, homes = dist
    hdfs = f"{homes['hadoop_home']}/bin/hdfs"
    slave = hadoop_conf(root, IP2, "slave")
    with socket.socket() as squatter:
        squatter.bind((IP2, 9866))
        squatter.listen()
        result = run([hdfs, "--config", slave, "--daemon", "start", "datanode"])
    assert result.returncode != 0
    assert "9866" in result.stderr and "in use" in result.stderr
    log = next((root / "slave/log").glob("*datanode*.log")).read_text()
    assert "cannot bind" in log
    assert not list((root / "slave/pid").glob("*.pid"))


# --- ZooKeeper -----------------------------------------------------------------------------------


def zookeeper_env(root: Path, whitelist: str | None = "ruok,srvr,stat") -> dict:
    conf = root / "zk/conf"
    conf.mkdir(parents=True)
    lines = [f"dataDir={root}/zk/data", "clientPort=2181", f"clientPortAddress={IP}"]
    if whitelist:
        lines.append(f"4lw.commands.whitelist={whitelist}")
    (conf / "zoo.cfg").write_text("\n".join(lines) + "\n")
    return {"ZOOCFGDIR": str(conf), "ZOO_LOG_DIR": f"{root}/zk/log", "ZOOPIDFILE": f"{root}/zk/pid"}


def test_zookeeper_answers_four_letter_words(dist):
    root, homes = dist
    zk = f"{homes['zookeeper_home']}/bin/zkServer.sh"
    env = zookeeper_env(root)
    started = run([zk, "start"], env, check=True)
    assert "STARTED" in started.stdout
    pid = int(Path(env["ZOOPIDFILE"]).read_text())
    assert four_letter_word(IP, "ruok") == "imok"
    assert "Mode: standalone" in four_letter_word(IP, "srvr")
    assert "not in the whitelist" in four_letter_word(IP, "mntr")
    status = run([zk, "status"], env)
    assert status.returncode == 0 and "Mode: standalone" in status.stdout
    assert run([zk, "start"], env).returncode == 1  # already running, like the real script

    # zkCli.sh: a znode created, read back and deleted through the client protocol.
    cli = [f"{homes['zookeeper_home']}/bin/zkCli.sh", "-server", f"{IP}:2181"]
    # The real zkCli.sh confirms a create on stderr (ZooKeeper's CreateCommand).
    assert run([*cli, "create", "/check", "hello"], check=True).stderr.strip() == "Created /check"
    assert "Node already exists" in run([*cli, "create", "/check", "x"]).stderr
    assert "Node does not exist" in run([*cli, "create", "/no/parent", "x"]).stderr
    assert run([*cli, "get", "/check"], check=True).stdout.strip() == "hello"
    assert run([*cli, "ls", "/"], check=True).stdout.strip() == "[check, zookeeper]"
    run([*cli, "delete", "/check"], check=True)
    assert "Node does not exist: /check" in run([*cli, "get", "/check"]).stderr

    run([zk, "stop"], env, check=True)
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists())
    assert not port_open(IP, 2181)
    assert run([zk, "status"], env).returncode == 1


def test_zookeeper_default_whitelist_is_srvr_only(dist):
    root, homes = dist
    zk = f"{homes['zookeeper_home']}/bin/zkServer.sh"
    env = zookeeper_env(root, whitelist=None)
    run([zk, "start"], env, check=True)
    assert "not in the whitelist" in four_letter_word(IP, "ruok")
    assert "Zookeeper version" in four_letter_word(IP, "srvr")
    run([zk, "stop"], env, check=True)


# --- Kafka ---------------------------------------------------------------------------------------


def kafka_pid(props: Path) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(props).encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
    return None


def test_kafka_with_zookeeper(dist):
    root, homes = dist
    kafka = Path(homes["kafka_home"]) / "bin"
    props = root / "server.properties"
    props.write_text(
        f"broker.id=1\nlisteners=PLAINTEXT://{IP}:9092\nlog.dirs={root}/kafka-data\n"
        f"zookeeper.connect={IP}:2181\nzookeeper.connection.timeout.ms=1000\n"
    )
    env = {"LOG_DIR": f"{root}/kafka-log"}
    # No ZooKeeper: -daemon returns (like the real script), the broker exits saying why.
    run([kafka / "kafka-server-start.sh", "-daemon", props], env, check=True)
    assert wait_until(lambda: kafka_pid(props) is None)
    assert "Timed out waiting for connection" in (root / "kafka-log/server.log").read_text()
    foreground = run([kafka / "kafka-server-start.sh", props], env)
    assert foreground.returncode != 0 and "Timed out" in foreground.stderr

    zk_env = zookeeper_env(root)
    run([homes["zookeeper_home"] + "/bin/zkServer.sh", "start"], zk_env, check=True)
    run([kafka / "kafka-server-start.sh", "-daemon", props], env, check=True)
    assert wait_until(lambda: port_open(IP, 9092))
    assert "Connections: 1" in four_letter_word(IP, "srvr")  # the broker's session
    second = run([kafka / "kafka-server-start.sh", props], env)
    assert "Failed to acquire lock" in second.stderr

    pid = kafka_pid(props)
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists())
    assert not port_open(IP, 9092)
    run([homes["zookeeper_home"] + "/bin/zkServer.sh", "stop"], zk_env, check=True)


def test_kafka_tools_deliver_messages_through_the_brokers(dist):
    """kafka-topics.sh, the console producer and consumer and kafka-broker-api-versions.sh
    with the real tools' options: brokers register in ZooKeeper, a topic's replicas are on the
    brokers, a message is stored by the leader and its follower and read back from the
    leader; a broker with STANDIN_FAULT_DROPS_MESSAGES acknowledges messages and drops them."""
    root, homes = dist
    bin_dir = Path(homes["kafka_home"]) / "bin"
    zk_env = zookeeper_env(root)
    run([homes["zookeeper_home"] + "/bin/zkServer.sh", "start"], zk_env, check=True)
    brokers = {}
    for number, ip in ((1, IP), (2, IP2)):
        conf = root / f"broker{number}"
        conf.mkdir()
        (conf / "server.properties").write_text(
            f"broker.id={number}\nlisteners=PLAINTEXT://{ip}:9092\n"
            f"log.dirs={conf}/data\nzookeeper.connect={IP}:2181\n")
        run([bin_dir / "kafka-server-start.sh", "-daemon", conf / "server.properties"],
            {"LOG_DIR": f"{conf}/log"}, check=True)
        brokers[number] = conf
    assert wait_until(lambda: port_open(IP, 9092) and port_open(IP2, 9092))
    bootstrap = ["--bootstrap-server", f"{IP2}:9092"]
    topics = [bin_dir / "kafka-topics.sh", *bootstrap]

    # Registered as the real brokers do: ephemeral znodes under /brokers/ids.
    zk_cli = [homes["zookeeper_home"] + "/bin/zkCli.sh", "-server", f"{IP}:2181"]
    assert run([*zk_cli, "ls", "/brokers/ids"], check=True).stdout.strip() == "[1, 2]"
    versions = run([bin_dir / "kafka-broker-api-versions.sh", *bootstrap], check=True).stdout
    assert f"{IP}:9092 (id: 1 rack: null) -> (" in versions
    assert f"{IP2}:9092 (id: 2 rack: null) -> (" in versions

    too_many = run([*topics, "--create", "--topic", "t", "--partitions", "1",
                    "--replication-factor", "3"])
    assert too_many.returncode == 1
    assert "Replication factor: 3 larger than available brokers: 2." in too_many.stdout
    created = run([*topics, "--create", "--topic", "t", "--partitions", "1",
                   "--replication-factor", "2"], check=True)
    assert created.stdout.strip() == "Created topic t."
    assert "already exists" in run([*topics, "--create", "--topic", "t"]).stdout
    assert "is illegal" in run([*topics, "--create", "--topic", "../t"]).stdout
    described = run([*topics, "--describe", "--topic", "t"], check=True).stdout
    assert "PartitionCount: 1\tReplicationFactor: 2" in described
    assert "Partition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2" in described
    assert run([*topics, "--list"], check=True).stdout.split() == ["t"]

    produce = [bin_dir / "kafka-console-producer.sh", *bootstrap, "--topic"]
    produced = subprocess.run([str(a) for a in [*produce, "t"]], input="one\ntwo\n",
                              capture_output=True, text=True, timeout=60)
    assert produced.returncode == 0, produced.stderr
    logs = [brokers[n] / "data/t-0/00000000000000000000.log" for n in (1, 2)]
    assert [len(log.read_text().split()) for log in logs] == [2, 2]  # leader and follower
    consume = [bin_dir / "kafka-console-consumer.sh", *bootstrap, "--from-beginning",
               "--timeout-ms", "500", "--topic"]
    consumed = run([*consume, "t", "--max-messages", "2"], check=True)
    assert consumed.stdout.splitlines() == ["one", "two"]
    assert consumed.stderr.strip() == "Processed a total of 2 messages"
    # Read from the leader's log: a message it lost is not read from anywhere else.
    logs[0].write_text("")
    lost = run([*consume, "t", "--max-messages", "1"], check=True)
    assert lost.stdout == "" and "Processed a total of 0 messages" in lost.stderr
    assert "TimeoutException" in lost.stderr

    run([*topics, "--delete", "--topic", "t"], check=True)
    assert not (brokers[1] / "data/t-0").exists() and not (brokers[2] / "data/t-0").exists()
    assert "does not exist as expected" in run([*topics, "--delete", "--topic", "t"]).stdout

    (brokers[1] / "STANDIN_FAULT_DROPS_MESSAGES").touch()
    run([*topics, "--create", "--topic", "u", "--replication-factor", "2"], check=True)
    dropped = subprocess.run([str(a) for a in [*produce, "u"]], input="lost\n",
                             capture_output=True, text=True, timeout=60)
    assert dropped.returncode == 0 and dropped.stderr == ""  # acknowledged
    gone = run([*consume, "u", "--max-messages", "1"], check=True)
    assert gone.stdout == "" and "Processed a total of 0 messages" in gone.stderr
    assert (brokers[1] / "data/u-0/00000000000000000000.log").read_text() == ""

    # A broker stopped leaves the cluster: its registration goes with its session.
    pid = kafka_pid(brokers[2] / "server.properties")
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists())
    assert run([*zk_cli, "ls", "/brokers/ids"], check=True).stdout.strip() == "[1]"
    versions = run([bin_dir / "kafka-broker-api-versions.sh", "--bootstrap-server",
                    f"{IP}:9092"], check=True).stdout
    assert "(id: 1 rack: null)" in versions and "(id: 2 " not in versions
    # ZooKeeper restarted (its znodes lost with it): the broker left registers again.
    zk_pid = int(Path(zk_env["ZOOPIDFILE"]).read_text())
    run([homes["zookeeper_home"] + "/bin/zkServer.sh", "stop"], zk_env, check=True)
    assert wait_until(lambda: not Path(f"/proc/{zk_pid}").exists())
    run([homes["zookeeper_home"] + "/bin/zkServer.sh", "start"], zk_env, check=True)
    assert wait_until(lambda: run([*zk_cli, "ls", "/brokers/ids"]).stdout.strip() == "[1]",
                      timeout=30)
    run([homes["zookeeper_home"] + "/bin/zkServer.sh", "stop"], zk_env, check=True)


def test_kafka_kraft_needs_a_formatted_log_dir(dist):
    root, homes = dist
    kafka = Path(homes["kafka_home"]) / "bin"
    props = root / "kraft.properties"
    props.write_text(
        f"process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@{IP}:9093\n"
        f"controller.listener.names=CONTROLLER\n"
        f"listeners=PLAINTEXT://{IP}:9092,CONTROLLER://{IP}:9093\nlog.dirs={root}/kraft\n"
    )
    unformatted = run([kafka / "kafka-server-start.sh", props])
    assert unformatted.returncode != 0 and "meta.properties" in unformatted.stderr

    cluster_id = run([kafka / "kafka-storage.sh", "random-uuid"], check=True).stdout.strip()
    assert len(cluster_id) == 22
    bad = run([kafka / "kafka-storage.sh", "format", "-t", "not-a-uuid", "-c", props])
    assert bad.returncode != 0
    run([kafka / "kafka-storage.sh", "format", "-t", cluster_id, "-c", props], check=True)
    again = run([kafka / "kafka-storage.sh", "format", "-t", cluster_id, "-c", props])
    assert again.returncode != 0 and "already formatted" in again.stderr
    run([kafka / "kafka-storage.sh", "format", "-t", cluster_id, "-c", props,
         "--ignore-formatted"], check=True)

    run([kafka / "kafka-server-start.sh", "-daemon", props], {"LOG_DIR": f"{root}/l"}, check=True)
    assert wait_until(lambda: port_open(IP, 9092) and port_open(IP, 9093))
    stopped = run([kafka / "kafka-server-stop.sh"], check=True)
    assert stopped.returncode == 0
    assert wait_until(lambda: not port_open(IP, 9092))


# --- Spark ---------------------------------------------------------------------------------------


def test_spark_master_and_worker(dist):
    root, homes = dist
    daemon = f"{homes['spark_home']}/sbin/spark-daemon.sh"
    master_class = "org.apache.spark.deploy.master.Master"
    worker_class = "org.apache.spark.deploy.worker.Worker"

    def env(ip):
        return {"SPARK_PID_DIR": f"{root}/{ip}/pid", "SPARK_LOG_DIR": f"{root}/{ip}/log",
                "SPARK_LOCAL_IP": ip, "SPARK_IDENT_STRING": "test"}

    run([daemon, "start", master_class, "1", "--host", IP, "--port", "7077",
         "--webui-port", "8080"], env(IP), check=True)
    assert Path(f"{root}/{IP}/pid/spark-test-{master_class}-1.pid").exists()
    state = get_json(f"http://{IP}:8080/json/")
    assert state["status"] == "ALIVE" and state["aliveworkers"] == 0
    assert state["url"] == f"spark://{IP}:7077"
    assert run([daemon, "status", master_class, "1"], env(IP)).returncode == 0

    run([daemon, "start", worker_class, "1", "--host", IP2, "--cores", "2", "--memory", "1g",
         f"spark://{IP}:7077"], env(IP2), check=True)

    def alive():
        workers = get_json(f"http://{IP}:8080/json/")["workers"]
        return [w for w in workers if w["state"] == "ALIVE"]

    workers = wait_until(alive)
    assert [(w["host"], w["cores"], w["memory"]) for w in workers] == [(IP2, 2, 1024)]
    assert get_json(f"http://{IP2}:8081/json/")["masterurl"] == f"spark://{IP}:7077"
    assert run([daemon, "start", worker_class, "1", f"spark://{IP}:7077"], env(IP2)).returncode == 1

    # spark-submit: SparkPi's slices computed by the worker, the estimate read back.
    submit = [f"{homes['spark_home']}/bin/spark-submit", "--master", f"spark://{IP}:7077",
              "--name", "check", "pi.py", "4"]
    job = run(submit, env(IP), check=True)
    pi = float(job.stdout.split("Pi is roughly ")[1])
    assert 3.0 < pi < 3.3 and f"4 tasks on {IP2}" in job.stderr

    run([daemon, "stop", worker_class, "1"], env(IP2), check=True)
    assert wait_until(lambda: get_json(f"http://{IP}:8080/json/")["aliveworkers"] == 0)
    no_workers = run(submit, env(IP))  # nothing to run the tasks on: the job cannot run
    assert no_workers.returncode == 1 and "not accepted any resources" in no_workers.stderr
    assert get_json(f"http://{IP}:8080/json/")["workers"][0]["state"] == "DEAD"
    run([daemon, "stop", master_class, "1"], env(IP), check=True)
    assert wait_until(lambda: not port_open(IP, 7077) and not port_open(IP, 8080))
    assert run([daemon, "status", master_class, "1"], env(IP)).returncode == 2
    assert "no org.apache" in run([daemon, "stop", master_class, "1"], env(IP)).stdout
