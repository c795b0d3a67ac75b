"""Stand-in for Apache Spark standalone's ``sbin/spark-daemon.sh`` (Master, Worker).

Same command line (``spark-daemon.sh start|stop|status <class> <instance> args``), the same
SPARK_PID_DIR / SPARK_LOG_DIR / SPARK_IDENT_STRING / SPARK_LOCAL_IP variables and pid file
names, the master's ``/json/`` on its web UI, workers registering and heartbeating over the
master port (7077). A worker whose connection drops is DEAD and leaves ``aliveworkers``.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import sys
import threading
from datetime import datetime
from pathlib import Path

from . import common
from .common import StartError, log

MASTER = "org.apache.spark.deploy.master.Master"
WORKER = "org.apache.spark.deploy.worker.Worker"


def java_opts(variable: str) -> dict[str, str]:
    """``-Dkey=value`` pairs from SPARK_MASTER_OPTS / SPARK_WORKER_OPTS."""
    opts = {}
    for token in shlex.split(os.environ.get(variable, "")):
        if token.startswith("-D") and "=" in token:
            key, _, value = token[2:].partition("=")
            opts[key] = value
    return opts


def memory_mb(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgGtT]?)[bB]?", value.strip())
    if not match:
        raise StartError(f"Invalid memory string: {value}")
    number, unit = int(match.group(1)), match.group(2).lower()
    factor = {"k": 1 / 1024, "": 1, "m": 1, "g": 1024, "t": 1024 * 1024}[unit]
    return max(1, int(number * factor))


def parse_args(args: list[str], spec: dict[str, str]) -> tuple[dict, list[str]]:
    """Options as Spark's MasterArguments/WorkerArguments take them; the rest positional."""
    values: dict = {}
    positional = []
    i = 0
    while i < len(args):
        name = spec.get(args[i])
        if name and i + 1 < len(args):
            values[name] = args[i + 1]
            i += 2
        elif args[i].startswith("-"):
            raise StartError(f"Unrecognized option: {args[i]}")
        else:
            positional.append(args[i])
            i += 1
    return values, positional


def bind_host() -> str:
    return os.environ.get("SPARK_LOCAL_IP") or "0.0.0.0"


def default_host() -> str:
    return os.environ.get("SPARK_LOCAL_IP") or socket.gethostname()


class Master:
    SPEC = {"--host": "host", "-h": "host", "--ip": "host", "-i": "host", "--port": "port",
            "-p": "port", "--webui-port": "webui", "--properties-file": "properties"}

    def __init__(self, args: list[str]):
        values, _ = parse_args(args, self.SPEC)
        self.host = values.get("host") or os.environ.get("SPARK_MASTER_HOST") or default_host()
        self.port = int(values.get("port") or os.environ.get("SPARK_MASTER_PORT") or 7077)
        self.webui = int(values.get("webui") or os.environ.get("SPARK_MASTER_WEBUI_PORT") or 8080)
        opts = java_opts("SPARK_MASTER_OPTS")
        self.timeout = float(opts.get("spark.worker.timeout", "60"))
        self.persistence = int(opts.get("spark.dead.worker.persistence", "15"))
        self.lock = threading.Lock()
        self.workers: dict[str, dict] = {}

    def handle(self, request: dict, session: dict) -> dict:
        op = request["op"]
        with self.lock:
            if op == "register":
                worker = dict(request["worker"], state="ALIVE", lastheartbeat=common.now_ms())
                old = self.workers.get(worker["id"])
                if old and old["state"] == "ALIVE" and old is not session.get("worker"):
                    return {"ok": False, "error": "Duplicate worker ID"}
                self.workers[worker["id"]] = worker
                session["worker"] = worker
                log.info("Registering worker %s:%s with %s cores, %s RAM", worker["host"],
                         worker["port"], worker["cores"], worker["memory"])
                return {"ok": True, "master": f"spark://{self.host}:{self.port}"}
            if op == "heartbeat":
                worker = session.get("worker")
                if worker is None or worker["state"] != "ALIVE":
                    return {"ok": False, "reregister": True}
                worker["lastheartbeat"] = common.now_ms()
                return {"ok": True}
        return {"ok": False, "error": f"unknown op {op}"}

    def on_close(self, session: dict) -> None:
        worker = session.get("worker")
        if worker is not None:
            with self.lock:
                if worker["state"] == "ALIVE":
                    log.info("%s got disassociated, removing it.", worker["id"])
                    worker["state"] = "DEAD"

    def status(self, _query: str) -> dict:
        now = common.now_ms()
        with self.lock:
            for worker_id, worker in list(self.workers.items()):
                silent = now - worker["lastheartbeat"]
                if worker["state"] == "ALIVE" and silent > self.timeout * 1000:
                    log.warning("Removing %s because we got no heartbeat in %s seconds",
                                worker_id, self.timeout)
                    worker["state"] = "DEAD"
                if silent > (self.persistence + 1) * self.timeout * 1000:
                    del self.workers[worker_id]
            workers = [dict(w) for w in self.workers.values()]
        alive = [w for w in workers if w["state"] == "ALIVE"]
        return {
            "url": f"spark://{self.host}:{self.port}",
            "workers": workers,
            "aliveworkers": len(alive),
            "cores": sum(w["cores"] for w in alive),
            "coresused": 0,
            "memory": sum(w["memory"] for w in alive),
            "memoryused": 0,
            "resources": [],
            "resourcesused": [],
            "activeapps": [],
            "completedapps": [],
            "activedrivers": [],
            "completeddrivers": [],
            "status": "ALIVE",
        }

    def run(self, notifier: common.Notifier) -> None:
        log.info("Starting Spark master at spark://%s:%s", self.host, self.port)
        servers = [
            common.line_server("Master RPC", (self.host, self.port), self.handle, self.on_close),
            common.http_server("MasterUI", (bind_host(), self.webui), {
                "/json": self.status,
                "/": lambda q: f"<html><title>Spark Master at spark://{self.host}:{self.port}"
                               "</title></html>",
            }),
        ]
        common.serve_until_stopped(servers, notifier)


class Worker:
    SPEC = {"--host": "host", "-h": "host", "--ip": "host", "-i": "host", "--port": "port",
            "-p": "port", "--webui-port": "webui", "--cores": "cores", "-c": "cores",
            "--memory": "memory", "-m": "memory", "--work-dir": "workdir", "-d": "workdir",
            "--properties-file": "properties"}

    def __init__(self, args: list[str]):
        values, positional = parse_args(args, self.SPEC)
        if len(positional) != 1 or not positional[0].startswith("spark://"):
            raise StartError("Usage: Worker [options] <master>  (master is spark://host:port)")
        self.masters = [common.split_address(m, 7077)
                        for m in positional[0][len("spark://"):].split(",")]
        self.host = values.get("host") or default_host()
        self.port = int(values.get("port") or os.environ.get("SPARK_WORKER_PORT") or 0)
        self.webui = int(values.get("webui") or os.environ.get("SPARK_WORKER_WEBUI_PORT") or 8081)
        self.cores = int(values.get("cores") or os.environ.get("SPARK_WORKER_CORES")
                         or os.cpu_count() or 1)
        self.memory = memory_mb(values.get("memory") or os.environ.get("SPARK_WORKER_MEMORY")
                                or "1g")
        timeout = float(java_opts("SPARK_WORKER_OPTS").get("spark.worker.timeout", "60"))
        self.heartbeat = timeout / 4
        self.stopping = threading.Event()
        self.master_url = positional[0]

    def connect(self, worker: dict) -> None:
        """Register with a master, heartbeat; register again when the master comes back."""
        client = None
        while not self.stopping.is_set():
            try:
                if client is None:
                    for address in self.masters:
                        try:
                            client = common.LineClient(address, timeout=5, source=self.host)
                        except OSError:
                            continue
                        reply = client.call({"op": "register", "worker": worker})
                        if not reply.get("ok"):
                            raise ConnectionError(reply.get("error"))
                        log.info("Successfully registered with master %s", reply["master"])
                        break
                    else:
                        raise ConnectionError(f"no master answers at {self.master_url}")
                elif client.call({"op": "heartbeat"}).get("reregister"):
                    client.close()
                    client = None
                    continue
            except (OSError, ConnectionError, ValueError) as exc:
                log.warning("Failed to connect to master: %s", exc)
                if client is not None:
                    client.close()
                client = None
                self.stopping.wait(1.0)
                continue
            self.stopping.wait(self.heartbeat)
        if client is not None:
            client.close()

    def run(self, notifier: common.Notifier) -> None:
        rpc = common.raw_server("Worker", (self.host, self.port), common.Hold)
        port = rpc.server_address[1]
        stamp = datetime.now().strftime("%Y%m%d%H%M%S")
        worker = {
            "id": f"worker-{stamp}-{self.host}-{port}",
            "host": self.host,
            "port": port,
            "webuiaddress": f"http://{self.host}:{self.webui}",
            "cores": self.cores,
            "coresused": 0,
            "coresfree": self.cores,
            "memory": self.memory,
            "memoryused": 0,
            "memoryfree": self.memory,
            "resources": {},
        }
        info = dict(worker, masterurl=self.master_url, executors=[], finishedexecutors=[])
        ui = common.http_server("WorkerUI", (bind_host(), self.webui), {"/json": lambda q: info})
        log.info("Starting Spark worker %s:%s with %s cores, %s MB RAM", self.host, port,
                 self.cores, self.memory)
        threading.Thread(target=self.connect, args=(worker,), daemon=True).start()
        common.serve_until_stopped([rpc, ui], notifier, on_stop=self.stopping.set)



CLASSES = {MASTER: Master, WORKER: Worker}
USAGE = ("Usage: spark-daemon.sh [--config <conf-dir>] (start|stop|submit|status) "
         "<spark-command> <spark-instance-number> <args...>")


def main(argv: list[str]) -> int:
    home, args = Path(argv[0]), list(argv[1:])
    if args[:1] == ["--config"]:
        args = args[2:]  # the shell wrapper already exported SPARK_CONF_DIR from it
    if len(args) < 3 or args[0] not in ("start", "stop", "status", "submit"):
        print(USAGE, file=sys.stderr)
        return 1
    mode, command, instance, rest = args[0], args[1], args[2], args[3:]
    ident = os.environ.get("SPARK_IDENT_STRING") or os.environ.get("USER") or "root"
    pid_dir = Path(os.environ.get("SPARK_PID_DIR") or "/tmp")
    log_dir = Path(os.environ.get("SPARK_LOG_DIR") or home / "logs")
    pidfile = pid_dir / f"spark-{ident}-{command}-{instance}.pid"
    outfile = log_dir / f"spark-{ident}-{command}-{instance}-{socket.gethostname()}.out"
    pid = common.read_pid(pidfile)
    ours = common.pid_alive(pid) and _is_ours(pid, command)
    if mode == "status":
        if pidfile.exists():
            if ours:
                print(f"{command} is running.")
                return 0
            print(f"{pidfile} file is present but {command} not running")
            return 1
        print(f"{command} not running.")
        return 2
    if mode == "stop":
        if ours:
            print(f"stopping {command}")
            os.kill(pid, 15)
            pidfile.unlink(missing_ok=True)
        else:
            print(f"no {command} to stop")
        return 0
    if command not in CLASSES:
        print(f"failed to launch: unknown class {command}", file=sys.stderr)
        return 1
    if ours:
        print(f"{command} running as process {pid}.  Stop it first.")
        return 1
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        pid_dir.mkdir(parents=True, exist_ok=True)
        daemon = CLASSES[command](rest)
    except (OSError, StartError, ValueError) as exc:
        print(f"failed to launch: {command} {' '.join(rest)}\n  {exc}", file=sys.stderr)
        return 1
    print(f"starting {command}, logging to {outfile}")

    def run(notifier):
        common.setup_logging(outfile)
        daemon.run(notifier)

    code = common.spawn(run, pidfile=pidfile, outfile=outfile)
    if code != 0:
        print(f"failed to launch: {command} {' '.join(rest)}\nfull log in {outfile}",
              file=sys.stderr)
    return code


def _is_ours(pid: int, command: str) -> bool:
    """The real script checks ``ps -o comm=`` is java; here: the process runs ``command``."""
    try:
        return command.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
