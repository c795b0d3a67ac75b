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
from collections.abc import Iterator
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


def sse_events(response) -> Iterator[dict]:
    """The events of a Server-Sent Events response (``requests``, ``stream=True``) as the
    server sends them, until it ends the response; each one's JSON ``data:``, checked
    against its ``id:`` (the seq) and ``event:`` (the type). Comments and ``retry:`` are
    read and passed over. A generator: stop iterating to stop reading."""
    buffer = b""
    for chunk in response.iter_content(chunk_size=None):
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            fields = {}
            for line in raw.decode().split("\n"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            if "data" in fields:
                event = json.loads(fields["data"])
                assert (fields["id"], fields["event"]) == (str(event["seq"]), event["type"])
                yield event
    assert buffer == b"", f"the stream ended inside an event: {buffer!r}"
