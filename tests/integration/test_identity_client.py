"""AstakosIdentity against the emulator over HTTP: answers, failures, cache, single-flight,
the cap on upstream checks and the outage breaker."""

from __future__ import annotations

import secrets
import socket
import threading
from datetime import datetime, timezone

import pytest

from api.adapters.identity import AstakosIdentity
from api.domain.errors import IdentityUnavailable, InvalidToken
from lambda_testbed.emulator import Emulator
from tests.support import join_calls, start_calls

TOKEN = "tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY"
SECOND_TOKEN = "demo-second-token"
OTHER_TOKEN = "other-user-token"


class FakeClock:
    def __init__(self):
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def _client(emulator, **options) -> AstakosIdentity:
    return AstakosIdentity(emulator.auth_url, backoff=0, **options)  # retries need not wait


def test_valid_token_gives_the_users_identity(emulator, emulator_seed):
    identity = _client(emulator).authenticate(TOKEN)
    user = emulator_seed["users"][0]
    assert identity.user_id == user["id"]
    assert identity.user_name == user["name"]
    assert identity.compute_url == emulator.compute_url
    assert identity.expires > datetime.now(timezone.utc)


def test_invalid_token_raises_and_is_negatively_cached(emulator):
    client = _client(emulator)
    for _ in range(5):
        with pytest.raises(InvalidToken):
            client.authenticate("not-a-known-token")
    assert emulator.request_counts()["tokens"] == 1
    assert client.upstream_calls == 1


@pytest.mark.parametrize("token", ["", "two words", "x" * 5000, None])
def test_malformed_token_is_invalid_without_asking(emulator, token):
    client = _client(emulator)
    with pytest.raises(InvalidToken):
        client.authenticate(token)
    assert client.upstream_calls == 0
    assert "tokens" not in emulator.request_counts()


def test_5xx_after_retries_is_unavailable_not_invalid(emulator):
    emulator.set_faults(error_every=1)
    client = _client(emulator, retries=2)
    with pytest.raises(IdentityUnavailable):
        client.authenticate(TOKEN)
    assert emulator.request_counts()["tokens"] == 3  # the first try and two retries
    # A failure is not cached: once the service is back the same token works.
    emulator.set_faults(error_every=0)
    assert client.authenticate(TOKEN).user_name == "demo@example.org"


def test_a_transient_5xx_is_retried(emulator):
    client = _client(emulator, retries=2)
    emulator.set_faults(error_every=2)
    client.authenticate(SECOND_TOKEN)  # the 1st request: answered
    identity = client.authenticate(TOKEN)  # the 2nd gets a 503, its retry (3rd) succeeds
    assert identity.user_name == "demo@example.org"
    assert emulator.request_counts()["injected_errors"] == 1


def test_unreachable_service_is_unavailable():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = AstakosIdentity(f"http://127.0.0.1:{port}/identity/v2.0", retries=1,
                             backoff=0)
    with pytest.raises(IdentityUnavailable):
        client.authenticate(TOKEN)


def test_a_slow_service_times_out_as_unavailable(emulator):
    emulator.set_faults(latency_ms=600)
    client = _client(emulator, timeout=0.1, retries=0)
    with pytest.raises(IdentityUnavailable):
        client.authenticate(TOKEN)


def test_cache_hits_skip_the_service(emulator):
    client = _client(emulator)
    names = {client.authenticate(TOKEN).user_name for _ in range(10)}
    names |= {client.authenticate(OTHER_TOKEN).user_name for _ in range(10)}
    assert names == {"demo@example.org", "other@example.org"}
    assert emulator.request_counts()["tokens"] == 2
    assert client.upstream_calls == 2


def test_cache_entries_expire_after_the_ttl(emulator):
    clock = FakeClock()
    client = _client(emulator, cache_ttl=30, clock=clock)
    client.authenticate(TOKEN)
    clock.now += 29
    client.authenticate(TOKEN)
    assert client.upstream_calls == 1
    clock.now += 2
    client.authenticate(TOKEN)
    assert client.upstream_calls == 2


@pytest.fixture
def short_token_emulator(emulator_seed):
    """An emulator whose tokens expire 30 s after each check."""
    emulator_seed["emulator"]["token_lifetime_seconds"] = 30
    emulator = Emulator.from_seed(emulator_seed)
    emulator.start()
    yield emulator
    emulator.stop()


def test_cache_never_outlives_the_tokens_expiry(short_token_emulator):
    emulator = short_token_emulator
    clock = FakeClock()
    client = AstakosIdentity(emulator.auth_url, cache_ttl=3600, clock=clock, backoff=0)
    client.authenticate(TOKEN)
    clock.now += 10
    client.authenticate(TOKEN)
    assert client.upstream_calls == 1
    clock.now += 21  # past the token's 30 s lifetime, far before the one-hour TTL
    client.authenticate(TOKEN)
    assert client.upstream_calls == 2


def test_cache_is_bounded(emulator):
    client = _client(emulator, max_entries=2)
    for token in (TOKEN, SECOND_TOKEN, OTHER_TOKEN):
        client.authenticate(token)
    assert client.cache_size() == 2
    client.authenticate(TOKEN)  # the least recently used: evicted, so asked again
    assert client.upstream_calls == 4


def _outcomes_of_a_flood(client, tokens) -> list:
    """Authenticate every token at once, one thread each; each thread's result or error."""
    threads, outcomes = start_calls(client.authenticate, tokens,
                                    before=threading.Barrier(len(tokens)).wait)
    join_calls(threads)
    return outcomes


def test_concurrent_cold_requests_make_one_upstream_call(emulator):
    emulator.set_faults(latency_ms=200)  # keeps the first call in flight while others arrive
    client = _client(emulator)
    results = [i.user_id for i in _outcomes_of_a_flood(client, [TOKEN] * 20)]
    assert len(results) == 20 and len(set(results)) == 1
    assert client.upstream_calls == 1
    assert emulator.request_counts()["tokens"] == 1


def test_concurrent_cold_invalid_tokens_share_the_failure(emulator):
    emulator.set_faults(latency_ms=200)
    client = _client(emulator)
    errors = [type(o) for o in _outcomes_of_a_flood(client, ["bad-token"] * 10)]
    assert errors == [InvalidToken] * 10
    assert emulator.request_counts()["tokens"] == 1


FLOOD = 40
CAP = 4


def test_a_flood_of_random_tokens_leaves_valid_ones_cached_and_the_upstream_capped(emulator):
    client = _client(emulator, max_entries=2, negative_max_entries=8, max_concurrent=CAP,
                     slot_wait=30)  # every check waits its turn: all are answered
    client.authenticate(TOKEN)
    client.authenticate(OTHER_TOKEN)
    emulator.set_faults(identity_latency_ms=50)  # keeps checks in flight while others come
    emulator.reset_counts()
    outcomes = _outcomes_of_a_flood(client, [secrets.token_urlsafe(32) for _ in range(FLOOD)])
    assert [type(o) for o in outcomes] == [InvalidToken] * FLOOD
    assert emulator.request_counts()["tokens"] == FLOOD
    assert emulator.peak_concurrency()["tokens"] <= CAP
    assert client.peak_in_flight <= CAP
    assert client.negative_cache_size() == 8
    assert client.cached(TOKEN).user_name == "demo@example.org"
    assert client.authenticate(OTHER_TOKEN).user_name == "other@example.org"
    assert emulator.request_counts()["tokens"] == FLOOD  # both answered from the cache


def test_a_flood_beyond_the_cap_is_refused_soon_and_cached_tokens_still_work(emulator):
    client = _client(emulator, max_concurrent=CAP, slot_wait=0.05)
    client.authenticate(TOKEN)
    emulator.set_faults(identity_latency_ms=300)
    emulator.reset_counts()
    outcomes = _outcomes_of_a_flood(client, [secrets.token_urlsafe(32) for _ in range(FLOOD)])
    refused = [o for o in outcomes if isinstance(o, IdentityUnavailable)]
    assert refused and all(o.retry_after == 1 for o in refused)
    assert all(isinstance(o, (InvalidToken, IdentityUnavailable)) for o in outcomes)
    assert emulator.request_counts()["tokens"] == FLOOD - len(refused)
    assert emulator.peak_concurrency()["tokens"] <= CAP
    assert client.authenticate(TOKEN).user_name == "demo@example.org"


@pytest.mark.parametrize("fault", [{"identity_down": True},
                                   {"identity_latency_ms": 1000}], ids=["down", "slow"])
def test_an_outage_refuses_unknown_tokens_at_once_and_keeps_cached_ones(emulator, fault):
    client = _client(emulator, timeout=0.2, retries=1, outage_failures=2, outage_seconds=60)
    client.authenticate(TOKEN)
    emulator.set_faults(**fault)
    for token in (SECOND_TOKEN, OTHER_TOKEN):  # two failed checks: the service is down
        with pytest.raises(IdentityUnavailable):
            client.authenticate(token)
    asked = emulator.request_counts()["tokens"]
    for _ in range(20):
        with pytest.raises(IdentityUnavailable) as refused:
            client.authenticate(secrets.token_urlsafe(32))
        assert 0 < refused.value.retry_after <= 60
    assert emulator.request_counts()["tokens"] == asked  # refused without asking
    assert client.cached(TOKEN).user_name == "demo@example.org"
    assert client.authenticate(TOKEN).user_name == "demo@example.org"


def test_once_the_outage_ends_one_probe_lets_tokens_through_again(emulator):
    clock = FakeClock()
    client = _client(emulator, retries=0, outage_failures=1, outage_seconds=5, clock=clock)
    emulator.set_faults(identity_down=True)
    with pytest.raises(IdentityUnavailable):
        client.authenticate(TOKEN)
    emulator.set_faults(identity_down=False)
    with pytest.raises(IdentityUnavailable):
        client.authenticate(TOKEN)  # still refused: the service has not been probed yet
    assert emulator.request_counts()["tokens"] == 1
    clock.now += 5
    assert client.authenticate(TOKEN).user_name == "demo@example.org"
    assert client.authenticate(SECOND_TOKEN).user_name == "demo@example.org"
    assert emulator.request_counts()["tokens"] == 3
