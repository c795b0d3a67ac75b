"""The scale run's users (``benchmarks.scale_mix``) against a fake API: how they plan
cancels and keep their share of actions in flight."""

from __future__ import annotations

import random
import time

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


def test_a_cancel_is_planned_for_about_cancel_share_of_the_accepted_actions():
    mix, mine = make_mix(4000, max_outstanding=4000, cancel_share=0.02,
                         action_seconds={"start": 10.0, "stop": 4.0})
    client, rng = FakeClient(), random.Random(24)
    for instance_id in mine:
        mix._act(client, rng, instance_id)
    assert len(mix.accepted) == 4000
    planned = [mix.accepted[a] for a in mix.cancels_planned]
    assert 0.015 < len(planned) / len(mix.accepted) < 0.025
    # Each within the action's expected length from its acceptance.
    assert all(0 <= a.cancel_at - a.t <= 10.0 for a in planned)


def test_a_planned_cancel_is_sent_once_when_due_and_not_for_an_action_seen_ended():
    mix, mine = make_mix(3, max_outstanding=10, cancel_share=1.0,
                         action_seconds={"start": 0.0, "stop": 0.0})
    client = FakeClient()
    rng = random.Random(1)
    for instance_id in mine:
        mix._act(client, rng, instance_id)
    ended = mix.outstanding.pop("i2")  # its user saw it end: nothing to cancel
    time.sleep(0.01)
    mix._cancel_due(client, mine)
    mix._cancel_due(client, mine)
    cancels = [path for method, path in client.sent if path.endswith("/cancel")]
    assert len(cancels) == 2 and mix.cancels_sent == 2
    assert not any(ended.action_id in path for path in cancels)


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
