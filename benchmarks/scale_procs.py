"""The scale run's processes: a private RabbitMQ node, the emulator, the API processes, the
simulated workers; and the sampler that follows their CPU and memory.

Every process is started in a session of its own and stopped by its process group, by pid
(``benchmarks.procs.Proc``); ``Cluster.close`` stops them all, also after a failure or a
Ctrl-C. The RabbitMQ node is the run's own (its node name, ports, epmd and data directory
under the work directory), so stopping or restarting it never touches the machine's.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests
from sqlalchemy import create_engine, text

from benchmarks.procs import Proc, free_port
from benchmarks.scale_checks import in_flight_of, occupancy_timeline, summarize_occupancy

RABBIT_BIN = Path(os.environ.get("LAMBDA_SCALE_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
LAMBDA_SERVICE = str(Path(sys.executable).parent / "lambda-service")


def _wait(predicate, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class PrivateRabbit:
    """A RabbitMQ node of the run's own: ``start``, ``stop`` (``rabbitmqctl -n NODE stop``,
    then its session killed), ``start`` again on the same ports and data."""

    def __init__(self, workdir: Path):
        self.dir = workdir / "rabbitmq"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.node = f"lambda-scale-{os.getpid()}@localhost"
        self.port = free_port()
        epmd_port, dist_port = free_port(), free_port()
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq.conf").write_text("loopback_users = none\n")
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))},
            "HOME": str(self.dir),  # its Erlang cookie, for rabbitmqctl too
            "ERL_EPMD_PORT": str(epmd_port),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.dir / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
                "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.epmd: Proc | None = None
        self.server: Proc | None = None

    @staticmethod
    def available() -> str | None:
        missing = [p for p in ("rabbitmq-server", "rabbitmqctl") if not (RABBIT_BIN / p).exists()]
        return f"no {', '.join(missing)} under {RABBIT_BIN}" if missing else None

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args],
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def start(self) -> None:
        if self.epmd is None or self.epmd.popen.poll() is not None:
            # Its own epmd, in the foreground as our child: the machine's is never used.
            self.epmd = Proc("epmd", ["epmd", "-port", self.env["ERL_EPMD_PORT"]], self.env,
                             self.dir / "epmd.log")
        self.server = Proc("rabbitmq", [str(RABBIT_BIN / "rabbitmq-server")], self.env,
                           self.dir / "server.log")

        def up():
            if self.server.popen.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited:\n{self.server.log_tail()}")
            return self._ctl("await_startup", "--timeout", "30").returncode == 0
        _wait(up, 90, "the private RabbitMQ node", interval=0.5)

    def stop(self) -> None:
        """``rabbitmqctl stop``, then whatever is left of its session killed."""
        if self.server is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self._ctl("stop", timeout=30)
        self.server.stop(timeout=15)
        self.server = None

    def close(self) -> None:
        self.stop()
        if self.epmd is not None:
            self.epmd.stop(timeout=5)
            self.epmd = None

    def pids(self) -> list[int]:
        """The node's processes (the script, beam.smp, its port programs) and its epmd."""
        pids = []
        for proc in (self.server, self.epmd):
            if proc is not None and proc.popen.poll() is None:
                pids.extend(session_pids(proc.pid))
        return pids


def session_pids(sid: int) -> list[int]:
    """Every live process of the session ``sid`` (a Proc's whole tree, daemons included)."""
    pids = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(p.pid) == sid:
                pids.append(p.pid)
    return pids


class Cluster:
    """The emulator, the API processes and the workers of one scale run."""

    def __init__(self, workdir: Path, database_url: str, broker_url: str, seed_file: Path,
                 *, env: dict, worker_cmd: list[str], concurrency: int):
        self.dir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.stats_dir = workdir / "stats"
        self.stats_dir.mkdir(exist_ok=True)
        self.journal = workdir / "journal.jsonl"
        self.database_url = database_url
        self.worker_cmd = worker_cmd
        self.concurrency = concurrency
        self.emulator: Proc | None = None
        self.emulator_base = ""
        self.apis: list[tuple[Proc, int]] = []  # (process, port)
        self.workers: list[Proc] = []
        self.metrics_urls: dict[int, str] = {}  # worker pid -> its /metrics
        self.kills: dict[int, float] = {}  # pid -> time.time() of its SIGKILL
        self.retired: list[Proc] = []
        self._count = 0
        self.base_env = {**{k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")},
                         **env,
                         "LAMBDA_DATABASE_URL": database_url,
                         "LAMBDA_BROKER_URL": broker_url,
                         "LAMBDA_DISPATCHER": "celery",
                         "LAMBDA_SIM_JOURNAL": str(self.journal),
                         "LAMBDA_SIM_STATS_DIR": str(self.stats_dir),
                         "LAMBDA_STATE_DIR": str(workdir / "state"),
                         "TMPDIR": str(workdir / "tmp")}
        (workdir / "tmp").mkdir(exist_ok=True)
        self.seed_file = seed_file

    def _name(self, kind: str) -> str:
        self._count += 1
        return f"{kind}-{self._count}"

    # -- the emulator --------------------------------------------------------------------

    def start_emulator(self) -> str:
        port = free_port()
        self.emulator = Proc("emulator", [sys.executable, "-m", "lambda_testbed.emulator",
                                          "--seed", str(self.seed_file),
                                          "--bind", f"127.0.0.1:{port}",
                                          "--log-level", "WARNING"],
                             self.base_env, self.logs / "emulator.log")
        self.emulator_base = f"http://127.0.0.1:{port}"
        self.emulator.wait_http(f"{self.emulator_base}/_emulator/faults", timeout=180)
        self.base_env["LAMBDA_AUTH_URL"] = f"{self.emulator_base}/identity/v2.0"
        return self.emulator_base

    def set_faults(self, **faults) -> None:
        requests.post(f"{self.emulator_base}/_emulator/faults", json=faults,
                      timeout=30).raise_for_status()

    def servers(self) -> dict[str, dict]:
        state = requests.get(f"{self.emulator_base}/_emulator/state", timeout=120).json()
        return {str(s["id"]): s for s in state["servers"]}

    # -- API processes -------------------------------------------------------------------

    def start_api(self, port: int | None = None) -> int:
        port = port or free_port()
        proc = Proc(self._name("api"), [LAMBDA_SERVICE, "serve"],
                    {**self.base_env, "LAMBDA_BIND": f"127.0.0.1:{port}"},
                    self.logs / f"api-{port}.log")
        proc.wait_http(f"http://127.0.0.1:{port}/metrics", timeout=90)
        self.apis.append((proc, port))
        return port

    def restart_api(self, index: int) -> float:
        """SIGTERM one API process, start it again on its port; returns the seconds down."""
        proc, port = self.apis.pop(index)
        began = time.monotonic()
        proc.stop(timeout=20)
        self.retired.append(proc)
        self.start_api(port)
        self.apis.insert(index, self.apis.pop())
        return time.monotonic() - began

    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for _proc, port in self.apis]

    # -- workers -------------------------------------------------------------------------

    def start_worker(self, wait: bool = True) -> Proc:
        name = self._name("worker")
        bind = f"127.0.0.1:{free_port()}"
        proc = Proc(name, [*self.worker_cmd, "--concurrency", str(self.concurrency)],
                    {**self.base_env, "LAMBDA_WORKER_METRICS_BIND": bind},
                    self.logs / f"{name}.log")
        self.workers.append(proc)
        self.metrics_urls[proc.pid] = f"http://{bind}/metrics"
        if wait:
            self.wait_ready(proc)
        return proc

    @staticmethod
    def wait_ready(proc: Proc, timeout: float = 90) -> None:
        def ready():
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            return " ready." in proc.log_tail(200_000)
        _wait(ready, timeout, f"{proc.name} to be ready")

    def kill_random_worker(self, rng: random.Random) -> Proc:
        """SIGKILL one worker (its whole session at once), as a machine's crash would."""
        victim = rng.choice([w for w in self.workers if w.popen.poll() is None])
        with contextlib.suppress(ProcessLookupError):
            os.killpg(victim.pid, signal.SIGKILL)
        victim.popen.wait(timeout=30)
        self.kills[victim.pid] = time.time()
        self.workers.remove(victim)
        self.retired.append(victim)
        return victim

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.popen.poll() is None]

    # -- the end -------------------------------------------------------------------------

    def all_procs(self) -> list[Proc]:
        procs = [p for p, _port in self.apis] + self.workers + self.retired
        return procs + ([self.emulator] if self.emulator else [])

    def close(self) -> None:
        """Stop every process by its group; SIGKILL whatever is left."""
        for proc in self.workers + [p for p, _port in self.apis]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.all_procs():
            proc.stop(timeout=20)


class Occupancy:
    """Every ``interval`` s during a phase: each live worker's in-flight gauge (scraped from
    its metrics endpoint; a killed worker simply stops being sampled) and the actions no
    worker holds (accepted, or handed back) in the run's database.

    ``stop`` returns the means: ``in_flight`` (the sum over the workers), ``occupancy``
    (that over the sampled workers' threads), ``backlog`` and ``backlog_share`` (of the
    samples with at least one action waiting), ``timeline`` (occupancy by 20 s), and
    ``queries`` (its own transactions, to take out of the database's)."""

    def __init__(self, cluster: Cluster, database_url: str, interval: float = 1.0):
        self.cluster = cluster
        self.interval = interval
        self.engine = create_engine(database_url, pool_size=1)
        self.session = requests.Session()
        self.session.trust_env = False
        self.samples: list[tuple[float, int, int | None]] = []  # (in flight, workers, backlog)
        self.times: list[float] = []  # each sample's seconds from the start
        self.began = time.monotonic()
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="occupancy", daemon=True)

    def start(self) -> Occupancy:
        self._thread.start()
        return self

    def sample(self) -> None:
        in_flight, workers = 0.0, 0
        for proc in self.cluster.live_workers():
            url = self.cluster.metrics_urls.get(proc.pid)
            if url is None:
                continue
            try:
                resp = self.session.get(url, timeout=0.5)
                resp.raise_for_status()
                in_flight += in_flight_of(resp.text)
            except (requests.RequestException, ValueError):
                continue  # dying or not serving yet: not a live worker for this sample
            workers += 1
        backlog = None
        with contextlib.suppress(Exception), self.engine.connect() as conn:
            self.queries += 1
            backlog = conn.execute(text(
                "select count(*) from actions where lease_owner is null and state not in "
                "('succeeded', 'failed', 'cancelled')")).scalar_one()
        self.samples.append((in_flight, workers, backlog))
        self.times.append(time.monotonic() - self.began)

    def _loop(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            with contextlib.suppress(Exception):
                self.sample()
            self._stop.wait(max(self.interval - (time.monotonic() - began), 0.0))

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(timeout=30)
        self.session.close()
        self.engine.dispose()
        return summarize_occupancy(self.samples, self.cluster.concurrency) | {
            "queries": self.queries,
            "timeline": occupancy_timeline(self.samples, self.times, self.cluster.concurrency)}


def read_stats(stats_dir: Path) -> dict[int, dict]:
    """The simulated workers' stats files: pid -> {statements, rss_bytes, t}."""
    found = {}
    for path in stats_dir.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            found[int(data["pid"])] = data
    return found


class Sampler:
    """Every ``interval`` s: each process group's CPU-s (by pid), the workers' RSS, the
    machine's CPU times, and the database's connections and transactions."""

    GROUPS = ("api", "workers", "postgres", "rabbitmq", "emulator", "driver")

    def __init__(self, cluster: Cluster, rabbit: PrivateRabbit, database: str,
                 admin_url: str, interval: float = 2.0):
        self.cluster = cluster
        self.rabbit = rabbit
        self.database = database
        self.interval = interval
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.cpu: dict[int, tuple[str, float]] = {}  # pid -> (group, CPU-s at last sight)
        self.rss_peak: dict[int, float] = {}  # worker pid -> peak RSS bytes
        self.peak_connections = 0
        self.own_transactions = 0  # the sampler's own, to take out of the database's
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.engine.dispose()

    def _pids(self) -> dict[int, str]:
        groups: dict[int, str] = {os.getpid(): "driver"}
        for proc, _port in list(self.cluster.apis):
            for pid in session_pids(proc.pid):
                groups[pid] = "api"
        for proc in list(self.cluster.workers):
            for pid in session_pids(proc.pid):
                groups[pid] = "workers"
        if self.cluster.emulator is not None:
            groups[self.cluster.emulator.pid] = "emulator"
        for pid in self.rabbit.pids():
            groups[pid] = "rabbitmq"
        for pid in self.backend_pids():
            groups[pid] = "postgres"
        return groups

    def backend_pids(self) -> list[int]:
        with self.engine.connect() as conn:
            self.own_transactions += 1
            rows = conn.execute(text("select pid from pg_stat_activity where datname = :d"),
                                {"d": self.database}).all()
        pids = [r.pid for r in rows]
        self.peak_connections = max(self.peak_connections, len(pids))
        return pids

    def transactions(self) -> int:
        """The database's committed and rolled back transactions so far (all processes)."""
        with self.engine.connect() as conn:
            self.own_transactions += 1
            row = conn.execute(text("select xact_commit + xact_rollback as n from "
                                    "pg_stat_database where datname = :d"),
                               {"d": self.database}).one()
        return int(row.n)

    def sample(self) -> None:
        groups = self._pids()
        seen = {}
        for pid, group in groups.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                times = p.cpu_times()
                seen[pid] = (group, times.user + times.system)
                if group == "workers" and pid in {w.pid for w in self.cluster.workers}:
                    self.rss_peak[pid] = max(self.rss_peak.get(pid, 0), p.memory_info().rss)
        with self._lock:
            self.cpu.update(seen)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.sample()
            self._stop.wait(self.interval)

    def phase_start(self) -> dict:
        with self._lock:
            self.rss_peak.clear()
        return self.snapshot()

    def snapshot(self) -> dict:
        """The counters now, to subtract from a later snapshot (``delta``)."""
        with contextlib.suppress(Exception):
            self.sample()
        with self._lock:
            cpu = dict(self.cpu)
        return {"t": time.monotonic(), "cpu": cpu, "machine": psutil.cpu_times(),
                "transactions": self.transactions(), "own": self.own_transactions,
                "stats": read_stats(self.cluster.stats_dir), "rss": dict(self.rss_peak)}

    @staticmethod
    def delta(before: dict, after: dict) -> dict:
        cpu: dict[str, float] = {}
        for pid, (group, seconds) in after["cpu"].items():
            start = before["cpu"].get(pid, (group, 0.0))[1]
            cpu[group] = cpu.get(group, 0.0) + max(seconds - start, 0.0)
        m0, m1 = before["machine"], after["machine"]
        total = sum(m1) - sum(m0)
        idle = (m1.idle - m0.idle) + (getattr(m1, "iowait", 0) - getattr(m0, "iowait", 0))
        statements = 0
        for pid, data in after["stats"].items():
            statements += int(data.get("statements", 0)) - int(
                before["stats"].get(pid, {}).get("statements", 0))
        own = after["own"] - before["own"]
        return {"seconds": after["t"] - before["t"], "cpu": cpu,
                "machine_busy": (total - idle) / total if total > 0 else None,
                "transactions": after["transactions"] - before["transactions"] - own,
                "statements": statements if after["stats"] else None,
                # The sampler's peaks are cleared at a phase's start (``phase_start``).
                "rss_mb": [rss / 2**20 for rss in after["rss"].values()]}
