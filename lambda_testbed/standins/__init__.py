"""Stand-in Hadoop, Kafka, ZooKeeper and Spark distributions for the demo and the tests.

Real Hadoop and Kafka cannot be had on this kind of machine, so the roles are exercised
against small distributions that honour the real command lines, config files, ports and pid
files. ``install(dest)`` lays them out and returns the homes as the roles' variables.

For tests: while the file named by ``LAMBDA_STANDIN_HOLD`` (in the daemons' environment)
exists, every daemon waits before coming up, so a play can be caught in the middle.

Start-to-ready delays (``runtime/common.py``: ``READY_DELAYS``). A real daemon runs for a
while before it answers: its JVM starts, it loads its state, it registers with its master.
Each stand-in daemon is up (its pid file written, its launcher waiting as the real one's
does) but does not listen for that long. The defaults, for a small cluster:

- NameNode 4 s: JVM start, loading the (empty) fsimage and edits, then the RPC server, the
  start-up phases of "Understanding NameNode Startup Operations in HDFS" (Hortonworks,
  2013). The 30 s ``dfs.namenode.safemode.extension`` (hdfs-default.xml, 30000 ms) is not
  added: it runs only once the reported blocks reach the threshold with blocks to report;
  a cluster holding none (the demo's) leaves safe mode once its DataNodes are live.
- DataNode 3 s: JVM start, then it registers on its first heartbeat;
  ``dfs.heartbeat.interval`` is 3 s (hdfs-default.xml).
- ResourceManager 4 s: JVM start and its services, a daemon of the NameNode's size.
- NodeManager 3 s: JVM start, then it registers with the ResourceManager, heartbeating every
  ``yarn.resourcemanager.nodemanagers.heartbeat-interval-ms`` = 1000 ms (yarn-default.xml).
- ZooKeeper 1 s: a small JVM with a near-empty snapshot to load.
- Kafka broker 4 s: JVM start, log recovery, then registration with the controller:
  ``broker.heartbeat.interval.ms`` = 2000 ms (Kafka's broker configs, KRaft mode).
- Spark master 3 s and worker 3 s: JVM start; a worker registers with the master as soon
  as it is up (Spark's standalone-mode docs).

The configuration defaults are the projects' own documented ones; the JVM start-up parts
(one to two seconds for a daemon JVM with a large classpath) are estimates, not
measurements. ``install(dest, latency=F)`` scales every delay by F (the demo: 1, or
``LAMBDA_STANDIN_LATENCY``; the tests: 0); ``LAMBDA_STANDIN_READY_<DAEMON>`` (NAMENODE,
DATANODE, RESOURCEMANAGER, NODEMANAGER, ZOOKEEPER, KAFKA, SPARK_MASTER, SPARK_WORKER) in
a daemon's environment sets its own delay in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from lambda_testbed.standins.runtime.common import LATENCY_ENV

RUNTIME = Path(__file__).resolve().parent / "runtime"
PACKAGE = "lambda_standin"

# (distribution, script path, module, leading arguments, env file sourced like the real one)
SCRIPTS = (
    ("hadoop", "bin/hdfs", "hadoop", "hdfs", "hadoop"),
    ("hadoop", "bin/yarn", "hadoop", "yarn", "hadoop"),
    ("kafka", "bin/kafka-server-start.sh", "kafka", "start", None),
    ("kafka", "bin/kafka-server-stop.sh", "kafka", "stop", None),
    ("kafka", "bin/kafka-storage.sh", "kafka", "storage", None),
    ("kafka", "bin/kafka-topics.sh", "kafka_tools", "topics", None),
    ("kafka", "bin/kafka-console-producer.sh", "kafka_tools", "console-producer", None),
    ("kafka", "bin/kafka-console-consumer.sh", "kafka_tools", "console-consumer", None),
    ("kafka", "bin/kafka-broker-api-versions.sh", "kafka_tools", "broker-api-versions", None),
    ("zookeeper", "bin/zkServer.sh", "zookeeper", "", "zookeeper"),
    ("zookeeper", "bin/zkCli.sh", "zookeeper", "cli", None),
    ("spark", "sbin/spark-daemon.sh", "spark", "", "spark"),
    ("spark", "bin/spark-submit", "spark", "submit-app", "spark"),
)

# How each wrapper finds and sources its env file, as the real launch scripts do.
ENV_PRELUDES = {
    "hadoop": """\
conf="${HADOOP_CONF_DIR:-$HOME_DIR/etc/hadoop}"
if [ "$1" = "--config" ]; then conf="$2"; fi
HADOOP_CONF_DIR="$conf"; export HADOOP_CONF_DIR HADOOP_HOME="$HOME_DIR"
if [ -f "$conf/hadoop-env.sh" ]; then . "$conf/hadoop-env.sh"; fi
""",
    "zookeeper": """\
if [ "$1" = "--config" ]; then ZOOCFGDIR="$2"; fi
ZOOCFGDIR="${ZOOCFGDIR:-$HOME_DIR/conf}"; export ZOOCFGDIR
if [ -f "$ZOOCFGDIR/zookeeper-env.sh" ]; then . "$ZOOCFGDIR/zookeeper-env.sh"; fi
""",
    "spark": """\
if [ "$1" = "--config" ]; then SPARK_CONF_DIR="$2"; fi
SPARK_CONF_DIR="${SPARK_CONF_DIR:-$HOME_DIR/conf}"; export SPARK_CONF_DIR SPARK_HOME="$HOME_DIR"
if [ -f "$SPARK_CONF_DIR/spark-env.sh" ]; then set -a; . "$SPARK_CONF_DIR/spark-env.sh"; set +a; fi
""",
}

WRAPPER = """\
#!/bin/sh
# Stand-in for {dist}'s {script} (lambda-service stand-in distribution).
HOME_DIR='{home}'
# The factor on the daemons' start-to-ready delays this distribution was installed with.
LAMBDA_STANDIN_LATENCY="${{LAMBDA_STANDIN_LATENCY:-{latency}}}"; export LAMBDA_STANDIN_LATENCY
{prelude}PYTHONPATH="$HOME_DIR/libexec"; export PYTHONPATH
exec '{python}' -S -m {package}.{module} "$HOME_DIR" {lead}"$@"
"""

# Files a real distribution ships, so an operator finds the usual layout.
SAMPLES = {
    "hadoop": {
        "etc/hadoop/core-site.xml": "<?xml version=\"1.0\"?>\n<configuration>\n</configuration>\n",
        "etc/hadoop/hdfs-site.xml": "<?xml version=\"1.0\"?>\n<configuration>\n</configuration>\n",
        "etc/hadoop/yarn-site.xml": "<?xml version=\"1.0\"?>\n<configuration>\n</configuration>\n",
        "etc/hadoop/hadoop-env.sh": "# Set Hadoop-specific environment variables here.\n",
    },
    "kafka": {"config/server.properties": "broker.id=0\nzookeeper.connect=localhost:2181\n"},
    "zookeeper": {
        "conf/zoo_sample.cfg": "tickTime=2000\ndataDir=/tmp/zookeeper\nclientPort=2181\n"
    },
    "spark": {"conf/spark-env.sh.template": "# SPARK_LOCAL_IP, SPARK_PID_DIR, SPARK_LOG_DIR\n"},
}


def latency_from_env(env=os.environ) -> float:
    """``LAMBDA_STANDIN_LATENCY`` of ``env`` (what the demo installs with), else 1."""
    try:
        return max(float(env.get(LATENCY_ENV, "") or 1.0), 0.0)
    except ValueError:
        return 1.0


def install(dest: Path, python: str = sys.executable, latency: float = 1.0) -> dict[str, str]:
    """Lay the four distributions out under ``dest``; return ``{"hadoop_home": ..., ...}``.

    ``latency`` is the factor on every daemon's start-to-ready delay (``READY_DELAYS``):
    1 the figures of the real daemons, 0 ready at once (tests). Installing again over an
    existing tree refreshes the scripts and the daemon code.
    """
    dest = Path(dest).resolve()
    homes = {}
    for dist in ("hadoop", "kafka", "zookeeper", "spark"):
        home = dest / dist
        libexec = home / "libexec" / PACKAGE
        if libexec.exists():
            shutil.rmtree(libexec)
        shutil.copytree(RUNTIME, libexec, ignore=shutil.ignore_patterns("__pycache__"))
        for relative, text in SAMPLES[dist].items():
            path = home / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_text(text)
        homes[f"{dist}_home"] = str(home)
    for dist, script, module, lead, env in SCRIPTS:
        home = dest / dist
        path = home / script
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            WRAPPER.format(
                dist=dist,
                script=script,
                home=home,
                prelude=ENV_PRELUDES[env] if env else "",
                python=python,
                package=PACKAGE,
                module=module,
                lead=f"{lead} " if lead else "",
                latency=f"{float(latency):g}",
            )
        )
        path.chmod(0o755)
    return homes


def main(argv: list[str] | None = None) -> int:
    """``lambda-service standins DEST``: install, print the role variables as JSON."""
    parser = argparse.ArgumentParser(prog="lambda-service standins", description=main.__doc__)
    parser.add_argument("dest", type=Path, help="directory to lay the distributions out in")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the daemons")
    parser.add_argument("--latency", type=float, default=latency_from_env(),
                        help="factor on the daemons' start-to-ready delays (0: ready at once)")
    args = parser.parse_args(argv)
    homes = install(args.dest, args.python, args.latency)
    print(json.dumps(homes, indent=2))
    return 0
