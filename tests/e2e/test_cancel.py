"""Cancelling actions through the real server (local pool): during the power step and
during the playbook, then start and stop again from where the cancels left the instance.

The power step is made slow by the emulator (the master VM stuck STOPPED), the playbook
by the stand-ins (``LAMBDA_STANDIN_HOLD``: their daemons wait to come up while a file
exists, and the play waits for their ports meanwhile).
"""

from __future__ import annotations

import psutil
import pytest

from api.adapters.ansible import RUN_GROUP_ENV
from api.adapters.proctree import find_processes_with_cmdline, find_processes_with_env
from lambda_testbed.demo_data import DEMO_USER_ID, OTHER_TOKEN
from tests.e2e.conftest import DEMO_INSTANCE_ID
from tests.support import wait_until

pytestmark = pytest.mark.slow

URL = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
MASTER_SERVER = "1010"


def accept_start(product) -> str:
    resp = product.call("POST", URL, data={"action": "start"})
    assert resp.status_code == 202, resp.text
    return resp.headers["Location"]


def step_running(product, location: str, name: str) -> bool:
    steps = product.call("GET", location).json()["data"]["steps"]
    return any(s["name"] == name and s["state"] == "running" for s in steps)


def cancel_and_wait(product, location: str) -> dict:
    resp = product.call("POST", f"{location}/cancel")
    assert resp.status_code == 202, resp.text
    assert resp.json()["data"]["action"]["cancel_requested_by"] == DEMO_USER_ID
    action = product.wait_action(location)
    assert action["state"] == "cancelled", action
    assert action["cancel_requested_by"] == DEMO_USER_ID
    return action


def held_daemons(action_id: str) -> list[int]:
    """The action's stand-in daemons, waiting on the hold to come up."""
    found = []
    for pid in find_processes_with_env(RUN_GROUP_ENV, action_id):
        try:
            if any("lambda_standin" in arg for arg in psutil.Process(pid).cmdline()):
                found.append(pid)
        except psutil.Error:
            continue
    return found


def the_instance(product) -> dict:
    return product.call("GET", URL).json()["data"][0]


def run_to_the_end(product, kind: str, status: str) -> None:
    resp = product.call("POST", URL, data={"action": kind})
    assert resp.status_code == 202, resp.text
    action = product.wait_action(resp.headers["Location"], timeout=180)
    assert action["state"] == "succeeded", action["error"]
    assert the_instance(product)["status"]["message"] == status


@pytest.mark.parametrize("product", [{"LAMBDA_STANDIN_HOLD": "{state}/hold",
                                      "LAMBDA_ANSIBLE_ENV": "LAMBDA_STANDIN_HOLD"}],
                         indirect=True)
def test_cancel_during_power_and_playbook_and_stop_and_start_after_each(product):
    # During the power step: the master VM does not come up until the test lets it.
    product.emulator.set_faults(stuck={MASTER_SERVER: "STOPPED"})
    location = accept_start(product)
    assert wait_until(lambda: step_running(product, location, "power_on"), timeout=60)
    action = cancel_and_wait(product, location)
    assert [(s["name"], s["state"]) for s in action["steps"]] == [("power_on", "cancelled")]
    assert action["error"].startswith(
        f"start cancelled by {DEMO_USER_ID} during step power_on (stopped waiting for the "
        "VMs to become ACTIVE): some VMs may be on and others still off")
    instance = the_instance(product)
    assert instance["status"]["message"] == "FAILED"
    assert instance["status"]["failure_message"] == action["error"]
    product.emulator.set_faults(stuck={})
    # A stop converges from there (two VMs on, one off).
    run_to_the_end(product, "stop", "STOPPED")

    # During the playbook: caught while a daemon it started waits to come up.
    hold = product.state / "hold"
    hold.touch()
    location = accept_start(product)
    action_id = location.rstrip("/").rsplit("/", 1)[1]
    assert wait_until(lambda: held_daemons(action_id), timeout=90), "no daemon was held"
    assert find_processes_with_cmdline(action_id), "no process of the run names the action"
    other = product.call("POST", f"{location}/cancel", token=OTHER_TOKEN)
    assert other.status_code == 404, other.text
    action = cancel_and_wait(product, location)
    hold.unlink()
    assert action["steps"][-1]["name"] == "playbook"
    assert action["steps"][-1]["state"] == "cancelled"
    assert action["error"].startswith(f"start cancelled by {DEMO_USER_ID} during step "
                                      "playbook (lambda-start.yml was killed")
    assert "the VMs are on; services may be partly started" in action["error"]
    # Nothing of the run is left: ansible-playbook, its workers and modules, and the
    # daemons it started all carry the action's id in their environment (the runner's
    # run group); the run's own command lines name its directory, after the action.
    assert find_processes_with_env(RUN_GROUP_ENV, action_id) == []
    assert find_processes_with_cmdline(action_id) == []
    instance = the_instance(product)
    assert instance["status"]["message"] == "FAILED"
    assert instance["status"]["failure_message"] == action["error"]

    again = product.call("POST", f"{location}/cancel")
    assert (again.status_code, again.json()) == (409, {"errors": [{
        "status": 409, "detail": "The action has already ended (cancelled)."}]})
    # A start converges from there (the daemons it had started were killed with the run).
    run_to_the_end(product, "start", "STARTED")
