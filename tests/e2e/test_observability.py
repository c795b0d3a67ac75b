"""Metrics and machine-readable logs through the real server (``lambda-service serve``, two
worker processes): ``/metrics`` sums what both workers counted, and with
``LAMBDA_LOG_FORMAT=json`` every line the server writes is a JSON object that names its
request or its action, and none holds a credential."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import DEMO_INSTANCE_ID, DEMO_TOKEN

INSTANCE = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
# Debug, so the request path's own lines (the accept, in a pool thread) are written too; a
# cache that outlives the test, so each worker checks the token upstream exactly once.
SETTINGS = {"LAMBDA_LOG_FORMAT": "json", "LAMBDA_LOG_LEVEL": "DEBUG",
            "LAMBDA_IDENTITY_CACHE_TTL": "3600"}
FRESH = {"Connection": "close"}  # a connection per request: either worker may take it


def scrape(product) -> dict[tuple, float]:
    resp = product.call("GET", "/metrics", token=None)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def requests_by_route(metrics) -> dict[tuple[str, str, str], float]:
    found = {}
    for (name, labels), value in metrics.items():
        if name == "lambda_http_requests_total":
            labels = dict(labels)
            found[labels["method"], labels["route"], labels["status"]] = value
    return found


def log_entries(product) -> list[dict]:
    lines = [line for line in product.log_path.read_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line[:300]}") from None
    return entries


def wait_for(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


@pytest.mark.parametrize("product", [SETTINGS], indirect=True)
def test_metrics_of_both_workers_and_json_logs_without_credentials(product):
    # Listings on fresh connections until both workers have served some.
    listed = 0
    while listed < 200:
        resp = product.call("GET", "/api/lambda-instances/", headers={
            **FRESH, "X-Request-Id": f"list-{listed}"})
        assert resp.status_code == 200
        listed += 1
        if listed % 20 == 0 and len({e["process"] for e in log_entries(product)
                                     if e.get("request_id", "").startswith("list-")
                                     and e["logger"] == "hypercorn.access"}) >= 2:
            break
    for _ in range(3):  # no token: 401
        assert product.call("GET", INSTANCE, token=None, headers=FRESH).status_code == 401
    for n in range(2):  # no such route: one label, whatever the path
        assert product.call("GET", f"/no/such/{n}", headers=FRESH).status_code == 404
    accepted = product.call("POST", INSTANCE, data={"action": "start"},
                            headers={"X-Request-Id": "the-start"})
    assert accepted.status_code == 202, accepted.text
    action_id = accepted.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    assert product.wait_action(accepted.headers["Location"])["state"] == "succeeded"

    # The action is counted just after its row says it ended.
    metrics = wait_for(lambda: (m := scrape(product)).get(
        ("lambda_actions_total", (("kind", "start"), ("outcome", "succeeded")))) == 1 and m,
        "the action to be counted")
    by_route = requests_by_route(metrics)
    assert by_route[("GET", "/api/lambda-instances", "200")] == listed
    assert by_route[("GET", "/api/lambda-instances/{instance_id}", "401")] == 3
    assert by_route[("GET", "unmatched", "404")] == 2
    assert by_route[("POST", "/api/lambda-instances/{instance_id}", "202")] == 1
    assert by_route[("GET", "/api/lambda-instances/{instance_id}/actions/{action_id}", "200")]
    assert not [key for key in by_route if "no/such" in key[1]]
    assert metrics[("lambda_http_request_duration_seconds_count",
                    (("method", "GET"), ("route", "/api/lambda-instances")))] == listed
    assert metrics[("lambda_action_duration_seconds_count",
                    (("kind", "start"), ("outcome", "succeeded")))] == 1
    for step, state in (("power_on", "succeeded"), ("wait_ssh", "skipped"),
                        ("playbook", "succeeded")):
        assert metrics[("lambda_step_duration_seconds_count",
                        (("state", state), ("step", step)))] == 1
    assert metrics[("lambda_actions_in_flight", (("kind", "start"),))] == 0
    assert metrics[("lambda_dispatch_failures_total", ())] == 0
    # Each worker has its own identity cache: one miss each, and every other request
    # that carried the token to a route that checks it (not the public ones, and no
    # route at all checks nothing) was a hit.
    hits = metrics[("lambda_identity_cache_lookups_total", (("result", "hit"),))]
    misses = metrics[("lambda_identity_cache_lookups_total", (("result", "miss"),))]
    with_token = sum(value for (method, route, status), value in by_route.items()
                     if route not in ("/metrics", "/api/openapi.json", "unmatched")
                     and status != "401")
    assert misses == 2 and hits + misses == with_token

    entries = log_entries(product)  # every line is JSON
    assert all({"time", "level", "logger", "message", "process"} <= e.keys() for e in entries)
    access = [e for e in entries if e["logger"] == "hypercorn.access"]
    assert {e["request_id"] for e in access} >= {f"list-{n}" for n in range(listed)}
    start_lines = [e for e in entries if e.get("request_id") == "the-start"]
    assert {"hypercorn.access", "api.http.resources"} <= {e["logger"] for e in start_lines}
    action_lines = [e for e in entries if e.get("action_id") == action_id]
    # The orchestrator's own lines, and those of the threads it powers the VMs in.
    assert {"api.domain.orchestration", "api.adapters.compute"} <= {
        e["logger"] for e in action_lines}
    assert all(e.get("action_id") == action_id for e in entries
               if e["logger"] == "api.domain.orchestration" and action_id in e["message"])
    text = product.log_path.read_text()
    assert DEMO_TOKEN not in text and "gAAAAA" not in text
    assert product.env["LAMBDA_SECRET_KEY"] not in text

    # The workers shared their metrics through a private directory, gone with the server.
    (shared,) = Path(product.env["TMPDIR"]).glob("lambda-metrics-*")
    assert stat.S_IMODE(shared.stat().st_mode) == 0o700
    product.stop()
    assert not shared.exists()
