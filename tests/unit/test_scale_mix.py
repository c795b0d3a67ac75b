"""The scale run's users (``benchmarks.scale_mix``) against a fake API: how they keep
their share of actions in flight."""

from __future__ import annotations

import random

from benchmarks.scale_mix import Mix, MixConfig
from benchmarks.scale_seed import User


class FakeResponse:
    def __init__(self, status_code: int, headers: dict | None = None):
        self.status_code = status_code
        self.headers = headers or {}


class FakeClient:
    """Accepts every start or stop; records every request."""

    def __init__(self):
        self.sent: list[tuple[str, str]] = []

    def request(self, method: str, path: str, **_kwargs) -> FakeResponse:
        self.sent.append((method, path))
        if path.endswith("/cancel"):
            return FakeResponse(200)
        return FakeResponse(202, {"Location": f"{path}actions/a{len(self.sent)}"})


def make_mix(instances: int, **config) -> tuple[Mix, list[str]]:
    user = User("u1", "user-1", "token")
    mine = [f"i{k}" for k in range(instances)]
    mix = Mix(["http://api"], [user], {user.id: mine}, dict.fromkeys(mine, "STOPPED"),
              MixConfig(**config))
    return mix, mine


def test_a_user_keeps_its_share_of_the_cap_in_flight():
    mix, mine = make_mix(20, max_outstanding=30, cancel_share=0.0)
    mix.users = mix.users * 10  # ten users share the cap: 3 each
    mix.per_user = 3
    client = FakeClient()
    mix._keep_busy(client, random.Random(2), mine)
    assert len(mix.outstanding) == 3
    mix.outstanding.pop(next(iter(mix.outstanding)))  # one seen ended
    mix._keep_busy(client, random.Random(3), mine)
    assert len(mix.outstanding) == 3 and len(mix.accepted) == 4
