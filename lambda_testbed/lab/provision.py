"""Put a lambda instance's software on lab hosts, and describe the lab to the product.

Each lab host gets its own installation under its private ``/opt/lambda`` (its "disk"),
as each VM of a real instance would:

    /opt/lambda/dist/hadoop, /opt/lambda/dist/kafka   stand-in distributions (HDFS, YARN,
                                                      Kafka: not obtainable here)
    /opt/lambda/zookeeper                             a ZooKeeper home over Debian's real jars
    spark_home = pyspark's package directory          real Spark (shared, read-only)

The stand-ins' launch scripts name their home by absolute path, so they are installed from
*inside* the host's view of the file system (a private mount namespace with the host's disk
bound at /opt/lambda): the paths they record are the ones the host sees. That needs no sshd,
so a lab can be provisioned with every host powered off. Nothing goes under /tmp, which is
private to each host.

``lab_extravars`` gives the roles' variables for that layout, ``lab_instance`` the domain
instance (for ``render_inventory``), and ``lab_seed`` an emulator/database seed whose servers
are the lab's hosts, with ``server_to_host`` for ``LabPowerHooks``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from api.domain.model import SERVICES, Host, HostRole, Instance, InstanceStatus
from lambda_testbed.demo_data import DEMO_INSTANCE_ID, DEMO_TOKEN, DEMO_USER_ID, DEMO_USER_NAME
from lambda_testbed.lab.lab import MOUNT_POINT, Lab, LabError
from lambda_testbed.lab.zookeeper_home import debian_zookeeper_available, install_zookeeper_home

HOST_ROOT = MOUNT_POINT  # lambda_host_root: per-host config, pid, log and data dirs
DIST_DIR = f"{MOUNT_POINT}/dist"
ZOOKEEPER_HOME = f"{MOUNT_POINT}/zookeeper"
SERVER_ID_BASE = 9100


def host_names(slaves: int = 2, instance: int = 1) -> list[str]:
    """``lambda-1-master``, ``lambda-1-slave-1``, ...: never ``master`` (an inventory group)."""
    return [f"lambda-{instance}-master"] + [
        f"lambda-{instance}-slave-{i}" for i in range(1, slaves + 1)
    ]


# The interpreter the stand-ins run with inside a host. Not this venv's: a checkout (and
# its venv) under /tmp is invisible inside a host, whose /tmp is private. They need only
# the standard library.
HOST_PYTHON = "/usr/bin/python3"
# Paths every lab host has its own of (lambda_testbed.lab.lab mounts them privately).
PRIVATE_IN_HOSTS = ("/tmp", "/root")


def spark_home() -> str:
    """A Spark home every host can see: pyspark's package directory (it carries
    bin/spark-class and sbin/spark-daemon.sh), mirrored once to a shared place when the
    venv lives where hosts have their own (/tmp or /root: a fresh clone under /tmp, as
    in CI)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.origin:
        raise LabError("pyspark is not installed in this venv (scripts/install-lab-deps.sh)")
    package = Path(spec.origin).resolve().parent
    if not any(package.is_relative_to(p) for p in PRIVATE_IN_HOSTS):
        return str(package)
    return str(_mirror_for_hosts(package))


def _mirror_for_hosts(package: Path) -> Path:
    try:
        version = importlib.metadata.version("pyspark")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    # Not under ~/.cache: /root is private inside a host too.
    cache = Path(os.environ.get("LAMBDA_LAB_CACHE_DIR", "/var/cache/lambda-service"))
    target = cache / f"spark-home-{version}"
    if (target / ".complete").is_file():
        return target
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    # Hard links when the cache shares the file system (instant), else a copy (~0.5 GB).
    if subprocess.run(["cp", "-al", str(package), str(partial)], capture_output=True,
                      check=False).returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(package, partial, symlinks=True)
    (partial / ".complete").touch()
    try:
        partial.rename(target)
    except OSError:  # another process mirrored it first
        shutil.rmtree(partial, ignore_errors=True)
    return target


def java_home() -> str:
    java = shutil.which("java")
    if java is None:
        raise LabError("java is not installed (scripts/install-lab-deps.sh)")
    return str(Path(java).resolve().parent.parent)


def missing_requirements() -> str | None:
    """Why the real daemons cannot run here, or None."""
    if shutil.which("java") is None:
        return "java is not installed"
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed in this venv"
    if not debian_zookeeper_available():
        return "Debian's zookeeper package is not installed"
    return None


def install_distributions(lab: Lab, hosts: list[str] | None = None) -> None:
    """Install the stand-ins and the ZooKeeper home on each host's disk (hosts on or off)."""
    python = sys.executable  # installs, outside the host; the stand-ins run HOST_PYTHON
    code = ("import sys; from lambda_testbed.standins import install; "
            "install(sys.argv[1], sys.argv[2], latency=0)")  # the lab's tests wait for nothing
    for name in hosts or [h.name for h in lab.hosts]:
        host = lab.host(name)
        host.root.mkdir(parents=True, exist_ok=True)
        script = (
            f"mount --bind {shlex.quote(str(host.root))} {MOUNT_POINT} && "
            f"exec {shlex.quote(python)} -c {shlex.quote(code)} {DIST_DIR} {HOST_PYTHON}"
        )
        result = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise LabError(f"installing the stand-ins on {name} failed: {result.stderr[-2000:]}")
        # Location-independent (it finds itself from its bin/), so it can be written outside.
        install_zookeeper_home(host.outside(ZOOKEEPER_HOME))


def lab_extravars(**overrides: object) -> dict:
    """The roles' variables for a provisioned lab (a 2-core, 24 GiB machine, three hosts)."""
    java = java_home()
    extravars = {
        "lambda_host_root": HOST_ROOT,
        "hadoop_home": f"{DIST_DIR}/hadoop",
        "kafka_home": f"{DIST_DIR}/kafka",
        "zookeeper_home": ZOOKEEPER_HOME,
        "spark_home": spark_home(),
        "hadoop_java_home": java,
        "kafka_java_home": java,
        "zookeeper_java_home": java,
        "spark_java_home": java,
        # Three JVMs (master, two workers) and ZooKeeper share two cores: keep them small.
        "spark_worker_cores": 1,
        "spark_worker_memory": "1g",
        "spark_daemon_memory": "256m",
        # The service check's SparkPi: the driver and the executors run it with the hosts'
        # own Python (spark-submit puts the Spark home's pyspark on its path). Not this
        # venv's: its interpreter may live under /root, which every lab host has its own of.
        "spark_check_python": "/usr/bin/python3",
        "zookeeper_jvm_flags": "-Xmx128m",
        "hadoop_heartbeat_interval": 1,
        "hadoop_stop_timeout": 10,
    }
    extravars.update(overrides)
    return extravars


def lab_instance(
    lab: Lab,
    instance_id: str = DEMO_INSTANCE_ID,
    services: tuple[str, ...] = SERVICES,
    owner: str = DEMO_USER_ID,
) -> Instance:
    hosts = tuple(
        Host(
            server_id=str(SERVER_ID_BASE + index),
            name=h.name,
            role=HostRole.MASTER if h.role == "master" else HostRole.SLAVE,
            ip=h.ip,
        )
        for index, h in enumerate(lab.hosts)
    )
    return Instance(
        id=instance_id,
        owner=owner,
        name=f"{lab.name}-instance",
        status=InstanceStatus.STOPPED,
        services=tuple(services),
        hosts=hosts,
    )


def lab_seed(
    lab: Lab,
    *,
    instance_id: str = DEMO_INSTANCE_ID,
    services: tuple[str, ...] = SERVICES,
    transition_seconds: float = 0.3,
) -> tuple[dict, dict[str, str]]:
    """An emulator and database seed for one instance on the lab, and server id -> host.

    The servers' status follows the hosts' power (ACTIVE when on), the instance is STOPPED.
    """
    instance = lab_instance(lab, instance_id, services)
    seed = {
        "users": [{"id": DEMO_USER_ID, "name": DEMO_USER_NAME, "tokens": [DEMO_TOKEN]}],
        "instances": [
            {
                "id": instance.id,
                "owner": DEMO_USER_ID,
                "name": instance.name,
                "status": "STOPPED",
                "services": list(instance.services),
                "hosts": [
                    {"server_id": h.server_id, "name": h.name, "role": h.role.value, "ip": h.ip}
                    for h in instance.hosts
                ],
            }
        ],
        "servers": [
            {
                "id": h.server_id,
                "name": h.name,
                "owner": DEMO_USER_ID,
                "status": "ACTIVE" if lab.is_on(h.name) else "STOPPED",
                "ips": [h.ip],
            }
            for h in instance.hosts
        ],
        "emulator": {"transition_seconds": transition_seconds},
    }
    return seed, {h.server_id: h.name for h in instance.hosts}
