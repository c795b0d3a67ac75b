"""An open-loop HTTP load generator: requests go out on a fixed schedule, whatever the server.

wrk (and any closed loop) sends the next request only when the last one answered, so the
offered load follows the server's speed and a slow answer hides the requests that should
have been sent meanwhile. Here request k is due at ``start + k / rate``; it goes out on the
first free keep-alive connection, and its latency counts from when it was due, so time
spent waiting for a connection (the server falling behind) is part of it. That is the only
fair way to compare two servers' latency "at the same load".

Plain asyncio over raw sockets, HTTP/1.1 keep-alive, Content-Length bodies only (both
servers under test answer so). At the rates used here (hundreds to a few thousand
requests/s) it costs a fraction of one core, the same for either server.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class OpenLoopResult:
    rate: float  # requests/s offered
    achieved: float  # requests/s answered over the run
    p50_ms: float
    p99_ms: float
    requests: int
    statuses: dict[int, int]
    late: int  # requests sent more than 1 ms after they were due (no free connection)


def request_bytes(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _run(host: str, port: int, make_request: Callable[[int], bytes], rate: float,
               duration: float, connections: int) -> OpenLoopResult:
    total = int(rate * duration)
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    statuses: Counter = Counter()
    late = 0

    async def connection() -> None:
        nonlocal late
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                k, due = item
                if time.perf_counter() - due > 0.001:
                    late += 1
                writer.write(make_request(k))
                status = await _read_response(reader)
                latencies.append(time.perf_counter() - due)
                statuses[status] += 1
        finally:
            writer.close()

    workers = []
    for _ in range(connections):
        # A few ms apart, not in one burst: a burst tends to land on one server worker.
        workers.append(asyncio.create_task(connection()))
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.2)  # connections open before the clock starts
    start = time.perf_counter()
    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((k, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return OpenLoopResult(
        rate=rate, achieved=len(ordered) / elapsed,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        requests=len(ordered), statuses=dict(statuses), late=late)


def run(host: str, port: int, make_request: Callable[[int], bytes], *, rate: float,
        duration: float, connections: int = 32) -> OpenLoopResult:
    """Offer ``rate`` requests/s for ``duration`` s; ``make_request(k)`` is request k."""
    return asyncio.run(_run(host, port, make_request, rate, duration, connections))
