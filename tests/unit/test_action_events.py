"""An action's event stream through the Falcon app (TestClient) on the in-memory fakes:
the SSE framing, resuming after Last-Event-ID or ?after, 204 once there is nothing more,
the action resource's 404s, a 400 after them, 503 past the stream limit, and a live
stream's keep-alive and its end with the action."""

from __future__ import annotations

import asyncio
import json

import pytest
from cryptography.fernet import Fernet
from falcon import testing

from api.adapters.crypto import TokenCipher
from api.domain import services
from api.domain.clock import utcnow
from api.domain.model import ActionState, StepName, StepState, TaskResult
from api.domain.ports import Identity
from api.http.app import create_app
from tests.fakes import FakeIdentity, InMemoryUnitOfWorkFactory
from tests.unit.test_http import AUTH, BOB_TOKEN, NOT_FOUND, TOKEN, RecordingDispatcher
from tests.unit.test_services import ALICE, INSTANCE_ID, add_instance

ACTION_NOT_FOUND = {"errors": [{"status": 404, "detail": "The specified action doesn't exist."}]}


def make_app(uow_factory, **options):
    identity = FakeIdentity({
        TOKEN: Identity("alice-uuid", "alice@example.org", "http://compute"),
        BOB_TOKEN: Identity("bob-uuid", "bob@example.org", "http://compute"),
    })
    return create_app(identity=identity, uow_factory=uow_factory,
                      dispatcher=RecordingDispatcher(),
                      token_cipher=TokenCipher(Fernet.generate_key()), **options)


@pytest.fixture
def memory():
    factory = InMemoryUnitOfWorkFactory()
    add_instance(factory)
    return factory


def accept(uow_factory) -> str:
    accepted = services.request_action(uow_factory, ALICE, INSTANCE_ID, "start",
                                       encrypt_token=lambda: "t")
    return accepted.action.id


def run_to_the_end(uow_factory, action_id: str) -> None:
    """What a worker writes for a start: claim, steps, two hosts' task results, finish."""
    with uow_factory() as uow:
        claim = uow.actions.claim(action_id, "w", utcnow(), 60)
        step = uow.actions.start_step(action_id, claim.attempt, StepName.POWER_ON, utcnow())
        uow.actions.end_step(step, StepState.SUCCEEDED, utcnow(), None)
        uow.actions.add_step(action_id, claim.attempt, StepName.WAIT_SSH, StepState.SKIPPED,
                             utcnow(), "hosts are local")
        step = uow.actions.start_step(action_id, claim.attempt, StepName.PLAYBOOK, utcnow())
        uow.actions.add_tasks(action_id, claim.attempt, [
            TaskResult(host="m", task="Ensure HDFS is running", status="changed",
                       role="hadoop", play="start", duration=0.5),
            TaskResult(host="s", task="Ensure HDFS is running", status="ok",
                       role="hadoop", play="start", duration=0.25)], utcnow())
        uow.actions.end_step(step, StepState.SUCCEEDED, utcnow(), "2 task results")
        assert uow.actions.finish(action_id, "w", ActionState.SUCCEEDED, None, utcnow())
        uow.commit()


def parse_sse(text: str) -> list[dict]:
    """The stream's blocks as dicts of their fields; comments under ":"."""
    blocks = []
    for raw in text.split("\n\n"):
        if not raw:
            continue
        block = {}
        for line in raw.split("\n"):
            name, _, value = line.partition(":")
            block[name] = value[1:] if value.startswith(" ") else value
        blocks.append(block)
    return blocks


def events_of(text: str) -> list[dict]:
    return [{**json.loads(b["data"]), "_id": b["id"], "_event": b["event"]}
            for b in parse_sse(text) if "data" in b]


def events_url(action_id: str, instance_id: str = INSTANCE_ID) -> str:
    return f"/api/lambda-instances/{instance_id}/actions/{action_id}/events"


EXPECTED = [
    ("state", "accepted", None), ("state", "running", None),
    ("step", "running", "power_on"), ("step", "succeeded", "power_on"),
    ("step", "skipped", "wait_ssh"), ("step", "running", "playbook"),
    ("task", "changed", "m"), ("task", "ok", "s"),
    ("step", "succeeded", "playbook"), ("state", "succeeded", None)]


def summary(event: dict) -> tuple:
    return (event["type"], event.get("state") or event.get("status"),
            event.get("name") or event.get("host"))


def test_an_ended_action_streams_every_event_in_order_then_ends(memory):
    action_id = accept(memory)
    run_to_the_end(memory, action_id)
    client = testing.TestClient(make_app(memory))

    resource = client.simulate_get(events_url(action_id).removesuffix("/events"), headers=AUTH)
    assert resource.json["data"]["events"] == {"last_id": 10, "href": events_url(action_id)}

    resp = client.simulate_get(events_url(action_id), headers=AUTH)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-store"
    assert parse_sse(resp.text)[0] == {"retry": "2000"}
    events = events_of(resp.text)
    assert [e["seq"] for e in events] == list(range(1, 11))
    assert all(e["_id"] == str(e["seq"]) and e["_event"] == e["type"] for e in events)
    assert [summary(e) for e in events] == EXPECTED
    accepted, running, task, last = events[0], events[1], events[6], events[-1]
    assert accepted["kind"] == "start" and accepted["requested_by"] == "alice-uuid"
    assert accepted["attempt"] is None and running["attempt"] == 1
    assert task == {**task, "task": "Ensure HDFS is running", "role": "hadoop",
                    "play": "start", "duration": 0.5, "message": None, "attempt": 1}
    assert events[8]["message"] == "2 task results" and events[8]["duration"] >= 0
    assert last["error"] is None and last["at"].endswith("+00:00")


def test_a_client_resumes_after_its_last_event_id(memory):
    action_id = accept(memory)
    run_to_the_end(memory, action_id)
    client = testing.TestClient(make_app(memory))
    url = events_url(action_id)

    rest = events_of(client.simulate_get(url, headers={**AUTH, "Last-Event-ID": "4"}).text)
    assert [e["seq"] for e in rest] == list(range(5, 11))
    assert [summary(e) for e in rest] == EXPECTED[4:]
    after = events_of(client.simulate_get(url, params={"after": "8"}, headers=AUTH).text)
    assert [e["seq"] for e in after] == [9, 10]
    # An EventSource reconnects to the URL it opened with the header of its last event.
    both = client.simulate_get(url, params={"after": "2"},
                               headers={**AUTH, "Last-Event-ID": "9"})
    assert [e["seq"] for e in events_of(both.text)] == [10]
    # Nothing more to send for an ended action: 204, so an EventSource stops.
    for headers in ({"Last-Event-ID": "10"}, {"Last-Event-ID": "99"}):
        done = client.simulate_get(url, headers={**AUTH, **headers})
        assert done.status_code == 204 and done.text == ""
    assert client.simulate_get(url, params={"after": "10"}, headers=AUTH).status_code == 204


def test_the_action_resource_404s_come_first_then_a_bad_event_id_is_400(memory):
    action_id = accept(memory)
    client = testing.TestClient(make_app(memory))
    bob = {"Authorization": f"Token {BOB_TOKEN}"}
    for url, headers, body in [
        (events_url(action_id), bob, NOT_FOUND),
        (events_url(action_id, "not-a-uuid"), AUTH, NOT_FOUND),
        (events_url("no-such-action"), AUTH, ACTION_NOT_FOUND),
        (events_url("no-such-action"), {**AUTH, "Last-Event-ID": "x"}, ACTION_NOT_FOUND),
    ]:
        resp = client.simulate_get(url, headers=headers)
        assert (resp.status_code, resp.json) == (404, body), url
        # The action resource answers the same.
        resp = client.simulate_get(url.removesuffix("/events"), headers=headers)
        assert (resp.status_code, resp.json) == (404, body), url
    detail = ("The last event id (Last-Event-ID, or after) must be a non-negative integer "
              "of at most 18 digits.")
    for query, headers in [("", {"Last-Event-ID": "-1"}), ("after=1e3", {}),
                           ("after=" + "9" * 19, {})]:
        resp = client.simulate_get(events_url(action_id), query_string=query,
                                   headers={**AUTH, **headers})
        assert (resp.status_code, resp.json) == (
            400, {"errors": [{"status": 400, "detail": detail}]})
    assert client.simulate_get(events_url(action_id)).status_code == 401


def test_past_the_stream_limit_the_answer_is_503_with_retry_after(memory):
    action_id = accept(memory)
    client = testing.TestClient(make_app(memory, event_streams=0))
    resp = client.simulate_get(events_url(action_id), headers=AUTH)
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "5"
    assert resp.json == {"errors": [{"status": 503, "detail": (
        "Too many event streams are open on this server; try again later.")}]}


def test_a_live_stream_keeps_alive_while_waiting_and_ends_with_the_action(memory):
    """The stream of a running action sends what comes as it comes, keep-alives while
    nothing does, and ends once the final state event is out."""
    action_id = accept(memory)
    app = make_app(memory, events_poll_interval=0.01, events_keepalive=0.05,
                   event_streams=1)

    async def scenario() -> str:
        received = ""

        async def read_until(needle: str) -> None:
            nonlocal received
            async with asyncio.timeout(10):
                while needle not in received:
                    received += (await stream.stream.read()).decode()
                    await asyncio.sleep(0.01)

        async with testing.ASGIConductor(app) as conductor:
            async with conductor.simulate_get_stream(events_url(action_id),
                                                     headers=AUTH) as stream:
                await read_until('"state": "accepted"')
                await read_until(": keep-alive")
                run_to_the_end(memory, action_id)
                await read_until('"state": "succeeded"')
                async with asyncio.timeout(10):
                    # The app ends the response by itself (no simulated disconnect).
                    await stream._task
                received += (await stream.stream.read()).decode()
            # Its place is free again: a stream beyond the limit of one would be a 503.
            again = await conductor.simulate_get(events_url(action_id), headers=AUTH)
            assert again.status_code == 200, again.status
        return received

    received = asyncio.run(scenario())
    events = events_of(received)
    assert [e["seq"] for e in events] == list(range(1, 11))
    assert [summary(e) for e in events] == EXPECTED
    assert received.index(": keep-alive") < received.index('"state": "running"')
