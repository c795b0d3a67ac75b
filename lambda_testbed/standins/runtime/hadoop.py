"""Stand-in for Apache Hadoop 3's ``bin/hdfs`` and ``bin/yarn``.

Same command lines, config keys, default ports and pid files as the real scripts:
``hdfs --daemon start|stop|status namenode|datanode``, ``hdfs namenode -format``,
``hdfs dfsadmin -safemode get|leave|enter|wait``, ``hdfs dfsadmin -report``,
``hdfs dfs -put|-cat|-rm`` (the bytes really stored on and read from the DataNodes),
``hdfs fsck PATH -files -blocks -locations``,
``yarn --daemon start|stop|status resourcemanager|nodemanager``, ``yarn node -list``.
RPC between the daemons is JSON lines over the real RPC ports instead of Hadoop IPC.
"""

from __future__ import annotations

import base64
import json
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
        # The namespace: path -> {"blocks": [{"id", "len", "locations": [xferaddr]}]}, kept
        # in the name dir like an fsimage, so files outlive a NameNode restart.
        self.image = self.name_dir / "current" / "fsimage.json"
        self.files: dict[str, dict] = {}
        self.replication = int(conf.get("dfs.replication", "3"))

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
            if op in ("create", "complete", "open", "delete"):
                return self.namespace(op, request)
        return {"ok": False, "error": f"unknown op {op}"}

    def namespace(self, op: str, request: dict) -> dict:
        """Files for ``hdfs dfs``: the client streams the data to the DataNodes the NameNode
        names, and the NameNode records the replicas that took it, as in real HDFS."""
        path = request["path"]
        if op == "create":
            if self.safemode():
                return {"ok": False, "error": f"Cannot create file{path}. Name node is in "
                                              "safe mode."}
            if path in self.files and not request.get("overwrite"):
                return {"ok": False, "error": f"`{path}': File exists"}
            targets = [d["xferaddr"] for d in self.live()]
            wanted = int(request.get("replication") or self.replication)
            return {"ok": True, "block": f"blk_{uuid.uuid4().int % 2**62}",
                    "targets": targets[: max(1, wanted)]}
        if op == "complete":
            if not request["locations"]:
                return {"ok": False, "error": f"File {path} could only be written to 0 of the "
                                              "1 minReplication nodes."}
            self.files[path] = {"blocks": [{"id": request["block"], "len": request["len"],
                                            "locations": request["locations"]}],
                                "replication": request["replication"]}
            self.save()
            return {"ok": True}
        entry = self.files.get(path)
        if entry is None:
            return {"ok": False, "error": f"`{path}': No such file or directory"}
        if op == "delete":
            del self.files[path]
            self.save()
        return {"ok": True, "file": entry}

    def load(self) -> None:
        if self.image.exists():
            self.files = json.loads(self.image.read_text())

    def save(self) -> None:
        tmp = self.image.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.files))
        tmp.replace(self.image)

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
        self.load()
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


# A test's switch: while this file exists in a DataNode's data dir, its volume refuses every
# write (a failed disk), so no replica lands there.
CANNOT_STORE = "STANDIN_FAULT_CANNOT_STORE"


class DataNode:
    def __init__(self, conf: dict):
        self.conf = conf
        self.blocks = common.local_path(conf["dfs.datanode.data.dir"]) / "current" / "blocks"

    def transfer(self, request: dict, session: dict) -> dict:
        """Block writes and reads on the data transfer port; the blocks are files here."""
        op, block = request["op"], request["block"]
        if not block.startswith("blk_") or not block[4:].isdigit():
            return {"ok": False, "error": f"bad block id {block}"}
        path = self.blocks / block
        if op == "write":
            if (self.blocks.parent.parent / CANNOT_STORE).exists():
                log.error("volume %s failed: cannot store %s", self.blocks, block)
                return {"ok": False, "error": f"DiskOutOfSpaceException: cannot write {block} "
                                              f"to volume {self.blocks.parent.parent}"}
            path.parent.mkdir(parents=True, exist_ok=True)
            data = base64.b64decode(request["data"])
            with open(path.with_suffix(".tmp"), "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            path.with_suffix(".tmp").replace(path)
            log.info("Received %s size %s", block, len(data))
            return {"ok": True}
        if op == "read":
            try:
                return {"ok": True, "data": base64.b64encode(path.read_bytes()).decode()}
            except OSError:
                return {"ok": False, "error": f"Replica not found for {block}"}
        if op == "delete":
            path.unlink(missing_ok=True)
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op}"}

    def run(self, notifier: common.Notifier) -> None:
        data_dir = common.local_path(self.conf["dfs.datanode.data.dir"])
        data_dir.mkdir(parents=True, exist_ok=True)
        nn = namenode_rpc(self.conf)
        xfer = common.split_address(self.conf["dfs.datanode.address"], 9866)
        http = common.split_address(self.conf["dfs.datanode.http.address"], 9864)
        ipc = common.split_address(self.conf["dfs.datanode.ipc.address"], 9867)
        servers = [
            common.line_server("DataNode data transfer", xfer, self.transfer),
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

    return common.spawn(run, pidfile=pidfile, outfile=env.logfile(daemon, "out"), daemon=daemon)


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


def _generic_options(conf: dict, args: list[str]) -> list[str]:
    """``-D key=value`` (Hadoop's GenericOptionsParser) into ``conf``; the rest returned."""
    rest = []
    while args:
        arg = args.pop(0)
        if arg == "-D" and args:
            key, _, value = args.pop(0).partition("=")
            conf[key] = value
        elif arg.startswith("-D") and "=" in arg:
            key, _, value = arg[2:].partition("=")
            conf[key] = value
        else:
            rest.append(arg)
    return rest


def _nn_call(nn, request: dict) -> dict:
    return common.call_once(nn, request, timeout=10)


def dfs(env: Env, args: list[str]) -> int:
    """``hdfs dfs -put [-f] SRC DST``, ``-cat PATH``, ``-rm [-f] [-skipTrash] PATH``: the data
    goes to and comes from the DataNodes the NameNode names, never the NameNode itself."""
    conf = env.conf()
    args = _generic_options(conf, args)
    if not args:
        print("Usage: hadoop fs [generic options] [-cat PATH] [-put [-f] SRC DST] [-rm PATH]",
              file=sys.stderr)
        return 1
    command, args = args[0], args[1:]
    flags = {a for a in args if a in ("-f", "-skipTrash", "-p", "-d")}
    paths = [a for a in args if a not in flags]
    name = command.lstrip("-")
    try:
        nn = namenode_rpc(conf)
        if command == "-put" and len(paths) == 2:
            src, dst = paths
            data = sys.stdin.buffer.read() if src == "-" else Path(src).read_bytes()
            return _put(nn, conf, dst, data, "-f" in flags)
        if command == "-cat" and paths:
            for path in paths:
                reply = _nn_call(nn, {"op": "open", "path": path})
                if not reply["ok"]:
                    print(f"cat: {reply['error']}", file=sys.stderr)
                    return 1
                sys.stdout.buffer.write(_read_block(reply["file"]["blocks"][0]))
            sys.stdout.flush()
            return 0
        if command == "-rm" and paths:
            code = 0
            for path in paths:
                reply = _nn_call(nn, {"op": "delete", "path": path})
                if not reply["ok"]:
                    if "-f" not in flags:
                        print(f"rm: {reply['error']}", file=sys.stderr)
                        code = 1
                    continue
                for block in reply["file"]["blocks"]:
                    for location in block["locations"]:
                        try:  # the real NameNode tells the DataNodes in a heartbeat reply
                            common.call_once(common.split_address(location, 9866),
                                             {"op": "delete", "block": block["id"]})
                        except OSError as exc:
                            log.warning("cannot delete %s on %s: %s", block["id"], location, exc)
                print(f"Deleted {path}")
            return code
    except (OSError, ConnectionError) as exc:
        print(f"{name}: Call From {socket.gethostname()} to the NameNode failed on connection "
              f"exception: {exc}", file=sys.stderr)
        return 1
    except StartError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: Unknown command or wrong arguments", file=sys.stderr)
    return 1


def _put(nn, conf: dict, dst: str, data: bytes, overwrite: bool) -> int:
    replication = int(conf.get("dfs.replication", "3"))
    reply = _nn_call(nn, {"op": "create", "path": dst, "overwrite": overwrite,
                          "replication": replication})
    if not reply["ok"]:
        print(f"put: {reply['error']}", file=sys.stderr)
        return 1
    stored = []
    encoded = base64.b64encode(data).decode()
    for target in reply["targets"]:  # a replica that fails is left out, as a pipeline does
        try:
            answer = common.call_once(common.split_address(target, 9866),
                                      {"op": "write", "block": reply["block"], "data": encoded})
        except (OSError, ConnectionError) as exc:
            answer = {"ok": False, "error": str(exc)}
        if answer.get("ok"):
            stored.append(target)
        else:
            print(f"WARN hdfs.DataStreamer: Error Recovery for {reply['block']} in pipeline: "
                  f"bad datanode {target}: {answer.get('error')}", file=sys.stderr)
    done = _nn_call(nn, {"op": "complete", "path": dst, "block": reply["block"],
                         "len": len(data), "locations": stored, "replication": replication})
    if not done["ok"]:
        print(f"put: {done['error']}", file=sys.stderr)
        return 1
    return 0


def _read_block(block: dict) -> bytes:
    """From the first replica that has it, as the client does (it tries the next on error)."""
    errors = []
    for location in block["locations"]:
        try:
            reply = common.call_once(common.split_address(location, 9866),
                                     {"op": "read", "block": block["id"]})
        except (OSError, ConnectionError) as exc:
            errors.append(f"{location}: {exc}")
            continue
        if reply.get("ok"):
            return base64.b64decode(reply["data"])
        errors.append(f"{location}: {reply.get('error')}")
    raise StartError(f"Could not obtain block: {block['id']} ({'; '.join(errors)})")


def fsck(env: Env, args: list[str]) -> int:
    """``hdfs fsck PATH -files -blocks -locations`` for one file: its block's live replicas."""
    conf = env.conf()
    paths = [a for a in args if not a.startswith("-")]
    if len(paths) != 1:
        print("Usage: hdfs fsck <path> [-files [-blocks [-locations]]]", file=sys.stderr)
        return 1
    path = paths[0]
    try:
        nn = namenode_rpc(conf)
        reply = _nn_call(nn, {"op": "open", "path": path})
        live = {d["xferaddr"] for d in _nn_call(nn, {"op": "report"})["live"]}
    except (OSError, StartError) as exc:
        print(f"fsck: {exc}", file=sys.stderr)
        return 1
    if not reply["ok"]:
        print(f"FSCK started for path {path}\nFSCK ended\n\nPath '{path}' does not exist")
        return 1
    entry = reply["file"]
    target = entry["replication"]
    print(f"FSCK started by {env.ident} for path {path}")
    for index, block in enumerate(entry["blocks"]):
        replicas = [loc for loc in block["locations"] if loc in live]
        print(f"{path} {block['len']} bytes, replicated: replication={target}, 1 block(s):  OK")
        if len(replicas) < target:
            print(f"{path}:  Under replicated {block['id']}. Target Replicas is {target} but "
                  f"found {len(replicas)} live replica(s).")
        storages = ", ".join(f"DatanodeInfoWithStorage[{loc},DS-standin,DISK]"
                             for loc in replicas)
        print(f"{index}. {block['id']} len={block['len']} Live_repl={len(replicas)}  "
              f"[{storages}]")
    print(f"\nThe filesystem under path '{path}' is {'HEALTHY' if replicas else 'CORRUPT'}")
    return 0 if replicas else 1


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
    if command == "hdfs" and sub == "dfs":
        return dfs(env, args)
    if command == "hdfs" and sub == "fsck":
        return fsck(env, args)
    if command == "yarn" and sub == "node":
        return yarn_node(env, args)
    if sub == "version":
        print("Hadoop 3.3.6 (stand-in)")
        return 0
    print(f"ERROR: {sub} is not COMMAND nor fully qualified CLASSNAME.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
