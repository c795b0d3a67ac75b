"""An instance's action history through the real server: newest first, in pages, the
caller's instances only."""

from __future__ import annotations

from lambda_testbed.demo_data import DEMO_USER_ID, OTHER_INSTANCE_ID
from tests.e2e.conftest import DEMO_INSTANCE_ID


def test_the_history_lists_an_instances_actions_newest_first_in_pages(product):
    base = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/actions/"
    assert product.call("GET", base).json()["data"] == []

    started = product.call("POST", f"/api/lambda-instances/{DEMO_INSTANCE_ID}/",
                           data={"action": "start"})
    assert started.status_code == 202
    assert product.wait_action(started.headers["Location"])["state"] == "succeeded"
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
