"""A Celery worker like ``lambda-service worker``, with the simulated playbook runner.

    python -m benchmarks.scale_worker [--concurrency N] [--config FILE]

Everything but the playbooks is the product's own: the settings from the environment and
config file (``LAMBDA_DATABASE_URL``, ``LAMBDA_BROKER_URL``, ``LAMBDA_SECRET_KEY``,
``LAMBDA_QUEUE``, ``LAMBDA_WORKER_METRICS_BIND``...), ``bootstrap`` and ``run_worker``, so
power goes through the compute service over HTTP and the worker's SIGTERM (a warm shutdown
that hands running actions back) and SIGKILL are the real worker's. The playbook runner is
``benchmarks.simulated_runner.SimulatedRunner``, and the hosts count as local
(``ansible_connection=local``, no host key pinning): no SSH wait, as in the demo.

Extra environment:
  LAMBDA_SIM_TIMINGS     the timings file (default benchmarks/data/playbook_timings.json)
  LAMBDA_SIM_SOURCE      lab | demo (default: the file's default source)
  LAMBDA_SIM_SPEED       factor on the recorded durations (default 1.0)
  LAMBDA_SIM_FAIL_RATE   chance that a playbook run fails on one task and host (default 0)
  LAMBDA_SIM_SEED        the failures' random seed (default: none)
  LAMBDA_SIM_JOURNAL     append each run's start and end to this file (JSON lines)
  LAMBDA_SIM_STATS_DIR   write <dir>/<pid>.json = {"pid", "statements", "rss_bytes", "t"}
                         every 2 s and at exit: the SQL statements this worker's engine ran
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import psutil
from sqlalchemy import event

from api.settings import SettingsError, load_settings
from benchmarks.simulated_runner import DEFAULT_TIMINGS, SimulatedRunner, load_timings

log = logging.getLogger("benchmarks.scale_worker")

STATS_INTERVAL = 2.0


def runner_from_env(env=os.environ) -> SimulatedRunner:
    timings = load_timings(env.get("LAMBDA_SIM_TIMINGS") or DEFAULT_TIMINGS,
                           env.get("LAMBDA_SIM_SOURCE") or None)
    seed = env.get("LAMBDA_SIM_SEED")
    return SimulatedRunner(
        timings,
        speed=float(env.get("LAMBDA_SIM_SPEED") or 1.0),
        fail_rate=float(env.get("LAMBDA_SIM_FAIL_RATE") or 0.0),
        seed=int(seed) if seed else None,
        journal=env.get("LAMBDA_SIM_JOURNAL") or None,
    )


class StatementStats:
    """Counts the SQL statements an engine executes; writes them with this process's RSS."""

    def __init__(self, engine, directory: str | Path, interval: float = STATS_INTERVAL):
        self.directory = Path(directory)
        self.interval = interval
        self.statements = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process = psutil.Process()
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args) -> None:
        with self._lock:
            self.statements += 1

    def write(self) -> None:
        with self._lock:
            statements = self.statements
        pid = os.getpid()
        data = {"pid": pid, "statements": statements,
                "rss_bytes": self._process.memory_info().rss, "t": time.time()}
        path = self.directory / f"{pid}.json"
        tmp = self.directory / f".{pid}.json.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)
        except OSError as exc:
            log.error("cannot write the worker's stats to %s: %s", path, exc)

    def start(self) -> StatementStats:
        self.write()
        self._thread = threading.Thread(target=self._loop, name="sim-stats", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.write()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_worker",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--config", help="YAML settings file (else $LAMBDA_CONFIG)")
    args = parser.parse_args(argv)

    from api.bootstrap import bootstrap
    from api.worker.celery_app import run_worker

    try:
        settings = load_settings(config_file=args.config)
    except SettingsError as exc:
        print(f"scale_worker: {exc}", file=sys.stderr)
        return 2
    # The simulated hosts are local: no SSH wait, no host keys to pin.
    settings = settings.replace(ansible_connection="local", ssh_host_key_checking="off")
    try:
        runner = runner_from_env()
        container = bootstrap(settings, run_migrations=False, runner=runner)
    except SettingsError as exc:
        print(f"scale_worker: {exc}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("scale worker: cannot build the orchestrator")
        return 1
    log.info("scale worker: simulated playbooks from %s (source %s), speed %g, fail rate %g",
             os.environ.get("LAMBDA_SIM_TIMINGS") or DEFAULT_TIMINGS, runner.source,
             runner.speed, runner.fail_rate)
    stats_dir = os.environ.get("LAMBDA_SIM_STATS_DIR")
    stats = (StatementStats(container.uow_factory.engine, stats_dir).start()
             if stats_dir else None)
    try:
        return run_worker(container, concurrency=args.concurrency)
    finally:
        container.close()
        if stats is not None:
            stats.stop()


if __name__ == "__main__":
    sys.exit(main())
