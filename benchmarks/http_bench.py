"""Part 1 (API ceiling ratio), part 2 (identity round trips) and the API's memory.

One run serves, under the same server (the one ``lambda-service serve`` runs):
(a) the bare Falcon responder of ``benchmarks.bare_app`` and (b) the product
(``lambda-service serve``) against the Synnefo emulator, its database seeded with the
demo's instances (``lambda-service seed``) plus many more for the accept path. wrk loads
each in turn, interleaved (a, b, a, b, ...), and every figure of (b) is divided by (a).
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import requests
import yaml
from cryptography.fernet import Fernet

from benchmarks import openloop, wrk
from benchmarks.procs import Proc, children, cpu_seconds, free_port, python_cmd, status_kb, tree
from lambda_testbed.demo_data import DEMO_INSTANCE_ID, DEMO_TOKEN, demo_seed

log = logging.getLogger(__name__)

# The accept path's instances: ids ACCEPT_PREFIX + 12 hex digits, all STOPPED.
ACCEPT_PREFIX = "b0000000-0000-4000-8000-"
SCENARIOS = ("reject", "details", "accept")


@dataclass
class HttpConfig:
    duration: float = 6.0
    warmup: float = 2.0
    rounds: int = 3
    connections: int = 32
    # One slice of these per product accept run: ~36,000 ids, room for ~3,000 accepts/s
    # over 6 s even when one wrk thread (ids of its own parity) outruns the other twice.
    accept_instances: int = 400_000
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    identity_requests: int = 10_000
    cold_samples: int = 11
    scenarios: tuple[str, ...] = SCENARIOS
    identity: bool = True
    # embedded: the embedded default's accept path (SQLite insert; the hand-off to the
    # local pool a no-op, since its actions would run on the benchmark's own CPUs);
    # celery: the scaled-out one, publishing to the machine's RabbitMQ.
    dispatcher: str = "embedded"
    workers: int | None = None  # None: the product's defaults (LAMBDA_HTTP_WORKERS)
    threads: int | None = None
    max_worker_share: float = 0.8  # busiest worker's share of CPU for a balanced run
    max_retries: int = 2  # reruns of an unbalanced round
    # p99 at the same offered load: both servers paced at this fraction of the product's
    # median throughput of the scenario (0 skips it).
    paced_fraction: float = 0.5


@dataclass
class Pair:
    bare: wrk.WrkResult
    product: wrk.WrkResult
    balanced: bool = True  # False: one worker took every connection even after reruns


@dataclass
class HttpReport:
    dispatcher: str
    workers: int
    threads: int
    pairs: dict[str, list[Pair]] = field(default_factory=dict)
    identity: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    retries: int = 0  # rounds run again because one worker took every connection
    # Same offered load on both, one pair per round. A VM's scheduling hiccup of a few
    # tens of ms lands in one run's p99 (bare p99 at ~1,500 req/s was 2-38 ms from run to
    # run), so the table takes medians over the rounds, as for the ratios.
    paced: dict[str, list[Pair]] = field(default_factory=dict)

    def counted(self, scenario: str) -> list[Pair]:
        """The rounds the medians use: the balanced ones, or all when none was.

        A round in which one worker served everything measures one process: kept in the
        table, it would otherwise swing the median (a bare server at half its speed made
        one run's reject ratio 1.34 and its median 0.65, against 0.58-0.60).
        """
        pairs = self.pairs[scenario]
        return [p for p in pairs if p.balanced] or pairs

    def ratio(self, scenario: str) -> float:
        return statistics.median(p.product.rps / p.bare.rps for p in self.counted(scenario))

    def median(self, scenario: str, side: str, attr: str) -> float:
        return _median_of(self.counted(scenario), side, attr)

    def paced_median(self, scenario: str, side: str, attr: str) -> float:
        return _median_of(self.paced[scenario], side, attr)

    def paced_p99_ratio(self, scenario: str) -> float:
        """Product p99 over bare p99 at the same load: the median of the rounds' own."""
        return statistics.median(p.product.p99_ms / p.bare.p99_ms
                                 for p in self.paced[scenario])

    def paced_load(self, scenario: str) -> float:
        """The paced runs' offered rate as a fraction of the product's median req/s."""
        return self.paced[scenario][0].bare.rate / self.median(scenario, "product", "rps")


def mm1_p99_ratio(throughput_ratio: float, load: float) -> float:
    """Product p99 over bare p99 that one M/M/1 queue per server predicts.

    Each server is a queue whose mean service time is the inverse of its saturated req/s
    (the product's ``1 / throughput_ratio`` times the bare one's); both are offered
    ``load`` times the product's req/s. An M/M/1 queue's time in system is exponential
    with mean ``s / (1 - utilisation)``, so every quantile, p99 too, scales by that mean.
    """
    r, f = throughput_ratio, load
    return (1 - f * r) / (r * (1 - f))


def _median_of(pairs: list[Pair], side: str, attr: str) -> float:
    return statistics.median(getattr(getattr(p, side), attr) for p in pairs)


def broker_reachable(url: str) -> bool:
    from kombu.utils.url import url_to_parts

    parts = url_to_parts(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672),
                                 timeout=1).close()
        return True
    except OSError:
        return False


def celery_dispatcher_present() -> bool:
    try:
        import api.worker.celery_dispatch  # noqa: F401
    except ImportError:
        return False
    return True


def purge_queue(broker_url: str, queue: str) -> int:
    """Drop the queue's messages; how many there were (0 when it does not exist yet)."""
    from kombu import Connection

    try:
        with Connection(broker_url, connect_timeout=3) as conn:
            return conn.default_channel.queue_purge(queue) or 0
    except Exception as exc:  # not declared yet (no accept so far): nothing to drop
        log.debug("could not purge queue %s: %s", queue, exc)
        return 0


def delete_queue(broker_url: str, queue: str) -> None:
    """Delete the run's queue and the exchange of the same name Celery declared for it."""
    from kombu import Connection

    try:
        with Connection(broker_url, connect_timeout=3) as conn:
            conn.default_channel.queue_delete(queue)
            conn.default_channel.exchange_delete(queue)
    except Exception as exc:  # a leftover queue is harmless; say so and go on
        log.warning("could not delete queue %s: %s", queue, exc)


def bench_seed(extra_tokens: list[str]) -> dict:
    """The demo's seed (250 instances of the demo user), plus tokens for identity tests."""
    seed = demo_seed(instances=250)
    seed["users"][0]["tokens"] = [DEMO_TOKEN, *extra_tokens]
    return seed


def add_accept_instances(database_url: str, count: int) -> None:
    """Bulk-insert ``count`` STOPPED instances of the demo user (3 hosts each)."""
    from sqlalchemy import insert

    from api.adapters.db.engine import create_db_engine
    from api.adapters.db.tables import hosts, instances
    from api.domain.clock import utcnow
    from lambda_testbed.demo_data import DEMO_USER_ID

    engine = create_db_engine(database_url)
    now = utcnow()
    try:
        with engine.begin() as conn:
            for start in range(0, count, 5000):
                ids = [f"{ACCEPT_PREFIX}{k:012x}" for k in range(start, min(count, start + 5000))]
                conn.execute(insert(instances), [
                    {"id": i, "owner": DEMO_USER_ID, "name": f"bench-{i[-6:]}",
                     "status": "STOPPED", "services": ["hdfs", "yarn", "spark"],
                     "failure_message": None, "created_at": now, "updated_at": now}
                    for i in ids])
                conn.execute(insert(hosts), [
                    {"instance_id": i, "server_id": f"b{i[-8:]}-{j}", "position": j,
                     "name": f"bench-{i[-6:]}-{j}", "role": "master" if j == 0 else "slave",
                     "ip": f"10.99.{j}.1"}
                    for i in ids for j in range(3)])
    finally:
        engine.dispose()


class HttpBench:
    def __init__(self, workdir: Path, config: HttpConfig, out):
        self.workdir = workdir
        self.config = config
        self.out = out
        self.procs: list[Proc] = []
        self.emulator = None
        self.queue = f"lambda-bench-{os.getpid()}"
        self.dispatcher = "celery"
        self.tokens = [f"benchTok{n:03d}_{os.urandom(8).hex()}" for n in
                       range(2 + config.cold_samples * 2)]

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- set up ---------------------------------------------------------------------------

    def start(self) -> None:
        from lambda_testbed.emulator import Emulator

        seed = bench_seed(self.tokens)
        self.emulator = Emulator.from_seed({"users": seed["users"]})
        self.emulator.start("127.0.0.1", 0)
        state = self.workdir / "api-state"
        state.mkdir()
        self.database_url = f"sqlite:///{state / 'lambda.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")}
        env.update({
            "LAMBDA_DATABASE_URL": self.database_url,
            "LAMBDA_AUTH_URL": self.emulator.auth_url,
            "LAMBDA_STATE_DIR": str(state),
            "LAMBDA_SECRET_KEY": Fernet.generate_key().decode(),
            "LAMBDA_BROKER_URL": self.config.broker_url,
            "LAMBDA_QUEUE": self.queue,
        })
        if self.config.workers:
            env["LAMBDA_HTTP_WORKERS"] = str(self.config.workers)
        if self.config.threads:
            env["LAMBDA_HTTP_THREADS"] = str(self.config.threads)
        if self.config.dispatcher == "embedded":
            self.dispatcher = "embedded (the hand-off to the local pool a no-op)"
            env["LAMBDA_DISPATCHER"] = "local"
            product_cmd = python_cmd("-m", "benchmarks.serve", "product-noop")
        elif celery_dispatcher_present() and broker_reachable(self.config.broker_url):
            env["LAMBDA_DISPATCHER"] = "celery"
            product_cmd = python_cmd("-m", "api.cli", "serve")
        else:
            self.dispatcher = "noop (no Celery dispatcher or no broker)"
            env["LAMBDA_DISPATCHER"] = "local"
            product_cmd = python_cmd("-m", "benchmarks.serve", "product-noop")
        seed_file = self.workdir / "seed.yml"
        seed_file.write_text(yaml.safe_dump(seed, sort_keys=False))
        import subprocess

        subprocess.run(python_cmd("-m", "api.cli", "seed", str(seed_file)), env=env,
                       check=True, capture_output=True)
        add_accept_instances(self.database_url, self.config.accept_instances)

        from api.settings import load_settings

        settings = load_settings(env)
        self.workers, self.threads = settings.http_workers, settings.http_threads
        self.bare_port, self.product_port = free_port(), free_port()
        self.bare = Proc("bare", python_cmd("-m", "benchmarks.serve", "bare"),
                         dict(env, LAMBDA_BIND=f"127.0.0.1:{self.bare_port}"),
                         self.workdir / "bare.log")
        self.procs.append(self.bare)
        self.product = Proc("product", product_cmd,
                            dict(env, LAMBDA_BIND=f"127.0.0.1:{self.product_port}"),
                            self.workdir / "product.log")
        self.procs.append(self.product)
        self.bare.wait_http(f"http://127.0.0.1:{self.bare_port}/api/lambda-instances/x/")
        self.product.wait_http(f"http://127.0.0.1:{self.product_port}/api/openapi.json")

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self.dispatcher == "celery":
            delete_queue(self.config.broker_url, self.queue)

    # --- scripts and checks ---------------------------------------------------------------

    def scripts(self, token: str = DEMO_TOKEN) -> dict[str, Path]:
        d = self.workdir
        path = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
        return {
            "reject": wrk.write_script(d, "reject", wrk.POST_ONE, token=token, path=path,
                                       action="stop"),
            "details": wrk.write_script(d, "details", wrk.GET_ONE, token=token, path=path),
            "accept": wrk.write_script(d, "accept", wrk.POST_CYCLE, token=token,
                                       prefix=f"/api/lambda-instances/{ACCEPT_PREFIX}",
                                       action="start"),
        }

    @staticmethod
    def open_loop_requests(scenario: str, id_range=None, token: str = DEMO_TOKEN):
        """Request k of a scenario as bytes, the same requests the wrk scripts send."""
        auth = {"Authorization": f"Token {token}"}
        form = dict(auth, **{"Content-Type": "application/x-www-form-urlencoded"})
        path = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
        if scenario == "reject":
            one = openloop.request_bytes("POST", path, form, b"action=stop")
            return lambda k: one
        if scenario == "details":
            one = openloop.request_bytes("GET", path, auth)
            return lambda k: one
        lo, hi = id_range

        def accept(k: int) -> bytes:
            n = min(lo + k, hi - 1)
            return openloop.request_bytes(
                "POST", f"/api/lambda-instances/{ACCEPT_PREFIX}{n:012x}/", form, b"action=start")
        return accept

    def check_product(self) -> None:
        """The scenarios answer what they claim to measure (409, 200, 202)."""
        s = requests.Session()
        s.trust_env = False
        base = f"http://127.0.0.1:{self.product_port}"
        auth = {"Authorization": f"Token {DEMO_TOKEN}"}
        url = f"{base}/api/lambda-instances/{DEMO_INSTANCE_ID}/"
        r = s.post(url, data={"action": "stop"}, headers=auth, timeout=10)
        assert r.status_code == 409, (r.status_code, r.text)
        assert "already stopped" in r.text, r.text
        r = s.get(url, headers=auth, timeout=10)
        assert r.status_code == 200, (r.status_code, r.text)
        last = self.config.accept_instances - 1
        r = s.post(f"{base}/api/lambda-instances/{ACCEPT_PREFIX}{last:012x}/",
                   data={"action": "start"}, headers=auth, timeout=10)
        assert r.status_code == 202, (r.status_code, r.text)

    # --- the runs -------------------------------------------------------------------------

    def _run(self, port: int, scenario: str, script: Path, duration: float,
             id_range: tuple[int, int] | None = None) -> wrk.WrkResult:
        args = None
        if scenario == "accept":
            if port == self.product_port:
                self._empty_broker_queue()
            lo, hi = id_range or (0, 1)
            args = [str(lo), "2", str(hi)]
        return wrk.run(f"http://127.0.0.1:{port}/", script, duration=duration,
                       connections=self.config.connections, args=args)

    def _empty_broker_queue(self) -> None:
        """Start each accept run on an empty queue, as with workers that keep up.

        Nothing consumes the benchmark's queue, and a RabbitMQ queue of ~80,000 waiting
        persistent messages doubled the product's p99 at a fixed rate (9 -> 17-22 ms):
        each run would be measured against the backlog its predecessors left.
        """
        if self.dispatcher == "celery":
            purge_queue(self.config.broker_url, self.queue)

    def _balanced_run(self, server: Proc, port: int, scenario: str, script: Path,
                      duration: float, id_range=None) -> tuple[wrk.WrkResult, float]:
        """One wrk run and the busiest server process's share of the workers' CPU.

        wrk opens its keep-alive connections in one burst, and whichever worker wakes
        first may accept them all: the run then measures one process, not the server.
        With a single worker the share is 0.0: there is nothing to balance.
        """
        return self._measure_workers(
            server, lambda: self._run(port, scenario, script, duration, id_range))

    @staticmethod
    def _measure_workers(server: Proc, load):
        """``load()``'s result and the busiest server process's share of the CPU it took."""
        workers = children(server.pid)
        before = {pid: cpu_seconds(pid) for pid in workers}
        result = load()
        used = [cpu_seconds(pid) - cpu for pid, cpu in before.items()]
        if len(used) < 2:
            return result, 0.0
        share = max(used) / sum(used) if sum(used) > 0 else 1.0
        return result, share

    def run_ratios(self) -> HttpReport:
        cfg = self.config
        report = HttpReport(dispatcher=self.dispatcher, workers=self.workers,
                            threads=self.threads)
        scripts = self.scripts()
        # Accept ranges: the last id is the check's; the rest is cut in equal slices, one
        # per product run (warm-up included), so every request names a STOPPED instance.
        # + the warm-up's, and two for the paced runs (at half the rate, with their reruns)
        slices = cfg.rounds * (cfg.max_retries + 1) + 3
        size = (cfg.accept_instances - 1) // slices
        ranges = iter([(i * size, (i + 1) * size) for i in range(slices)])
        self.say(f"warm-up: {cfg.warmup:g} s of each scenario on each server")
        for scenario in cfg.scenarios:
            self._run(self.bare_port, scenario, scripts[scenario], cfg.warmup)
            self._run(self.product_port, scenario, scripts[scenario], cfg.warmup,
                      next(ranges) if scenario == "accept" else None)
        for scenario in cfg.scenarios:
            report.pairs[scenario] = []
            for n in range(cfg.rounds):
                # A round counts when neither server had one worker take (nearly) every
                # connection; an unbalanced pair is run again, up to max_retries times.
                for attempt in range(cfg.max_retries + 1):
                    bare, bare_share = self._balanced_run(
                        self.bare, self.bare_port, scenario, scripts[scenario], cfg.duration)
                    product, product_share = self._balanced_run(
                        self.product, self.product_port, scenario, scripts[scenario],
                        cfg.duration, next(ranges) if scenario == "accept" else None)
                    balanced = max(bare_share, product_share) <= cfg.max_worker_share
                    if balanced or attempt == cfg.max_retries:
                        break
                    report.retries += 1
                    self.say(f"  {scenario:8s} round {n + 1}: busiest worker's CPU share "
                             f"bare {bare_share:.2f}, product {product_share:.2f}: run again")
                if not balanced:
                    report.notes.append(f"{scenario} round {n + 1}: workers unbalanced after "
                                        f"{cfg.max_retries} retries (shown, left out of the "
                                        "medians)")
                report.pairs[scenario].append(Pair(bare, product, balanced))
                self.say(f"  {scenario:8s} round {n + 1}: bare {bare.rps:8.0f} req/s "
                         f"p50 {bare.p50_ms:6.2f} ms p99 {bare.p99_ms:6.2f} ms | product "
                         f"{product.rps:8.0f} req/s p50 {product.p50_ms:6.2f} ms "
                         f"p99 {product.p99_ms:6.2f} ms | non-2xx {product.non_2xx} "
                         f"errors {product.socket_errors} | busiest worker "
                         f"{bare_share:.2f} / {product_share:.2f}")
                if scenario == "accept" and product.non_2xx:
                    report.notes.append(f"accept round {n + 1}: {product.non_2xx} non-202 "
                                        "answers (ran out of STOPPED instances?)")
                if product.socket_errors:
                    report.notes.append(f"{scenario} round {n + 1}: "
                                        f"{product.socket_errors} socket errors")
            if cfg.paced_fraction > 0:
                paced_ids = None
                if scenario == "accept":  # two adjacent slices, as one range
                    paced_ids = (next(ranges)[0], next(ranges)[1])
                self._paced_runs(report, scenario, paced_ids)
        return report

    def _paced_runs(self, report: HttpReport, scenario: str, id_range) -> None:
        """Latency of both servers at the same offered load, below the product's ceiling.

        The closed-loop rounds compare p99 at saturation, where 32 connections queue
        behind whichever server is slower; this offers both one fixed request rate
        (``benchmarks.openloop``) and compares the latency each request saw, in
        interleaved rounds (bare, product, bare, product, ...) like the ratios.
        """
        cfg = self.config
        rate = cfg.paced_fraction * report.median(scenario, "product", "rps")
        report.paced[scenario] = []
        ids = id_range  # the product's accept ids go on from run to run
        for n in range(cfg.rounds):
            bare, _ = self._paced_run(report, scenario, "bare", self.bare, self.bare_port,
                                      rate, (0, 1 << 40))
            product, ids = self._paced_run(report, scenario, "product", self.product,
                                           self.product_port, rate, ids)
            report.paced[scenario].append(Pair(bare, product))
            if scenario == "accept" and set(product.statuses) != {202}:
                report.notes.append(f"accept at a fixed rate, round {n + 1}: answers "
                                    f"{product.statuses}")
            self.say(f"  {scenario:8s} open loop round {n + 1} at {rate:.0f} req/s: bare p50 "
                     f"{bare.p50_ms:6.2f} ms p99 {bare.p99_ms:6.2f} ms | product p50 "
                     f"{product.p50_ms:6.2f} ms p99 {product.p99_ms:6.2f} ms | late sends "
                     f"{bare.late} / {product.late}")

    def _paced_run(self, report: HttpReport, scenario: str, side: str, server, port: int,
                   rate: float, ids):
        """One open-loop run, and the accept ids left for the next.

        As in the rounds, a run where one worker took every connection measures one
        process, so it is run again.
        """
        cfg = self.config
        for _attempt in range(cfg.max_retries + 1):
            if scenario == "accept" and side == "product":
                self._empty_broker_queue()
            load = partial(openloop.run, "127.0.0.1", port,
                           self.open_loop_requests(scenario, ids), rate=rate,
                           duration=cfg.duration, connections=cfg.connections)
            result, share = self._measure_workers(server, load)
            if ids is not None:
                ids = (ids[0] + result.requests, ids[1])
            if share <= cfg.max_worker_share:
                break
            report.retries += 1
            self.say(f"  {scenario:8s} open loop on {side}: busiest worker's CPU share "
                     f"{share:.2f}: run again")
        return result, ids

    def run_identity(self, report: HttpReport) -> None:
        """Upstream token checks for N requests with one new token, and cold vs warm."""
        cfg = self.config
        token = self.tokens[0]
        script = wrk.write_script(self.workdir, "counted", wrk.GET_COUNTED, token=token,
                                  path=f"/api/lambda-instances/{DEMO_INSTANCE_ID}/")
        # wrk runs for a fixed time; each of its threads stops after its share of
        # requests, so give it ample time at the measured rate of the details path.
        rate = (report.median("details", "product", "rps") if "details" in report.pairs
                else 500.0)
        duration = min(120.0, max(3.0, 3.0 * cfg.identity_requests / max(rate, 1.0)))
        before = self.emulator.request_counts().get("tokens", 0)
        started = time.monotonic()
        threads = 2
        result = wrk.run(f"http://127.0.0.1:{self.product_port}/", script, duration=duration,
                         connections=cfg.connections, threads=threads,
                         args=[str(cfg.identity_requests // threads)])
        elapsed = time.monotonic() - started
        if result.requests < cfg.identity_requests:
            report.notes.append(f"identity run: only {result.requests} requests answered")
        calls = self.emulator.request_counts().get("tokens", 0) - before
        report.identity.update({
            "requests": result.requests, "identity_calls": calls, "seconds": elapsed,
            "ttl": 60.0, "workers": self.workers,
        })
        # Cold vs warm: a new token on a new keep-alive connection, then again on it.
        cold, warm = [], []
        for token in self.tokens[2:2 + cfg.cold_samples]:
            conn = http.client.HTTPConnection("127.0.0.1", self.product_port, timeout=10)
            try:
                for bucket in (cold, warm):
                    t0 = time.perf_counter()
                    conn.request("GET", f"/api/lambda-instances/{DEMO_INSTANCE_ID}/",
                                 headers={"Authorization": f"Token {token}"})
                    resp = conn.getresponse()
                    resp.read()
                    bucket.append((time.perf_counter() - t0) * 1000)
                    assert resp.status == 200, resp.status
            finally:
                conn.close()
        report.identity.update({"cold_ms": statistics.median(cold),
                                "warm_ms": statistics.median(warm),
                                "samples": len(cold)})

    def measure_memory(self, report: HttpReport) -> None:
        for name, proc in (("product", self.product), ("bare", self.bare)):
            pids = tree(proc.pid)
            report.memory[name] = {pid: status_kb(pid, "VmHWM") or 0 for pid in pids}


def run_http(workdir: Path, config: HttpConfig, out) -> HttpReport:
    bench = HttpBench(workdir, config, out)
    try:
        bench.start()
        bench.check_product()
        bench.say(f"servers up: bare on :{bench.bare_port}, product on :{bench.product_port}"
                  f" (hypercorn {bench.workers} workers x {bench.threads} domain threads, "
                  f"dispatcher {bench.dispatcher}); load: wrk -t2 -c{config.connections} "
                  f"-d{config.duration:g}s, interleaved bare/product x{config.rounds}")
        report = bench.run_ratios()
        if config.identity:
            bench.run_identity(report)
        bench.measure_memory(report)
        return report
    finally:
        bench.stop()
