"""Stand-in for an Apache Kafka broker: ``kafka-server-start.sh``, ``kafka-storage.sh``,
``kafka-server-stop.sh`` (the client tools are in ``kafka_tools``).

Reads ``server.properties`` (``listeners``, ``advertised.listeners``, ``log.dirs``,
``zookeeper.connect``, ``process.roles``, ``node.id``/``broker.id``,
``controller.quorum.voters``), locks its log dirs, refuses an unformatted KRaft log dir. In
ZooKeeper mode it opens a real ZooKeeper session first, failing when ZooKeeper does not answer,
and registers as the real broker does (an ephemeral ``/brokers/ids/<id>`` holding its
endpoint); in KRaft mode it registers with the controller (the broker,controller node) and
keeps the connection. The live brokers are those registered.

The client listener speaks JSON lines (not Kafka's wire protocol): topics are created with
their partitions' replicas on live brokers; a message produced goes to the partition's leader,
which stores it in its log dir and replicates it to the followers; a consumer fetches it from
the leader. Nothing is shared between brokers but their sockets.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import socket
import struct
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
    def __init__(self, props: dict, config_dir: Path | None = None):
        self.props = props
        self.config_dir = config_dir
        self.locks: list = []
        self.stopping = threading.Event()
        self.registry = None  # ZooKeeperRegistry or ControllerRegistry/ControllerClient
        self.partitions: Partitions | None = None

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

    def endpoint(self) -> dict:
        """The broker's PLAINTEXT endpoint as clients and other brokers reach it."""
        for name, host, port in advertised(self.props):
            if name not in controller_listeners(self.props):
                return {"id": int(self.node_id()), "host": host, "port": port}
        raise StartError("No advertised listener for clients in listeners")

    def drops_messages(self) -> bool:
        return self.config_dir is not None and (self.config_dir / DROPS_MESSAGES).exists()

    def run(self, notifier: common.Notifier) -> None:
        self.check_config()
        node_id = self.node_id()
        bound = listeners(self.props)
        self.lock_dirs(node_id)
        self.partitions = Partitions(log_dirs(self.props)[0])
        roles = self.props.get("process.roles", "")
        if not kraft(self.props):
            self.registry = ZooKeeperRegistry(self.props, self.stopping)
            self.registry.register(self.endpoint())
        elif "controller" in roles:
            self.registry = ControllerRegistry()
            if "broker" in roles:
                self.registry.add(self.endpoint(), None)
        else:
            self.registry = ControllerClient(self.props, self.stopping)
        servers = []
        for name, host, port in bound:
            if name in controller_listeners(self.props):
                servers.append(common.line_server(f"Kafka listener {name}", (host, port),
                                                  self.registry.handle,
                                                  on_close=self.registry.drop))
            else:
                servers.append(common.line_server(f"Kafka listener {name}", (host, port),
                                                  self.handle))
        if isinstance(self.registry, ControllerClient):
            threading.Thread(target=self.registry.follow, args=(self.endpoint(),),
                             daemon=True).start()
        log.info("[KafkaServer id=%s] started (kafka.server.KafkaServer)", node_id)
        common.serve_until_stopped(servers, notifier, on_stop=self.stop)

    def stop(self) -> None:
        self.stopping.set()
        if isinstance(self.registry, ZooKeeperRegistry):
            self.registry.close()  # a controlled shutdown: the registration goes at once

    # --- the client listener: cluster metadata, topics, produce and fetch ---------------

    def handle(self, request: dict, _session: dict) -> dict:
        try:
            return self.dispatch(request)
        except (OSError, ConnectionError) as exc:  # another broker or the registry is gone
            return {"ok": False, "error": "NetworkException", "message": str(exc)}

    def dispatch(self, request: dict) -> dict:
        op = request["op"]
        problem = topic_name_problem(request["topic"]) if "topic" in request else None
        if problem:  # a topic names a directory of the log dir: nothing else
            return {"ok": False, "error": "InvalidTopicException", "message": problem}
        if op == "brokers":
            return {"ok": True, "brokers": self.registry.brokers()}
        if op == "topics":
            return {"ok": True, "topics": self.topics()}
        if op == "create_topic":
            return self.create_topic(request)
        if op == "delete_topic":
            return self.delete_topic(request["topic"])
        if op == "local_partitions":
            return {"ok": True, "partitions": self.partitions.all()}
        if op == "make_replica":
            self.partitions.create(request["topic"], int(request["partition"]),
                                   [int(r) for r in request["replicas"]])
            return {"ok": True}
        if op == "drop_replicas":
            return {"ok": True, "dropped": self.partitions.drop(request["topic"])}
        if op in ("produce", "replicate"):
            return self.store(request)
        if op == "fetch":
            return self.fetch(request)
        return {"ok": False, "error": f"unknown op {op}"}

    def call(self, broker: dict, request: dict) -> dict:
        """A request to another live broker (or to this one, in process)."""
        if broker["id"] == int(self.node_id()):
            return self.handle(request, {})
        return common.call_once((broker["host"], broker["port"]), request, timeout=10)

    def topics(self) -> dict:
        """topic -> partition -> {leader, replicas, isr}: what the live brokers hold, the
        leader's view first (it keeps the in-sync replicas)."""
        found: dict = {}
        for broker in self.registry.brokers():
            try:
                held = self.call(broker, {"op": "local_partitions"})["partitions"]
            except (OSError, ValueError, KeyError) as exc:
                log.warning("cannot list the partitions of broker %s: %s", broker["id"], exc)
                continue
            for part in held:
                partitions = found.setdefault(part["topic"], {})
                key = str(part["partition"])
                if key not in partitions or part["leader"] == broker["id"]:
                    partitions[key] = {k: part[k] for k in ("leader", "replicas", "isr")}
        return found

    def create_topic(self, request: dict) -> dict:
        topic = request["topic"]
        if topic in self.topics():
            return {"ok": False, "error": "TopicExistsException",
                    "message": f"Topic '{topic}' already exists."}
        partitions = int(request.get("partitions") or self.props.get("num.partitions", "1"))
        factor = int(request.get("replication_factor")
                     or self.props.get("default.replication.factor", "1"))
        if partitions < 1:
            return {"ok": False, "error": "InvalidPartitionsException",
                    "message": "Number of partitions must be larger than 0."}
        if factor < 1:
            return {"ok": False, "error": "InvalidReplicationFactorException",
                    "message": "Replication factor must be larger than 0."}
        brokers = self.registry.brokers()
        if factor > len(brokers):
            return {"ok": False, "error": "InvalidReplicationFactorException",
                    "message": f"Replication factor: {factor} larger than available brokers: "
                               f"{len(brokers)}."}
        # Round robin over the live brokers by id, as Kafka assigns replicas; the real one
        # starts at a random broker, this one at the first (so a test knows the leader).
        for partition in range(partitions):
            replicas = [brokers[(partition + i) % len(brokers)]["id"] for i in range(factor)]
            for broker in brokers:
                if broker["id"] in replicas:
                    reply = self.call(broker, {"op": "make_replica", "topic": topic,
                                               "partition": partition, "replicas": replicas})
                    if not reply.get("ok"):
                        return reply
        log.info("Created topic %s with %s partitions, replication factor %s", topic,
                 partitions, factor)
        return {"ok": True}

    def delete_topic(self, topic: str) -> dict:
        if topic not in self.topics():
            return {"ok": False, "error": "UnknownTopicOrPartitionException",
                    "message": f"Topic '{topic}' does not exist as expected"}
        for broker in self.registry.brokers():
            with contextlib.suppress(OSError, ValueError):
                self.call(broker, {"op": "drop_replicas", "topic": topic})
        log.info("Deleted topic %s", topic)
        return {"ok": True}

    def store(self, request: dict) -> dict:
        """produce (on the leader, which replicates to the followers) or replicate (on a
        follower): the records are appended to the partition's log, or dropped by a broker
        with the fault, which acknowledges them all the same."""
        topic, partition = request["topic"], int(request["partition"])
        state = self.partitions.state(topic, partition)
        me = int(self.node_id())
        if state is None or (request["op"] == "produce" and state["leader"] != me):
            return {"ok": False, "error": "NOT_LEADER_OR_FOLLOWER",
                    "message": f"This server is not the leader for {topic}-{partition}"}
        records = list(request["records"])
        if self.drops_messages():
            log.error("dropping %s records of %s-%s (STANDIN_FAULT_DROPS_MESSAGES)",
                      len(records), topic, partition)
            return {"ok": True, "base_offset": state["end_offset"]}
        base = self.partitions.append(topic, partition, records)
        if request["op"] == "produce":
            self.replicate(topic, partition, state, records, me)
        return {"ok": True, "base_offset": base}

    def replicate(self, topic: str, partition: int, state: dict, records: list, me: int):
        """acks=all: every in-sync follower stores the records before the producer hears
        back; one that cannot is no longer in sync (the leader's view, kept with the log)."""
        live = {b["id"]: b for b in self.registry.brokers()}
        isr = [me]
        for follower in state["replicas"]:
            if follower == me or follower not in state["isr"]:
                continue
            try:
                reply = self.call(live[follower], {"op": "replicate", "topic": topic,
                                                   "partition": partition, "records": records})
                if reply.get("ok"):
                    isr.append(follower)
                    continue
                log.warning("follower %s refused %s-%s: %s", follower, topic, partition, reply)
            except (KeyError, OSError, ValueError) as exc:
                log.warning("follower %s of %s-%s unreachable: %s", follower, topic,
                            partition, exc)
        if sorted(isr) != sorted(state["isr"]):
            log.info("Shrinking ISR of %s-%s from %s to %s", topic, partition, state["isr"], isr)
            self.partitions.set_isr(topic, partition, isr)

    def fetch(self, request: dict) -> dict:
        topic, partition = request["topic"], int(request["partition"])
        state = self.partitions.state(topic, partition)
        if state is None or state["leader"] != int(self.node_id()):
            return {"ok": False, "error": "NOT_LEADER_OR_FOLLOWER",
                    "message": f"This server is not the leader for {topic}-{partition}"}
        records = self.partitions.read(topic, partition, int(request.get("offset", 0)),
                                       int(request.get("max", 500)))
        return {"ok": True, "records": records, "high_watermark": state["end_offset"]}


# A test's switch: while this file exists in a broker's config dir (next to its
# server.properties), the broker acknowledges every message produced or replicated to it and
# drops it (a disk that lies), so nothing can be consumed from it.
DROPS_MESSAGES = "STANDIN_FAULT_DROPS_MESSAGES"

_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")


def topic_name_problem(topic: str) -> str | None:
    """Kafka's own rules for topic names (which also keep them safe as directory names)."""
    if topic in ("", ".", ".."):
        return "Topic name cannot be \".\" or \"..\""
    if len(topic) > 249:
        return f"Topic name is illegal, it can't be longer than 249 characters, topic name: {topic}"
    if not _LEGAL_TOPIC.match(topic):
        return (f"Topic name \"{topic}\" is illegal, it contains a character other than ASCII "
                "alphanumerics, '.', '_' and '-'")
    return None


def controller_listeners(props: dict) -> set[str]:
    return {n.strip() for n in props.get("controller.listener.names", "").split(",") if n.strip()}


def advertised(props: dict) -> list[tuple[str, str, int]]:
    """``advertised.listeners`` (else ``listeners``, a wildcard host made the host's name)."""
    if props.get("advertised.listeners"):
        return listeners({"listeners": props["advertised.listeners"]})
    return [(name, socket.gethostname() if host in ("0.0.0.0", "") else host, port)
            for name, host, port in listeners(props)]


class Partitions:
    """The partition replicas a broker holds: ``<log dir>/<topic>-<partition>/`` with the
    assignment (``partition.json``: replicas, the leader - the first replica - and the
    in-sync replicas) and the records (``00000000000000000000.log``, one base64 line each)."""

    LOG = "00000000000000000000.log"

    def __init__(self, directory: Path):
        self.directory = directory
        self.lock = threading.Lock()

    def _dir(self, topic: str, partition: int) -> Path:
        return self.directory / f"{topic}-{partition}"

    def _state(self, directory: Path) -> dict | None:
        try:
            state = json.loads((directory / "partition.json").read_text())
        except (OSError, ValueError):
            return None
        with contextlib.suppress(OSError), open(directory / self.LOG, "rb") as handle:
            state["end_offset"] = sum(1 for _ in handle)
        state.setdefault("end_offset", 0)
        return state

    def state(self, topic: str, partition: int) -> dict | None:
        with self.lock:
            return self._state(self._dir(topic, partition))

    def all(self) -> list[dict]:
        with self.lock:
            states = [self._state(d) for d in sorted(self.directory.iterdir()) if d.is_dir()]
        return [s for s in states if s is not None]

    def create(self, topic: str, partition: int, replicas: list[int]) -> None:
        directory = self._dir(topic, partition)
        with self.lock:
            directory.mkdir(parents=True, exist_ok=True)
            (directory / self.LOG).touch()
            (directory / "partition.json").write_text(json.dumps(
                {"topic": topic, "partition": partition, "replicas": replicas,
                 "leader": replicas[0], "isr": replicas}))

    def set_isr(self, topic: str, partition: int, isr: list[int]) -> None:
        path = self._dir(topic, partition) / "partition.json"
        with self.lock:
            state = json.loads(path.read_text())
            state["isr"] = isr
            path.write_text(json.dumps(state))

    def drop(self, topic: str) -> int:
        dropped = 0
        with self.lock:
            for directory in self.directory.glob(f"{topic}-*"):
                state = self._state(directory)
                if state is not None and state["topic"] == topic:
                    for path in directory.iterdir():
                        path.unlink()
                    directory.rmdir()
                    dropped += 1
        return dropped

    def append(self, topic: str, partition: int, records: list[str]) -> int:
        """Append base64 records, synced to disk; return the first one's offset."""
        directory = self._dir(topic, partition)
        with self.lock:
            base = self._state(directory)["end_offset"]
            with open(directory / self.LOG, "a") as handle:
                handle.writelines(f"{record}\n" for record in records)
                handle.flush()
                os.fsync(handle.fileno())
        return base

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[str]:
        with self.lock, open(self._dir(topic, partition) / self.LOG) as handle:
            lines = handle.read().splitlines()
        return lines[offset : offset + limit]


class ZooKeeperRegistry:
    """ZooKeeper mode: the broker's session and its registration, ``/brokers/ids/<id>``
    (ephemeral, with the broker's endpoint as JSON, as the real broker writes it). The live
    brokers are the children of ``/brokers/ids``."""

    def __init__(self, props: dict, stopping: threading.Event):
        connect, _, chroot = props["zookeeper.connect"].partition("/")
        self.connect = connect
        self.root = "/" + chroot.strip("/") if chroot.strip("/") else ""
        self.timeout = float(props.get("zookeeper.connection.timeout.ms", "18000")) / 1000
        self.session_ms = int(props.get("zookeeper.session.timeout.ms", "18000"))
        self.stopping = stopping
        self.session: zookeeper.Session | None = None

    def open(self) -> zookeeper.Session:
        """Open a session with a ZooKeeper of the ensemble, or fail like the real broker."""
        servers = [common.split_address(s, 2181) for s in self.connect.split(",") if s.strip()]
        log.info("Connecting to zookeeper on %s", self.connect)
        deadline = time.monotonic() + self.timeout
        last = None
        while time.monotonic() < deadline:
            for address in servers:
                try:
                    session = zookeeper.Session(address, self.session_ms)
                except (OSError, ConnectionError, ValueError) as exc:
                    last = exc
                    continue
                log.info("Session establishment complete on server %s:%s, session id = 0x%x,"
                         " negotiated timeout = %s", *address, session.id, session.timeout_ms)
                return session
            time.sleep(0.5)
        raise StartError(
            f"Timed out waiting for connection while in state: CONNECTING "
            f"(zookeeper.connect={self.connect}, last error: {last})"
        )

    def register(self, endpoint: dict) -> None:
        self.session = self.open()
        self._register(endpoint)
        threading.Thread(target=self._keep_session, args=(endpoint,), daemon=True).start()

    def _register(self, endpoint: dict) -> None:
        path = f"{self.root}/brokers/ids/{endpoint['id']}"
        address = f"{endpoint['host']}:{endpoint['port']}"
        data = json.dumps({
            "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT"},
            "endpoints": [f"PLAINTEXT://{address}"], "jmx_port": -1, "features": {},
            "host": endpoint["host"], "timestamp": str(common.now_ms()),
            "port": endpoint["port"], "version": 5}).encode()
        try:
            parent = ""
            for part in path.strip("/").split("/")[:-1]:  # the chroot, /brokers, /brokers/ids
                parent += "/" + part
                self.session.create(parent)
            # The registration of a broker that died (not stopped) with this id lasts until
            # ZooKeeper expires its session: wait for that, as long as a session lasts.
            deadline = time.monotonic() + self.session_ms / 1000 + 5
            while (err := self.session.create(path, data, ephemeral=True)) != 0:
                if err != zookeeper.ZNODEEXISTS or time.monotonic() > deadline:
                    raise StartError(f"Error while creating ephemeral at {path}, node already "
                                     f"exists and owner does not match current session "
                                     f"(error {err})")
                time.sleep(0.5)
        except (OSError, ConnectionError, struct.error) as exc:
            raise StartError(f"Registering broker at {path} failed: {exc}") from exc
        log.info("Registered broker %s at path %s with addresses: PLAINTEXT://%s",
                 endpoint["id"], path, address)

    def _keep_session(self, endpoint: dict) -> None:
        """Ping; once the session is lost (ZooKeeper restarted, say), open a new one and
        register again, as the real broker does when its session expires."""
        while not self.stopping.wait(self.session.timeout_ms / 3000.0):
            try:
                self.session.ping()
                continue
            except (OSError, ConnectionError, struct.error):
                log.warning("ZooKeeper session lost; the broker stays up and registers again")
            with contextlib.suppress(OSError):
                self.session.sock.close()
            while not self.stopping.is_set():
                try:
                    self.session = self.open()
                    self._register(endpoint)
                    break
                except (StartError, OSError, ConnectionError, struct.error) as exc:
                    log.warning("cannot register again yet: %s", exc)
                    self.stopping.wait(1.0)

    def brokers(self) -> list[dict]:
        err, ids = self.session.get_children(f"{self.root}/brokers/ids")
        found = []
        for broker_id in ids if err == 0 else []:
            err, data = self.session.get_data(f"{self.root}/brokers/ids/{broker_id}")
            if err == 0:
                info = json.loads(data)
                found.append({"id": int(broker_id), "host": info["host"], "port": info["port"]})
        return sorted(found, key=lambda b: b["id"])

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


class ControllerRegistry:
    """KRaft mode, on the controller: the brokers registered over the controller listener,
    each for as long as its connection lasts (how the controller fences a broker gone)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.registered: dict[int, tuple[dict, object]] = {}  # id -> (endpoint, connection)

    def add(self, endpoint: dict, connection) -> None:
        with self.lock:
            self.registered[int(endpoint["id"])] = (endpoint, connection)

    def handle(self, request: dict, session: dict) -> dict:
        if request["op"] == "register":
            endpoint = request["broker"]
            session["broker"] = int(endpoint["id"])
            self.add(endpoint, id(session))
            log.info("Registered broker %s at %s:%s", endpoint["id"], endpoint["host"],
                     endpoint["port"])
            return {"ok": True}
        if request["op"] == "heartbeat":
            return {"ok": True}
        if request["op"] == "brokers":
            return {"ok": True, "brokers": self.brokers()}
        return {"ok": False, "error": f"unknown op {request['op']}"}

    def drop(self, session: dict) -> None:
        with self.lock:
            broker = session.get("broker")
            if broker in self.registered and self.registered[broker][1] == id(session):
                del self.registered[broker]
                log.info("Fenced broker %s (its connection closed)", broker)

    def brokers(self) -> list[dict]:
        with self.lock:
            return sorted((e for e, _ in self.registered.values()), key=lambda b: b["id"])


class ControllerClient:
    """KRaft mode, on a broker only: registers with the controller and heartbeats every
    ``broker.heartbeat.interval.ms``; asks it for the live brokers."""

    def __init__(self, props: dict, stopping: threading.Event):
        voters = props.get("controller.quorum.voters", "")
        self.controllers = [common.split_address(v.split("@", 1)[1], 9093)
                            for v in voters.split(",") if "@" in v]
        self.interval = float(props.get("broker.heartbeat.interval.ms", "2000")) / 1000
        self.stopping = stopping

    def follow(self, endpoint: dict) -> None:
        while not self.stopping.is_set():
            for address in self.controllers:
                client = None
                try:
                    client = common.LineClient(address, timeout=5)
                    client.call({"op": "register", "broker": endpoint})
                    log.info("registered with the controller at %s:%s", *address)
                    while not self.stopping.wait(self.interval):
                        client.call({"op": "heartbeat"})
                except (OSError, ValueError, ConnectionError):
                    continue
                finally:
                    if client is not None:
                        client.close()
            self.stopping.wait(1.0)

    def brokers(self) -> list[dict]:
        for address in self.controllers:
            try:
                return common.call_once(address, {"op": "brokers"})["brokers"]
            except (OSError, ValueError, KeyError, ConnectionError):
                continue
        raise ConnectionError("no controller of the quorum answers")

    def handle(self, request: dict, _session: dict) -> dict:
        return {"ok": False, "error": "not a controller"}

    def drop(self, _session: dict) -> None:
        pass


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
        broker = Broker(load(path, overrides), Path(path).resolve().parent)
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
