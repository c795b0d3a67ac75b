"""Stand-in for Apache Spark standalone's ``sbin/spark-daemon.sh`` (Master, Worker).

Same command line (``spark-daemon.sh start|stop|status <class> <instance> args``), the same
SPARK_PID_DIR / SPARK_LOG_DIR / SPARK_IDENT_STRING / SPARK_LOCAL_IP variables and pid file
names, the master's ``/json/`` on its web UI, workers registering and heartbeating over the
master port (7077). A worker whose connection drops is DEAD and leaves ``aliveworkers``.
``bin/spark-submit --master spark://H:P APP [slices]`` runs SparkPi on the cluster: the master
hands each slice to an ALIVE worker, which computes it by sampling.
"""

from __future__ import annotations

import os
import random
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
            if op == "submit":
                alive = [dict(w) for w in self.workers.values() if w["state"] == "ALIVE"]
            elif op == "heartbeat":
                worker = session.get("worker")
                if worker is None or worker["state"] != "ALIVE":
                    return {"ok": False, "reregister": True}
                worker["lastheartbeat"] = common.now_ms()
                return {"ok": True}
        if op == "submit":
            return self.run_job(request, alive)
        return {"ok": False, "error": f"unknown op {op}"}

    def run_job(self, request: dict, alive: list[dict]) -> dict:
        """SparkPi on the cluster: each slice is a task that an ALIVE worker computes (by
        sampling) and sends back; with no worker the job cannot run, as with real Spark."""
        slices, samples = int(request["slices"]), int(request["samples"])
        if not alive:
            return {"ok": False, "error": "Initial job has not accepted any resources; check "
                                          "your cluster UI to ensure that workers are "
                                          "registered and have sufficient resources"}
        log.info("Registering app %s: %s tasks on %s workers", request["app"], slices,
                 len(alive))
        inside, ran_on = 0, []
        for index in range(slices):
            worker = alive[index % len(alive)]
            try:
                reply = common.call_once((worker["host"], worker["port"]),
                                         {"op": "task", "samples": samples, "seed": index},
                                         timeout=60)
            except (OSError, ConnectionError) as exc:
                return {"ok": False, "error": f"Lost task {index}.0 on {worker['host']}: {exc}"}
            if not reply.get("ok"):
                return {"ok": False, "error": f"task {index}.0 failed on {worker['host']}: "
                                              f"{reply.get('error')}"}
            inside += reply["inside"]
            ran_on.append(worker["host"])
        return {"ok": True, "inside": inside, "total": slices * samples, "workers": ran_on}

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
                if cannot_register():
                    raise ConnectionError(f"{CANNOT_REGISTER} is set: not registered")
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

    def task(self, request: dict, session: dict) -> dict:
        """One slice of a job: count random points of the unit square inside the circle."""
        if request["op"] != "task":
            return {"ok": False, "error": f"unknown op {request['op']}"}
        rng = random.Random(request["seed"])
        samples = int(request["samples"])
        inside = sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1)
        return {"ok": True, "inside": inside}

    def run(self, notifier: common.Notifier) -> None:
        rpc = common.line_server("Worker", (self.host, self.port), self.task)
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



# A test's switch: while this file exists in a worker's SPARK_CONF_DIR, the worker drops its
# registration and does not register again (its daemon runs; the master lists it DEAD).
CANNOT_REGISTER = "STANDIN_FAULT_CANNOT_REGISTER"


def cannot_register() -> bool:
    conf_dir = os.environ.get("SPARK_CONF_DIR")
    return bool(conf_dir) and (Path(conf_dir) / CANNOT_REGISTER).exists()


CLASSES = {MASTER: Master, WORKER: Worker}
USAGE = ("Usage: spark-daemon.sh [--config <conf-dir>] (start|stop|submit|status) "
         "<spark-command> <spark-instance-number> <args...>")


def submit(args: list[str]) -> int:
    """``spark-submit --master spark://H:P [options] APP [slices]``: runs SparkPi (the
    application the service check submits, whatever its file) on the standalone cluster and
    prints "Pi is roughly ..." as the example does; the tasks run on the workers."""
    master, positional, i = None, [], 0
    while i < len(args):
        if args[i] == "--master" and i + 1 < len(args):
            master, i = args[i + 1], i + 2
        elif args[i] in ("--verbose", "-v", "--supervise"):
            i += 1
        elif args[i].startswith("--") and i + 1 < len(args):
            i += 2  # --name, --conf, --deploy-mode, --executor-memory, ...
        else:
            positional.append(args[i])
            i += 1
    if not positional:
        print("Error: Must specify a primary resource (JAR or Python file)", file=sys.stderr)
        return 1
    if not master or not master.startswith("spark://"):
        print(f"Error: Master must be a spark:// URL here, not {master!r}", file=sys.stderr)
        return 1
    app = positional[0]
    slices = int(positional[1]) if len(positional) > 1 and positional[1].isdigit() else 2
    address = common.split_address(master[len("spark://"):].split(",")[0], 7077)
    try:
        reply = common.call_once(address, {"op": "submit", "app": app, "slices": slices,
                                           "samples": 20000}, timeout=120)
    except (OSError, ConnectionError) as exc:
        print(f"ERROR StandaloneAppClient: Failed to connect to master {master}: {exc}",
              file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"WARN TaskSchedulerImpl: {reply.get('error')}", file=sys.stderr)
        return 1
    print(f"INFO DAGScheduler: Job 0 finished: reduce at {Path(app).name}, "
          f"{slices} tasks on {', '.join(sorted(set(reply['workers'])))}", file=sys.stderr)
    print(f"Pi is roughly {4.0 * reply['inside'] / reply['total']:f}")
    return 0


def main(argv: list[str]) -> int:
    home, args = Path(argv[0]), list(argv[1:])
    if args[:1] == ["submit-app"]:
        return submit(args[1:])
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

    code = common.spawn(run, pidfile=pidfile, outfile=outfile,
                        daemon="spark-master" if command == MASTER else "spark-worker")
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
