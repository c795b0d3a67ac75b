"""Stand-in for an Apache Kafka broker: ``kafka-server-start.sh``, ``kafka-storage.sh``,
``kafka-server-stop.sh``.

Reads ``server.properties`` (``listeners``, ``log.dirs``, ``zookeeper.connect``,
``process.roles``, ``node.id``/``broker.id``, ``controller.quorum.voters``), locks its log
dirs, refuses an unformatted KRaft log dir, and in ZooKeeper mode opens a real ZooKeeper
session first, failing when ZooKeeper does not answer, as the real broker does.
"""

from __future__ import annotations

import base64
import fcntl
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from . import common, zookeeper
from .common import StartError, log

MARKER = "kafka.Kafka"  # on the daemon's command line, as the real broker's main class is


def load(path: str, overrides: list[str]) -> dict[str, str]:
    props = common.read_properties(path)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise StartError(f"Invalid override {item!r}: expected property=value")
        props[key.strip()] = value.strip()
    return props


def log_dirs(props: dict) -> list[Path]:
    value = props.get("log.dirs") or props.get("log.dir") or "/tmp/kafka-logs"
    return [Path(p.strip()) for p in value.split(",") if p.strip()]


def listeners(props: dict) -> list[tuple[str, str, int]]:
    result = []
    for item in (props.get("listeners") or "PLAINTEXT://:9092").split(","):
        name, sep, rest = item.strip().partition("://")
        if not sep:
            raise StartError(f"Unable to parse {item} to a broker endpoint")
        host, port = common.split_address(rest, 9092)
        result.append((name, host or "0.0.0.0", port))
    return result


def kraft(props: dict) -> bool:
    return bool(props.get("process.roles", "").strip())


def read_meta(directory: Path) -> dict | None:
    path = directory / "meta.properties"
    return common.read_properties(path) if path.exists() else None


def valid_cluster_id(value: str) -> bool:
    try:
        raw = base64.urlsafe_b64decode(value + "==")
    except (ValueError, TypeError):
        return False
    return len(value) == 22 and len(raw) == 16


class Broker:
    def __init__(self, props: dict):
        self.props = props
        self.locks: list = []
        self.stopping = threading.Event()

    def node_id(self) -> str:
        key = "node.id" if kraft(self.props) else "broker.id"
        value = self.props.get(key) or self.props.get("broker.id") or self.props.get("node.id")
        if not value:
            if kraft(self.props):
                raise StartError("Missing required configuration `node.id` which has no default")
            return "1001"
        return value

    def check_config(self) -> None:
        if kraft(self.props):
            roles = {r.strip() for r in self.props["process.roles"].split(",")}
            if not roles <= {"broker", "controller"}:
                raise StartError(f"Unknown process role in process.roles: {roles}")
            if not self.props.get("controller.quorum.voters") and not self.props.get(
                "controller.quorum.bootstrap.servers"
            ):
                raise StartError("If using process.roles, controller.quorum.voters must be set")
            if not self.props.get("controller.listener.names"):
                raise StartError("controller.listener.names must contain at least one value")
        elif not self.props.get("zookeeper.connect"):
            raise StartError(
                "Missing required configuration `zookeeper.connect` which has no default value."
            )

    def lock_dirs(self, node_id: str) -> None:
        for directory in log_dirs(self.props):
            directory.mkdir(parents=True, exist_ok=True)
            handle = open(directory / ".lock", "a")  # noqa: SIM115 - held for the life
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.close()
                raise StartError(
                    f"Failed to acquire lock on file .lock in {directory}. A Kafka instance in "
                    "another process or thread is using this directory."
                ) from exc
            self.locks.append(handle)
            meta = read_meta(directory)
            if kraft(self.props):
                if meta is None:
                    raise StartError(
                        f"No `meta.properties` found in {directory} (have you run "
                        "`kafka-storage.sh` to format the directory?)"
                    )
                if meta.get("node.id") != node_id:
                    raise StartError(
                        f"Stored node id {meta.get('node.id')} doesn't match previous node id "
                        f"{node_id}"
                    )
            elif meta is None:
                (directory / "meta.properties").write_text(
                    f"version=0\nbroker.id={node_id}\ncluster.id={_random_id()}\n"
                )

    def connect_zookeeper(self) -> None:
        """Open a session with a ZooKeeper of the ensemble, or fail like the real broker."""
        connect = self.props["zookeeper.connect"].split("/", 1)[0]
        timeout = float(self.props.get("zookeeper.connection.timeout.ms", "18000")) / 1000
        session_ms = int(self.props.get("zookeeper.session.timeout.ms", "18000"))
        servers = [common.split_address(s, 2181) for s in connect.split(",") if s.strip()]
        log.info("Connecting to zookeeper on %s", connect)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for address in servers:
                try:
                    sock, sid, negotiated = zookeeper.open_session(address, session_ms)
                except (OSError, ConnectionError, ValueError) as exc:
                    last = exc
                    continue
                log.info("Session establishment complete on server %s:%s, session id = 0x%x,"
                         " negotiated timeout = %s", *address, sid, negotiated)
                threading.Thread(
                    target=self._keep_session, args=(sock, negotiated), daemon=True
                ).start()
                return
            time.sleep(0.5)
        raise StartError(
            f"Timed out waiting for connection while in state: CONNECTING "
            f"(zookeeper.connect={connect}, last error: {last})"
        )

    def _keep_session(self, sock, negotiated_ms: int) -> None:
        while not self.stopping.wait(negotiated_ms / 3000.0):
            try:
                zookeeper.ping(sock)
            except (OSError, ConnectionError):
                log.warning("ZooKeeper session lost; the broker stays up and keeps its data")
                return

    def follow_controller(self) -> None:
        """A KRaft broker keeps a connection to a controller of the quorum."""
        voters = self.props.get("controller.quorum.voters", "")
        addresses = [common.split_address(v.split("@", 1)[1], 9093) for v in voters.split(",")
                     if "@" in v]
        while not self.stopping.is_set():
            for address in addresses:
                try:
                    with socket.create_connection(address, timeout=3) as sock:
                        log.info("connected to the controller at %s:%s", *address)
                        sock.settimeout(None)
                        while sock.recv(1024):
                            pass
                except OSError:
                    continue
            self.stopping.wait(1.0)

    def run(self, notifier: common.Notifier) -> None:
        self.check_config()
        node_id = self.node_id()
        bound = listeners(self.props)
        self.lock_dirs(node_id)
        if not kraft(self.props):
            self.connect_zookeeper()
        servers = [
            common.raw_server(f"Kafka listener {name}", (host, port), common.Hold)
            for name, host, port in bound
        ]
        roles = self.props.get("process.roles", "")
        if kraft(self.props) and "broker" in roles and "controller" not in roles:
            threading.Thread(target=self.follow_controller, daemon=True).start()
        log.info("[KafkaServer id=%s] started (kafka.server.KafkaServer)", node_id)
        common.serve_until_stopped(servers, notifier, on_stop=self.stopping.set)



def _random_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


# --- command lines ----------------------------------------------------------------------------


def server_start(home: Path, args: list[str]) -> int:
    daemon = args[:1] == ["-daemon"]
    if daemon:
        args = args[1:]
    if not args:
        print("USAGE: kafka-server-start.sh [-daemon] server.properties "
              "[--override property=value]*", file=sys.stderr)
        return 1
    path, rest = args[0], args[1:]
    overrides = [rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--override"]
    log_dir = Path(os.environ.get("LOG_DIR") or home / "logs")
    try:
        broker = Broker(load(path, overrides))
    except StartError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1

    def run(notifier):
        common.setup_logging(log_dir / "server.log")
        log.info("KafkaConfig values: %s (%s)", path, MARKER)
        broker.run(notifier)

    if daemon:  # like kafka-run-class.sh: nohup in the background, no pid file, no waiting
        log_dir.mkdir(parents=True, exist_ok=True)
        return common.spawn(run, pidfile=None, outfile=log_dir / "kafkaServer.out", wait=0,
                            daemon="kafka")
    try:
        broker.run(common.Notifier(None))
    except StartError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


def storage(args: list[str]) -> int:
    if args[:1] == ["random-uuid"]:
        print(_random_id())
        return 0
    if not args or args[0] not in ("format", "info"):
        print("usage: kafka-storage.sh {info,format,random-uuid} ...", file=sys.stderr)
        return 1
    options = {}
    flags = set()
    rest = args[1:]
    i = 0
    while i < len(rest):
        if rest[i] in ("-t", "--cluster-id", "-c", "--config") and i + 1 < len(rest):
            options[rest[i].lstrip("-")[0]] = rest[i + 1]
            i += 2
        else:
            flags.add(rest[i])
            i += 1
    if "c" not in options:
        print("kafka-storage.sh: error: argument --config/-c is required", file=sys.stderr)
        return 1
    try:
        props = common.read_properties(options["c"])
    except StartError as exc:
        print(exc, file=sys.stderr)
        return 1
    dirs = log_dirs(props)
    if props.get("metadata.log.dir"):
        dirs.append(Path(props["metadata.log.dir"]))
    if args[0] == "info":
        for directory in dirs:
            meta = read_meta(directory)
            print(f"Found log directory:\n  {directory}\n" if meta else
                  f"Found problem:\n  {directory} is not formatted.\n")
            if meta:
                print("Found metadata: " + repr(meta))
        return 0
    if not kraft(props):
        print("The kafka configuration file appears to be for a legacy cluster. Formatting is "
              "only supported for clusters in KRaft mode.", file=sys.stderr)
        return 1
    cluster_id = options.get("t")
    if not cluster_id:
        print("kafka-storage.sh: error: argument --cluster-id/-t is required", file=sys.stderr)
        return 1
    if not valid_cluster_id(cluster_id):
        print(f"Cluster ID string {cluster_id} does not appear to be a valid UUID",
              file=sys.stderr)
        return 1
    node_id = props.get("node.id")
    if not node_id:
        print("Missing required configuration `node.id` which has no default", file=sys.stderr)
        return 1
    for directory in dirs:
        if read_meta(directory) is not None:
            if "--ignore-formatted" in flags:
                print(f"All of the log directories are already formatted ({directory}).")
                continue
            print(f"Log directory {directory} is already formatted. Use --ignore-formatted to "
                  "ignore this directory and format the others.", file=sys.stderr)
            return 1
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "meta.properties").write_text(
            f"#\n#{time.ctime()}\nnode.id={node_id}\ndirectory.id={_random_id()}\nversion=1\n"
            f"cluster.id={cluster_id}\n"
        )
        print(f"Formatting metadata directory {directory} with metadata.version 3.7-IV4.")
    return 0


def server_stop(home: Path) -> int:
    """Like the real script: stop every broker of this installation (by command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"lambda_standin.kafka" in argv and str(home).encode() in argv and b"start" in argv:
            pids.append(int(entry.name))
    if not pids:
        print("No kafka server to stop")
        return 1
    for pid in pids:
        os.kill(pid, 15)
    return 0


def main(argv: list[str]) -> int:
    home, command, args = Path(argv[0]), argv[1], argv[2:]
    if command == "start":
        return server_start(home, args)
    if command == "storage":
        return storage(args)
    if command == "stop":
        return server_stop(home)
    print(f"unknown command {command}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
