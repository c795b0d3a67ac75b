"""Stand-in for Apache Hadoop 3's ``bin/hdfs`` and ``bin/yarn``.

Same command lines, config keys, default ports and pid files as the real scripts:
``hdfs --daemon start|stop|status namenode|datanode``, ``hdfs namenode -format``,
``hdfs dfsadmin -safemode get|leave|enter|wait``, ``hdfs dfsadmin -report``,
``yarn --daemon start|stop|status resourcemanager|nodemanager``, ``yarn node -list``.
RPC between the daemons is JSON lines over the real RPC ports instead of Hadoop IPC.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from . import common
from .common import StartError, log

HDFS_DEFAULTS = {
    "hadoop.tmp.dir": "/tmp/hadoop-${user.name}",
    "fs.defaultFS": "file:///",
    "dfs.namenode.http-address": "0.0.0.0:9870",
    "dfs.namenode.name.dir": "file://${hadoop.tmp.dir}/dfs/name",
    "dfs.namenode.safemode.min.datanodes": "0",
    "dfs.datanode.address": "0.0.0.0:9866",
    "dfs.datanode.http.address": "0.0.0.0:9864",
    "dfs.datanode.ipc.address": "0.0.0.0:9867",
    "dfs.datanode.data.dir": "file://${hadoop.tmp.dir}/dfs/data",
    "dfs.heartbeat.interval": "3",
    "yarn.resourcemanager.hostname": "0.0.0.0",
    "yarn.resourcemanager.address": "${yarn.resourcemanager.hostname}:8032",
    "yarn.resourcemanager.resource-tracker.address": "${yarn.resourcemanager.hostname}:8031",
    "yarn.resourcemanager.webapp.address": "${yarn.resourcemanager.hostname}:8088",
    "yarn.nodemanager.hostname": "0.0.0.0",
    "yarn.nodemanager.address": "${yarn.nodemanager.hostname}:0",
    "yarn.nodemanager.webapp.address": "${yarn.nodemanager.hostname}:8042",
    "yarn.nodemanager.resource.memory-mb": "8192",
    "yarn.nodemanager.resource.cpu-vcores": "8",
    "yarn.resourcemanager.nm.liveness-monitor.expiry-interval-ms": "600000",
}
DAEMONS = {"hdfs": ("namenode", "datanode"), "yarn": ("resourcemanager", "nodemanager")}


class Env:
    """Where a command finds its config, pid and log dirs (HADOOP_* variables)."""

    def __init__(self, home: Path, conf_dir: str | None):
        self.home = home
        self.conf_dir = Path(conf_dir or os.environ.get("HADOOP_CONF_DIR") or home / "etc/hadoop")
        self.pid_dir = Path(os.environ.get("HADOOP_PID_DIR") or "/tmp")
        self.log_dir = Path(os.environ.get("HADOOP_LOG_DIR") or home / "logs")
        self.ident = os.environ.get("HADOOP_IDENT_STRING") or os.environ.get("USER") or "root"
        self.stop_timeout = float(os.environ.get("HADOOP_STOP_TIMEOUT") or 5)

    def conf(self) -> dict[str, str]:
        files = ("core-site.xml", "hdfs-site.xml", "yarn-site.xml")
        return common.read_hadoop_xml([self.conf_dir / f for f in files], HDFS_DEFAULTS)

    def pidfile(self, daemon: str) -> Path:
        return self.pid_dir / f"hadoop-{self.ident}-{daemon}.pid"

    def logfile(self, daemon: str, ext: str) -> Path:
        return self.log_dir / f"hadoop-{self.ident}-{daemon}-{socket.gethostname()}.{ext}"


def namenode_rpc(conf: dict) -> tuple[str, int]:
    if conf.get("dfs.namenode.rpc-address"):
        return common.split_address(conf["dfs.namenode.rpc-address"], 8020)
    default_fs = conf["fs.defaultFS"]
    if not default_fs.startswith("hdfs://"):
        raise StartError(
            f"Invalid URI for NameNode address (check fs.defaultFS): {default_fs} "
            "is not of scheme 'hdfs'."
        )
    return common.split_address(default_fs, 8020)


# --- NameNode ----------------------------------------------------------------------------------


class NameNode:
    def __init__(self, conf: dict):
        self.conf = conf
        self.name_dir = common.local_path(conf["dfs.namenode.name.dir"])
        self.version = self.name_dir / "current" / "VERSION"
        self.min_datanodes = max(1, int(conf["dfs.namenode.safemode.min.datanodes"]))
        self.expiry = 10 * float(conf["dfs.heartbeat.interval"]) + 30
        self.lock = threading.Lock()
        self.datanodes: dict[str, dict] = {}
        self.manual_safemode: bool | None = None  # set by -safemode enter|leave

    def live(self) -> list[dict]:
        cutoff = time.time() - self.expiry
        return [d for d in self.datanodes.values() if d["last"] >= cutoff]

    def safemode(self) -> bool:
        if self.manual_safemode is not None:
            return self.manual_safemode
        return len(self.live()) < self.min_datanodes

    def handle(self, request: dict, session: dict) -> dict:
        op = request["op"]
        with self.lock:
            if op in ("register", "heartbeat"):
                node = request["node"]
                if op == "heartbeat" and node["id"] not in self.datanodes:
                    return {"ok": False, "error": "unregistered", "reregister": True}
                if op == "register":
                    log.info("registered DataNode %s", node["id"])
                self.datanodes[node["id"]] = dict(node, last=time.time())
                return {"ok": True, "clusterID": self.cluster_id}
            if op == "safemode":
                action = request["action"]
                if action == "enter":
                    self.manual_safemode = True
                elif action == "leave":
                    self.manual_safemode = False
                return {"ok": True, "safemode": self.safemode()}
            if op == "report":
                return {"ok": True, "live": self.live(), "safemode": self.safemode()}
        return {"ok": False, "error": f"unknown op {op}"}

    def jmx(self, _query: str) -> dict:
        with self.lock:
            live = {d["id"]: {"xferaddr": d["xferaddr"]} for d in self.live()}
            safemode = self.safemode()
        return {
            "beans": [
                {
                    "name": "Hadoop:service=NameNode,name=NameNodeInfo",
                    "ClusterId": self.cluster_id,
                    "Safemode": "Safe mode is ON." if safemode else "",
                    "LiveNodes": live,
                },
                {
                    "name": "Hadoop:service=NameNode,name=NameNodeStatus",
                    "State": "active",
                    "NNRole": "NameNode",
                },
            ]
        }

    def run(self, notifier: common.Notifier) -> None:
        if not self.version.exists():
            raise StartError(
                f"NameNode is not formatted. Storage directory {self.name_dir} "
                "does not exist or is not accessible; run 'hdfs namenode -format'."
            )
        self.cluster_id = _read_version(self.version).get("clusterID", "")
        rpc = namenode_rpc(self.conf)
        http = common.split_address(self.conf["dfs.namenode.http-address"], 9870)
        servers = [
            common.line_server("NameNode RPC", rpc, self.handle),
            common.http_server("NameNode HTTP", http, {"/jmx": self.jmx, "/": _page("NameNode")}),
        ]
        log.info("NameNode up at %s:%s, safe mode is ON", *rpc)
        common.serve_until_stopped(servers, notifier)


def _read_version(path: Path) -> dict:
    return common.read_properties(path)


def _page(title: str):
    return lambda _query: f"<html><head><title>{title}</title></head><body>{title}</body></html>"


def format_namenode(conf: dict, args: list[str]) -> int:
    name_dir = common.local_path(conf["dfs.namenode.name.dir"])
    version = name_dir / "current" / "VERSION"
    if version.exists() and "-force" not in args:
        if "-nonInteractive" in args:
            print(
                f"Running in non-interactive mode, and data appears to exist in Storage "
                f"Directory {name_dir}. Not formatting.",
                file=sys.stderr,
            )
            return 1
        print(f"Re-format filesystem in Storage Directory {name_dir} ? (Y or N) Invalid input")
        return 1
    cluster_id = f"CID-{uuid.uuid4()}"
    if "-clusterid" in args:
        cluster_id = args[args.index("-clusterid") + 1]
    version.parent.mkdir(parents=True, exist_ok=True)
    version.write_text(
        f"namespaceID={uuid.uuid4().int % 2**31}\nclusterID={cluster_id}\n"
        f"cTime={common.now_ms()}\nstorageType=NAME_NODE\nlayoutVersion=-66\n"
    )
    print(f"Storage directory {name_dir} has been successfully formatted.")
    return 0


# --- DataNode ------------------------------------------------------------------------------------



def heartbeat_loop(name, address, node, interval, stopping: threading.Event, source=None):
    """Register with a master, then heartbeat; reconnect when it goes away (DataNode, NM)."""
    client = None
    while not stopping.is_set():
        try:
            if client is None:
                client = common.LineClient(address, timeout=5, source=source)
                reply = client.call({"op": "register", "node": node})
                log.info("registered with %s at %s:%s: %s", name, *address, reply.get("ok"))
            reply = client.call({"op": "heartbeat", "node": node})
            if reply.get("reregister"):
                client.call({"op": "register", "node": node})
        except (OSError, ValueError) as exc:
            log.warning("cannot reach %s at %s:%s: %s", name, *address, exc)
            if client is not None:
                client.close()
            client = None
        stopping.wait(interval)
    if client is not None:
        client.close()


class DataNode:
    def __init__(self, conf: dict):
        self.conf = conf

    def run(self, notifier: common.Notifier) -> None:
        data_dir = common.local_path(self.conf["dfs.datanode.data.dir"])
        data_dir.mkdir(parents=True, exist_ok=True)
        nn = namenode_rpc(self.conf)
        xfer = common.split_address(self.conf["dfs.datanode.address"], 9866)
        http = common.split_address(self.conf["dfs.datanode.http.address"], 9864)
        ipc = common.split_address(self.conf["dfs.datanode.ipc.address"], 9867)
        servers = [
            common.raw_server("DataNode data transfer", xfer, common.Hold),
            common.http_server("DataNode HTTP", http, {"/": _page("DataNode")}),
            common.raw_server("DataNode IPC", ipc, common.Hold),
        ]
        node = {
            "id": f"{xfer[0]}:{xfer[1]}",
            "xferaddr": f"{xfer[0]}:{xfer[1]}",
            "infoaddr": f"{http[0]}:{http[1]}",
            "datadir": str(data_dir),
        }
        stopping = threading.Event()
        interval = float(self.conf["dfs.heartbeat.interval"])
        threading.Thread(
            target=heartbeat_loop,
            args=("NameNode", nn, node, interval, stopping, _source(xfer[0])),
            daemon=True,
        ).start()
        common.serve_until_stopped(servers, notifier, on_stop=stopping.set)


def _source(host: str) -> str | None:
    """Connect from the host's own address, as a daemon on that host would."""
    return None if host in ("0.0.0.0", "", "::") else host


# --- ResourceManager / NodeManager --------------------------------------------------------------


class ResourceManager:
    def __init__(self, conf: dict):
        self.conf = conf
        self.lock = threading.Lock()
        self.nodes: dict[str, dict] = {}
        self.expiry = float(conf["yarn.resourcemanager.nm.liveness-monitor.expiry-interval-ms"])
        self.started = common.now_ms()

    def handle(self, request: dict, session: dict) -> dict:
        op = request["op"]
        with self.lock:
            if op in ("register", "heartbeat"):
                node = request["node"]
                if op == "heartbeat" and node["id"] not in self.nodes:
                    return {"ok": False, "reregister": True}
                if op == "register":
                    log.info("registered NodeManager %s", node["id"])
                self.nodes[node["id"]] = dict(node, lastHealthUpdate=common.now_ms())
                return {"ok": True}
            if op == "nodes":
                return {"ok": True, "nodes": self._nodes()}
        return {"ok": False, "error": f"unknown op {op}"}

    def _nodes(self) -> list[dict]:
        cutoff = common.now_ms() - self.expiry
        return [
            dict(n, state="RUNNING" if n["lastHealthUpdate"] >= cutoff else "LOST")
            for n in self.nodes.values()
        ]

    def nodes_json(self, _query: str) -> dict:
        with self.lock:
            return {"nodes": {"node": self._nodes()} if self.nodes else None}

    def info_json(self, _query: str) -> dict:
        return {
            "clusterInfo": {
                "state": "STARTED",
                "haState": "ACTIVE",
                "startedOn": self.started,
                "resourceManagerVersion": "3.3.6-standin",
            }
        }

    def run(self, notifier: common.Notifier) -> None:
        client = common.split_address(self.conf["yarn.resourcemanager.address"], 8032)
        tracker = common.split_address(
            self.conf["yarn.resourcemanager.resource-tracker.address"], 8031
        )
        web = common.split_address(self.conf["yarn.resourcemanager.webapp.address"], 8088)
        routes = {
            "/ws/v1/cluster/nodes": self.nodes_json,
            "/ws/v1/cluster/info": self.info_json,
            "/ws/v1/cluster": self.info_json,
            "/": _page("ResourceManager"),
        }
        servers = [
            common.line_server("ResourceManager client", client, self.handle),
            common.line_server("ResourceManager resource tracker", tracker, self.handle),
            common.http_server("ResourceManager web", web, routes),
        ]
        common.serve_until_stopped(servers, notifier)


class NodeManager:
    def __init__(self, conf: dict):
        self.conf = conf

    def run(self, notifier: common.Notifier) -> None:
        rm = common.split_address(self.conf["yarn.resourcemanager.resource-tracker.address"], 8031)
        address = common.split_address(self.conf["yarn.nodemanager.address"], 0)
        web = common.split_address(self.conf["yarn.nodemanager.webapp.address"], 8042)
        ipc = common.raw_server("NodeManager", address, common.Hold)
        port = ipc.server_address[1]
        node = {
            "id": f"{address[0]}:{port}",
            "nodeHostName": address[0],
            "nodeHTTPAddress": f"{web[0]}:{web[1]}",
            "totalResource": {
                "memory": int(self.conf["yarn.nodemanager.resource.memory-mb"]),
                "vCores": int(self.conf["yarn.nodemanager.resource.cpu-vcores"]),
            },
        }
        info = {"nodeInfo": {"id": node["id"], "nodeHostName": address[0], "healthStatus": "OK"}}
        servers = [
            ipc,
            common.http_server("NodeManager web", web, {"/ws/v1/node": lambda q: info}),
        ]
        stopping = threading.Event()
        threading.Thread(
            target=heartbeat_loop,
            args=("ResourceManager", rm, node, 1.0, stopping, _source(address[0])),
            daemon=True,
        ).start()
        common.serve_until_stopped(servers, notifier, on_stop=stopping.set)


MAKERS = {
    "namenode": NameNode,
    "datanode": DataNode,
    "resourcemanager": ResourceManager,
    "nodemanager": NodeManager,
}


# --- command line ------------------------------------------------------------------------------


def daemon_command(env: Env, mode: str, daemon: str) -> int:
    pidfile = env.pidfile(daemon)
    if mode == "status":
        pid = common.read_pid(pidfile)
        if pid is None and not pidfile.exists():
            return 3
        return 0 if common.pid_alive(pid) and _is_daemon(pid, daemon) else 1
    if mode == "stop":
        pid = common.read_pid(pidfile)
        if pid is None:
            return 0
        if common.pid_alive(pid) and common.stop_pid(pid, env.stop_timeout):
            print(
                f"WARNING: {daemon} did not stop gracefully after {env.stop_timeout:g} seconds: "
                "Trying to kill with kill -9",
                file=sys.stderr,
            )
        if common.read_pid(pidfile) == pid:
            pidfile.unlink(missing_ok=True)
        return 0
    pid = common.running_pid(pidfile)
    if pid is not None and _is_daemon(pid, daemon):
        print(f"{daemon} is running as process {pid}.  Stop it first.", file=sys.stderr)
        return 1
    pidfile.unlink(missing_ok=True)
    for directory in (env.pid_dir, env.log_dir):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"ERROR: Unable to create {directory}: {exc.strerror}", file=sys.stderr)
            return 1
    try:
        conf = env.conf()
    except StartError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    instance = MAKERS[daemon](conf)

    def run(notifier):
        common.setup_logging(env.logfile(daemon, "log"))
        log.info("STARTUP_MSG: Starting %s (stand-in), conf %s", daemon, env.conf_dir)
        instance.run(notifier)

    return common.spawn(run, pidfile=pidfile, outfile=env.logfile(daemon, "out"))


def _is_daemon(pid: int, daemon: str) -> bool:
    """Like Hadoop's check for ``-Dproc_<daemon>``: the pid is that daemon, not a reused pid."""
    try:
        return daemon.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def dfsadmin(env: Env, args: list[str]) -> int:
    conf = env.conf()
    try:
        nn = namenode_rpc(conf)
    except StartError as exc:
        print(f"dfsadmin: {exc}", file=sys.stderr)
        return 1
    if args[:1] == ["-safemode"] and len(args) >= 2:
        action = args[1]
        if action not in ("get", "enter", "leave", "wait", "forceExit"):
            print("Usage: hdfs dfsadmin [-safemode enter | leave | get | wait]", file=sys.stderr)
            return 1
        action = "leave" if action == "forceExit" else action
        try:
            while True:
                reply = common.call_once(nn, {"op": "safemode", "action": action})
                if action != "wait" or not reply["safemode"]:
                    break
                time.sleep(0.5)
        except OSError as exc:
            print(f"safemode: Call From {socket.gethostname()} to {nn[0]}:{nn[1]} failed on "
                  f"connection exception: {exc}", file=sys.stderr)
            return 1
        print(f"Safe mode is {'ON' if reply['safemode'] else 'OFF'}")
        return 0
    if args[:1] == ["-report"]:
        try:
            reply = common.call_once(nn, {"op": "report"})
        except OSError as exc:
            print(f"report: {exc}", file=sys.stderr)
            return 1
        if reply["safemode"]:
            print("Safe mode is ON")
        print(f"Live datanodes ({len(reply['live'])}):")
        for node in reply["live"]:
            print(f"\nName: {node['xferaddr']}\nHostname: {node['xferaddr'].split(':')[0]}")
        return 0
    print("Usage: hdfs dfsadmin [-safemode enter | leave | get | wait] [-report]", file=sys.stderr)
    return 1


def yarn_node(env: Env, args: list[str]) -> int:
    conf = env.conf()
    rm = common.split_address(conf["yarn.resourcemanager.address"], 8032)
    try:
        nodes = common.call_once(rm, {"op": "nodes"})["nodes"]
    except OSError as exc:
        print(f"Failed to connect to ResourceManager at {rm[0]}:{rm[1]}: {exc}", file=sys.stderr)
        return 1
    running = [n for n in nodes if n["state"] == "RUNNING" or "-all" in args]
    print(f"Total Nodes:{len(running)}")
    print("         Node-Id\t     Node-State\tNode-Http-Address\tNumber-of-Running-Containers")
    for n in running:
        print(f"{n['id']}\t{n['state']}\t{n['nodeHTTPAddress']}\t0")
    return 0


USAGE = "Usage: {cmd} [--config confdir] [--daemon (start|status|stop)] SUBCOMMAND [OPTIONS]"


def main(argv: list[str]) -> int:
    home, command, args = Path(argv[0]), argv[1], list(argv[2:])
    conf_dir = None
    mode = None
    while args and args[0].startswith("--"):
        option = args.pop(0)
        if option == "--config" and args:
            conf_dir = args.pop(0)
        elif option == "--daemon" and args:
            mode = args.pop(0)
        elif option in ("--loglevel", "--hosts", "--workers", "--hostnames") and args:
            args.pop(0)
        else:
            print(USAGE.format(cmd=command), file=sys.stderr)
            return 1
    env = Env(home, conf_dir)
    if not args:
        print(USAGE.format(cmd=command), file=sys.stderr)
        return 1
    sub = args.pop(0)
    if sub in DAEMONS[command]:
        if sub == "namenode" and args[:1] == ["-format"]:
            try:
                return format_namenode(env.conf(), args)
            except StartError as exc:
                print(f"ERROR: {exc}", file=sys.stderr)
                return 1
        if mode is None:  # foreground, like running the daemon without --daemon
            instance = MAKERS[sub](env.conf())
            try:
                instance.run(common.Notifier(None))
            except StartError as exc:
                print(f"ERROR: {exc}", file=sys.stderr)
                return 1
            return 0
        if mode not in ("start", "stop", "status"):
            print(USAGE.format(cmd=command), file=sys.stderr)
            return 1
        return daemon_command(env, mode, sub)
    if command == "hdfs" and sub == "dfsadmin":
        return dfsadmin(env, args)
    if command == "yarn" and sub == "node":
        return yarn_node(env, args)
    if sub == "version":
        print("Hadoop 3.3.6 (stand-in)")
        return 0
    print(f"ERROR: {sub} is not COMMAND nor fully qualified CLASSNAME.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
