"""``python -m benchmarks.run`` (``make bench``): every benchmark, then the summary.

The output ends with exactly seven lines::

    RATIO reject <product req/s / bare req/s, side by side in one run>
    RATIO details <...>
    RATIO accept <...>
    CTRL_CPU_PER_HOST <controller CPU-s per added host per start+stop through the product>
    CTRL_CPU_PER_HOST_PLAIN <the same for plain ansible-playbook on the same playbooks>
    CHAINS_RATIO <demo start, chains side by side / one after another, medians>
    CHECKS_SHARE <the service checks' share of a start's time>

``python -m benchmarks.run chains`` (``make bench-chains``) runs only the chains part.
"""

from __future__ import annotations

import argparse
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SUMMARY_KEYS = ("RATIO reject", "RATIO details", "RATIO accept", "CTRL_CPU_PER_HOST",
                "CTRL_CPU_PER_HOST_PLAIN", "CHAINS_RATIO", "CHECKS_SHARE")


def _version_of(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def machine() -> dict:
    import falcon
    import sqlalchemy

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20
                                  ).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "n/a"

    import os
    import sqlite3

    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(), "falcon": falcon.__version__,
        "hypercorn": _version_of("hypercorn"), "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version, "wrk": version(["wrk", "--version"]).split(" [")[0],
        "ansible": version([str(Path(sys.executable).parent / "ansible-playbook"), "--version"]),
        "kernel": platform.release(),
    }


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", nargs="?", choices=("all", "chains"), default="all",
                   help="chains: only part 5, the start's chains (no wrk, no lab)")
    p.add_argument("--duration", type=float, default=6.0, help="seconds of each wrk run")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved bare/product pairs per scenario (median taken)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--scenarios", default="reject,details,accept")
    p.add_argument("--workers", type=int, help="server worker processes of both servers "
                   "(default: the product's LAMBDA_HTTP_WORKERS)")
    p.add_argument("--threads", type=int, help="domain threads per worker of both servers")
    p.add_argument("--skip-identity", action="store_true")
    p.add_argument("--dispatcher", choices=("embedded", "celery"), default="embedded",
                   help="accept path: the embedded default (SQLite, the hand-off to the local "
                        "pool a no-op), or Celery over the machine's RabbitMQ")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-orchestration", action="store_true")
    p.add_argument("--lab", dest="lab", action="store_true", default=None,
                   help="orchestrate SSH lab hosts (default: when root and ip netns work)")
    p.add_argument("--no-lab", dest="lab", action="store_false",
                   help="orchestrate local hosts (ansible_connection=local) instead")
    p.add_argument("--hosts", default="2,8", help="host counts of the orchestration runs")
    p.add_argument("--repeats", type=int, default=3,
                   help="start+stop rounds per host count and kind (median taken)")
    p.add_argument("--chains-repeats", type=int, default=3,
                   help="demo starts per chains mode (median taken)")
    p.add_argument("--skip-chains", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.part == "chains":
        args.skip_http = args.skip_orchestration = True
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = sys.stdout
    if shutil.which("wrk") is None and not args.skip_http:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="lambda-bench-"))
    summary: dict[str, str] = {}
    try:
        if not args.skip_http:
            from benchmarks.http_bench import HttpConfig, run_http
            from benchmarks.report import print_http

            config = HttpConfig(duration=args.duration, rounds=args.rounds,
                                connections=args.connections,
                                scenarios=tuple(args.scenarios.split(",")),
                                workers=args.workers, threads=args.threads,
                                identity=not args.skip_identity,
                                dispatcher=args.dispatcher)
            print("\n== 1-2. API ceiling ratio, identity round trips ==", flush=True)
            report = run_http(workdir, config, out)
            summary.update(print_http(report, out))
        if not args.skip_orchestration:
            from benchmarks.orchestration import run_orchestration
            from benchmarks.report import print_orchestration

            print("\n== 3-4. Controller CPU per host, and memory ==", flush=True)
            hosts = [int(x) for x in args.hosts.split(",")]
            result = run_orchestration(workdir, hosts, args.lab, out, repeats=args.repeats)
            summary.update(print_orchestration(result, out))
        if not args.skip_chains:
            from benchmarks.chains import run_chains

            print("\n== 5. The start's chains: one after another, side by side ==", flush=True)
            summary.update(run_chains(workdir, out, repeats=args.chains_repeats).print(out))
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n== summary ==")
    for key in SUMMARY_KEYS:
        print(f"{key} {summary.get(key, 'n/a')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
