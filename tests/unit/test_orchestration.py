"""The orchestrator with small fakes of its ports: compute, playbooks and the database
(in memory; the SQL adapter's leases are tested on real databases in
tests/integration/test_unit_of_work.py)."""

from __future__ import annotations

import os
import sys
import threading
from datetime import timedelta

import pytest

from api.domain import log_context, services
from api.domain.checks import service_checks
from api.domain.errors import ActionCancelled, ComputeError
from api.domain.model import ActionState, InstanceStatus, StepName, StepState, TaskResult
from api.domain.orchestration import (
    CANCELLED,
    INTERNAL_ERROR,
    LEASE_LOST,
    Cancellation,
    Orchestrator,
    OrchestratorConfig,
    OrchestratorDeps,
    hosts_phrase,
    playbook_summary,
)
from api.domain.ports import NO_METRICS, PlaybookResult, PowerOutcome, Server
from tests.fakes import InMemoryUnitOfWorkFactory, RecordingMetrics
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
        already = self.status[server_id] == target
        self.status[server_id] = target
        return PowerOutcome(self.get_server(server_id), already)

    def ensure_active(self, server_id, timeout, cancel=None):
        return self._ensure(server_id, "ACTIVE")

    def ensure_stopped(self, server_id, timeout, cancel=None):
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


def make(uow_factory, compute, runner, ssh=None, worker="w1", metrics=NO_METRICS, **config):
    deps = OrchestratorDeps(uow_factory=uow_factory, compute_factory=lambda url, tok: compute,
                            runner=runner, render_inventory=lambda i: f"[master]\n{i.id}\n",
                            decrypt_token=lambda c: c.removeprefix("enc:"), wait_for_ssh=ssh,
                            metrics=metrics)
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
        (StepName.PLAYBOOK, StepState.SUCCEEDED), (StepName.SERVICE_CHECKS, StepState.SUCCEEDED)]
    assert sorted(compute.calls) == [("1", "ACTIVE"), ("2", "ACTIVE")]
    assert [r.playbook for r in runner.runs] == ["lambda-start.yml", "lambda-check.yml"]
    assert runner.runs[1].extravars["lambda_checks_report_only"] is False
    # Not the start's group: on local hosts the runner would kill the daemons it launched.
    assert [r.group for r in runner.runs] == [action_id, f"{action_id}-checks"]
    assert [t.task for t in action.tasks] == ["Ensure the NameNode is running"] * 2
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


def test_a_run_is_counted_and_its_threads_log_its_action_id(uow_factory):
    add_instance(uow_factory)
    seen = []

    class Compute(FakeCompute):
        def ensure_active(self, server_id, timeout, cancel=None):
            seen.append(log_context.action_id.get())  # in a thread of the power pool
            return super().ensure_active(server_id, timeout, cancel)

    metrics = RecordingMetrics()
    action_id = accept(uow_factory)
    assert make(uow_factory, Compute(), FakeRunner(), metrics=metrics).run(action_id) \
        is ActionState.SUCCEEDED
    assert seen == [action_id, action_id]
    assert log_context.action_id.get() is None  # the caller's context is as it was
    assert metrics.calls == [
        ("action_started", "start"), ("step_finished", "power_on", "succeeded"),
        ("step_finished", "wait_ssh", "skipped"), ("step_finished", "playbook", "succeeded"),
        ("step_finished", "service_checks", "succeeded"), ("action_ended", "start", "succeeded")]


def test_a_failed_run_and_a_handed_back_one_are_counted_apart(uow_factory):
    add_instance(uow_factory)
    metrics = RecordingMetrics()
    make(uow_factory, FakeCompute(), FakeRunner("Ensure the DataNode is running"),
         metrics=metrics).run(accept(uow_factory))
    assert metrics.calls[-2:] == [("step_finished", "playbook", "failed"),
                                  ("action_ended", "start", "failed")]

    cancel = Cancellation()  # a stop of the FAILED instance, handed back on shutdown

    class CancellingRunner(FakeRunner):
        def run(self, run, on_task=None, cancel=None):
            cancel.cancel("shutdown")
            return PlaybookResult("cancelled", None, [])

    metrics.calls.clear()
    assert make(uow_factory, FakeCompute("ACTIVE"), CancellingRunner(), metrics=metrics
                ).run(accept(uow_factory, "stop"), cancel) is None
    assert metrics.calls[0] == ("action_started", "stop")
    assert metrics.calls[-1] == ("action_ended", "stop", None)


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


# --- what an action's error says ---------------------------------------------------------


class RaisingCompute(FakeCompute):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def ensure_active(self, server_id, timeout, cancel=None):
        if server_id == "2":
            raise self.error
        return super().ensure_active(server_id, timeout, cancel)


SERVER_PATH = os.environ.get("PATH", "/usr/bin")


@pytest.mark.parametrize("error", [
    KeyError("x"),
    RuntimeError(f"cannot run {sys.executable} with PATH={SERVER_PATH}"),
    FileNotFoundError(2, "No such file or directory", f"{sys.prefix}/secret"),
], ids=["key-error", "runtime-error", "os-error"])
def test_an_adapters_surprise_names_step_and_host_and_no_internals(uow_factory, error, caplog):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    make(uow_factory, RaisingCompute(error), FakeRunner()).run(action_id)
    action, instance = load(uow_factory, action_id)
    assert instance.failure_message == action.error
    assert action.error.startswith("start failed at step power_on: host s (server 2): ")
    for internal in ("KeyError", "('x')", "RuntimeError", "Error(", sys.executable,
                     SERVER_PATH, sys.prefix, "Traceback"):
        assert internal not in action.error
    step = next(s for s in action.steps if s.name is StepName.POWER_ON)
    assert step.message in action.error
    if isinstance(error, OSError):
        assert action.error.endswith("No such file or directory")
    else:  # a bug: told as one, and logged whole for whoever reads the worker's log
        assert action.error.endswith(INTERNAL_ERROR)
        assert type(error).__name__ in caplog.text and action_id in caplog.text


def test_a_runner_that_raises_is_an_internal_error_at_the_playbook_step(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)

    class Broken(FakeRunner):
        def run(self, run, on_task=None, cancel=None):
            raise AttributeError("'NoneType' object has no attribute 'rc'")

    make(uow_factory, FakeCompute(), Broken()).run(action_id)
    action, _ = load(uow_factory, action_id)
    assert action.error == f"start failed at step playbook: {INTERNAL_ERROR}"


def test_a_token_this_worker_cannot_decrypt_is_said_plainly(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    orchestrator = make(uow_factory, FakeCompute(), FakeRunner())

    def undecryptable(cipher):
        raise ValueError(f"InvalidToken at {sys.prefix}")

    orchestrator.deps.decrypt_token = undecryptable
    orchestrator.run(action_id)
    action, _ = load(uow_factory, action_id)
    assert action.error == ("start failed at step power_on: the action's credentials cannot "
                            "be read on this worker (is its secret key the API's?)")


# --- cancel, shutdown and hand-back ---------------------------------------------------------


class WaitingCompute(FakeCompute):
    """Powers on as a slow cloud would: until the cancel it is given is set."""

    def __init__(self):
        super().__init__()
        self.waiting = threading.Barrier(3)  # both servers and the test

    def ensure_active(self, server_id, timeout, cancel=None):
        self.waiting.wait(timeout=10)
        if not cancel.wait(timeout=30):
            raise AssertionError("the power step was given no cancel, or it never came")
        raise ActionCancelled(f"stopped waiting for server {server_id} ({cancel.reason})")


def test_shutdown_during_power_on_stops_the_wait_and_hands_back(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    compute, cancel = WaitingCompute(), Cancellation()
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(
        make(uow_factory, compute, FakeRunner()).run(action_id, cancel)))
    thread.start()
    compute.waiting.wait(timeout=10)  # both VMs are being waited for
    cancel.cancel("shutdown")
    thread.join(timeout=10)
    assert not thread.is_alive() and outcome == [None]
    action, instance = load(uow_factory, action_id)
    assert action.state is ActionState.RUNNING and instance.status is InstanceStatus.STARTING
    assert action.attempts == 0  # handed back: the attempt does not count
    [step] = action.steps
    assert (step.name, step.state) == (StepName.POWER_ON, StepState.FAILED)


def test_hand_backs_do_not_use_up_the_attempts(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)

    class ShutdownRunner(FakeRunner):
        def run(self, run, on_task=None, cancel=None):
            cancel.cancel("shutdown")
            return PlaybookResult("cancelled", None, [])

    for worker in ("stopping-1", "stopping-2", "stopping-3"):
        assert make(uow_factory, FakeCompute(), ShutdownRunner(), worker=worker,
                    max_attempts=1).run(action_id, Cancellation()) is None
    state = make(uow_factory, FakeCompute(), FakeRunner(), max_attempts=1).run(action_id)
    action, instance = load(uow_factory, action_id)
    assert state is ActionState.SUCCEEDED, action.error
    assert action.attempts == 1 and instance.status is InstanceStatus.STARTED


def test_a_cancel_keeps_its_first_reason_unless_the_lease_is_lost():
    cancel = Cancellation()
    cancel.cancel("shutdown")
    cancel.cancel("cancelled by the owner")
    assert cancel.reason == "shutdown"
    cancel.cancel(LEASE_LOST)
    cancel.cancel("shutdown")
    assert cancel.reason == LEASE_LOST


# --- the owner's cancel -----------------------------------------------------------------------

KEEP_GOING = "; start or stop it to converge"


@pytest.mark.parametrize(("where", "steps", "error"), [
    ("playbook", [(StepName.POWER_ON, StepState.SUCCEEDED),
                  (StepName.WAIT_SSH, StepState.SKIPPED),
                  (StepName.PLAYBOOK, StepState.CANCELLED)],
     "start cancelled by alice-uuid during step playbook (lambda-start.yml was killed): "
     "the VMs are on; services may be partly started"),
    ("power", [(StepName.POWER_ON, StepState.CANCELLED)],
     "start cancelled by alice-uuid during step power_on (stopped waiting for the VMs to "
     "become ACTIVE): some VMs may be on and others still off; no service was touched"),
])
def test_the_owners_cancel_stops_the_step_and_ends_the_action_cancelled(
        uow_factory, where, steps, error):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    compute = WaitingCompute() if where == "power" else FakeCompute()
    runner, outcome = HangingRunner(), []
    orchestrator = make(uow_factory, compute, runner, cancel_poll_interval=0.05)
    thread = threading.Thread(target=lambda: outcome.append(orchestrator.run(action_id)))
    thread.start()
    if where == "power":
        compute.waiting.wait(timeout=10)  # both VMs are being waited for
    else:
        assert runner.started.wait(timeout=10)
    held = services.cancel_action(uow_factory, ALICE, INSTANCE_ID, action_id)
    assert held.state is ActionState.RUNNING  # the worker holding it ends it
    thread.join(timeout=10)
    assert not thread.is_alive() and outcome == [ActionState.CANCELLED]
    action, instance = load(uow_factory, action_id)
    assert action.error == error + KEEP_GOING
    assert action.cancel_requested_by == "alice-uuid"
    assert [(s.name, s.state) for s in action.steps] == steps
    assert instance.status is InstanceStatus.FAILED
    assert instance.failure_message == action.error
    assert runner.reasons == ([CANCELLED] if where == "playbook" else [])


def test_a_cancel_between_steps_starts_no_further_step(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)

    def ssh_then_cancel(hosts, timeout, cancel):  # the owner asks while SSH is awaited
        services.cancel_action(uow_factory, ALICE, INSTANCE_ID, action_id)
        assert cancel.wait(timeout=10)

    runner = FakeRunner()
    state = make(uow_factory, FakeCompute(), runner, ssh=ssh_then_cancel,
                 cancel_poll_interval=0.05).run(action_id)
    action, _ = load(uow_factory, action_id)
    assert state is ActionState.CANCELLED and runner.runs == []
    assert [s.name for s in action.steps] == [StepName.POWER_ON, StepName.WAIT_SSH]
    assert action.error == ("start cancelled by alice-uuid after step wait_ssh: the VMs are "
                            "on; no service was touched" + KEEP_GOING)


def test_a_resumed_action_with_a_cancel_on_its_row_ends_at_claim_running_nothing(uow_factory):
    from api.domain.clock import utcnow

    add_instance(uow_factory, status=InstanceStatus.STARTED)
    action_id = accept(uow_factory, "stop")
    with uow_factory() as uow:  # attempt 1 begins its playbook, then its worker dies
        claim = uow.actions.claim(action_id, "dead", utcnow(), 0)
        uow.actions.start_step(action_id, claim.attempt, StepName.PLAYBOOK, utcnow())
        uow.commit()
    services.cancel_action(uow_factory, ALICE, INSTANCE_ID, action_id)
    compute, runner = FakeCompute("ACTIVE"), FakeRunner()
    assert make(uow_factory, compute, runner).run(action_id) is ActionState.CANCELLED
    action, instance = load(uow_factory, action_id)
    assert compute.calls == [] and runner.runs == []
    assert action.error == ("stop cancelled by alice-uuid during step playbook: services may "
                            "be partly stopped; no VM was shut down" + KEEP_GOING)
    assert instance.status is InstanceStatus.FAILED


# --- the lease ----------------------------------------------------------------------------


def test_the_lease_is_renewed_well_within_its_length_and_stops_the_action_early():
    config = OrchestratorConfig(worker_id="w", lease_seconds=30)
    assert config.renew_interval == 7.5
    assert config.stop_before_expiry == 7.5  # two missed renewals, and 7.5 s to kill
    assert OrchestratorConfig(worker_id="w", lease_seconds=8).stop_before_expiry == 3.0
    assert OrchestratorConfig(worker_id="w", lease_seconds=4).stop_before_expiry == 2.0


class HangingRunner(FakeRunner):
    """A playbook that runs until it is cancelled; says when it was, and why."""

    def __init__(self):
        super().__init__()
        self.started = threading.Event()
        self.reasons = []

    def run(self, run, on_task=None, cancel=None):
        self.started.set()
        if not cancel.wait(timeout=30):
            raise AssertionError("never cancelled")
        self.reasons.append(cancel.reason)
        return PlaybookResult("cancelled", None, [])


def test_a_lease_taken_by_another_worker_stops_the_action_and_writes_nothing(uow_factory):
    from api.domain.clock import utcnow

    add_instance(uow_factory)
    action_id = accept(uow_factory)
    runner = HangingRunner()
    outcome = []
    orchestrator = make(uow_factory, FakeCompute(), runner, lease_seconds=0.4,
                        lease_safety=0.1)
    thread = threading.Thread(target=lambda: outcome.append(orchestrator.run(action_id)))
    thread.start()
    assert runner.started.wait(timeout=10)
    with uow_factory() as uow:  # w2's clock runs ahead: w1's lease has lapsed for it
        later = utcnow() + timedelta(seconds=60)
        assert uow.actions.claim(action_id, "w2", later, 60).attempt == 2
        uow.commit()
    thread.join(timeout=10)
    assert outcome == [None] and runner.reasons == [LEASE_LOST]
    action, instance = load(uow_factory, action_id)
    assert action.state is ActionState.RUNNING and instance.status is InstanceStatus.STARTING
    # The step is as w2's claim left it: w1 wrote nothing once it had lost the lease.
    playbook = next(s for s in action.steps if s.name is StepName.PLAYBOOK)
    assert (playbook.state, playbook.message) == (StepState.FAILED,
                                                  "interrupted; resumed as attempt 2")


class CutOff:
    """A unit-of-work factory a test can cut off from its database."""

    def __init__(self, inner):
        self.inner = inner
        self.cut = threading.Event()

    def __call__(self, readonly=False):
        if self.cut.is_set():
            raise ConnectionError("the database does not answer")
        return self.inner(readonly)


def test_renewals_that_fail_stop_the_action_before_its_lease_lapses(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    cut_off, runner = CutOff(uow_factory), HangingRunner()
    outcome = []
    orchestrator = make(cut_off, FakeCompute(), runner, lease_seconds=0.8, lease_safety=0.3)
    thread = threading.Thread(target=lambda: outcome.append(orchestrator.run(action_id)))
    thread.start()
    assert runner.started.wait(timeout=10)
    cut_off.cut.set()
    thread.join(timeout=10)
    assert outcome == [None] and runner.reasons == [LEASE_LOST]


class SlowTaskRunner(FakeRunner):
    """Reports one task's result, then runs a long task: it ends once told to."""

    def __init__(self):
        super().__init__()
        self.go_on = threading.Event()

    def run(self, run, on_task=None, cancel=None):
        result = TaskResult("m", "Ensure the NameNode is running", "changed")
        on_task(result)
        self.go_on.wait(timeout=30)
        return PlaybookResult("successful", 0, [result])


def test_a_task_result_is_stored_while_the_playbook_still_runs(uow_factory):
    """Each result is an event a client of the stream waits for: it is not held back
    until a batch fills or the playbook ends."""
    from tests.support import wait_until

    add_instance(uow_factory)
    action_id = accept(uow_factory)
    runner = SlowTaskRunner()
    outcome = []
    orchestrator = make(uow_factory, FakeCompute(), runner, checks="off")
    thread = threading.Thread(target=lambda: outcome.append(orchestrator.run(action_id)))
    thread.start()
    try:
        stored = wait_until(lambda: load(uow_factory, action_id)[0].tasks, timeout=10)
        with uow_factory(readonly=True) as uow:
            events = uow.actions.events(action_id, 0, 100)
    finally:
        runner.go_on.set()
        thread.join(timeout=10)
    assert [t.task for t in stored] == ["Ensure the NameNode is running"]
    assert events[-1].data["task"] == "Ensure the NameNode is running"
    assert outcome == [ActionState.SUCCEEDED]
    assert [t.task for t in load(uow_factory, action_id)[0].tasks] == [
        "Ensure the NameNode is running"]  # stored once, not again at the end


# --- retry without redoing, and leaving slaves out ----------------------------------------


def hosts_of(inventory_instance) -> str:
    """A fake inventory: the hosts it would list."""
    return ",".join(h.name for h in inventory_instance.hosts_except(
        inventory_instance.left_out_hosts))


def step_messages(action) -> dict:
    return {s.name: s.message for s in action.steps}


def test_a_start_leaving_a_slave_out_then_one_that_brings_it_back(uow_factory):
    add_instance(uow_factory)
    compute, runner = FakeCompute(broken={"2"}), FakeRunner()  # s's VM will not boot
    orchestrator = make(uow_factory, compute, runner)
    orchestrator.deps.render_inventory = hosts_of
    action_id = services.request_action(uow_factory, ALICE, INSTANCE_ID, "start",
                                        encrypt_token=lambda: "enc:tok",
                                        raw_exclude="s").action.id
    assert orchestrator.run(action_id) is ActionState.SUCCEEDED
    action, instance = load(uow_factory, action_id)
    assert compute.calls == [("1", "ACTIVE")] and runner.runs[0].inventory == "m"
    assert step_messages(action)[StepName.POWER_ON] == "powered on: m; left out: s"
    assert instance.status is InstanceStatus.STARTED and instance.left_out_hosts == ("s",)

    compute.broken.clear()  # repaired; a start with nothing left out brings it back
    action_id = accept(uow_factory)
    assert orchestrator.run(action_id) is ActionState.SUCCEEDED
    action, instance = load(uow_factory, action_id)
    assert step_messages(action)[StepName.POWER_ON] == (
        "already ACTIVE, not powered on: m; powered on: s")
    assert runner.runs[1].inventory == "m"  # the checks of the first start: s left out
    assert runner.runs[2].inventory == "m,s"
    assert instance.status is InstanceStatus.STARTED and instance.left_out_hosts == ()


def test_a_stop_shuts_every_vm_that_is_on_and_clears_the_hosts_left_out(uow_factory):
    add_instance(uow_factory)
    compute, runner = FakeCompute(), FakeRunner()
    orchestrator = make(uow_factory, compute, runner)
    orchestrator.deps.render_inventory = hosts_of
    action_id = services.request_action(uow_factory, ALICE, INSTANCE_ID, "start",
                                        encrypt_token=lambda: "enc:tok",
                                        raw_exclude="s").action.id
    orchestrator.run(action_id)
    compute.status["2"] = "ACTIVE"  # someone booted the left-out VM meanwhile
    action_id = accept(uow_factory, "stop")
    assert orchestrator.run(action_id) is ActionState.SUCCEEDED
    action, instance = load(uow_factory, action_id)
    assert runner.runs[-1].inventory == "m,s" and runner.runs[-1].limit is None
    assert compute.status == {"1": "STOPPED", "2": "STOPPED"}
    assert instance.status is InstanceStatus.STOPPED and instance.left_out_hosts == ()
    assert step_messages(action)[StepName.POWER_OFF] == "shut down: m, s"

    action_id = services.request_action(uow_factory, ALICE, INSTANCE_ID, "start",
                                        encrypt_token=lambda: "enc:tok",
                                        raw_exclude="s").action.id
    orchestrator.run(action_id)
    compute.status["2"], compute.broken = "ERROR", {"2"}  # still broken: not on, left alone
    action_id = accept(uow_factory, "stop")
    assert orchestrator.run(action_id) is ActionState.SUCCEEDED
    action, instance = load(uow_factory, action_id)
    assert step_messages(action)[StepName.POWER_OFF] == (
        "shut down: m; left out and not on, not shut down: s (ERROR)")
    assert instance.status is InstanceStatus.STOPPED and instance.left_out_hosts == ()

    action_id = accept(uow_factory, "start")  # a failed start keeps what was left out
    with uow_factory() as uow:
        uow.instances.set_left_out_hosts(INSTANCE_ID, ("s",))
        uow.commit()
    make(uow_factory, compute, FakeRunner("Ensure the DataNode is running")).run(action_id)
    assert load(uow_factory, action_id)[1].left_out_hosts == ("s",)


def test_the_playbook_step_says_which_daemons_it_left_as_they_were(uow_factory):
    add_instance(uow_factory)

    class RetryRunner(FakeRunner):
        def run(self, run, on_task=None, cancel=None):
            tasks = [
                TaskResult("m", "Add the host to one group", "ok", play="Group the hosts"),
                TaskResult("m", "Check whether the NameNode is running", "ok", role="hadoop",
                           play="Start the HDFS NameNode"),
                TaskResult("m", "Ensure the NameNode is started", "skipped", role="hadoop",
                           play="Start the HDFS NameNode"),
                TaskResult("s", "Ensure the DataNode is started", "changed", role="hadoop",
                           play="Start the HDFS DataNodes"),
                TaskResult("m", "Wait until HDFS is out of safe mode", "ok", role="hadoop",
                           play="Wait for HDFS to leave safe mode"),
            ]
            return PlaybookResult("successful", 0, tasks)

    compute = FakeCompute("ACTIVE")
    action_id = accept(uow_factory)
    make(uow_factory, compute, RetryRunner()).run(action_id)
    action, _ = load(uow_factory, action_id)
    messages = step_messages(action)
    assert messages[StepName.POWER_ON] == "already ACTIVE, not powered on: m, s"
    assert messages[StepName.PLAYBOOK] == (
        "lambda-start.yml: 5 task results, rc 0; already running, left as they were: HDFS "
        "NameNode (m); started or reconfigured: HDFS DataNodes (s)")


def test_summaries_stay_short_for_many_hosts():
    hosts = [f"s{i}" for i in range(1, 21)]
    tasks = [TaskResult(h, "Ensure the Kafka broker is stopped", "ok" if i < 17 else "changed",
                        role="kafka", play="Stop the Kafka brokers")
             for i, h in enumerate(hosts)]
    tasks += [TaskResult(h, "Ensure ZooKeeper is stopped", "ok", role="zookeeper",
                         play="Stop ZooKeeper") for h in hosts]
    assert playbook_summary(tasks) == (
        "already stopped, left as they were: Kafka brokers (s1, s2, s3 and 14 more), "
        "ZooKeeper (all 20 hosts); stopped: Kafka brokers (s18, s19, s20)")
    assert playbook_summary([TaskResult("h", "t", "changed", play="Greet")]) is None
    assert hosts_phrase(hosts[:5], 20) == "s1, s2, s3, s4, s5"
    assert hosts_phrase(hosts[:3], 3) == "s1, s2, s3"


HDFS_FAILED = ("HDFS on m failed: tried write, read back and remove a 40-byte file; saw no "
               "replica on s (10.0.0.2:9866: its DataNode did not store it); took 6.1s")
ZK_PASSED = ("ZooKeeper on m passed: tried ruok, then create, get and delete /x; saw ruok "
             "answered imok, the znode read back as written and deleted; took 0.8s")


class CheckRunner(FakeRunner):
    """lambda-start.yml passes; lambda-check.yml's HDFS check fails (ok when report only)."""

    def __init__(self, broken=True):
        super().__init__()
        self.broken = broken

    def run(self, run, on_task=None, cancel=None):
        if run.playbook != "lambda-check.yml":
            return super().run(run, on_task, cancel)
        self.runs.append(run)
        report = run.extravars["lambda_checks_report_only"]
        hdfs = (TaskResult("m", "Service check HDFS", "failed" if not report else "ok",
                           role="hadoop", message=HDFS_FAILED) if self.broken else
                TaskResult("m", "Service check HDFS", "ok", role="hadoop",
                           message=HDFS_FAILED.replace("failed", "passed")))
        tasks = [hdfs, TaskResult("m", "Service check ZooKeeper", "ok", role="zookeeper",
                                  message=ZK_PASSED)]
        if not report and self.broken:
            tasks = tasks[:1]  # the master stops at its failed check
        for task in tasks:
            on_task(task)
        if tasks[-1].status == "failed":
            return PlaybookResult("failed", 2, tasks, failure=tasks[-1])
        return PlaybookResult("successful", 0, tasks)


def test_a_failed_service_check_fails_the_start_naming_service_host_and_what_was_seen(
        uow_factory):
    add_instance(uow_factory)
    runner = CheckRunner()
    action_id = accept(uow_factory)
    assert make(uow_factory, FakeCompute(), runner).run(action_id) is ActionState.FAILED
    action, instance = load(uow_factory, action_id)
    assert [(s.name, s.state) for s in action.steps][-1] == (
        StepName.SERVICE_CHECKS, StepState.FAILED)
    assert instance.status is InstanceStatus.FAILED
    assert "step service_checks" in action.error
    assert "service check failed: HDFS on m failed" in action.error
    assert "no replica on s (10.0.0.2:9866" in action.error
    assert service_checks(action.tasks) == [{
        "service": "HDFS", "host": "m", "passed": False,
        "tried": "write, read back and remove a 40-byte file",
        "seen": "no replica on s (10.0.0.2:9866: its DataNode did not store it)",
        "seconds": 6.1}]

    runner.broken = False  # fixed: a retry passes every check
    action_id = accept(uow_factory)
    assert make(uow_factory, FakeCompute(), runner).run(action_id) is ActionState.SUCCEEDED
    action, _ = load(uow_factory, action_id)
    assert [c["passed"] for c in service_checks(action.tasks)] == [True, True]
    assert step_messages(action)[StepName.SERVICE_CHECKS] == (
        "lambda-check.yml: 2 task results, rc 0; checks 2 passed: HDFS (m) 6.1s, "
        "ZooKeeper (m) 0.8s")


def test_report_only_checks_record_the_failure_and_the_start_succeeds(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    orchestrator = make(uow_factory, FakeCompute(), CheckRunner(), checks="report")
    assert orchestrator.run(action_id) is ActionState.SUCCEEDED
    action, instance = load(uow_factory, action_id)
    assert instance.status is InstanceStatus.STARTED
    assert step_messages(action)[StepName.SERVICE_CHECKS] == (
        "lambda-check.yml: 2 task results, rc 0; checks 1 failed (report only, the start "
        "goes on): HDFS on m: saw no replica on s (10.0.0.2:9866: its DataNode did not store "
        "it); 1 passed: ZooKeeper (m) 0.8s")


def test_checks_off_skip_the_step(uow_factory):
    add_instance(uow_factory)
    runner = CheckRunner()
    action_id = accept(uow_factory)
    assert make(uow_factory, FakeCompute(), runner, checks="off").run(action_id) is (
        ActionState.SUCCEEDED)
    action, _ = load(uow_factory, action_id)
    assert [r.playbook for r in runner.runs] == ["lambda-start.yml"]
    assert action.steps[-1].name is StepName.SERVICE_CHECKS
    assert action.steps[-1].state is StepState.SKIPPED


def test_a_check_task_that_crashed_counts_as_failed_with_its_message():
    tasks = [TaskResult("m", "Service check YARN", "failed", message="timed out", duration=3.0),
             TaskResult("m", "Service check Spark", "skipped")]
    assert service_checks(tasks) == [{"service": "YARN", "host": "m", "passed": False,
                                      "tried": None, "seen": "timed out", "seconds": 3.0}]
