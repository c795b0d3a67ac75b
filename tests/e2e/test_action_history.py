"""An instance's actions through the real server: a start's event stream, read whole by
one client and in two parts by another that drops its connection mid-action and resumes
with Last-Event-ID; then the instance's history, newest first, in pages. The caller's
instances only. (One scenario: an action of the demo costs tens of seconds.)"""

from __future__ import annotations

import requests

from lambda_testbed.demo_data import DEMO_USER_ID, OTHER_INSTANCE_ID, OTHER_TOKEN, demo_seed
from tests.e2e.conftest import DEMO_INSTANCE_ID, DEMO_TOKEN
from tests.support import join_calls, sse_events, start_calls

NOT_FOUND = {"errors": [{"status": 404,
                         "detail": "The specified lambda instance doesn't exist."}]}
READ_TIMEOUT = 40  # seconds without a byte: well past the 15 s keep-alive


def open_stream(product, url: str, **headers) -> requests.Response:
    return product.session.get(f"{product.base}{url}", stream=True,
                               timeout=(5, READ_TIMEOUT),
                               headers={"Authorization": f"Token {DEMO_TOKEN}", **headers})


def read_until_a_task_then_drop(product, url: str) -> list[dict]:
    seen = []
    with open_stream(product, url) as resp:
        for event in sse_events(resp):
            seen.append(event)
            if event["type"] == "task":
                break  # and close the connection, mid-action
    return seen


def check_the_event_stream(product, location: str) -> None:
    """Read the running action's stream to its end, while a second client drops and
    resumes; the events tell the whole action, numbered 1..n."""
    url = f"{location}/events"
    dropper, dropped = start_calls(lambda _: read_until_a_task_then_drop(product, url), [0])
    with open_stream(product, url) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        whole = list(sse_events(resp))  # returns once the server ends the stream
    join_calls(dropper)

    n = len(whole)
    assert [e["seq"] for e in whole] == list(range(1, n + 1))
    states = [e["state"] for e in whole if e["type"] == "state"]
    assert states == ["accepted", "running", "succeeded"], whole[-1]["error"]
    steps = [(e["name"], e["state"]) for e in whole if e["type"] == "step"]
    assert steps == [("power_on", "running"), ("power_on", "succeeded"),
                     ("wait_ssh", "skipped"),
                     ("playbook", "running"), ("playbook", "succeeded"),
                     ("service_checks", "skipped")], steps  # the fixture turns them off
    tasks = [e for e in whole if e["type"] == "task"]
    assert {t["host"] for t in tasks} == {
        h["name"] for h in demo_seed()["instances"][0]["hosts"]}
    assert {t["status"] for t in tasks} <= {"ok", "changed", "skipped"}
    playbook = [e["seq"] for e in whole if e["type"] == "step" and e["name"] == "playbook"]
    assert all(playbook[0] < t["seq"] < playbook[1] for t in tasks)

    # The dropped client resumes after its last event and gets exactly the rest.
    [first] = dropped
    assert isinstance(first, list), first  # not the exception it raised
    assert 0 < len(first) < n and first == whole[:len(first)]
    with open_stream(product, url, **{"Last-Event-ID": str(first[-1]["seq"])}) as resp:
        rest = list(sse_events(resp))
    assert first + rest == whole

    # The resource's last_id is the stream's end: nothing after it, and a 204 says so.
    action = product.call("GET", location).json()["data"]
    assert action["state"] == "succeeded"
    assert action["events"] == {"last_id": n, "href": url}
    assert product.call("GET", url, headers={"Last-Event-ID": str(n)}).status_code == 204
    # Another user gets the action resource's 404.
    for path in (url, location):
        other = product.call("GET", path, token=OTHER_TOKEN)
        assert (other.status_code, other.json()) == (404, NOT_FOUND)


def test_a_start_streamed_then_the_history_newest_first_in_pages(product):
    base = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/actions/"
    assert product.call("GET", base).json()["data"] == []

    started = product.call("POST", f"/api/lambda-instances/{DEMO_INSTANCE_ID}/",
                           data={"action": "start"})
    assert started.status_code == 202
    check_the_event_stream(product, started.headers["Location"])
    stopped = product.call("POST", f"/api/lambda-instances/{DEMO_INSTANCE_ID}/",
                           data={"action": "stop"})
    assert stopped.status_code == 202
    assert product.wait_action(stopped.headers["Location"])["state"] == "succeeded"

    answer = product.call("GET", base)
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == {"short_description": "Lambda instance actions", "code": 200}
    assert [(a["action"], a["state"]) for a in body["data"]] == [
        ("stop", "succeeded"), ("start", "succeeded")]
    newest = body["data"][0]
    assert newest["href"] == stopped.headers["Location"]
    assert newest["requested_by"] == DEMO_USER_ID
    assert newest["error"] is None
    assert newest["created_at"] <= newest["started_at"] <= newest["finished_at"]
    assert body["pagination"]["count"] == 2

    page = product.call("GET", base, params={"limit": 1}).json()
    assert [a["action"] for a in page["data"]] == ["stop"]
    assert page["pagination"]["next"].endswith("?limit=1&offset=1")
    second = product.call("GET", page["pagination"]["next"]).json()
    assert [a["action"] for a in second["data"]] == ["start"]
    assert second["pagination"]["next"] is None

    too_many = product.call("GET", base, params={"limit": 101})
    assert too_many.status_code == 400
    assert too_many.json() == {"errors": [{"status": 400,
                                           "detail": "limit must be between 0 and 100."}]}
    # Another user's instance, and no token at all.
    assert product.call("GET", f"/api/lambda-instances/{OTHER_INSTANCE_ID}/actions/"
                        ).status_code == 404
    assert product.call("GET", base, token=None).status_code == 401
