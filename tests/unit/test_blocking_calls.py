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


def test_a_burst_of_one_uncached_token_takes_one_place_in_the_identity_pool():
    """Fifty requests with one token nobody has checked yet: one check upstream, in one
    place of a pool with no waiting line, and every request gets its answer; a different
    token meanwhile finds the pool full and is answered 503 at once."""
    from types import SimpleNamespace

    from api.domain.errors import IdentityUnavailable, InvalidToken
    from api.domain.ports import Identity
    from api.http.middleware import AuthMiddleware

    release, calls = threading.Event(), []

    class SlowIdentity:
        def cached(self, token):
            return None

        def authenticate(self, token):
            calls.append(token)
            release.wait(5)
            if token != "good":
                raise InvalidToken("unknown token")
            return Identity("u", "user", "good")

    def request(token):
        return SimpleNamespace(context=SimpleNamespace(),
                               get_header=lambda name: f"Token {token}")

    async def scenario():
        auth = AuthMiddleware(SlowIdentity(), [], BlockingCalls(1, "test", waiting=0))
        burst = [request("good") for _ in range(50)]
        checks = [asyncio.ensure_future(auth.process_resource(r, None, object(), {}))
                  for r in burst]
        await asyncio.sleep(0.1)
        with pytest.raises(IdentityUnavailable):  # the pool is full: refused at once
            await auth.process_resource(request("other"), None, object(), {})
        release.set()
        await asyncio.gather(*checks)
        assert {r.context.identity.user_id for r in burst} == {"u"}
        assert calls == ["good"]
        with pytest.raises(InvalidToken):  # the check is over: a new token is checked
            await auth.process_resource(request("bad"), None, object(), {})
        assert calls == ["good", "bad"] and auth._checking == {}

    asyncio.run(scenario())
