"""``python -m lambda_testbed.emulator --seed FILE --bind HOST:PORT``: serve until a signal."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from api.seed import SeedError
from api.seed import load_seed as read_seed_file
from lambda_testbed.emulator.server import Emulator

log = logging.getLogger(__name__)


def parse_bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port)


def load_seed(path: str) -> dict:
    try:
        return read_seed_file(path)
    except SeedError as exc:
        raise SystemExit(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lambda_testbed.emulator",
                                     description="Serve a Synnefo (Astakos + Cyclades) emulator.")
    parser.add_argument("--seed", required=True, help="YAML seed file (users, instances, ...)")
    parser.add_argument("--bind", type=parse_bind, default=("127.0.0.1", 9696),
                        help="HOST:PORT to listen on (port 0 picks a free one)")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    emulator = Emulator.from_seed(load_seed(args.seed))
    stop = threading.Event()

    def _request_stop(signum, _frame):
        log.info("signal %s: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    try:
        emulator.start(*args.bind)
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", *args.bind, exc)
        return 1
    log.info("auth URL: %s", emulator.auth_url)
    # One machine-readable line, so a parent process can learn a port picked by the kernel.
    print(f"AUTH_URL={emulator.auth_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
