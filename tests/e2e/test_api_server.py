"""The action endpoint's checks with hostile inputs against the real server (hypercorn, 2
workers)."""

from __future__ import annotations

import subprocess
import threading
import time

from tests.e2e.conftest import DEMO_INSTANCE_ID, DEMO_TOKEN

URL = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"


def test_seed_curl_example_verbatim(product):
    out = subprocess.run(
        ["curl", "-s", "-i", "-X", "POST", "-H", f"Authorization:Token {DEMO_TOKEN}",
         "-F", "action=start", f"{product.base}{URL}"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    head, _, body = out.partition("\n\n")
    assert head.startswith("HTTP/1.1 202")
    assert '"status": {"code": 202, "short-description": "Your request has been accepted"}' \
        in body
    assert f"location: /api/lambda-instances/{DEMO_INSTANCE_ID}/actions/" in head.lower()
    # The access log line names the request and, by its location, the action it created.
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:] if ": " in line)
    headers = {k.lower(): v.strip() for k, v in headers.items()}
    wanted = (f'"POST {URL} HTTP/1.1" 202',
              f"request_id={headers['x-request-id']} location={headers['location']}")

    def access_lines():  # the server writes the line just after the response
        return [line for line in product.log_path.read_text().splitlines() if wanted[0] in line]

    deadline = time.monotonic() + 10
    while not access_lines() and time.monotonic() < deadline:
        time.sleep(0.05)
    access = access_lines()
    assert access and wanted[1] in access[-1], access


def test_hostile_inputs_never_500(product):
    cases = [
        ({}, None, 401), ({"Authorization": "Basic abc"}, DEMO_TOKEN, 401),
        ({"Authorization": "Token " + "A" * 30000}, None, 401),
        ({}, "wrong", 401),
    ]
    for headers, token, status in cases:
        resp = product.call("POST", URL, token=token, headers=headers, data={"action": "start"})
        assert resp.status_code == status, (headers.keys(), resp.text)
        assert resp.json()["errors"][0]["status"] == status
    assert product.call("POST", "/api/lambda-instances/x%00y/",
                        data={"action": "start"}).status_code == 404
    assert product.call("POST", URL, data={"action": "restart"}).status_code == 400
    assert product.call("POST", URL, data={}).status_code == 400
    assert product.call("POST", URL, data=b"\xff\xfe", headers={
        "Content-Type": "application/json"}).status_code == 400
    assert product.call("GET", "/api/lambda-instances/?limit=-3").status_code == 400


def test_racing_starts_through_two_workers_get_one_202(product):
    barrier = threading.Barrier(16)
    codes = []

    def race():
        barrier.wait()
        codes.append(product.call("POST", URL, data={"action": "start"}).status_code)

    threads = [threading.Thread(target=race) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes.count(202) == 1 and codes.count(409) == 15, codes
