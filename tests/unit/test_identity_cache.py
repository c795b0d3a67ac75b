"""AstakosIdentity's cache rules, upstream cap and outage breaker, with a scripted stand-in
for the HTTP transport and a fake clock."""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from api.adapters.http_client import JsonResponse, TransportError
from api.adapters.identity import (
    AstakosIdentity,
    _well_formed,
    identity_from_access,
    parse_expires,
    token_key,
)
from api.domain.errors import IdentityUnavailable, InvalidToken
from tests.support import join_calls, start_calls, wait_until

AUTH_URL = "https://accounts.example.org/identity/v2.0"


def access_document(user_id="u-1", name="alice", expires_in=3600.0) -> dict:
    expires = datetime.now(timezone.utc) + timedelta(seconds=expires_in)
    return {"access": {
        "token": {"id": "ignored", "expires": expires.isoformat(),
                  "tenant": {"id": user_id, "name": name}},
        "user": {"id": user_id, "name": name, "roles": []},
        "serviceCatalog": [
            {"type": "identity", "name": "astakos", "endpoints": [{"publicURL": AUTH_URL}]},
            {"type": "compute", "name": "cyclades_compute",
             "endpoints": [{"publicURL": "https://cyclades.example.org/compute/v2.0",
                            "versionId": "v2.0"}]},
        ]}}


class ScriptedTransport:
    """Answers each POST /tokens from ``answer(token)``; counts calls; can hold them."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = 0
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()

    def request(self, method, url, *, json_body=None, headers=None):
        assert (method, url) == ("POST", f"{AUTH_URL}/tokens")
        with self._lock:
            self.calls += 1
        self.release.wait(5)
        result = self.answer(json_body["auth"]["token"]["id"])
        if isinstance(result, Exception):
            raise result
        return result


def ok(document=None) -> JsonResponse:
    return JsonResponse(200, document or access_document(), "")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def make_client(answer, **options):
    transport = ScriptedTransport(answer)
    clock = Clock()
    client = AstakosIdentity(AUTH_URL, clock=clock, http=transport, **options)
    return client, transport, clock


def test_cache_keys_are_hashes_never_tokens():
    client, _, _ = make_client(lambda token: ok() if token == "secret-token-value"
                               else JsonResponse(401, None, ""))
    client.authenticate("secret-token-value")
    with pytest.raises(InvalidToken):
        client.authenticate("another-secret")
    assert list(client._valid) == [hashlib.sha256(b"secret-token-value").hexdigest()]
    assert list(client._invalid) == [hashlib.sha256(b"another-secret").hexdigest()]
    assert token_key("secret-token-value") == next(iter(client._valid))
    for cache in (client._valid, client._invalid):
        assert "secret" not in repr(cache)


def test_positive_entries_live_for_the_ttl():
    client, transport, clock = make_client(lambda token: ok(), cache_ttl=60)
    client.authenticate("t")
    clock.now = 59.9
    client.authenticate("t")
    assert transport.calls == 1
    clock.now = 60.0
    client.authenticate("t")
    assert transport.calls == 2


def test_positive_entries_never_outlive_the_tokens_expiry():
    client, transport, clock = make_client(lambda token: ok(access_document(expires_in=10)),
                                           cache_ttl=600)
    client.authenticate("t")
    clock.now = 11
    client.authenticate("t")
    assert transport.calls == 2


def test_an_already_expired_token_is_returned_but_not_cached():
    client, transport, _ = make_client(lambda token: ok(access_document(expires_in=-5)))
    assert client.authenticate("t").user_id == "u-1"
    client.authenticate("t")
    assert transport.calls == 2


@pytest.mark.parametrize("status", [400, 401, 404])
def test_invalid_tokens_are_negatively_cached_briefly(status):
    client, transport, clock = make_client(lambda token: JsonResponse(status, None, ""),
                                           negative_ttl=5)
    for _ in range(3):
        with pytest.raises(InvalidToken):
            client.authenticate("bad")
    assert transport.calls == 1
    clock.now = 5
    with pytest.raises(InvalidToken):
        client.authenticate("bad")
    assert transport.calls == 2


@pytest.mark.parametrize("answer", [
    JsonResponse(503, None, "down"),
    JsonResponse(500, {"computeFault": {"message": "boom"}}, ""),
    JsonResponse(403, None, ""),
    JsonResponse(200, None, "<html>not json</html>"),
    JsonResponse(200, {"access": {"token": {}}}, ""),
    TransportError("connection refused"),
    RuntimeError("a bug in the transport"),
])
def test_failures_are_unavailable_and_not_cached(answer):
    client, transport, _ = make_client(lambda token: answer)
    for _ in range(2):
        with pytest.raises(IdentityUnavailable):
            client.authenticate("t")
    assert transport.calls == 2
    assert client.cache_size() == 0


def test_lru_keeps_the_recently_used():
    client, transport, _ = make_client(lambda token: ok(), max_entries=2)
    client.authenticate("a")
    client.authenticate("b")
    client.authenticate("a")  # a is now the most recent
    client.authenticate("c")  # evicts b
    assert client.cache_size() == 2
    client.authenticate("a")
    assert transport.calls == 3
    client.authenticate("b")
    assert transport.calls == 4


CALLERS = 12
# How long the held upstream call waits for the other callers to reach it too; with the
# single flight they wait on its answer instead, so this is each test's pause.
SETTLE = 1.0


def _concurrent_callers(client, transport, token, count=CALLERS) -> tuple[list, int]:
    """``count`` threads authenticate ``token`` at once; the first upstream call is held
    until every thread has called ``authenticate`` and the others had ``SETTLE`` seconds
    to reach the upstream too. -> (each thread's result or exception, upstream calls)."""
    entered = threading.Semaphore(0)
    transport.release.clear()
    threads, outcomes = start_calls(client.authenticate, [token] * count,
                                    before=entered.release)
    for _ in range(count):
        assert entered.acquire(timeout=5)
    wait_until(lambda: transport.calls >= count, timeout=SETTLE, interval=0.01)
    transport.release.set()
    join_calls(threads, timeout=10)
    return outcomes, transport.calls


def test_single_flight_concurrent_callers_of_one_token_make_one_upstream_call():
    client, transport, _ = make_client(lambda token: ok())
    outcomes, calls = _concurrent_callers(client, transport, "t")
    assert calls == 1
    assert len(outcomes) == CALLERS
    assert {o.user_id for o in outcomes} == {"u-1"}


def test_single_flight_followers_share_an_outage_and_do_not_hang():
    client, transport, _ = make_client(lambda token: TransportError("refused"))
    outcomes, calls = _concurrent_callers(client, transport, "t")
    # Nothing is cached on failure: only the single flight keeps this to one call.
    assert calls == 1
    assert len(outcomes) == CALLERS
    assert all(isinstance(o, IdentityUnavailable) for o in outcomes)


def test_single_flight_is_per_token():
    client, transport, _ = make_client(lambda token: ok(access_document(user_id=token)))
    transport.release.clear()
    threads = [threading.Thread(target=client.authenticate, args=(token,))
               for token in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 5
    while transport.calls < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert transport.calls == 3  # three tokens: three calls, none waits on another's
    transport.release.set()
    for thread in threads:
        thread.join(timeout=10)


def test_identity_from_access_reads_the_compute_endpoint():
    identity = identity_from_access(access_document())
    assert identity.compute_url == "https://cyclades.example.org/compute/v2.0"
    document = access_document()
    document["access"]["serviceCatalog"] = []
    assert identity_from_access(document).compute_url is None
    with pytest.raises(ValueError):
        identity_from_access({"access": {"user": {"name": "no id"}}})


@pytest.mark.parametrize("raw, expected", [
    ("2013-06-19T15:23:59.975572+00:00",
     datetime(2013, 6, 19, 15, 23, 59, 975572, tzinfo=timezone.utc)),
    ("2030-01-01T00:00:00Z", datetime(2030, 1, 1, tzinfo=timezone.utc)),
    ("2030-01-01T00:00:00", datetime(2030, 1, 1, tzinfo=timezone.utc)),
    ("yesterday", None),
    (None, None),
])
def test_parse_expires(raw, expected):
    assert parse_expires(raw) == expected


def test_tokens_with_any_whitespace_are_malformed():
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]
    assert len(spaces) > 20  # ASCII controls, NBSP, the U+2000 block, U+3000...
    for ch in spaces:
        for token in (f"abc{ch}def", f"{ch}abc", f"abc{ch}"):
            assert not _well_formed(token), repr(ch)
    assert _well_formed("abc-DEF_0123.~+/=")


def test_cached_answers_from_the_cache_alone():
    client, transport, clock = make_client(
        lambda token: ok() if token == "good" else JsonResponse(401, None, ""), negative_ttl=5)
    assert client.cached("good") is None  # unknown: the caller must authenticate
    assert client.cached("bad") is None
    assert transport.calls == 0
    client.authenticate("good")
    with pytest.raises(InvalidToken):
        client.authenticate("bad")
    assert client.cached("good").user_id == "u-1"
    with pytest.raises(InvalidToken):
        client.cached("bad")
    for malformed in ("", "two words", None, "x" * 5000):
        with pytest.raises(InvalidToken):
            client.cached(malformed)
    clock.now = 5  # the negative entry is gone; the positive one lives on
    assert client.cached("bad") is None
    assert client.cached("good") is not None
    assert transport.calls == 2


def test_cached_never_waits_for_an_upstream_call_in_flight():
    client, transport, _ = make_client(lambda token: ok())
    client.authenticate("known")
    transport.release.clear()
    asking = threading.Thread(target=client.authenticate, args=("slow",))
    asking.start()
    answers: list = []
    reader = threading.Thread(target=lambda: answers.extend(
        [client.cached("slow"), client.cached("known")]))
    reader.start()
    reader.join(timeout=2)
    assert not reader.is_alive(), "cached() waited on the upstream call"
    assert answers[0] is None and answers[1].user_id == "u-1"
    transport.release.set()
    asking.join(timeout=10)


def test_a_flood_of_invalid_tokens_never_evicts_valid_ones():
    valid = {"alice", "bob"}
    client, transport, _ = make_client(
        lambda token: ok(access_document(user_id=token)) if token in valid
        else JsonResponse(401, None, ""), max_entries=2, negative_max_entries=10)
    for token in sorted(valid):
        client.authenticate(token)
    for n in range(200):
        with pytest.raises(InvalidToken):
            client.authenticate(f"random-{n}")
    assert client.cache_size() == 2
    assert client.negative_cache_size() == 10  # bounded: the oldest invalid ones went
    assert {client.cached(token).user_id for token in valid} == valid
    calls = transport.calls
    for token in valid:
        client.authenticate(token)
    assert transport.calls == calls


def test_concurrent_upstream_calls_are_capped_and_the_rest_refused_soon():
    client, transport, _ = make_client(lambda token: ok(), max_concurrent=3, slot_wait=0.1)
    transport.release.clear()
    threads, outcomes = start_calls(client.authenticate, [f"token-{n}" for n in range(10)])
    # Seven of ten find no slot: each is refused after the short wait, while the upstream
    # still holds the other three.
    wait_until(lambda: len(outcomes) >= 7 and transport.calls >= 3, timeout=5, interval=0.01)
    refused = list(outcomes)
    assert len(refused) == 7 and transport.calls == 3
    assert all(isinstance(o, IdentityUnavailable) and o.retry_after == 1 for o in refused)
    transport.release.set()
    join_calls(threads, timeout=10)
    assert sum(not isinstance(o, Exception) for o in outcomes) == 3
    assert client.peak_in_flight == 3 and client.in_flight == 0
    client.authenticate("token-after")  # the slots came back
    assert transport.calls == 4


def test_an_outage_refuses_unknown_tokens_at_once_and_keeps_cached_ones():
    answers = {"mode": "up"}
    client, transport, clock = make_client(
        lambda token: ok(access_document(user_id=token)) if answers["mode"] == "up"
        else TransportError("refused"), outage_failures=2, outage_seconds=5)
    client.authenticate("cached-token")
    answers["mode"] = "down"
    for token in ("first", "second"):  # two failed checks in a row: the service is down
        with pytest.raises(IdentityUnavailable):
            client.authenticate(token)
    assert transport.calls == 3
    clock.now = 1.5
    with pytest.raises(IdentityUnavailable) as refused:
        client.authenticate("third")
    assert refused.value.retry_after == 4  # seconds left until the probe, rounded up
    assert transport.calls == 3  # refused without asking
    assert client.authenticate("cached-token").user_id == "cached-token"
    assert client.cached("cached-token").user_id == "cached-token"

    clock.now = 5.0  # one probe goes through; it fails, so the refusals start again
    with pytest.raises(IdentityUnavailable):
        client.authenticate("probe")
    assert transport.calls == 4
    with pytest.raises(IdentityUnavailable):
        client.authenticate("fourth")
    assert transport.calls == 4

    answers["mode"] = "up"
    clock.now = 10.0  # the next probe succeeds: checks go upstream again
    assert client.authenticate("probe").user_id == "probe"
    assert client.authenticate("fifth").user_id == "fifth"
    assert transport.calls == 6


def test_one_probe_at_a_time_while_the_service_is_down():
    answers = {"mode": "down"}
    client, transport, clock = make_client(
        lambda token: ok() if answers["mode"] == "up" else JsonResponse(503, None, ""),
        outage_failures=1, outage_seconds=5)
    with pytest.raises(IdentityUnavailable):
        client.authenticate("first")
    clock.now = 5.0
    answers["mode"] = "up"
    transport.release.clear()
    probe = threading.Thread(target=client.authenticate, args=("probe",))
    probe.start()
    deadline = time.monotonic() + 5
    while transport.calls < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(IdentityUnavailable):
        client.authenticate("while-probing")
    assert transport.calls == 2
    transport.release.set()
    probe.join(timeout=10)
    client.authenticate("after-the-probe")
    assert transport.calls == 3


def test_an_invalid_token_is_an_answer_and_resets_the_failure_count():
    answers = {"mode": "down"}
    client, transport, _ = make_client(
        lambda token: JsonResponse(401, None, "") if answers["mode"] == "up"
        else JsonResponse(502, None, ""), outage_failures=2)
    with pytest.raises(IdentityUnavailable):
        client.authenticate("a")
    answers["mode"] = "up"
    with pytest.raises(InvalidToken):
        client.authenticate("b")
    answers["mode"] = "down"
    with pytest.raises(IdentityUnavailable):
        client.authenticate("c")
    with pytest.raises(IdentityUnavailable):
        client.authenticate("d")  # the second failure in a row: asked, then the breaker opens
    assert transport.calls == 4
    with pytest.raises(IdentityUnavailable):
        client.authenticate("e")
    assert transport.calls == 4


def test_failures_say_when_to_retry_and_followers_hear_it_too():
    client, transport, _ = make_client(lambda token: TransportError("refused"),
                                       outage_seconds=7)
    outcomes, calls = _concurrent_callers(client, transport, "t", count=4)
    assert calls == 1
    assert [o.retry_after for o in outcomes] == [7] * 4


def test_the_breaker_can_be_turned_off():
    client, transport, _ = make_client(lambda token: TransportError("refused"),
                                       outage_failures=0)
    for _ in range(5):
        with pytest.raises(IdentityUnavailable):
            client.authenticate("t")
    assert transport.calls == 5
