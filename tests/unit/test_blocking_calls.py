"""The HTTP layer's pools of threads: a bounded number of calls run, a bounded number wait."""

from __future__ import annotations

import asyncio
import threading

import pytest

from api.http.blocking import BlockingCalls, CallsFull


def test_calls_past_the_threads_and_the_waiting_line_are_refused_at_once():
    release = threading.Event()
    started = []

    def held(n):
        started.append(n)
        release.wait(5)
        return n

    async def scenario():
        calls = BlockingCalls(2, "test", waiting=3)
        running = [asyncio.ensure_future(calls(held, n)) for n in range(5)]  # 2 run, 3 wait
        await asyncio.sleep(0.1)
        with pytest.raises(CallsFull):
            await calls(held, 5)
        assert sorted(started) == [0, 1]  # the others wait their turn
        release.set()
        assert await asyncio.gather(*running) == [0, 1, 2, 3, 4]
        assert await calls(held, 6) == 6  # the line is free again
        failing = BlockingCalls(1, "test", waiting=0)
        with pytest.raises(ZeroDivisionError):
            await failing(lambda: 1 / 0)
        assert await failing(held, 7) == 7  # a call that raised gave its place back

    asyncio.run(scenario())


def test_without_a_waiting_bound_every_call_waits_its_turn():
    async def scenario():
        calls = BlockingCalls(1, "test")
        return await asyncio.gather(*(calls(lambda n=n: n) for n in range(50)))

    assert asyncio.run(scenario()) == list(range(50))
