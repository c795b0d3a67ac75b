"""The metrics adapter on a registry of its own, the identity cache's hits and misses, and
``/metrics`` in the app: who may read it, and requests labelled by route template."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from cryptography.fernet import Fernet
from falcon import testing
from prometheus_client.parser import text_string_to_metric_families

from api.adapters.crypto import TokenCipher
from api.adapters.metrics import PrometheusMetrics, split_bind
from api.domain.errors import InvalidToken
from api.domain.ports import Identity
from api.http.app import create_app
from api.http.metrics import AddressAllowList
from tests.conftest import FakeIdentity
from tests.fakes import InMemoryUnitOfWorkFactory
from tests.unit.test_identity_cache import JsonResponse, make_client, ok
from tests.unit.test_services import INSTANCE_ID, add_instance

TOKEN = "t0ken-of-alice"
LOOPBACK = [ip_network("127.0.0.1/32"), ip_network("::1/128")]


def samples(body: bytes | str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of an exposition."""
    text = body.decode() if isinstance(body, bytes) else body
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_adapter_counts_and_times_what_the_port_is_told():
    metrics = PrometheusMetrics()  # a registry of its own
    metrics.action_started("start")
    metrics.action_started("stop")
    metrics.step_finished("power_on", "succeeded", 0.4)
    metrics.action_ended("start", "succeeded", 12.0)
    metrics.action_ended("stop", None, 3.0)  # handed back
    metrics.actions_resumed(0)
    metrics.actions_resumed(2)
    metrics.dispatch_failed()
    metrics.identity_cache_lookup(hit=True)
    metrics.identity_cache_lookup(hit=False)
    metrics.request_served("GET", "/api/lambda-instances", 200, 0.003)
    content_type, body = metrics.exposition()
    assert content_type.startswith("text/plain")
    got = samples(body)
    assert got[("lambda_actions_total", (("kind", "start"), ("outcome", "succeeded")))] == 1
    assert got[("lambda_action_duration_seconds_bucket",
                (("kind", "start"), ("le", "20.0"), ("outcome", "succeeded")))] == 1
    assert got[("lambda_action_duration_seconds_bucket",
                (("kind", "start"), ("le", "10.0"), ("outcome", "succeeded")))] == 0
    assert got[("lambda_action_attempts_unfinished_total", (("kind", "stop"),))] == 1
    assert got[("lambda_actions_in_flight", (("kind", "start"),))] == 0
    assert got[("lambda_actions_in_flight", (("kind", "stop"),))] == 0
    assert got[("lambda_step_duration_seconds_count",
                (("state", "succeeded"), ("step", "power_on")))] == 1
    assert got[("lambda_sweeper_resumed_total", ())] == 2
    assert got[("lambda_dispatch_failures_total", ())] == 1
    assert got[("lambda_identity_cache_lookups_total", (("result", "hit"),))] == 1
    assert got[("lambda_identity_cache_lookups_total", (("result", "miss"),))] == 1
    assert got[("lambda_http_requests_total", (("method", "GET"),
                                               ("route", "/api/lambda-instances"),
                                               ("status", "200")))] == 1
    # Another adapter starts from nothing: each has its own registry.
    fresh = samples(PrometheusMetrics().exposition()[1])
    assert fresh[("lambda_dispatch_failures_total", ())] == 0


def test_the_identity_cache_counts_a_hit_for_every_answer_it_knows():
    metrics = PrometheusMetrics()

    def answer(token):
        return ok() if token == TOKEN else JsonResponse(401, {}, "")

    client, transport, _ = make_client(answer, metrics=metrics)
    assert client.cached(TOKEN) is None  # not known yet: counted when it is sent on
    client.authenticate(TOKEN)  # a miss
    client.cached(TOKEN)  # a hit
    client.authenticate(TOKEN)  # a hit
    for _ in range(2):
        with pytest.raises(InvalidToken):
            client.authenticate("n0t-a-valid-token")  # a miss, then a (negative) hit
    got = samples(metrics.exposition()[1])
    assert got[("lambda_identity_cache_lookups_total", (("result", "miss"),))] == 2
    assert got[("lambda_identity_cache_lookups_total", (("result", "hit"),))] == 3
    assert transport.calls == 2


def test_the_allow_list():
    allow = AddressAllowList([*LOOPBACK, ip_network("10.1.0.0/16")])
    for address in ("127.0.0.1", "::1", "10.1.2.3", "::ffff:127.0.0.1", "::ffff:10.1.9.9"):
        assert address in allow, address
    for address in ("127.0.0.2", "10.2.0.1", "::2", "fe80::1%eth0", "", None, "localhost",
                    "/run/lambda.sock"):
        assert address not in allow, address
    assert "127.0.0.1" not in AddressAllowList([])  # an empty list: nobody


def test_split_bind():
    assert split_bind("127.0.0.1:9465") == ("127.0.0.1", 9465)
    assert split_bind("[::1]:9465") == ("::1", 9465)
    for bad in ("9465", "host:", ":80", "host:0", "host:70000"):
        with pytest.raises(ValueError):
            split_bind(bad)


@pytest.fixture
def uow_factory():
    uow_factory = InMemoryUnitOfWorkFactory()
    add_instance(uow_factory)
    return uow_factory


@pytest.fixture
def client(uow_factory):
    metrics = PrometheusMetrics()
    app = create_app(identity=FakeIdentity({TOKEN: Identity("alice-uuid", "alice", "x")}),
                     uow_factory=uow_factory, dispatcher=None,
                     token_cipher=TokenCipher(Fernet.generate_key()), metrics=metrics,
                     exposition=metrics.exposition, metrics_allow=LOOPBACK)
    return testing.TestClient(app)


def test_metrics_are_served_to_allowed_addresses_only_and_need_no_token(client):
    allowed = client.simulate_get("/metrics", remote_addr="127.0.0.1")
    assert allowed.status_code == 200 and allowed.headers["content-type"].startswith(
        "text/plain")
    for address in ("192.0.2.7", None):  # another address; a peer the server cannot name
        refused = client.simulate_get("/metrics", remote_addr=address,
                                      headers={"X-Forwarded-For": "127.0.0.1"})
        assert refused.status_code == 403
        assert refused.json == {"errors": [{"status": 403, "detail": (
            "Metrics are served only to the addresses the service allows.")}]}


def test_requests_are_labelled_by_route_template_never_by_path(client):
    auth = {"Authorization": f"Token {TOKEN}"}
    client.simulate_get(f"/api/lambda-instances/{INSTANCE_ID}/", headers=auth)
    client.simulate_get("/api/lambda-instances/00000000-0000-4000-8000-000000000000/",
                        headers=auth)
    for n in range(3):
        client.simulate_get(f"/no/such/route/{n}", headers=auth)
    client.simulate_request("BREW", "/api/lambda-instances/", headers=auth)
    client.simulate_get("/api/authenticate/")  # no token: 401
    got = samples(client.simulate_get("/metrics", remote_addr="127.0.0.1").text)
    requests = {dict(labels)["route"]: {} for (name, labels) in got
                if name == "lambda_http_requests_total"}
    for (name, labels), value in got.items():
        if name == "lambda_http_requests_total":
            labels = dict(labels)
            requests[labels["route"]][labels["method"], labels["status"]] = value
    assert requests == {
        "/api/lambda-instances/{instance_id}": {("GET", "200"): 1, ("GET", "404"): 1},
        "unmatched": {("GET", "404"): 3},
        "/api/lambda-instances": {("OTHER", "400"): 1},
        "/api/authenticate": {("GET", "401"): 1},
    }
    assert got[("lambda_http_request_duration_seconds_count",
                (("method", "GET"), ("route", "unmatched")))] == 3


def test_an_action_cancelled_before_any_worker_claimed_it_counts_as_cancelled(client,
                                                                             uow_factory):
    from tests.unit.test_orchestration import accept

    action_id = accept(uow_factory)  # no worker holds it
    path = f"/api/lambda-instances/{INSTANCE_ID}/actions/{action_id}/cancel"
    auth = {"Authorization": f"Token {TOKEN}"}
    assert client.simulate_post(path, headers=auth).status_code == 202
    assert client.simulate_post(path, headers=auth).status_code == 409  # counted once
    got = samples(client.simulate_get("/metrics", remote_addr="127.0.0.1").text)
    assert got[("lambda_actions_total", (("kind", "start"), ("outcome", "cancelled")))] == 1
    assert ("lambda_actions_in_flight", (("kind", "start"),)) not in got  # never in flight
