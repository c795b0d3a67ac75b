"""Blocking calls (the domain's database work, an identity check) off the event loop."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor


class CallsFull(Exception):
    """Every thread of a pool is busy and its waiting line is full: refuse, do not queue."""


class BlockingCalls:
    """A bounded pool of threads for synchronous calls: ``await calls(fn, *args)``.

    The pool's size bounds how many such calls run at once; the rest wait their turn
    without holding the event loop, which goes on reading requests and answering those
    that need no thread (a cached token's 401, a route that does not exist). With
    ``waiting`` set, at most that many wait: one more raises ``CallsFull`` at once, so a
    flood cannot build a line whose last caller would wait for minutes.
    """

    def __init__(self, threads: int, name: str, waiting: int | None = None):
        self.threads = max(1, threads)
        self.waiting = waiting
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=name)
        self._in_flight = 0  # counted on the event loop's own thread: no lock needed

    async def __call__(self, fn, *args):
        if self.waiting is not None and self._in_flight >= self.threads + self.waiting:
            raise CallsFull(f"{self._in_flight} calls running or waiting")
        # In the caller's context, as asyncio.to_thread does: the thread's log lines carry
        # the request's id (api.domain.log_context).
        context = contextvars.copy_context()
        self._in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, context.run, fn, *args)
        finally:
            self._in_flight -= 1


class InlineCalls:
    """Runs a call on the event loop itself, for calls that never wait (a read of a local
    database whose readers take no lock): there a hop to a pool thread costs more than
    the call, and the loop is held only as long as any of its own work holds it."""

    async def __call__(self, fn, *args):
        return fn(*args)
