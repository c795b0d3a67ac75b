"""CycladesCompute against the emulator over HTTP: reads, power actions, waits and faults."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.adapters.compute import CycladesCompute, compute_factory
from api.domain.errors import ActionCancelled, ComputeError, ComputeTimeout
from api.domain.orchestration import Cancellation
from api.settings import Settings
from lambda_testbed.emulator import Emulator

TOKEN = "tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY"
SERVERS = ("101", "102", "103", "104", "105")


def _client(emulator, token=TOKEN, **options) -> CycladesCompute:
    options = {"poll_interval": 0.05, "backoff": 0.01, "timeout": 5.0, **options}
    return CycladesCompute(emulator.compute_url, token, **options)


def test_get_server_reads_status_and_addresses(emulator):
    server = _client(emulator).get_server("101")
    assert (server.id, server.name, server.status) == ("101", "lambda-1-master", "STOPPED")
    assert server.ips == ("127.42.1.1",)


def test_ensure_active_then_ensure_stopped(emulator):
    client = _client(emulator)
    outcome = client.ensure_active("101", timeout=10)
    assert (outcome.server.status, outcome.already) == ("ACTIVE", False)
    assert emulator.server_status("101") == "ACTIVE"
    assert emulator.request_counts()["servers_action"] == 1
    outcome = client.ensure_stopped("101", timeout=10)
    assert (outcome.server.status, outcome.already) == ("STOPPED", False)
    assert emulator.request_counts()["servers_action"] == 2


def test_already_at_target_sends_no_action(emulator):
    emulator.set_status("102", "ACTIVE")
    client = _client(emulator)
    active, stopped = client.ensure_active("102", timeout=5), client.ensure_stopped("103", 5)
    assert (active.server.status, active.already) == ("ACTIVE", True)
    assert (stopped.server.status, stopped.already) == ("STOPPED", True)
    assert "servers_action" not in emulator.request_counts()


def test_parallel_ensure_active_of_five_servers(emulator):
    client = _client(emulator)
    with ThreadPoolExecutor(max_workers=5) as pool:
        servers = list(pool.map(lambda sid: client.ensure_active(sid, timeout=10).server,
                                SERVERS))
    assert [s.status for s in servers] == ["ACTIVE"] * 5
    assert [s.id for s in servers] == list(SERVERS)
    assert emulator.request_counts()["servers_action"] == 5


def test_two_clients_racing_on_one_server_both_converge(emulator):
    barrier = threading.Barrier(4)

    def ensure(_):
        client = _client(emulator)
        barrier.wait()
        return client.ensure_active("104", timeout=10).server.status

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(ensure, range(4))) == ["ACTIVE"] * 4
    assert emulator.server_status("104") == "ACTIVE"


class SharedClock:
    """One fake clock for the emulator and the client: the client's sleeps move time on."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_stop_requested_while_a_start_is_pending_converges(emulator_seed):
    clock = SharedClock()
    emulator_seed["emulator"]["transition_seconds"] = 5
    with Emulator.from_seed(emulator_seed, clock=clock) as emulator:
        client = _client(emulator, clock=clock, sleep=clock.sleep, poll_interval=1)
        client.start_server("105")
        pending = {s["id"]: s for s in emulator.state()["servers"]}["105"]
        assert (pending["status"], pending["task_state"]) == ("STOPPED", "STARTING")
        assert client.ensure_stopped("105", timeout=60).server.status == "STOPPED"
        # The start ran to its end (5 s), then one shutdown (5 s more).
        assert emulator.request_counts()["servers_action"] == 2
        assert clock.now >= 10


def test_raw_action_refused_while_pending(emulator):
    client = _client(emulator)
    client.start_server("101")
    with pytest.raises(ComputeError, match="Cannot perform 'START' action while"):
        client.start_server("101")


def test_a_server_building_is_waited_for(emulator_seed):
    emulator_seed["emulator"]["build_seconds"] = 0.3
    with Emulator.from_seed(emulator_seed) as emulator:
        server = _client(emulator).ensure_active("101", timeout=10).server
        assert server.status == "ACTIVE"


def test_stuck_in_build_times_out_with_a_clear_message(emulator):
    emulator.set_faults(stuck={"101": "BUILD"})
    with pytest.raises(ComputeTimeout) as caught:
        _client(emulator).ensure_active("101", timeout=0.5)
    assert str(caught.value) == (
        "server 101 (lambda-1-master) did not become ACTIVE within 0.5s (last status BUILD)")


@pytest.mark.parametrize("status", ["ERROR", "DELETED"])
def test_failed_server_raises_compute_error_naming_it(emulator, status):
    emulator.set_status("102", status)
    with pytest.raises(ComputeError) as caught:
        _client(emulator).ensure_active("102", timeout=5)
    assert not isinstance(caught.value, ComputeTimeout)
    assert "102 (lambda-1-slave-1)" in str(caught.value)
    assert status in str(caught.value)


def test_injected_503s_are_retried(emulator):
    emulator.set_faults(error_every=2)
    server = _client(emulator, retries=3).ensure_active("101", timeout=10).server
    assert server.status == "ACTIVE"
    assert emulator.request_counts()["injected_errors"] >= 1


def test_persistent_503_is_a_compute_error(emulator):
    emulator.set_faults(error_every=1)
    with pytest.raises(ComputeError) as caught:
        _client(emulator, retries=2).get_server("101")
    assert caught.value.status == 503
    assert emulator.request_counts()["servers_get"] == 3


class RecordingClock(SharedClock):
    def __init__(self):
        super().__init__()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        super().sleep(seconds)


def test_an_outage_within_the_power_window_is_waited_out_with_capped_backoff(emulator_seed):
    clock = RecordingClock()
    with Emulator.from_seed(emulator_seed, clock=clock) as emulator:
        emulator.set_faults(outage_seconds=30)
        client = _client(emulator, clock=clock, sleep=clock.sleep, poll_interval=1,
                         max_backoff=8, retries=0)
        assert client.ensure_active("101", timeout=120).server.status == "ACTIVE"
        # Doubling from the poll interval up to the cap, until the cloud answers again;
        # then one poll while the start takes its transition.
        assert clock.sleeps == [1, 2, 4, 8, 8, 8, 1]
        assert emulator.request_counts()["injected_errors"] == 6


def test_an_outage_past_the_power_window_times_out_naming_the_cloud(emulator_seed):
    clock = RecordingClock()
    with Emulator.from_seed(emulator_seed, clock=clock) as emulator:
        emulator.set_faults(outage_seconds=600)
        client = _client(emulator, clock=clock, sleep=clock.sleep, poll_interval=1, retries=0)
        with pytest.raises(ComputeTimeout) as caught:
            client.ensure_stopped("101", timeout=60)
    assert str(caught.value) == ("server 101 did not become STOPPED within 60s: compute "
                                 "service unavailable (503: Service Unavailable)")
    assert max(clock.sleeps) == 15  # the default cap


@pytest.mark.parametrize("fault", [{"stuck": {"101": "BUILD"}}, {"outage_seconds": 600}])
def test_a_cancel_ends_the_wait_at_once(emulator, fault):
    emulator.set_faults(**fault)
    client = _client(emulator, poll_interval=30, retries=0)  # waits far past the test's
    cancel = Cancellation()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            client.ensure_active("101", timeout=600, cancel=cancel)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    while not emulator.request_counts().get("servers_get"):
        thread.join(0.02)  # until the first poll has been answered
    cancel.cancel("shutdown")
    thread.join(timeout=10)
    assert not thread.is_alive(), "ensure_active kept waiting after the cancel"
    [error] = outcome
    assert isinstance(error, ActionCancelled)
    assert str(error) == "stopped waiting for server 101 to become ACTIVE (shutdown)"
    assert emulator.request_counts()["servers_get"] == 1


def test_an_unreachable_service_says_so_in_words():
    client = CycladesCompute("http://127.0.0.1:9/compute/v2.0", TOKEN, retries=0, timeout=2)
    with pytest.raises(ComputeError) as caught:
        client.get_server("101")
    assert str(caught.value) == ("compute service unreachable: GET http://127.0.0.1:9/compute"
                                 "/v2.0/servers/101: cannot connect (connection refused)")


def test_another_users_server_is_an_error(emulator):
    with pytest.raises(ComputeError) as caught:
        _client(emulator).ensure_active("201", timeout=5)
    assert caught.value.status == 404
    assert "201" in str(caught.value)


def test_a_rejected_token_is_a_compute_error(emulator):
    with pytest.raises(ComputeError, match="compute service rejected the token"):
        _client(emulator, token="revoked-token").get_server("101")


def test_latency_past_the_timeout_is_a_compute_error(emulator):
    emulator.set_faults(latency_ms=600)
    with pytest.raises(ComputeError, match="unreachable"):
        _client(emulator, timeout=0.1, retries=0).get_server("101")
    emulator.set_faults(latency_ms=0)
    assert _client(emulator).get_server("101").status == "STOPPED"


def test_token_is_not_in_the_clients_repr(emulator):
    assert TOKEN not in repr(_client(emulator))


def test_factory_builds_clients_from_settings(emulator):
    make = compute_factory(Settings(poll_interval=0.05, http_retries=1))
    first, second = make(emulator.compute_url, TOKEN), make(emulator.compute_url, TOKEN)
    assert first.ensure_active("103", timeout=10).server.status == "ACTIVE"
    assert second.get_server("103").status == "ACTIVE"
