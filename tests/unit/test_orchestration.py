"""The orchestrator with small fakes of its ports: compute, playbooks and the database
(in memory; the SQL adapter's leases are tested on real databases in
tests/integration/test_unit_of_work.py)."""

from __future__ import annotations

import threading

import pytest

from api.domain import services
from api.domain.errors import ComputeError
from api.domain.model import ActionState, InstanceStatus, StepName, StepState, TaskResult
from api.domain.orchestration import (
    Cancellation,
    Orchestrator,
    OrchestratorConfig,
    OrchestratorDeps,
)
from api.domain.ports import PlaybookResult, Server
from tests.fakes import InMemoryUnitOfWorkFactory
from tests.unit.test_services import ALICE, INSTANCE_ID, add_instance


@pytest.fixture
def uow_factory():
    return InMemoryUnitOfWorkFactory()


class FakeCompute:
    def __init__(self, status="STOPPED", broken=()):
        self.status = {"1": status, "2": status}
        self.broken = set(broken)
        self.calls = []
        self.lock = threading.Lock()

    def get_server(self, server_id):
        return Server(server_id, f"vm{server_id}", self.status[server_id])

    def _ensure(self, server_id, target):
        with self.lock:
            self.calls.append((server_id, target))
        if server_id in self.broken:
            raise ComputeError(f"server {server_id} is in ERROR")
        self.status[server_id] = target
        return self.get_server(server_id)

    def ensure_active(self, server_id, timeout):
        return self._ensure(server_id, "ACTIVE")

    def ensure_stopped(self, server_id, timeout):
        return self._ensure(server_id, "STOPPED")


class FakeRunner:
    def __init__(self, fail_task=None):
        self.fail_task = fail_task
        self.runs = []

    def run(self, run, on_task=None, cancel=None):
        self.runs.append(run)
        tasks = [TaskResult("m", "Ensure the NameNode is running", "changed", role="hadoop")]
        if self.fail_task:
            tasks.append(TaskResult("s", self.fail_task, "failed", message="port 9866 in use"))
        for t in tasks:
            on_task(t)
        if self.fail_task:
            return PlaybookResult("failed", 2, tasks, failure=tasks[-1])
        return PlaybookResult("successful", 0, tasks)


def make(uow_factory, compute, runner, ssh=None, worker="w1", **config):
    deps = OrchestratorDeps(uow_factory=uow_factory, compute_factory=lambda url, tok: compute,
                            runner=runner, render_inventory=lambda i: f"[master]\n{i.id}\n",
                            decrypt_token=lambda c: c.removeprefix("enc:"), wait_for_ssh=ssh)
    return Orchestrator(deps, OrchestratorConfig(worker_id=worker, **config))


def accept(uow_factory, action="start"):
    return services.request_action(uow_factory, ALICE, INSTANCE_ID, action,
                                   encrypt_token=lambda: "enc:tok").action.id


def load(uow_factory, action_id):
    with uow_factory() as uow:
        return uow.actions.get(action_id), uow.instances.get(INSTANCE_ID)


def test_start_powers_on_then_runs_the_playbook(uow_factory):
    add_instance(uow_factory)
    compute, runner = FakeCompute(), FakeRunner()
    action_id = accept(uow_factory)
    assert make(uow_factory, compute, runner).run(action_id) is ActionState.SUCCEEDED
    action, instance = load(uow_factory, action_id)
    assert instance.status is InstanceStatus.STARTED
    assert [(s.name, s.state) for s in action.steps] == [
        (StepName.POWER_ON, StepState.SUCCEEDED), (StepName.WAIT_SSH, StepState.SKIPPED),
        (StepName.PLAYBOOK, StepState.SUCCEEDED)]
    assert sorted(compute.calls) == [("1", "ACTIVE"), ("2", "ACTIVE")]
    assert runner.runs[0].playbook == "lambda-start.yml"
    assert [t.task for t in action.tasks] == ["Ensure the NameNode is running"]
    with uow_factory() as uow:  # the token is erased when the action ends
        assert uow.actions.claim(action_id, "w2", action.created_at, 30) is None


def test_playbook_failure_names_host_and_task(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    state = make(uow_factory, FakeCompute(), FakeRunner("Ensure the DataNode is running")
                 ).run(action_id)
    action, instance = load(uow_factory, action_id)
    assert state is ActionState.FAILED and instance.status is InstanceStatus.FAILED
    assert instance.failure_message == action.error
    assert "step playbook" in action.error and "host s" in action.error
    assert "Ensure the DataNode is running" in action.error and "port 9866" in action.error


def test_power_failure_names_the_host(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    make(uow_factory, FakeCompute(broken={"2"}), FakeRunner()).run(action_id)
    action, instance = load(uow_factory, action_id)
    assert instance.status is InstanceStatus.FAILED
    assert "step power_on" in action.error and "host s (server 2)" in action.error


def test_ssh_wait_failure(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)

    def never(hosts, timeout, cancel):
        raise TimeoutError("no SSH answer within 1s from s (127.0.0.3)")

    make(uow_factory, FakeCompute(), FakeRunner(), ssh=never).run(action_id)
    action, _ = load(uow_factory, action_id)
    assert action.error.startswith("start failed at step wait_ssh: no SSH answer")


def test_stop_with_every_vm_off_skips_the_playbook(uow_factory):
    add_instance(uow_factory, status=InstanceStatus.STARTED)
    runner = FakeRunner()
    action_id = accept(uow_factory, "stop")
    make(uow_factory, FakeCompute("STOPPED"), runner).run(action_id)
    action, instance = load(uow_factory, action_id)
    assert instance.status is InstanceStatus.STOPPED and runner.runs == []
    assert action.steps[0].state is StepState.SKIPPED


def test_stop_limits_the_playbook_to_running_hosts(uow_factory):
    add_instance(uow_factory, status=InstanceStatus.STARTED)
    compute, runner = FakeCompute("ACTIVE"), FakeRunner()
    compute.status["2"] = "STOPPED"
    action_id = accept(uow_factory, "stop")
    make(uow_factory, compute, runner).run(action_id)
    assert runner.runs[0].playbook == "lambda-stop.yml" and runner.runs[0].limit == "m"
    assert compute.status == {"1": "STOPPED", "2": "STOPPED"}


def test_a_claimed_action_is_not_run_twice(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    first = make(uow_factory, FakeCompute(), FakeRunner(), worker="a")
    with uow_factory() as uow:
        from api.domain.clock import utcnow
        assert uow.actions.claim(action_id, "a", utcnow(), 60) is not None
        uow.commit()
    assert make(uow_factory, FakeCompute(), FakeRunner(), worker="b").run(action_id) is None
    assert first is not None


def test_expired_lease_is_resumed_and_gives_up_after_max_attempts(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    from api.domain.clock import utcnow
    for worker in ("dead-1", "dead-2"):
        with uow_factory() as uow:  # workers that claimed and died (lease of 0 s)
            assert uow.actions.claim(action_id, worker, utcnow(), 0) is not None
            uow.commit()
    assert make(uow_factory, FakeCompute(), FakeRunner(), max_attempts=2).run(action_id) \
        is ActionState.FAILED
    action, instance = load(uow_factory, action_id)
    assert "interrupted 2 times" in action.error and instance.status is InstanceStatus.FAILED


def test_shutdown_hands_the_action_back(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    cancel = Cancellation()

    class CancellingRunner(FakeRunner):
        def run(self, run, on_task=None, cancel=None):
            cancel.cancel("shutdown")
            return PlaybookResult("cancelled", None, [])

    assert make(uow_factory, FakeCompute(), CancellingRunner()).run(action_id, cancel) is None
    action, instance = load(uow_factory, action_id)
    assert action.state is ActionState.RUNNING and instance.status is InstanceStatus.STARTING
    with uow_factory() as uow:  # lease released: another worker may resume at once
        from api.domain.clock import utcnow
        assert uow.actions.claim(action_id, "next", utcnow(), 30) is not None


@pytest.mark.parametrize("cipher", [None])
def test_missing_credentials_fail_clearly(uow_factory, cipher):
    add_instance(uow_factory)
    action_id = services.request_action(uow_factory, ALICE, INSTANCE_ID, "start",
                                        encrypt_token=lambda: cipher).action.id
    make(uow_factory, FakeCompute(), FakeRunner()).run(action_id)
    action, _ = load(uow_factory, action_id)
    assert "no credentials" in action.error


def test_a_resumed_attempt_closes_the_steps_its_predecessor_left_running(uow_factory):
    from api.domain.clock import utcnow

    add_instance(uow_factory)
    action_id = accept(uow_factory)
    with uow_factory() as uow:  # attempt 1 starts a step, then its worker dies
        claim = uow.actions.claim(action_id, "dead", utcnow(), 0)
        uow.actions.start_step(action_id, claim.attempt, StepName.POWER_ON, utcnow())
        uow.commit()
    assert make(uow_factory, FakeCompute(), FakeRunner()).run(action_id) is ActionState.SUCCEEDED
    action, _ = load(uow_factory, action_id)
    first = action.steps[0]
    assert first.state is StepState.FAILED and "resumed as attempt 2" in first.message
    assert not [s for s in action.steps if s.state is StepState.RUNNING]
