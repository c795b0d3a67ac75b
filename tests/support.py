"""Small helpers the tests share: probing ports, waiting, finding our own processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path

from api.adapters.proctree import find_processes_with_cmdline


def port_open(ip: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1):
    """The predicate's first truthy value within ``timeout``, else its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=3) as response:
        return json.load(response)


def processes_under(root: Path) -> list[int]:
    """Pids whose command line mentions ``root`` (the stand-ins' home or a host's dir)."""
    return find_processes_with_cmdline(str(root))


def kill_under(root: Path) -> None:
    """Finalizer: kill every daemon started from ``root`` (by pid file and by our own
    path in the command line; never by process name)."""
    for pidfile in root.rglob("*.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
    for pid in processes_under(root):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def start_calls(fn, args, before=None) -> tuple[list[threading.Thread], list]:
    """``fn(arg)`` for every arg, one thread each, started now: (the threads, the list each
    call's result or exception is appended to as it ends). ``before`` runs first in each
    thread (a barrier's ``wait``, say)."""
    outcomes: list = []
    lock = threading.Lock()

    def call(arg):
        if before is not None:
            before()
        try:
            result = fn(arg)
        except Exception as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=call, args=(arg,)) for arg in args]
    for thread in threads:
        thread.start()
    return threads, outcomes


def join_calls(threads: list[threading.Thread], timeout: float = 30.0) -> None:
    for thread in threads:
        thread.join(timeout=timeout)
        assert not thread.is_alive(), "a call hung"
