"""Stand-in for Apache ZooKeeper's ``bin/zkServer.sh`` (standalone server).

Reads ``zoo.cfg`` (``clientPort``, ``clientPortAddress``, ``dataDir``,
``4lw.commands.whitelist``), honours ZOOCFGDIR / ZOO_LOG_DIR / ZOOPIDFILE, answers the
four-letter words and accepts real client sessions (connect handshake, pings, close, and
create / getData / getChildren / delete of znodes in the real jute encoding, ephemeral znodes
removed with their session), so a real ZooKeeper client, or the Kafka stand-in registering its
brokers, can use it. ``bin/zkCli.sh -server H:P create|get|ls|delete`` is the client for
znodes; ``Session`` is the client the Kafka stand-in keeps.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import struct
import sys
import threading
import time
from pathlib import Path

from . import common
from .common import StartError, log

VERSION = "3.8.4-standin, built on 2024-01-01 00:00 UTC"
FOUR_LETTER_WORDS = {b"ruok", b"srvr", b"stat", b"mntr", b"conf", b"envi", b"cons", b"isro"}
PING, CLOSE_SESSION = 11, -11
CREATE, DELETE, GET_DATA, GET_CHILDREN = 1, 2, 4, 8
EPHEMERAL = 1  # CreateMode's flag
ZUNIMPLEMENTED = -6
ZNONODE, ZNODEEXISTS, ZNOTEMPTY = -101, -110, -111


class Config:
    def __init__(self, path: Path):
        self.path = path
        props = common.read_properties(path)
        if not props.get("dataDir"):
            raise StartError(f"dataDir is not set in {path}")
        self.data_dir = Path(props["dataDir"])
        try:
            self.port = int(props.get("clientPort", "2181"))
        except ValueError as exc:
            raise StartError(f"clientPort is not a number in {path}") from exc
        self.address = props.get("clientPortAddress", "0.0.0.0")
        whitelist = props.get("4lw.commands.whitelist", "srvr")
        self.whitelist = {w.strip().encode() for w in whitelist.split(",") if w.strip()}
        self.tick = int(props.get("tickTime", "2000"))
        self.props = props

    def allowed(self, word: bytes) -> bool:
        return b"*" in self.whitelist or word in self.whitelist


class Server:
    def __init__(self, config: Config):
        self.config = config
        self.lock = threading.Lock()
        self.sessions: dict[int, tuple] = {}  # session id -> client address
        self.received = 0
        self.sent = 0
        self.next_session = (int(time.time()) & 0xFFFFFF) << 32
        # The data tree, in memory (path -> data, ctime ms, zxid); a create, get and delete
        # through the client protocol really store, read and remove a node.
        self.tree: dict[str, tuple[bytes, int, int]] = {"/": (b"", 0, 0),
                                                        "/zookeeper": (b"", 0, 0)}
        self.zxid = 0
        self.ephemeral_owners: dict[str, int] = {}  # ephemeral znode -> its session id

    def srvr(self, with_clients: bool) -> str:
        with self.lock:
            clients = "".join(f" /{a[0]}:{a[1]}[1](queued=0)\n" for a in self.sessions.values())
            lines = [f"Zookeeper version: {VERSION}"]
            if with_clients:
                lines.append(f"Clients:\n{clients}")
            lines += [
                "Latency min/avg/max: 0/0.0/0",
                f"Received: {self.received}",
                f"Sent: {self.sent}",
                f"Connections: {len(self.sessions)}",
                "Outstanding: 0",
                "Zxid: 0x0",
                "Mode: standalone",
                "Node count: 5",
            ]
        return "\n".join(lines) + "\n"

    def four_letter_word(self, word: bytes) -> str:
        if not self.config.allowed(word):
            return f"{word.decode()} is not executed because it is not in the whitelist.\n"
        if word == b"ruok":
            return "imok"
        if word == b"isro":
            return "rw"
        if word in (b"srvr", b"stat"):
            return self.srvr(word == b"stat")
        if word == b"mntr":
            with self.lock:
                count = len(self.sessions)
            return (
                f"zk_version\t{VERSION}\nzk_server_state\tstandalone\n"
                f"zk_num_alive_connections\t{count}\nzk_znode_count\t5\n"
            )
        if word == b"conf":
            return "".join(f"{k}={v}\n" for k, v in self.config.props.items())
        return f"Environment:\nzookeeper.version={VERSION}\nhost.name={socket.gethostname()}\n"

    def handler(self):
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                sock = self.request
                try:
                    head = _read_exact(sock, 4)
                    if head in FOUR_LETTER_WORDS:
                        sock.sendall(server.four_letter_word(head).encode())
                        return
                    server.session(sock, struct.unpack(">i", head)[0], self.client_address)
                except (OSError, struct.error, ConnectionError):
                    pass

        return Handler

    def session(self, sock, length: int, peer) -> None:
        """The client protocol, enough for a session: connect, pings, close."""
        body = _read_exact(sock, length)
        _proto, _zxid, timeout, _sid = struct.unpack(">iqiq", body[:24])
        timeout = max(2 * self.config.tick, min(timeout, 20 * self.config.tick))
        with self.lock:
            self.next_session += 1
            sid = self.next_session
            self.sessions[sid] = peer
        log.info("established session 0x%x with negotiated timeout %s for %s", sid, timeout, peer)
        try:
            passwd = b"\0" * 16
            reply = struct.pack(">iiqi", 0, timeout, sid, len(passwd)) + passwd + b"\0"
            _send_frame(sock, reply)
            sock.settimeout(timeout / 1000.0)
            while True:
                length = struct.unpack(">i", _read_exact(sock, 4))[0]
                frame = _read_exact(sock, length)
                xid, kind = struct.unpack(">ii", frame[:8])
                body_rest = frame[8:]
                with self.lock:
                    self.received += 1
                    self.sent += 1
                if kind in (PING, CLOSE_SESSION):
                    _send_frame(sock, struct.pack(">iqi", xid, 0, 0))
                    if kind == CLOSE_SESSION:
                        return
                elif kind in (CREATE, DELETE, GET_DATA, GET_CHILDREN):
                    err, payload = self.data_op(kind, body_rest, sid)
                    _send_frame(sock, struct.pack(">iqi", xid, self.zxid, err) + payload)
                else:
                    _send_frame(sock, struct.pack(">iqi", xid, 0, ZUNIMPLEMENTED))
        finally:
            with self.lock:
                self.sessions.pop(sid, None)
                # A session's ephemeral znodes go with it (how ZooKeeper drops a dead broker).
                for path in [p for p, owner in self.ephemeral_owners.items() if owner == sid]:
                    self.tree.pop(path, None)
                    del self.ephemeral_owners[path]
            log.info("closed session 0x%x", sid)

    def data_op(self, kind: int, body: bytes, session: int) -> tuple[int, bytes]:
        """create / delete / getData / getChildren in the jute encoding the real client
        speaks."""
        path, offset = _read_string(body, 0)
        with self.lock:
            if kind == CREATE:
                data, offset = _read_buffer(body, offset)
                acl_count = struct.unpack(">i", body[offset : offset + 4])[0]
                offset += 4
                for _ in range(max(acl_count, 0)):  # perms, then the id's scheme and id
                    _scheme, offset = _read_string(body, offset + 4)
                    _id, offset = _read_string(body, offset)
                flags = struct.unpack(">i", body[offset : offset + 4])[0]
                parent = path.rsplit("/", 1)[0] or "/"
                if path in self.tree:
                    return ZNODEEXISTS, b""
                if parent not in self.tree:
                    return ZNONODE, b""
                self.zxid += 1
                self.tree[path] = (data or b"", common.now_ms(), self.zxid)
                if flags & EPHEMERAL:
                    self.ephemeral_owners[path] = session
                return 0, _string(path)
            if path not in self.tree:
                return ZNONODE, b""
            children = sorted(p.rsplit("/", 1)[1] for p in self.tree
                              if p != "/" and (p.rsplit("/", 1)[0] or "/") == path)
            if kind == DELETE:
                if children:
                    return ZNOTEMPTY, b""
                self.zxid += 1
                del self.tree[path]
                self.ephemeral_owners.pop(path, None)
                return 0, b""
            if kind == GET_CHILDREN:
                return 0, struct.pack(">i", len(children)) + b"".join(map(_string, children))
            data, ctime, czxid = self.tree[path]
            owner = self.ephemeral_owners.get(path, 0)
            stat = struct.pack(">qqqqiiiqiiq", czxid, czxid, ctime, ctime, 0, 0, 0, owner,
                               len(data), len(children), czxid)
            return 0, struct.pack(">i", len(data)) + data + stat

    def run(self, notifier: common.Notifier) -> None:
        (self.config.data_dir / "version-2").mkdir(parents=True, exist_ok=True)
        address = (self.config.address, self.config.port)
        tcp = common.raw_server("ZooKeeper client port", address, self.handler())
        log.info("binding to port %s:%s", *address)
        common.serve_until_stopped([tcp], notifier)


def _read_exact(sock, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">i", len(raw)) + raw


def _read_string(body: bytes, offset: int) -> tuple[str, int]:
    data, offset = _read_buffer(body, offset)
    return (data or b"").decode(), offset


def _read_buffer(body: bytes, offset: int) -> tuple[bytes | None, int]:
    length = struct.unpack(">i", body[offset : offset + 4])[0]
    offset += 4
    if length < 0:
        return None, offset
    return body[offset : offset + length], offset + length


def _send_frame(sock, payload: bytes) -> None:
    sock.sendall(struct.pack(">i", len(payload)) + payload)


def four_letter_word(address: tuple[str, int], word: str, timeout: float = 3.0) -> str:
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(word.encode())
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def open_session(address: tuple[str, int], timeout_ms: int, source: str | None = None):
    """Open a client session (the handshake real clients do); return the socket and id."""
    sock = socket.create_connection(
        address, timeout=timeout_ms / 1000.0, source_address=(source, 0) if source else None
    )
    passwd = b"\0" * 16
    request = struct.pack(">iqiqi", 0, 0, timeout_ms, 0, len(passwd)) + passwd + b"\0"
    _send_frame(sock, request)
    length = struct.unpack(">i", _read_exact(sock, 4))[0]
    _proto, negotiated, sid = struct.unpack(">iiq", _read_exact(sock, length)[:16])
    if sid == 0:
        sock.close()
        raise ConnectionError("session refused")
    return sock, sid, negotiated


class Session:
    """A client session, as a real client keeps one: requests and pings one at a time, each
    answered in turn (watch events, which nothing here sets, are skipped)."""

    def __init__(self, address: tuple[str, int], timeout_ms: int, source: str | None = None):
        self.sock, self.id, self.timeout_ms = open_session(address, timeout_ms, source)
        self.lock = threading.Lock()
        self.xid = 0

    def call(self, kind: int, body: bytes) -> tuple[int, bytes]:
        """Send one request; return its error code and the reply's body."""
        with self.lock:
            self.xid += 1
            xid = -2 if kind == PING else self.xid  # the real client's PING_XID
            _send_frame(self.sock, struct.pack(">ii", xid, kind) + body)
            while True:
                length = struct.unpack(">i", _read_exact(self.sock, 4))[0]
                reply = _read_exact(self.sock, length)
                if struct.unpack(">i", reply[:4])[0] != -1:  # -1: a watch event
                    return struct.unpack(">i", reply[12:16])[0], reply[16:]

    def ping(self) -> None:
        self.call(PING, b"")

    def create(self, path: str, data: bytes = b"", ephemeral: bool = False) -> int:
        body = (_string(path) + struct.pack(">i", len(data)) + data + struct.pack(">i", 1)
                + OPEN_ACL_UNSAFE + struct.pack(">i", EPHEMERAL if ephemeral else 0))
        return self.call(CREATE, body)[0]

    def get_data(self, path: str) -> tuple[int, bytes]:
        err, body = self.call(GET_DATA, _string(path) + b"\0")
        return err, (_read_buffer(body, 0)[0] or b"") if err == 0 else b""

    def get_children(self, path: str) -> tuple[int, list[str]]:
        err, body = self.call(GET_CHILDREN, _string(path) + b"\0")
        if err != 0:
            return err, []
        count, offset, children = struct.unpack(">i", body[:4])[0], 4, []
        for _ in range(count):
            child, offset = _read_string(body, offset)
            children.append(child)
        return 0, children

    def delete(self, path: str) -> int:
        return self.call(DELETE, _string(path) + struct.pack(">i", -1))[0]

    def close(self) -> None:
        """Close the session (its ephemeral znodes go at once), then the connection."""
        with contextlib.suppress(OSError, ConnectionError, struct.error):
            self.call(CLOSE_SESSION, b"")
        with contextlib.suppress(OSError):
            self.sock.close()


# --- zkCli.sh ----------------------------------------------------------------------------------

OPEN_ACL_UNSAFE = struct.pack(">i", 31) + _string("world") + _string("anyone")
CLI_USAGE = ("ZooKeeper -server host:port cmd args\n\tcreate path [data]\n\tget path\n"
             "\tls path\n\tdelete path")


def cli(args: list[str]) -> int:
    """``zkCli.sh -server host:port create|get|ls|delete PATH [DATA]``, one command per run."""
    server = "localhost:2181"
    if args[:1] == ["-server"] and len(args) > 1:
        server, args = args[1], args[2:]
    if not args or args[0] not in ("create", "get", "ls", "delete"):
        print(CLI_USAGE, file=sys.stderr)
        return 1
    command, path = args[0], args[1] if len(args) > 1 else ""
    if not path.startswith("/"):
        print("Path must start with / character", file=sys.stderr)
        return 1
    address = common.split_address(server.split(",")[0], 2181)
    try:
        session = Session(address, 30000)
    except (OSError, ConnectionError, ValueError) as exc:
        print(f"Connecting to {server}\nUnable to connect to {server}: {exc}", file=sys.stderr)
        return 1
    try:
        if command == "create":
            err, out = session.create(path, args[2].encode() if len(args) > 2 else b""), None
        elif command == "delete":
            err, out = session.delete(path), None
        elif command == "ls":
            err, children = session.get_children(path)
            out = "[" + ", ".join(children) + "]"
        else:
            err, data = session.get_data(path)
            out = data.decode(errors="replace")
    except (OSError, ConnectionError, struct.error) as exc:
        print(f"Connection to {server} lost: {exc}", file=sys.stderr)
        return 1
    finally:
        session.close()
    if err == ZNODEEXISTS:
        print(f"Node already exists: {path}", file=sys.stderr)
        return 1
    if err == ZNONODE:
        print(f"Node does not exist: {path}", file=sys.stderr)
        return 1
    if err != 0:
        print(f"{command} {path} failed with error code {err}", file=sys.stderr)
        return 1
    if command == "create":
        # As ZooKeeper's CreateCommand does: the confirmation goes to stderr.
        print(f"Created {path}", file=sys.stderr)
    elif out is not None:
        print(out)
    return 0


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    home, args = Path(argv[0]), list(argv[1:])
    if args[:1] == ["cli"]:
        return cli(args[1:])
    conf_dir = Path(os.environ.get("ZOOCFGDIR") or home / "conf")
    if args[:1] == ["--config"] and len(args) > 1:
        conf_dir = Path(args[1])
        args = args[2:]
    if not args:
        print(f"Usage: {sys.argv[0]} [--config <conf-dir>] {{start|start-foreground|stop|"
              "version|restart|status|print-cmd}", file=sys.stderr)
        return 1
    command = args[0]
    cfg_path = Path(args[1]) if len(args) > 1 else conf_dir / "zoo.cfg"
    if command == "version":
        print(f"Apache ZooKeeper, version {VERSION}")
        return 0
    print(f"Using config: {cfg_path}", file=sys.stderr)
    try:
        config = Config(cfg_path)
    except StartError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    pidfile = Path(os.environ.get("ZOOPIDFILE") or config.data_dir / "zookeeper_server.pid")
    log_dir = Path(os.environ.get("ZOO_LOG_DIR") or home / "logs")
    user = os.environ.get("USER") or "root"
    outfile = log_dir / f"zookeeper-{user}-server-{socket.gethostname()}.out"
    if command == "start":
        print("Starting zookeeper ... ", end="", flush=True)
        pid = common.running_pid(pidfile)
        if pid is not None:
            print(f"already running as process {pid}.")
            return 1
        pidfile.unlink(missing_ok=True)
        server = Server(config)

        def run(notifier):
            common.setup_logging(log_dir / f"zookeeper-{user}-server-{socket.gethostname()}.log")
            server.run(notifier)

        code = common.spawn(run, pidfile=pidfile, outfile=outfile, daemon="zookeeper")
        print("STARTED" if code == 0 else "FAILED TO START")
        return code
    if command == "start-foreground":
        try:
            Server(config).run(common.Notifier(None))
        except StartError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        return 0
    if command == "stop":
        print("Stopping zookeeper ... ", end="", flush=True)
        pid = common.read_pid(pidfile)
        if pid is None:
            print(f"no zookeeper to stop (could not find file {pidfile})")
            return 0
        if common.pid_alive(pid):
            os.kill(pid, 15)
        pidfile.unlink(missing_ok=True)
        print("STOPPED")
        return 0
    if command == "status":
        host = "127.0.0.1" if config.address in ("0.0.0.0", "") else config.address
        print(f"Client port found: {config.port}. Client address: {host}. Client SSL: false.")
        try:
            reply = four_letter_word((host, config.port), "srvr")
        except OSError:
            print("Error contacting service. It is probably not running.")
            return 1
        mode = [line for line in reply.splitlines() if line.startswith("Mode:")]
        if not mode:
            print("Error contacting service. It is probably not running.")
            return 1
        print(mode[0])
        return 0
    print(f"Unknown command {command}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
