"""``python -m benchmarks.scale`` (``make scale``): the control plane at scale, with faults.

One run: a fresh PostgreSQL database and an emulator seeded with ``--instances`` instances
of ``--vms`` VMs across ``--users`` users; a private RabbitMQ node; 2 API processes
(``lambda-service serve``) and simulated Celery workers (``benchmarks.scale_worker``: the
product's worker with a playbook runner that replays recorded timings; power goes to the
emulator over HTTP). The users' mix (``benchmarks.scale_mix``) runs through the phases,
one per ``--workers`` count (default 2 then 4), while faults strike: a worker SIGKILLed
every ``--kill-every`` seconds (a new one started in its place), one API process
restarted, the broker restarted once, the emulator answering 503 in bursts. Then the run
drains, measures the database's load at rest, checks the end state
(``benchmarks.scale_checks``) and prints its figures. Exit status 1 if a check failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from benchmarks import scale_checks as checks
from benchmarks.scale_mix import Mix, MixConfig, Phase
from benchmarks.scale_procs import Cluster, Occupancy, PrivateRabbit, Sampler
from benchmarks.scale_seed import instance_id, make_seed, make_users, seed_everything, user_of
from benchmarks.simulated_runner import DEFAULT_TIMINGS, load_timings

ADMIN_URL = os.environ.get("LAMBDA_TEST_POSTGRES_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
FAULTS = ("kill", "api", "broker", "emulator")


@dataclass
class ScaleConfig:
    instances: int = 1000
    vms: int = 10
    users: int = 50
    workers: tuple[int, ...] = (2, 4)
    duration: float = 240.0  # seconds per phase
    concurrency: int = 8  # threads per worker
    speed: float = 0.25  # LAMBDA_SIM_SPEED
    fail_rate: float = 0.02  # LAMBDA_SIM_FAIL_RATE
    lease: float = 30.0
    kill_every: float = 60.0
    faults: tuple[str, ...] = FAULTS
    emulator_burst: float = 15.0  # seconds of 503s
    emulator_error_rate: float = 0.3
    transition: float = 2.0  # the emulator's power transition, seconds
    rest: float = 30.0  # the quiet period measured after the drain
    drain_timeout: float = 300.0
    max_outstanding: int | None = None  # default: 3 x the most workers x concurrency
    wave_every: float = 20.0
    seed: int = 24
    keep: bool = False
    worker_cmd: list[str] = field(
        default_factory=lambda: [sys.executable, "-m", "benchmarks.scale_worker"])

    @classmethod
    def quick(cls, **overrides) -> ScaleConfig:
        """The short version (the test suite's): 100 instances, one phase, one kill."""
        values = dict(instances=100, users=10, workers=(2,), duration=45.0, speed=0.1,
                      lease=12.0, kill_every=20.0, faults=("kill",), rest=10.0,
                      transition=0.5, wave_every=8.0, concurrency=4, drain_timeout=180.0)
        values.update(overrides)
        return cls(**values)


@dataclass
class ScaleResult:
    checks: list[checks.Check]
    phases: list[checks.PhaseFigures]
    figures: dict[str, str]
    lines: list[str]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _say(lines: list[str], line: str) -> None:
    lines.append(line)
    print(line, flush=True)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class _Database:
    def __init__(self):
        self.name = f"lambda_scale_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"
        self.engine = create_engine(self.url, pool_size=2)

    def unfinished(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text("select count(*) from actions where state not in "
                                     "('succeeded', 'failed', 'cancelled')")).scalar_one()

    def ended_between(self, began: datetime, ended: datetime) -> int:
        with self.engine.connect() as conn:
            return conn.execute(text("select count(*) from actions where finished_at >= :a "
                                     "and finished_at < :b"), {"a": began, "b": ended}
                                ).scalar_one()

    def queue_waits(self, began: datetime, ended: datetime) -> list[float]:
        """Accepted to first claim, in seconds, of the actions first claimed in the window."""
        with self.engine.connect() as conn:
            return [float(r.w) for r in conn.execute(text(
                "select extract(epoch from started_at - created_at) as w from actions "
                "where started_at >= :a and started_at < :b"), {"a": began, "b": ended})]

    def rows(self):
        with self.engine.connect() as conn:
            actions = {r.id: dict(r._mapping) for r in conn.execute(text(
                "select id, state, error, kind, attempts from actions"))}
            instances = {r.id: dict(r._mapping) for r in conn.execute(text(
                "select id, status, failure_message from lambda_instances"))}
            servers_of: dict[str, list[str]] = {}
            for r in conn.execute(text("select instance_id, server_id from instance_hosts")):
                servers_of.setdefault(r.instance_id, []).append(r.server_id)
        return actions, instances, servers_of

    def drop(self) -> None:
        self.engine.dispose()
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


class _Faults:
    """The faults of one phase, each at its time (seconds from the phase's start)."""

    def __init__(self, config: ScaleConfig, phase_index: int, phases: int):
        self.plan: list[tuple[float, str]] = []
        d = config.duration
        if "kill" in config.faults:
            t = config.kill_every
            while t < d - 5:
                self.plan.append((t, "kill"))
                t += config.kill_every
        last = phases - 1
        if "api" in config.faults and phase_index == 0:
            self.plan.append((0.35 * d, "api"))
        if "broker" in config.faults and phase_index == last:
            self.plan.append((0.5 * d if phases > 1 else 0.65 * d, "broker"))
        if "emulator" in config.faults:
            self.plan.append((0.75 * d, "emulator"))
        self.plan.sort()


def _apply(what: str, cluster: Cluster, rabbit: PrivateRabbit, config: ScaleConfig,
           rng: random.Random, phase: Phase) -> None:
    if what == "kill":
        victim = cluster.kill_random_worker(rng)
        phase.note(f"worker {victim.name} (pid {victim.pid}) SIGKILLed")
        fresh = cluster.start_worker()
        phase.note(f"worker {fresh.name} (pid {fresh.pid}) started in its place")
    elif what == "api":
        index = rng.randrange(len(cluster.apis))
        down = cluster.restart_api(index)
        phase.note(f"API process {index + 1} restarted ({down:.1f} s to answer again)")
    elif what == "broker":
        began = time.monotonic()
        rabbit.stop()
        phase.note("broker stopped (rabbitmqctl stop)")
        rabbit.start()
        phase.note(f"broker up again ({time.monotonic() - began:.1f} s down)")
    elif what == "emulator":
        cluster.set_faults(error_rate=config.emulator_error_rate)
        phase.note(f"emulator: {config.emulator_error_rate:.0%} of requests answered 503 "
                   f"for {config.emulator_burst:.0f} s")
        time.sleep(config.emulator_burst)
        cluster.set_faults(error_rate=0.0)
        phase.note("emulator: 503 burst over")


def expected_action_seconds(speed: float, transition: float,
                            timings_path: str | Path = DEFAULT_TIMINGS) -> dict[str, float]:
    """The replayed length of a start and of a stop, by kind: the power transition, then
    the slowest chain of the recorded playbooks (chains run side by side), and for a start
    the slowest check chain, at ``speed``."""
    playbooks = load_timings(timings_path)["playbooks"]

    def slowest(prefix: str) -> float:
        return max((v["wall_seconds"] for k, v in playbooks.items() if k.startswith(prefix)),
                   default=0.0)
    return {"start": transition + speed * (slowest("lambda-start-") + slowest("lambda-check-")),
            "stop": transition + speed * slowest("lambda-stop-")}


def run_scale(config: ScaleConfig) -> ScaleResult:
    """The whole run; every process it started is stopped and the database dropped, also on
    a failure or a Ctrl-C."""
    lines: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="lambda-scale-"))
    rng = random.Random(config.seed)
    database = rabbit = cluster = sampler = mix = None
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        database = _Database()
        seed = make_seed(config.instances, config.vms, config.users, config.transition)
        timings = seed_everything(database.url, seed, workdir / "seed.json")
        _say(lines, f"seeded {timings['instances']} instances of {config.vms} VMs over "
                    f"{config.users} users: database {timings['seed_database']:.1f} s "
                    f"(migrations {timings['migrate']:.1f} s), emulator seed file "
                    f"{timings['seed_file']:.1f} s")
        rabbit = PrivateRabbit(workdir)
        rabbit.start()
        env = {"LAMBDA_SECRET_KEY": Fernet.generate_key().decode(),
               "LAMBDA_QUEUE": f"lambda-scale-{uuid.uuid4().hex[:8]}",
               "LAMBDA_LEASE_SECONDS": str(config.lease),
               "LAMBDA_HTTP_WORKERS": "1",
               "LAMBDA_SIM_SPEED": str(config.speed),
               "LAMBDA_SIM_FAIL_RATE": str(config.fail_rate),
               "LAMBDA_SIM_SEED": str(config.seed)}
        cluster = Cluster(workdir, database.url, rabbit.url, workdir / "seed.json", env=env,
                          worker_cmd=config.worker_cmd, concurrency=config.concurrency)
        began = time.monotonic()
        cluster.start_emulator()
        _say(lines, f"emulator up with {config.instances * config.vms} servers in "
                    f"{time.monotonic() - began:.1f} s")
        cluster.start_api()
        cluster.start_api()
        for _ in range(config.workers[0]):
            cluster.start_worker()
        sampler = Sampler(cluster, rabbit, database.name, ADMIN_URL)
        sampler.start()

        users = make_users(config.users)
        instances_of: dict[str, list[str]] = {}
        for k in range(1, config.instances + 1):
            instances_of.setdefault(users[user_of(k, config.users)].id, []).append(
                instance_id(k))
        initial = {i["id"]: i["status"] for i in seed["instances"]}
        # Outstanding actions: 3 x the most worker threads, so that even the last phase has
        # work waiting; each user keeps its share in flight between the bursts.
        cap = config.max_outstanding or 3 * max(config.workers) * config.concurrency
        lengths = expected_action_seconds(config.speed, config.transition)
        mean_length = sum(lengths.values()) / len(lengths)
        mix = Mix(cluster.api_urls(), users, instances_of, initial,
                  MixConfig(wave_every=config.wave_every, max_outstanding=cap,
                            seed=config.seed, action_seconds=lengths))
        _say(lines, f"offered: {cap} actions outstanding (each user keeps {mix.per_user} in "
                    f"flight, bursts every {config.wave_every:g} s); a replayed start "
                    f"{lengths['start']:.1f} s, stop {lengths['stop']:.1f} s: "
                    + ", ".join(f"{n} workers do about "
                                f"{n * config.concurrency * 60 / mean_length:.0f}/min"
                                for n in config.workers))
        mix.start()

        phases: list[checks.PhaseFigures] = []
        for index, count in enumerate(config.workers):
            while len(cluster.live_workers()) < count:
                cluster.start_worker()
            phase = Phase(count)
            mix.phase = index
            _say(lines, f"== phase {index + 1}: {count} workers x {config.concurrency} "
                        f"threads, {config.duration:.0f} s, at most {cap} actions outstanding")
            start_snap, start_wall = sampler.phase_start(), _utcnow()
            occupancy = Occupancy(cluster, database.url).start()
            phase_began = time.monotonic()
            for at, what in _Faults(config, index, len(config.workers)).plan:
                delay = phase_began + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                _apply(what, cluster, rabbit, config, rng, phase)
            time.sleep(max(phase_began + config.duration - time.monotonic(), 0))
            occupied = occupancy.stop()
            end_snap, end_wall = sampler.snapshot(), _utcnow()
            lines.extend(phase.events)
            delta = Sampler.delta(start_snap, end_snap)
            phases.append(checks.PhaseFigures(
                workers=count, seconds=delta["seconds"],
                ended=database.ended_between(start_wall, end_wall),
                accept_ms=[r.ms for r in mix.records if r.kind == "accept" and r.phase == index],
                pg_transactions=delta["transactions"] - occupied["queries"],
                worker_statements=delta["statements"],
                rss_mb=delta["rss_mb"], cpu_seconds=delta["cpu"],
                machine_busy=delta["machine_busy"],
                in_flight=occupied["in_flight"], occupancy=occupied["occupancy"],
                backlog=occupied["backlog"], backlog_share=occupied["backlog_share"],
                occupancy_timeline=occupied["timeline"],
                queue_wait_s=database.queue_waits(start_wall, end_wall)))

        _say(lines, "== drain: no new actions; waiting for every accepted one to end")
        mix.stop_accepting()
        began = time.monotonic()
        while database.unfinished() and time.monotonic() - began < config.drain_timeout:
            time.sleep(2)
        mix.stop()
        _say(lines, f"drained in {time.monotonic() - began:.0f} s "
                    f"({database.unfinished()} actions unfinished)")

        time.sleep(5)  # the last writes' statistics reach pg_stat_database
        before = sampler.snapshot()
        time.sleep(config.rest)
        rest = Sampler.delta(before, sampler.snapshot())

        actions, instances, servers_of = database.rows()
        servers = _settled_servers(cluster, config)
        runs = checks.journal_runs(checks.read_journal(cluster.journal), cluster.kills)
        results = [checks.check_actions_ended(mix.accepted, actions),
                   checks.check_no_transitional(instances),
                   checks.check_journal(runs),
                   checks.check_states_agree(instances, servers_of, servers)]
        _say(lines, "== end checks")
        for check in results:
            _say(lines, check.line())
        figures = _figures(phases, rest, mix, actions, sampler, config)
        _say(lines, "== figures")
        for key, value in figures.items():
            _say(lines, f"{key} {value}")
        return ScaleResult(results, phases, figures, lines)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for closing in (mix and mix.stop, sampler and sampler.stop, cluster and cluster.close,
                        rabbit and rabbit.close, database and database.drop):
            if closing:
                with contextlib.suppress(Exception):
                    closing()
        if config.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _raise_interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _settled_servers(cluster: Cluster, config: ScaleConfig) -> dict[str, dict]:
    """The emulator's servers once none is in a transition (a cancelled power-on's VMs
    finish theirs), or as they are after a bound."""
    deadline = time.monotonic() + max(10 * config.transition, 10)
    while True:
        servers = cluster.servers()
        if not any(s.get("task_state") for s in servers.values()) or \
                time.monotonic() > deadline:
            return servers
        time.sleep(config.transition)


def _figures(phases, rest, mix, actions, sampler, config) -> dict[str, str]:
    f = checks.fmt
    tag = " ".join
    cores = os.cpu_count() or 1
    accept = [r.ms for r in mix.records if r.kind == "accept"]
    out = {
        "SCALE_ACTIONS_PER_MIN_PER_WORKER": tag(
            f"{p.workers}w={f(p.actions_per_min_per_worker)}" for p in phases),
        "SCALE_ACTIONS_PER_MIN": tag(
            f"{p.workers}w={f(p.actions_per_min_per_worker * p.workers)}" for p in phases
            if p.actions_per_min_per_worker is not None),
        "SCALE_ACCEPT_MS": f"p50={f(checks.percentile(accept, 50))} "
                           f"p99={f(checks.percentile(accept, 99))} n={len(accept)} " + tag(
            f"{p.workers}w:p50={f(checks.percentile(p.accept_ms, 50))},"
            f"p99={f(checks.percentile(p.accept_ms, 99))}" for p in phases),
        "SCALE_DB_TRANSACTIONS_PER_ACTION": tag(
            f"{p.workers}w={f(checks.ratio(p.pg_transactions, p.ended))}" for p in phases),
        "SCALE_WORKER_STATEMENTS_PER_ACTION": tag(
            f"{p.workers}w={f(checks.ratio(p.worker_statements, p.ended))}" for p in phases),
        "SCALE_AT_REST_PER_S": (
            f"transactions={f(checks.ratio(rest['transactions'], rest['seconds']), 2)} "
            f"worker_statements={f(checks.ratio(rest['statements'], rest['seconds']), 2)} "
            f"({config.instances} instances, {config.workers[-1]} workers, "
            f"lease {config.lease:g} s)"),
        "SCALE_RSS_MB_PER_WORKER": tag(
            f"{p.workers}w=max {f(max(p.rss_mb, default=None), 0)}" for p in phases),
        "SCALE_CPU_SHARE": tag(
            f"{p.workers}w:" + ",".join(f"{g}={100 * s:.0f}%" for g, s in
                                         sorted(p.cpu_share(cores).items()))
            + f",machine={f(100 * (p.machine_busy or 0), 0)}%" for p in phases),
        "SCALE_WORKER_OCCUPANCY": tag(
            f"{p.workers}w={f(100 * p.occupancy if p.occupancy is not None else None, 0)}%"
            f"(in_flight={f(p.in_flight)})" for p in phases),
        "SCALE_OCCUPANCY_BY_20S": tag(
            f"{p.workers}w=" + ",".join(f(None if o is None else 100 * o, 0)
                                        for o in p.occupancy_timeline) for p in phases),
        "SCALE_BACKLOG": tag(
            f"{p.workers}w:mean={f(p.backlog)},present="
            f"{f(100 * p.backlog_share if p.backlog_share is not None else None, 0)}%"
            for p in phases),
        "SCALE_THREAD_S_PER_ACTION": tag(
            f"{p.workers}w={f(p.thread_seconds_per_action)}" for p in phases),
        "SCALE_PHASE_LIMIT": "; ".join(
            f"{p.workers}w: {checks.phase_limit(p, cores)[1]}" for p in phases),
        "SCALE_QUEUE_WAIT_S": tag(
            f"{p.workers}w:p50={f(checks.percentile(p.queue_wait_s, 50))},"
            f"p99={f(checks.percentile(p.queue_wait_s, 99))}" for p in phases),
        "SCALE_CPU_S_PER_ACTION": tag(
            f"{p.workers}w:" + ",".join(f"{g}={s:.2f}" for g, s in
                                         sorted(p.cpu_per_action().items()))
            + f",all={sum(p.cpu_per_action().values()):.2f}" for p in phases),
        "SCALE_CPU_BOUND_ACTIONS_PER_MIN": tag(
            f"{p.workers}w={f(checks.cpu_bound_actions_per_min(p.cpu_per_action(), cores), 0)}"
            for p in phases) + f" ({cores} cores)",
        "SCALE_PEAK_DB_CONNECTIONS": str(sampler.peak_connections),
    }
    if len(phases) >= 2:
        resource, why = checks.saturating_resource(phases[0], phases[-1], cores)
        out["SCALE_SATURATES_FIRST"] = f"{resource} [{why}]"
    states: dict[str, int] = {}
    for row in actions.values():
        states[row["state"]] = states.get(row["state"], 0) + 1
    out["SCALE_ACTIONS"] = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + \
        f"; requests: {sum(1 for _ in mix.records)}"
    ended = sum(n for s, n in states.items() if s in checks.ENDED)
    cancelled = checks.ratio(100 * states.get("cancelled", 0), ended)
    out["SCALE_CANCEL_SHARE"] = (
        f"cancelled={f(cancelled)}% of {ended} ended; cancels planned="
        f"{len(mix.cancels_planned)} sent={mix.cancels_sent} of {len(mix.accepted)} accepted "
        f"(cancel_share {mix.config.cancel_share:g})")
    return out


def parse_args(argv) -> ScaleConfig:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="the short version: 100 instances, 2 workers, one kill")
    p.add_argument("--instances", type=int)
    p.add_argument("--vms", type=int, help="VMs per instance (default 10)")
    p.add_argument("--users", type=int)
    p.add_argument("--workers", help="worker counts of the phases, e.g. 2,4")
    p.add_argument("--duration", type=float, help="seconds per phase")
    p.add_argument("--concurrency", type=int, help="threads per worker")
    p.add_argument("--speed", type=float, help="LAMBDA_SIM_SPEED: factor on recorded times")
    p.add_argument("--fail-rate", type=float, help="LAMBDA_SIM_FAIL_RATE")
    p.add_argument("--lease", type=float, help="LAMBDA_LEASE_SECONDS")
    p.add_argument("--kill-every", type=float, help="seconds between worker kills")
    p.add_argument("--faults", help=f"comma separated, of {','.join(FAULTS)} (or none)")
    p.add_argument("--rest", type=float, help="seconds of the at-rest measurement")
    p.add_argument("--max-outstanding", type=int)
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items()
                 if v is not None and k not in ("quick", "workers", "faults", "keep")}
    if args.workers:
        overrides["workers"] = tuple(int(x) for x in args.workers.split(","))
    if args.faults is not None:
        overrides["faults"] = tuple(x for x in args.faults.split(",") if x in FAULTS)
    overrides["keep"] = args.keep
    return ScaleConfig.quick(**overrides) if args.quick else ScaleConfig(**overrides)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    problem = PrivateRabbit.available()
    if problem:
        print(f"cannot run: RabbitMQ is needed ({problem})", file=sys.stderr)
        return 2
    try:
        result = run_scale(config)
    except KeyboardInterrupt:
        print("interrupted; every process stopped", file=sys.stderr)
        return 130
    print("SCALE_RESULT " + ("PASS" if result.ok else "FAIL"))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
