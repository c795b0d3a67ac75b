"""The action endpoint and the other endpoints, every case of the contract, through the Falcon
app (TestClient), on a real database."""

from __future__ import annotations

import json
import re

import pytest
from cryptography.fernet import Fernet
from falcon import testing

from api.adapters.crypto import TokenCipher
from api.domain.ports import Identity
from api.http.app import create_app
from api.http.resources import ActionParams, action_params
from tests.conftest import FakeIdentity
from tests.unit.test_services import INSTANCE_ID, add_instance

TOKEN = "tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY"
BOB_TOKEN = "bob-token"
URL = f"/api/lambda-instances/{INSTANCE_ID}/"
AUTH = {"Authorization": f"Token {TOKEN}"}

INVALID_TOKEN = {"errors": [{
    "message": "Invalid token", "code": 401, "details": "unauthorized", "status": 401,
    "detail": "Unauthorized. Request failed because user provided an invalid token."}]}
NOT_FOUND = {"errors": [{"status": 404,
                         "detail": "The specified lambda instance doesn't exist."}]}
BAD_ACTION = {"errors": [{"status": 400, "detail":
                          "action POST parameter can be used with start or stop value."}]}
ACCEPTED = {"code": 202, "short-description": "Your request has been accepted"}


class RecordingDispatcher:
    def __init__(self):
        self.dispatched = []

    def dispatch(self, action_id):
        self.dispatched.append(action_id)


@pytest.fixture
def identity():
    return FakeIdentity({
        TOKEN: Identity("alice-uuid", "alice@example.org", "http://compute"),
        BOB_TOKEN: Identity("bob-uuid", "bob@example.org", "http://compute"),
    })


@pytest.fixture
def cipher():
    return TokenCipher(Fernet.generate_key())


@pytest.fixture
def dispatcher():
    return RecordingDispatcher()


@pytest.fixture
def client(identity, uow_factory, dispatcher, cipher):
    add_instance(uow_factory)
    return testing.TestClient(create_app(identity=identity, uow_factory=uow_factory,
                                         dispatcher=dispatcher, token_cipher=cipher))


def post(client, body=None, headers=AUTH, url=URL, **kwargs):
    return client.simulate_post(url, headers=headers, body=body, **kwargs)


def form(action):
    return {"body": f"action={action}",
            "headers": {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}}


def multipart(action):
    boundary = "XyZ123"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"action\"\r\n\r\n"
            f"{action}\r\n--{boundary}--\r\n")
    return {"body": body,
            "headers": {**AUTH, "Content-Type": f"multipart/form-data; boundary={boundary}"}}


def as_json(action):
    return {"body": json.dumps({"action": action}),
            "headers": {**AUTH, "Content-Type": "application/json"}}


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer " + TOKEN}, {"Authorization": TOKEN},
    {"Authorization": "Token"}, {"Authorization": "Token unknown-token"},
    {"Authorization": "Token " + "x" * 20000}, {"Authorization": "Token a b"},
])
def test_bad_tokens_get_the_contract_401(client, headers, identity):
    resp = post(client, headers=headers, **{k: v for k, v in form("start").items()
                                            if k != "headers"})
    assert resp.status_code == 401
    assert resp.json == INVALID_TOKEN


def test_curl_style_header_without_space_parses(client):
    resp = client.simulate_post(URL, headers={"Authorization": f"Token {TOKEN}",
                                              "Content-Type": "application/x-www-form-urlencoded"},
                                body="action=start")
    assert resp.status_code == 202


@pytest.mark.parametrize("encode", [form, multipart, as_json])
def test_each_encoding_is_accepted(client, encode, dispatcher, uow_factory):
    resp = client.simulate_post(URL, **encode("start"))
    assert resp.status_code == 202, resp.text
    assert resp.json["status"] == ACCEPTED
    action_id = resp.json["data"]["action"]["id"]
    assert resp.headers["Location"] == f"/api/lambda-instances/{INSTANCE_ID}/actions/{action_id}"
    assert dispatcher.dispatched == [action_id]
    followed = client.simulate_get(resp.headers["Location"], headers=AUTH)
    assert followed.status_code == 200
    assert followed.json["data"]["state"] == "accepted"
    assert followed.json["data"]["instance"]["status"]["message"] == "STARTING"


def test_trailing_slash_is_optional(client):
    assert client.simulate_post(URL.rstrip("/"), **form("start")).status_code == 202


@pytest.mark.parametrize("url", [
    "/api/lambda-instances/not-a-uuid/", "/api/lambda-instances/3/",
    "/api/lambda-instances/00000000-0000-0000-0000-000000000000/"])
def test_unknown_instances_are_404(client, url):
    resp = client.simulate_post(url, **form("start"))
    assert resp.status_code == 404 and resp.json == NOT_FOUND


def test_someone_elses_instance_is_404(client):
    resp = client.simulate_post(URL, body="action=start", headers={
        "Authorization": f"Token {BOB_TOKEN}",
        "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 404 and resp.json == NOT_FOUND


@pytest.mark.parametrize("kwargs", [
    {}, form("restart"), form(""), as_json("restart"), as_json(None),
    {"body": "{not json", "headers": {**AUTH, "Content-Type": "application/json"}},
    {"body": "[1, 2]", "headers": {**AUTH, "Content-Type": "application/json"}},
    {"body": "action=start", "headers": {**AUTH, "Content-Type": "text/plain"}},
    {"body": "--x\r\nbroken", "headers": {**AUTH,
                                          "Content-Type": "multipart/form-data; boundary=x"}},
])
def test_bad_or_missing_action_is_400(client, kwargs):
    resp = client.simulate_post(URL, **({"headers": AUTH} | kwargs))
    assert resp.status_code == 400 and resp.json == BAD_ACTION


def test_not_found_before_bad_action(client):
    resp = client.simulate_post("/api/lambda-instances/nope/", **form("restart"))
    assert resp.status_code == 404


def test_already_started_and_in_flight_conflicts(client):
    assert client.simulate_post(URL, **form("start")).status_code == 202
    again = client.simulate_post(URL, **form("start"))
    assert again.status_code == 409
    assert again.json == {"errors": [{"status": 409, "detail":
                          "Can't start a lambda instance while lambda instance status is "
                          "STARTING."}]}
    stop = client.simulate_post(URL, **form("stop"))
    assert stop.json["errors"][0]["detail"] == (
        "Can't stop a lambda instance while lambda instance status is STARTING.")


def test_stop_of_stopped_is_409_already(client):
    resp = client.simulate_post(URL, **form("stop"))
    assert resp.status_code == 409
    assert resp.json["errors"][0]["detail"] == "The specified lambda instance is already stopped."


def test_identity_outage_is_503_not_401(client, identity):
    identity.unavailable = True
    resp = client.simulate_post(URL, **form("start"))
    assert resp.status_code == 503
    assert resp.json["errors"][0]["status"] == 503
    assert resp.headers["Retry-After"]


def test_authenticate(client):
    resp = client.simulate_get("/api/authenticate/", headers=AUTH)
    assert resp.json == {"status": 200, "result": "Success",
                         "data": {"name": "alice@example.org"}}
    assert client.simulate_get("/api/authenticate/").status_code == 401


def test_list_instances_and_paging(client):
    resp = client.simulate_get("/api/lambda-instances/", headers=AUTH)
    assert resp.status_code == 200
    assert resp.json["status"] == {"short_description": "Lambda instances", "code": 200}
    assert [i["id"] for i in resp.json["data"]] == [INSTANCE_ID]
    assert resp.json["pagination"]["count"] == 1
    assert client.simulate_get("/api/lambda-instances/", headers=AUTH,
                               params={"limit": "-1"}).status_code == 400
    assert client.simulate_get("/api/lambda-instances/", headers=AUTH,
                               params={"limit": "x"}).status_code == 400
    empty = client.simulate_get("/api/lambda-instances/", headers=AUTH,
                                params={"limit": "0"})
    assert empty.json["data"] == [] and empty.json["pagination"]["count"] == 1


@pytest.mark.parametrize(("view", "keys"), [(None, {"id", "name", "status", "info"}),
                                            ("status", {"id", "name", "status"}),
                                            ("info", {"id", "name", "info"})])
def test_details_and_filters(client, view, keys):
    params = {"filter": view} if view else None
    resp = client.simulate_get(URL, headers=AUTH, params=params)
    assert resp.status_code == 200
    item = resp.json["data"][0]
    assert set(item) == keys
    if "status" in item:
        assert item["status"] == {"code": "1", "message": "STOPPED",
                                  "detail": "Lambda instance has been stopped"}


def test_details_bad_filter_and_unknown(client):
    assert client.simulate_get(URL, headers=AUTH, params={"filter": "x"}).status_code == 400
    assert client.simulate_get("/api/lambda-instances/x/", headers=AUTH).json == NOT_FOUND


def test_unknown_action_resource_is_404(client):
    resp = client.simulate_get(f"{URL}actions/nope", headers=AUTH)
    assert resp.status_code == 404
    assert resp.json == {"errors": [{"status": 404,
                                     "detail": "The specified action doesn't exist."}]}


def test_unknown_route_and_method_use_the_error_shape(client):
    assert client.simulate_get("/api/nothing", headers=AUTH).json["errors"][0]["status"] == 404
    resp = client.simulate_delete(URL, headers=AUTH)
    assert resp.status_code == 405 and resp.json["errors"][0]["status"] == 405


def test_openapi_is_public_and_lists_every_route(client):
    resp = client.simulate_get("/api/openapi.json")
    assert resp.status_code == 200 and resp.json["openapi"].startswith("3.")
    assert set(resp.json["paths"]) >= {
        "/api/authenticate/", "/api/lambda-instances/",
        "/api/lambda-instances/{instance_id}/",
        "/api/lambda-instances/{instance_id}/actions/{action_id}",
        "/api/lambda-instances/{instance_id}/actions/{action_id}/cancel"}


def test_token_is_stored_encrypted_only(client, uow_factory, cipher):
    client.simulate_post(URL, **form("start"))
    from sqlalchemy import select

    from api.adapters.db.tables import actions
    with uow_factory() as uow:
        stored = uow._conn.execute(select(actions.c.encrypted_token)).scalar_one()
    assert TOKEN not in stored and cipher.decrypt(stored) == TOKEN


def test_request_id_is_echoed(client):
    resp = client.simulate_get(URL, headers={**AUTH, "X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"


@pytest.mark.parametrize("given", [None, "", "has space", "x" * 65])
def test_request_id_is_made_when_missing_or_unusable(client, given):
    headers = dict(AUTH) if given is None else {**AUTH, "X-Request-Id": given}
    ids = {client.simulate_get(URL, headers=headers).headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)


def test_openapi_document_is_valid_openapi_3():
    from openapi_spec_validator import validate

    from api.http.openapi import DOCUMENT

    validate(DOCUMENT)


def test_contract_bodies_are_the_quoted_text(client):
    # The contract quotes these bodies; the response encoder must give back exactly that text.
    spec = {
        401: '{"errors": [{"message": "Invalid token", "code": 401, "details": "unauthorized",'
             ' "status": 401, "detail": "Unauthorized. Request failed because user provided'
             ' an invalid token."}]}',
        404: '{"errors": [{"status": 404, "detail": "The specified lambda instance doesn\'t'
             ' exist."}]}',
        400: '{"errors": [{"status": 400, "detail": "action POST parameter can be used with'
             ' start or stop value."}]}',
    }
    bad_token = {**form("start"), "headers": {"Authorization": "Token nope"}}
    answers = {401: client.simulate_post(URL, **bad_token),
               404: client.simulate_post("/api/lambda-instances/nope/", **form("start")),
               400: client.simulate_post(URL, **form("reboot"))}
    for status, resp in answers.items():
        assert resp.status_code == status
        assert resp.text == spec[status]
    accepted = client.simulate_post(URL, **form("start"))
    assert accepted.status_code == 202
    assert accepted.text.startswith(
        '{"status": {"code": 202, "short-description": "Your request has been accepted"}')


def test_bodies_keep_non_ascii_text_as_it_is(identity, uow_factory, dispatcher, cipher):
    from api.domain.model import Instance, InstanceStatus

    with uow_factory() as uow:
        uow.instances.add(Instance(id=INSTANCE_ID, owner="alice-uuid", name="συστάδα-ü",
                                   status=InstanceStatus.STOPPED, services=("spark",),
                                   hosts=()))
        uow.commit()
    client = testing.TestClient(create_app(identity=identity, uow_factory=uow_factory,
                                           dispatcher=dispatcher, token_cipher=cipher))
    resp = client.simulate_get(URL, headers=AUTH)
    assert resp.status_code == 200
    assert '"name": "συστάδα-ü"' in resp.text
    assert resp.text == json.dumps(resp.json, ensure_ascii=False)


@pytest.mark.parametrize("path", [
    "//api/lambda-instances", "///api/authenticate", f"//{URL[1:]}",
    f"//{URL[1:]}actions/x", "/api/lambda-instances/./", "/api/lambda-instances//",
    "/api/lambda-instances/.", f"{URL}./actions/x"])
def test_every_spelling_that_reaches_a_resource_checks_the_token(client, path, identity):
    for method in ("GET", "POST"):
        resp = client.simulate_request(method, path)
        assert resp.status_code in (401, 404, 405), (method, path, resp.status_code)
        if resp.status_code == 401:
            assert resp.json == INVALID_TOKEN
    assert identity.calls == 0


@pytest.mark.parametrize("query", ["limit=99999999999999999999", "offset=1_0", "limit=%D9%A3",
                                   "limit=+5", "offset=" + "9" * 5000])
def test_paging_numbers_must_be_plain_and_in_range(client, query):
    resp = client.simulate_get("/api/lambda-instances/", headers=AUTH, query_string=query)
    assert resp.status_code == 400 and resp.json["errors"][0]["status"] == 400


@pytest.mark.parametrize("body", ["[" * 60000, '{"a":' * 5000 + "1" + "}" * 5000])
def test_deeply_nested_json_is_no_action(client, body):
    resp = client.simulate_post(URL, body=body,
                                headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json == BAD_ACTION


def test_cancel_is_202_then_409_and_404_unless_the_callers_action(client):
    location = client.simulate_post(URL, **form("start")).headers["Location"]
    resp = client.simulate_post(f"{location}/cancel", headers=AUTH)
    assert resp.status_code == 202 and resp.headers["Location"] == location
    assert resp.json["status"] == ACCEPTED
    action = resp.json["data"]["action"]
    # Not claimed yet (this app's dispatcher only records): ended at once.
    assert (action["state"], action["cancel_requested_by"]) == ("cancelled", "alice-uuid")
    again = client.simulate_post(f"{location}/cancel", headers=AUTH)
    assert (again.status_code, again.json) == (409, {"errors": [{
        "status": 409, "detail": "The action has already ended (cancelled)."}]})
    bob = client.simulate_post(f"{location}/cancel",
                               headers={"Authorization": f"Token {BOB_TOKEN}"})
    assert (bob.status_code, bob.json) == (404, NOT_FOUND)
    unknown = client.simulate_post(f"{URL}actions/nope/cancel", headers=AUTH)
    assert unknown.json == {"errors": [{"status": 404,
                                        "detail": "The specified action doesn't exist."}]}
    [item] = client.simulate_get(f"{URL}actions/", headers=AUTH).json["data"]
    assert item["state"] == "cancelled" and item["cancel_requested_at"] is not None
    resource = client.simulate_get(location, headers=AUTH).json["data"]
    assert resource["requested_by"] == item["requested_by"] == "alice-uuid"
    details = client.simulate_get(URL, headers=AUTH).json["data"][0]["status"]
    assert details["message"] == "FAILED" and "nothing was changed" in details["failure_message"]


# --- exclude: the slaves a start leaves out -------------------------------------------------


def _multipart_fields(*fields):
    boundary = "XyZ123"
    body = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                   f"{value}\r\n" for name, value in fields) + f"--{boundary}--\r\n"
    return f"multipart/form-data; boundary={boundary}", body.encode()


URLENCODED = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    (URLENCODED, b"action=start", ActionParams("start", None)),
    (URLENCODED, b"action=start&exclude=s1&exclude=s2,s3", ActionParams("start",
                                                                        ["s1", "s2,s3"])),
    (URLENCODED, b"exclude=&action=start", ActionParams("start", [""])),
    (*_multipart_fields(("action", "start"), ("exclude", "s1"), ("exclude", "s2")),
     ActionParams("start", ["s1", "s2"])),
    ("application/json", b'{"action": "start", "exclude": ["s1", "s2"]}',
     ActionParams("start", ["s1", "s2"])),
    ("application/json", b'{"action": "start", "exclude": "s1,s2"}',
     ActionParams("start", "s1,s2")),
    # Whatever JSON holds goes to the service as it is, to be refused there (a 400).
    ("application/json", b'{"action": "start", "exclude": {"s1": [1, null]}}',
     ActionParams("start", {"s1": [1, None]})),
    # Unreadable bodies are no parameters at all (the 400 of the action parameter).
    (URLENCODED, b"action=start&" + b"exclude=s&" * 100, ActionParams()),
    (URLENCODED + "; charset=nope", b"action=start&exclude=s1", ActionParams()),
    ("application/json", b'{"action": "start", "exclude": ' + b"[" * 60000, ActionParams()),
    (*_multipart_fields(("action", "start"), *[("exclude", "s")] * 100), ActionParams()),
    ("text/plain", b"action=start&exclude=s1", ActionParams()),
])
def test_action_params_read_every_encoding_and_never_raise(content_type, body, expected):
    assert action_params(content_type, body) == expected


def test_exclude_through_the_app_is_recorded_or_a_400(client):
    master = client.simulate_post(URL, body="action=start&exclude=m",
                                  headers={**AUTH, "Content-Type": URLENCODED})
    assert master.status_code == 400
    assert master.json == {"errors": [{"status": 400, "detail": (
        "exclude: m is the master; a lambda instance cannot start without it (only slaves "
        "can be left out).")}]}
    stop = client.simulate_post(URL, json={"action": "stop", "exclude": ["s"]}, headers=AUTH)
    assert stop.json == {"errors": [{"status": 400, "detail": "exclude applies to start only."}]}

    resp = client.simulate_post(URL, json={"action": "start", "exclude": ["s"]}, headers=AUTH)
    assert resp.status_code == 202
    assert resp.json["data"]["action"]["excluded_hosts"] == ["s"]
    action = client.simulate_get(resp.headers["Location"], headers=AUTH).json["data"]
    assert action["excluded_hosts"] == ["s"]
    history = client.simulate_get(f"{URL}actions/", headers=AUTH).json["data"]
    assert [a["excluded_hosts"] for a in history] == [["s"]]
    info = client.simulate_get(URL, headers=AUTH, params={"filter": "info"}).json
    assert info["data"][0]["info"]["left_out_hosts"] == []  # until the start succeeds
