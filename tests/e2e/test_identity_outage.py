"""An identity outage through the real server: cached tokens keep working, unknown ones get
the contract's 503 with ``Retry-After`` at once, without a call to the identity service."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import DEMO_TOKEN

IDENTITY_UNAVAILABLE_DETAIL = ("The identity service could not be reached to validate the "
                               "token; try again later.")


def token_checks(emulator) -> int:
    return emulator.request_counts().get("tokens", 0)


def test_an_outage_refuses_unknown_tokens_at_once_and_keeps_cached_ones(product):
    # One server process, so the token cached below is in the cache every request meets;
    # no retries, so each failed check is one call and the breaker opens after three.
    product.stop()
    product.env.update({"LAMBDA_HTTP_WORKERS": "1", "LAMBDA_HTTP_RETRIES": "0",
                        "LAMBDA_IDENTITY_OUTAGE_FAILURES": "3",
                        "LAMBDA_IDENTITY_OUTAGE_SECONDS": "60"})
    product.start()
    assert product.call("GET", "/api/authenticate/").status_code == 200  # now cached

    product.emulator.set_faults(identity_down=True)
    for _ in range(3):  # the failures that open the breaker: each one asked upstream
        answer = product.call("GET", "/api/authenticate/", token=uuid.uuid4().hex)
        assert answer.status_code == 503
        assert answer.json()["errors"][0]["detail"] == IDENTITY_UNAVAILABLE_DETAIL
    asked = token_checks(product.emulator)

    for _ in range(20):
        answer = product.call("GET", "/api/lambda-instances/", token=uuid.uuid4().hex)
        assert answer.status_code == 503
        assert answer.json() == {"errors": [{"status": 503,
                                             "detail": IDENTITY_UNAVAILABLE_DETAIL}]}
        assert 1 <= int(answer.headers["Retry-After"]) <= 60
        cached = product.call("GET", "/api/authenticate/", token=DEMO_TOKEN)
        assert cached.status_code == 200
        assert cached.json()["result"] == "Success"
    # Refused from the breaker alone: not one more check reached the identity service.
    assert token_checks(product.emulator) == asked

    product.emulator.set_faults(identity_down=False)
