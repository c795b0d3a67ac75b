"""A flood of made-up tokens against the real server while the identity service is slow:
a cached token's requests are answered as fast as ever, the flood pushes no valid token out
of the cache, the identity service gets at most one check per distinct token, never more at
once than the server's identity threads, a token's repeated requests share its one check,
and a token that finds the waiting line full is answered the contract's 503 at once instead
of waiting its turn."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
import requests

from tests.e2e.conftest import DEMO_INSTANCE_ID, DEMO_TOKEN
from tests.e2e.test_identity_outage import IDENTITY_UNAVAILABLE_DETAIL

IDENTITY_THREADS = 2  # the embedded default (LAMBDA_HTTP_IDENTITY_THREADS)
IDENTITY_WAITING = 16  # the embedded default (LAMBDA_HTTP_IDENTITY_WAITING)
IDENTITY_LATENCY_MS = 300  # each token check the identity service answers
DISTINCT = 40  # made-up tokens, one request each
REPEATS = 20  # requests carrying one more made-up token, all at once
ORDINARY_REQUEST_BOUND = 1.0  # seconds, as for the slow clients (the "about a second")

# One server process, so that every request meets the cache the demo token is in; a cache
# of one valid token, so that a flood stored among the valid tokens would push it out.
FLOOD_SETTINGS = {"LAMBDA_HTTP_WORKERS": "1", "LAMBDA_IDENTITY_CACHE_SIZE": "1"}


def token_checks(emulator) -> int:
    return emulator.request_counts().get("tokens", 0)


@pytest.mark.parametrize("product", [FLOOD_SETTINGS], indirect=True)
def test_a_flood_of_made_up_tokens_leaves_cached_ones_fast_and_the_upstream_bounded(product):
    details = f"{product.base}/api/lambda-instances/{DEMO_INSTANCE_ID}/"
    assert product.call("GET", "/api/authenticate/").status_code == 200  # now cached
    product.emulator.set_faults(identity_latency_ms=IDENTITY_LATENCY_MS)
    product.emulator.reset_counts()

    repeated = secrets.token_urlsafe(32)
    flood = [secrets.token_urlsafe(32) for _ in range(DISTINCT)] + [repeated] * REPEATS
    answers: list[tuple[str, requests.Response | requests.RequestException]] = []
    go = threading.Barrier(len(flood) + 1)

    def one(token: str) -> None:
        with requests.Session() as session:  # a connection of its own
            session.trust_env = False
            go.wait()
            try:
                answers.append((token, session.get(
                    details, timeout=120, headers={"Authorization": f"Token {token}"})))
            except requests.RequestException as exc:  # told below, with the others
                answers.append((token, exc))

    threads = [threading.Thread(target=one, args=(token,)) for token in flood]
    for thread in threads:
        thread.start()
    go.wait()
    try:
        deadline = time.monotonic() + 30
        while token_checks(product.emulator) < IDENTITY_THREADS:  # the flood is upstream
            assert time.monotonic() < deadline, "the flood never reached the identity service"
            time.sleep(0.02)
        took = []
        for _ in range(5):
            started = time.monotonic()
            resp = product.session.get(details, timeout=10,
                                       headers={"Authorization": f"Token {DEMO_TOKEN}"})
            took.append(time.monotonic() - started)
            assert resp.status_code == 200, resp.text
        unanswered = len(flood) - len(answers)
    finally:
        for thread in threads:
            thread.join(timeout=120)
    assert unanswered > 0, "the flood was over before the cached token's requests"
    assert max(took) <= ORDINARY_REQUEST_BOUND, took

    assert len(answers) == len(flood)
    assert not [a for _, a in answers if isinstance(a, requests.RequestException)], answers
    by_token: dict[str, set[int]] = {}
    for token, answer in answers:
        by_token.setdefault(token, set()).add(answer.status_code)
    assert set().union(*by_token.values()) <= {401, 503}, by_token
    # The repeated token's requests shared one check (or its answer in the cache of
    # invalid tokens), and so one answer.
    assert len(by_token[repeated]) == 1, by_token[repeated]
    # All came at once: past the threads and the waiting line, the tokens were turned away
    # at once, with the contract's 503.
    turned_away = [token for token, statuses in by_token.items() if statuses == {503}]
    assert len(turned_away) >= DISTINCT + 1 - IDENTITY_THREADS - IDENTITY_WAITING - 2
    for _token, answer in answers:
        if answer.status_code == 503:
            assert answer.json() == {"errors": [{"status": 503,
                                                 "detail": IDENTITY_UNAVAILABLE_DETAIL}]}
            assert answer.headers["Retry-After"] == "1"
    # At most one check per distinct token, no more at once than the threads.
    checks = token_checks(product.emulator)
    assert IDENTITY_THREADS <= checks <= DISTINCT + 1 - len(turned_away)
    assert product.emulator.peak_concurrency()["tokens"] <= IDENTITY_THREADS
    # The demo token was never pushed out of its cache of one: no check for it.
    assert product.call("GET", "/api/authenticate/").status_code == 200
    assert token_checks(product.emulator) == checks
    product.emulator.set_faults(identity_latency_ms=0)
