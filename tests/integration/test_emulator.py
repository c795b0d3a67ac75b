"""The Synnefo emulator over real HTTP: Astakos and Cyclades shapes, transitions, faults, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest
import requests
import yaml

from lambda_testbed.emulator import Emulator

TOKEN = "tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY"
OTHER_TOKEN = "other-user-token"


class FakeClock:
    """A monotonic clock the test moves by hand, so transitions need no sleeping."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_emulator(emulator_seed):
    """Start emulators with a changed seed, a fake clock or power hooks; stop them all after."""
    started: list[Emulator] = []

    def make(*, emulator_options: dict | None = None, clock=None, power_hooks=None,
             seed: dict | None = None) -> Emulator:
        seed = seed or emulator_seed
        if emulator_options is not None:
            seed["emulator"] = {**seed.get("emulator", {}), **emulator_options}
        kwargs = {"clock": clock} if clock else {}
        emulator = Emulator.from_seed(seed, power_hooks=power_hooks, **kwargs)
        emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


def _post_token(http, emulator, body):
    return http.post(f"{emulator.auth_url}/tokens", json=body)


def _server(http, emulator, server_id, token=TOKEN):
    return http.get(f"{emulator.compute_url}/servers/{server_id}",
                    headers={"X-Auth-Token": token})


def _action(http, emulator, server_id, body, token=TOKEN):
    return http.post(f"{emulator.compute_url}/servers/{server_id}/action", json=body,
                     headers={"X-Auth-Token": token})


# --- identity --------------------------------------------------------------------------------


def test_token_answer_has_astakos_shape(http, emulator, emulator_seed):
    response = _post_token(http, emulator, {"auth": {"token": {"id": TOKEN}}})
    assert response.status_code == 200
    access = response.json()["access"]
    user = emulator_seed["users"][0]
    assert access["user"]["id"] == user["id"]
    assert access["user"]["name"] == user["name"]
    assert access["token"]["id"] == TOKEN
    assert access["token"]["tenant"] == {"id": user["id"], "name": user["name"]}
    assert datetime.fromisoformat(access["token"]["expires"]) > datetime.now(timezone.utc)
    compute = [s for s in access["serviceCatalog"] if s["type"] == "compute"]
    assert compute[0]["name"] == "cyclades_compute"
    assert compute[0]["endpoints"][0]["publicURL"] == emulator.compute_url
    assert compute[0]["endpoints"][0]["versionId"] == "v2.0"
    assert "SNF:uiURL" in compute[0]["endpoints"][0]
    assert any(s["type"] == "identity" for s in access["serviceCatalog"])


def test_unknown_token_is_401_unauthorized(http, emulator):
    response = _post_token(http, emulator, {"auth": {"token": {"id": "no-such-token"}}})
    assert response.status_code == 401
    assert response.json() == {"unauthorized": {"code": 401, "message": "Invalid token",
                                                "details": ""}}


@pytest.mark.parametrize("body", [b"not json", b'{"auth": {}}', b'{"auth": {"token": {"id": 5}}}',
                                  b"[1, 2]"])
def test_malformed_token_request_is_400_bad_request(http, emulator, body):
    response = http.post(f"{emulator.auth_url}/tokens", data=body,
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["badRequest"]["code"] == 400


# --- compute reads ---------------------------------------------------------------------------


def test_server_answer_has_cyclades_shape(http, emulator, emulator_seed):
    response = _server(http, emulator, "101")
    assert response.status_code == 200
    server = response.json()["server"]
    assert server["id"] == 101
    assert server["name"] == "lambda-1-master"
    assert server["status"] == "STOPPED"
    assert server["user_id"] == emulator_seed["users"][0]["id"]
    assert server["SNF:task_state"] == ""
    (network,) = server["addresses"].values()
    assert network == [{"addr": "127.42.1.1", "version": 4, "OS-EXT-IPS:type": "fixed"}]
    assert server["attachments"][0]["ipv4"] == "127.42.1.1"
    assert server["created"] and server["updated"]


def test_servers_detail_lists_only_the_callers_servers(http, emulator):
    response = http.get(f"{emulator.compute_url}/servers/detail",
                        headers={"X-Auth-Token": OTHER_TOKEN})
    assert [s["id"] for s in response.json()["servers"]] == [201]
    listing = http.get(f"{emulator.compute_url}/servers", headers={"X-Auth-Token": TOKEN})
    assert sorted(s["id"] for s in listing.json()["servers"]) == [101, 102, 103, 104, 105]


@pytest.mark.parametrize("headers", [{}, {"X-Auth-Token": "bogus"}])
def test_compute_without_a_valid_token_is_401(http, emulator, headers):
    response = http.get(f"{emulator.compute_url}/servers/101", headers=headers)
    assert response.status_code == 401
    assert response.json()["unauthorized"]["code"] == 401


def test_another_users_server_is_404_item_not_found(http, emulator):
    response = _server(http, emulator, "201", token=TOKEN)
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["message"] == "Server not found"
    assert _action(http, emulator, "201", {"shutdown": {}}).status_code == 404
    assert _server(http, emulator, "201", token=OTHER_TOKEN).status_code == 200


def test_unknown_route_answers_a_fault_body(http, emulator):
    response = http.get(f"{emulator.compute_url}/flavors/nothing", headers={"X-Auth-Token": TOKEN})
    assert response.status_code == 404
    assert "itemNotFound" in response.json()


# --- transitions -----------------------------------------------------------------------------


def test_start_keeps_status_with_task_state_until_the_transition_ends(http, make_emulator, clock):
    emulator = make_emulator(emulator_options={"transition_seconds": 5}, clock=clock)
    response = _action(http, emulator, "101", {"start": {}})
    assert response.status_code == 202
    assert response.text == ""
    server = _server(http, emulator, "101").json()["server"]
    assert (server["status"], server["SNF:task_state"]) == ("STOPPED", "STARTING")
    clock.advance(4.9)
    assert _server(http, emulator, "101").json()["server"]["status"] == "STOPPED"
    clock.advance(0.2)
    server = _server(http, emulator, "101").json()["server"]
    assert (server["status"], server["SNF:task_state"]) == ("ACTIVE", "")

    assert _action(http, emulator, "101", {"shutdown": {}}).status_code == 202
    server = _server(http, emulator, "101").json()["server"]
    assert (server["status"], server["SNF:task_state"]) == ("ACTIVE", "STOPPING")
    clock.advance(5)
    assert emulator.server_status("101") == "STOPPED"


def test_openstack_action_names_are_accepted(http, make_emulator, clock):
    emulator = make_emulator(emulator_options={"transition_seconds": 1}, clock=clock)
    assert _action(http, emulator, "102", {"os-start": None}).status_code == 202
    clock.advance(1)
    assert emulator.server_status("102") == "ACTIVE"
    assert _action(http, emulator, "102", {"os-stop": None}).status_code == 202
    clock.advance(1)
    assert emulator.server_status("102") == "STOPPED"


def test_actions_refused_with_synnefo_faults(http, make_emulator, clock):
    emulator = make_emulator(emulator_options={"transition_seconds": 1}, clock=clock)
    stopped = _action(http, emulator, "101", {"shutdown": {}})
    assert stopped.status_code == 400
    assert stopped.json() == {"badRequest": {
        "code": 400, "message": "Cannot perform 'STOP' action while server is in 'STOPPED' state.",
        "details": ""}}

    assert _action(http, emulator, "101", {"start": {}}).status_code == 202
    pending = _action(http, emulator, "101", {"shutdown": {}})
    assert pending.status_code == 400
    assert pending.json()["badRequest"]["message"].startswith("Cannot perform 'STOP' action while")

    clock.advance(1)
    started = _action(http, emulator, "101", {"start": {}})
    assert started.json()["badRequest"]["message"] == (
        "Cannot perform 'START' action while server is in 'STARTED' state.")

    emulator.set_status("102", "BUILD")
    building = _action(http, emulator, "102", {"start": {}})
    assert building.status_code == 409
    assert building.json()["buildInProgress"]["message"] == "Server is being built."

    for status in ("ERROR", "DELETED"):
        emulator.set_status("103", status)
        refused = _action(http, emulator, "103", {"start": {}})
        assert refused.status_code == 400, status
        assert "badRequest" in refused.json()

    for body in ({"reboot": {"type": "SOFT"}}, {"start": {}, "shutdown": {}}, []):
        assert _action(http, emulator, "104", body).status_code == 400


def test_build_seconds_hold_servers_in_build_first(http, make_emulator, clock):
    emulator = make_emulator(emulator_options={"build_seconds": 3}, clock=clock)
    server = _server(http, emulator, "101").json()["server"]
    assert (server["status"], server["SNF:task_state"]) == ("BUILD", "BUILDING")
    assert _action(http, emulator, "101", {"start": {}}).status_code == 409
    clock.advance(3)
    assert emulator.server_status("101") == "STOPPED"
    assert emulator.server_status("201") == "ACTIVE"


def test_stuck_server_never_leaves_its_status(http, make_emulator, clock):
    emulator = make_emulator(emulator_options={"faults": {"stuck": {"101": "BUILD",
                                                                    "102": "ERROR"}}},
                             clock=clock)
    clock.advance(3600)
    assert _server(http, emulator, "101").json()["server"]["status"] == "BUILD"
    assert _action(http, emulator, "101", {"start": {}}).status_code == 409
    assert emulator.server_status("102") == "ERROR"
    assert _action(http, emulator, "102", {"start": {}}).status_code == 400
    emulator.set_faults(stuck={})
    assert emulator.server_status("101") == "STOPPED"


def test_concurrent_starts_accept_exactly_one(http, make_emulator, clock):
    emulator = make_emulator(clock=clock)
    barrier = threading.Barrier(20)
    codes: list[int] = []
    lock = threading.Lock()

    def start():
        with requests.Session() as session:
            session.trust_env = False
            barrier.wait()
            code = _action(session, emulator, "101", {"start": {}}).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=start) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [202] + [400] * 19
    assert emulator.request_counts()["servers_action"] == 20


# --- power hooks -----------------------------------------------------------------------------


class RecordingHooks:
    def __init__(self, fail_power_on: set[str] = frozenset()):
        self.calls: list[tuple[str, str, str]] = []
        self.fail_power_on = fail_power_on

    def power_on(self, server: dict) -> None:
        self.calls.append(("on", server["id"], server["status"]))
        if server["id"] in self.fail_power_on:
            raise RuntimeError("host would not boot")

    def power_off(self, server: dict) -> None:
        self.calls.append(("off", server["id"], server["status"]))


def test_power_hooks_run_at_the_flip(http, make_emulator, clock):
    hooks = RecordingHooks(fail_power_on={"102"})
    emulator = make_emulator(emulator_options={"transition_seconds": 2}, clock=clock,
                             power_hooks=hooks)
    _action(http, emulator, "101", {"start": {}})
    _action(http, emulator, "102", {"start": {}})
    assert hooks.calls == []  # nothing until the transition completes
    clock.advance(2)
    assert emulator.server_status("101") == "ACTIVE"
    assert emulator.server_status("102") == "ERROR"
    assert sorted(hooks.calls) == [("on", "101", "STOPPED"), ("on", "102", "STOPPED")]

    _action(http, emulator, "101", {"shutdown": {}})
    clock.advance(2)
    assert emulator.server_status("101") == "STOPPED"
    assert hooks.calls[-1] == ("off", "101", "ACTIVE")


# --- faults ----------------------------------------------------------------------------------


def test_error_every_answers_503_service_unavailable(http, emulator):
    emulator.set_faults(error_every=3)
    codes = [_server(http, emulator, "101").status_code for _ in range(9)]
    assert codes == [200, 200, 503] * 3
    assert _server(http, emulator, "101").status_code == 200  # the 10th
    emulator.set_faults(error_every=1)
    failed = _post_token(http, emulator, {"auth": {"token": {"id": TOKEN}}})
    assert failed.status_code == 503
    assert failed.json()["serviceUnavailable"]["code"] == 503
    assert emulator.request_counts()["injected_errors"] == 4


def test_error_rate_is_reproducible_with_a_seed(http, emulator):
    def run() -> list[int]:
        emulator.set_faults(error_rate=0.5, error_seed=7)
        return [_server(http, emulator, "101").status_code for _ in range(20)]

    first = run()
    assert first == run()
    assert 200 in first and 503 in first


def test_an_outage_answers_503_for_its_length_then_ends(http, make_emulator, clock):
    emulator = make_emulator(clock=clock)
    emulator.set_faults(outage_seconds=30)
    assert _server(http, emulator, "101").status_code == 503
    assert _post_token(http, emulator, {"auth": {"token": {"id": TOKEN}}}).status_code == 503
    clock.advance(29)
    assert _server(http, emulator, "101").status_code == 503
    emulator.set_faults(latency_ms=0)  # other changes do not restart the outage
    clock.advance(1)
    assert _server(http, emulator, "101").status_code == 200
    assert emulator.request_counts()["injected_errors"] == 3
    assert emulator.state()["faults"]["outage_seconds"] == 30


def test_latency_delays_every_protocol_answer(http, emulator):
    emulator.set_faults(latency_ms=500)
    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(f"{emulator.compute_url}/servers/101", headers={"X-Auth-Token": TOKEN},
                 timeout=0.1)
    # The admin API is never delayed, so tests can always steer the emulator.
    assert http.get(f"{emulator.base_url}/_emulator/state", timeout=2).status_code == 200
    emulator.set_faults(latency_ms=0)
    assert _server(http, emulator, "101").status_code == 200


# --- admin API -------------------------------------------------------------------------------


def test_admin_api_steers_faults_and_servers(http, emulator):
    admin = f"{emulator.base_url}/_emulator"
    answer = http.post(f"{admin}/faults", json={"error_every": 2, "stuck": {"103": "BUILD"}})
    assert answer.status_code == 200
    assert answer.json()["error_every"] == 2
    assert http.post(f"{admin}/faults", json={"error_rate": 7}).status_code == 400
    assert http.post(f"{admin}/faults", json={"nonsense": 1}).status_code == 400
    assert http.post(f"{admin}/faults", json={"outage_seconds": -1}).status_code == 400

    assert http.post(f"{admin}/servers/104", json={"status": "active"}).json()["server"][
        "status"] == "ACTIVE"
    assert http.post(f"{admin}/servers/999", json={"status": "ACTIVE"}).status_code == 404
    assert http.post(f"{admin}/servers/104", json={"status": "FLYING"}).status_code == 400

    state = http.get(f"{admin}/state").json()
    by_id = {s["id"]: s for s in state["servers"]}
    assert by_id["103"]["status"] == "BUILD"
    assert by_id["104"]["status"] == "ACTIVE"
    assert state["faults"]["stuck"] == {"103": "BUILD"}
    assert TOKEN not in json.dumps(state)  # token values are never shown
    http.post(f"{admin}/counts/reset")
    assert emulator.request_counts() == {}


# --- the CLI ---------------------------------------------------------------------------------


def test_cli_serves_the_seed_until_terminated(tmp_path, emulator_seed, http):
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text(yaml.safe_dump(emulator_seed))
    process = subprocess.Popen(
        [sys.executable, "-m", "lambda_testbed.emulator", "--seed", str(seed_file),
         "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("AUTH_URL=http://127.0.0.1:"), process.stderr.read()
        auth_url = line.split("=", 1)[1]
        answer = http.post(f"{auth_url}/tokens", json={"auth": {"token": {"id": TOKEN}}},
                           timeout=5)
        assert answer.status_code == 200
        compute_url = answer.json()["access"]["serviceCatalog"][0]["endpoints"][0]["publicURL"]
        server = http.get(f"{compute_url}/servers/101", headers={"X-Auth-Token": TOKEN},
                          timeout=5)
        assert server.json()["server"]["name"] == "lambda-1-master"
    finally:
        process.terminate()
        try:
            returncode = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        process.stdout.close()
        stderr = process.stderr.read()
        process.stderr.close()
    assert returncode == 0, stderr
    assert "auth URL" in stderr
