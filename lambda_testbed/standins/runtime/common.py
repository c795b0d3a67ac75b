"""What every stand-in daemon shares: daemonizing, pid files, servers, config files.

Standard library only: this package is copied into each installed distribution and run
with ``python -S``, so a daemon costs a few megabytes and never imports the rest of ``api``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import socketserver
import sys
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("standin")


class StartError(Exception):
    """The daemon cannot start (bad config, port in use, missing state)."""


class Stop(Exception):
    """Raised in the main thread by the SIGTERM handler."""


# --- pid files ---------------------------------------------------------------------------


def read_pid(pidfile: str | Path) -> int | None:
    try:
        text = Path(pidfile).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` runs and is not a zombie waiting for its parent."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def running_pid(pidfile: str | Path) -> int | None:
    pid = read_pid(pidfile)
    return pid if pid_alive(pid) else None


def stop_pid(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. True when it was forced."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return False
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


# --- daemonizing ---------------------------------------------------------------------------

# A test's hold on daemon starts: while the file this names exists, a daemon waits, up to
# HOLD_MAX seconds, before it comes up, and the play waits for its port meanwhile. A play
# is held in the middle, to be cut there, with no sleep in the roles.
HOLD_ENV = "LAMBDA_STANDIN_HOLD"
HOLD_MAX = 300.0


def hold_start() -> None:
    path = os.environ.get(HOLD_ENV)
    if not path:
        return
    deadline = time.monotonic() + HOLD_MAX
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.1)


# Start-to-ready delays: a real daemon runs (its pid file is written) for a while before it
# listens, as a JVM starts, loads its state and registers; the stand-ins wait as long, so
# the demo and the benchmark spend the time a real start spends waiting. Seconds, for a
# small cluster; where each comes from is in lambda_testbed/standins/__init__.py.
READY_DELAYS = {
    "namenode": 4.0,
    "datanode": 3.0,
    "resourcemanager": 4.0,
    "nodemanager": 3.0,
    "zookeeper": 1.0,
    "kafka": 4.0,
    "spark-master": 3.0,
    "spark-worker": 3.0,
}
# A factor on every delay (the installed wrappers set it; 0: ready at once, as tests want),
# and one daemon's own delay in seconds (LAMBDA_STANDIN_READY_NAMENODE=2.5), which wins.
LATENCY_ENV = "LAMBDA_STANDIN_LATENCY"
READY_ENV_PREFIX = "LAMBDA_STANDIN_READY_"


def _seconds(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return max(value, 0.0) if value is not None else None


def ready_delay(daemon: str) -> float:
    """How long ``daemon`` runs before it listens (see ``READY_DELAYS``)."""
    own = _seconds(os.environ.get(READY_ENV_PREFIX + daemon.upper().replace("-", "_")))
    if own is not None:
        return own
    factor = _seconds(os.environ.get(LATENCY_ENV))
    return READY_DELAYS.get(daemon, 0.0) * (1.0 if factor is None else factor)


class Notifier:
    """Tells the launcher (still waiting on a pipe) whether the daemon came up."""

    def __init__(self, fd: int | None):
        self._fd = fd

    def _send(self, message: str) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self._fd, message.encode()[:4000])
            os.close(self._fd)
        self._fd = None

    def ready(self) -> None:
        self._send("ok\n")

    def fail(self, message: str) -> None:
        self._send(f"fail {message}\n")


def _redirect_stdio(outfile: Path) -> None:
    outfile.parent.mkdir(parents=True, exist_ok=True)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(outfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def spawn(run, *, pidfile: Path | None, outfile: Path, wait: float = 10.0,
          daemon: str | None = None) -> int:
    """Run ``run(notifier)`` in a detached daemon (double fork); return the launcher's status.

    ``daemon`` names the delay (``ready_delay``) the daemon runs for before ``run``: it
    is up, with its pid file, but does not listen yet.

    The launcher returns once the daemon said ready or failed, or after ``wait`` seconds
    (``wait=0``: at once, like ``kafka-server-start.sh -daemon``). Only the daemon is left
    when it returns, so a pid found by the caller right after is the daemon's.
    """
    rfd, wfd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(rfd)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        _redirect_stdio(outfile)
        notifier = Notifier(wfd)
        code = 0
        try:
            if pidfile is not None:
                pidfile.parent.mkdir(parents=True, exist_ok=True)
                pidfile.write_text(f"{os.getpid()}\n")
            hold_start()
            if daemon is not None:
                delay = ready_delay(daemon)
                if delay > 0:
                    # To the .out file, stamped as the log's lines: the daemon's own log
                    # is set up once it is ready.
                    now = time.time()
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
                    print(f"{stamp},{int(now % 1 * 1000):03d} starting up ({delay:.1f}s "
                          "before it is ready)", file=sys.stderr, flush=True)
                    time.sleep(delay)
            run(notifier)
        except StartError as exc:
            log.error("%s", exc)
            print(f"ERROR: {exc}", file=sys.stderr, flush=True)
            notifier.fail(str(exc))
            code = 1
        except Exception as exc:  # a crash must still reach the log and the launcher
            log.exception("daemon crashed")
            notifier.fail(f"{type(exc).__name__}: {exc}")
            code = 1
        finally:
            if pidfile is not None and read_pid(pidfile) == os.getpid():
                with contextlib.suppress(OSError):
                    pidfile.unlink()
            logging.shutdown()
        os._exit(code)
    os.close(wfd)
    os.waitpid(child, 0)
    if wait <= 0:
        os.close(rfd)
        return 0
    message = b""
    deadline = time.monotonic() + wait
    try:
        while b"\n" not in message:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rfd], [], [], left)[0]:
                return 0  # still starting: the caller waits for the port, as for a JVM
            chunk = os.read(rfd, 4096)
            if not chunk:
                print(f"ERROR: the daemon exited during start-up; see {outfile}", file=sys.stderr)
                return 1
            message += chunk
    finally:
        os.close(rfd)
    text = message.decode(errors="replace").strip()
    if text.startswith("fail"):
        print(f"ERROR: {text[5:]}", file=sys.stderr)
        return 1
    return 0


def setup_logging(logfile: Path) -> None:
    logfile.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(logfile)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def serve_until_stopped(servers: list, notifier: Notifier, on_stop=None) -> None:
    """Serve every server in a thread; return after SIGTERM/SIGINT, servers closed."""

    def _raise(signum, _frame):
        raise Stop(signum)

    signal.signal(signal.SIGTERM, _raise)
    signal.signal(signal.SIGINT, _raise)
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True).start()
    notifier.ready()
    try:
        while True:
            signal.pause()
    except Stop as stop:
        log.info("received signal %s, shutting down", stop.args[0])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if on_stop is not None:
            with contextlib.suppress(Exception):
                on_stop()
        # Shut the servers down together: each shutdown() waits out one poll interval.
        closers = [threading.Thread(target=s.shutdown) for s in servers]
        for closer in closers:
            closer.start()
        for closer, server in zip(closers, servers, strict=True):
            closer.join()
            server.server_close()


# --- servers -------------------------------------------------------------------------------


def split_address(value: str, default_port: int) -> tuple[str, int]:
    """``host:port``, ``scheme://host:port`` or ``host`` -> (host, port)."""
    value = value.strip()
    if "://" in value:
        value = value.split("://", 1)[1]
    value = value.split("/", 1)[0]
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    if not port.isdigit():
        raise StartError(f"bad port in address {value!r}")
    return host, int(port)


def _bind_error(server_name: str, address: tuple[str, int], exc: OSError) -> StartError:
    return StartError(f"{server_name}: cannot bind {address[0]}:{address[1]}: {exc.strerror}")


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _HTTPServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def line_server(name: str, address: tuple[str, int], handle, on_close=None):
    """A JSON-lines request/response server: ``handle(request, session) -> response``.

    ``session`` is a dict kept for the connection's life; ``on_close(session)`` runs when the
    peer goes away (how masters notice a worker is gone).
    """

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            session: dict = {"peer": self.client_address}
            try:
                for raw in self.rfile:
                    try:
                        request = json.loads(raw)
                        response = handle(request, session)
                    except (ValueError, KeyError, TypeError) as exc:
                        response = {"ok": False, "error": f"bad request: {exc}"}
                    self.wfile.write(json.dumps(response).encode() + b"\n")
                    self.wfile.flush()
            except OSError:
                pass
            finally:
                if on_close is not None:
                    on_close(session)

    return bind(name, address, lambda: _TCPServer(address, Handler))


class Hold(socketserver.BaseRequestHandler):
    """Accepts a connection and holds it until the peer closes (ports with no protocol here)."""

    def handle(self):
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass


def raw_server(name: str, address: tuple[str, int], handler_class):
    return bind(name, address, lambda: _TCPServer(address, handler_class))


def http_server(name: str, address: tuple[str, int], routes: dict):
    """A read-only JSON/text HTTP server; ``routes`` maps a path to ``f(query) -> body``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = f"standin-{name}"

        def do_GET(self):
            path, _, query = self.path.partition("?")
            route = routes.get(path) or routes.get(path.rstrip("/")) or routes.get(path + "/")
            if route is None:
                self.send_error(404)
                return
            body = route(query)
            if isinstance(body, (dict, list)):
                data, kind = json.dumps(body, indent=1).encode(), "application/json"
            else:
                data, kind = str(body).encode(), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format, *args):
            log.debug("%s %s", name, format % args)

    return bind(name, address, lambda: _HTTPServer(address, Handler))


def bind(name: str, address: tuple[str, int], make):
    try:
        server = make()
    except OSError as exc:
        raise _bind_error(name, address, exc) from exc
    log.info("%s listening on %s:%s", name, *server.server_address[:2])
    return server


class LineClient:
    """A persistent JSON-lines connection (DataNode -> NameNode, worker -> master)."""

    def __init__(self, address: tuple[str, int], timeout: float = 5.0, source: str | None = None):
        self.sock = socket.create_connection(
            address, timeout=timeout, source_address=(source, 0) if source else None
        )
        self.file = self.sock.makefile("rwb")

    def call(self, request: dict) -> dict:
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        line = self.file.readline()
        if not line:
            raise ConnectionError("connection closed by peer")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


def call_once(address: tuple[str, int], request: dict, timeout: float = 5.0) -> dict:
    client = LineClient(address, timeout)
    try:
        return client.call(request)
    finally:
        client.close()


# --- config files ----------------------------------------------------------------------------


def read_properties(path: str | Path) -> dict[str, str]:
    """Java ``.properties`` (Kafka, ZooKeeper): ``key=value``, ``#``/``!`` comments."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise StartError(f"cannot read config file {path}: {exc.strerror}") from exc
    props: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            key, _, value = line.partition(":")
        props[key.strip()] = value.strip()
    return props


def read_hadoop_xml(paths, defaults: dict[str, str]) -> dict[str, str]:
    """Hadoop ``*-site.xml`` files over ``defaults``, with ``${name}`` expanded."""
    conf = dict(defaults)
    for path in paths:
        path = Path(path)
        if not path.exists():
            continue
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise StartError(f"cannot parse {path}: {exc}") from exc
        for prop in root.iter("property"):
            name, value = prop.findtext("name"), prop.findtext("value")
            if name:
                conf[name.strip()] = (value or "").strip()
    system = {"user.name": os.environ.get("USER") or "root"}

    def expand(value: str, depth: int = 0) -> str:
        while "${" in value and depth < 20:
            start = value.index("${")
            end = value.find("}", start)
            if end < 0:
                break
            key = value[start + 2 : end]
            value = value[:start] + conf.get(key, system.get(key, "")) + value[end + 1 :]
            depth += 1
        return value

    return {key: expand(value) for key, value in conf.items()}


def local_path(uri: str) -> Path:
    """``file:///x`` or ``/x`` -> Path (Hadoop's name/data dirs)."""
    uri = uri.split(",")[0].strip()
    return Path(uri[len("file://") :] if uri.startswith("file://") else uri)


def now_ms() -> int:
    return int(time.time() * 1000)
