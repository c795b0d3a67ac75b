"""A start's and a stop's dependency chains run side by side (api.domain.chains), with fakes
of the playbook runner: every chain at once, one chain's failure fails the step with its
message, a cancel reaches every run; and the whole playbooks import exactly those chains."""

from __future__ import annotations

import threading

import pytest
import yaml

from api.domain.chains import (
    CHECK_CHAINS,
    PLAYBOOK_CHAINS,
    START_CHAINS,
    STOP_CHAINS,
    chain_name,
)
from api.domain.model import ActionState, InstanceStatus, StepName, TaskResult
from api.domain.orchestration import CANCELLED, Cancellation
from api.domain.ports import PlaybookResult
from api.settings import FILES_ROOT
from tests.unit.test_orchestration import FakeCompute, accept, load, make
from tests.unit.test_services import add_instance

WAIT = 10.0  # a fake run's longest wait for the others; never reached when things work


class ChainRunner:
    """Each run waits until every chain has begun (a barrier: runs one after another would
    break it), then ends as ``outcomes`` says for its chain: ok, failed, or waiting for the
    cancel."""

    def __init__(self, chains=START_CHAINS, outcomes=None):
        self.chains = set(chains)
        self.barrier = threading.Barrier(len(chains), timeout=WAIT)
        self.outcomes = outcomes or {}
        self.runs = []
        self.lock = threading.Lock()

    def run(self, run, on_task=None, cancel=None):
        if run.playbook not in self.chains:  # the start's chains or its checks' chains
            return PlaybookResult("successful", 0, [])
        with self.lock:
            self.runs.append(run)
        self.barrier.wait()  # BrokenBarrierError: the chains did not run at once
        name = chain_name(run.playbook)
        task = TaskResult("m", f"Start {name}", "changed", play=f"Start {name}")
        on_task(task)
        outcome = self.outcomes.get(run.playbook, "ok")
        if outcome == "check-failed":
            failure = TaskResult("m", "Service check HDFS", "failed",
                                 message="HDFS on m failed: tried a file; saw no replica on s1; "
                                         "took 1.0s")
            on_task(failure)
            return PlaybookResult("failed", 2, [task, failure], failure=failure)
        if outcome == "failed":
            failure = TaskResult("s1", "Wait for the DataNode port", "failed",
                                 message="port 9866 never opened")
            on_task(failure)
            return PlaybookResult("failed", 2, [task, failure], failure=failure)
        if outcome == "wait-for-cancel":
            if not cancel.wait(WAIT):
                return PlaybookResult("successful", 0, [task])
            cut = TaskResult("m", f"Wait in {name}", "failed", message="killed")
            return PlaybookResult("cancelled", None, [task], failure=cut)
        return PlaybookResult("successful", 0, [task])


@pytest.fixture
def uow_factory():
    from tests.fakes import InMemoryUnitOfWorkFactory
    return InMemoryUnitOfWorkFactory()


def test_start_runs_every_chain_at_once_and_records_them_all(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    runner = ChainRunner()
    orchestrator = make(uow_factory, FakeCompute(), runner, playbook_chains=PLAYBOOK_CHAINS)
    assert orchestrator.run(action_id) is ActionState.SUCCEEDED
    action, instance = load(uow_factory, action_id)
    assert instance.status is InstanceStatus.STARTED
    assert sorted(r.playbook for r in runner.runs) == sorted(START_CHAINS)
    # each its own artifacts and chain (a chain's run kills only what its chain left), all
    # of the action's group, the rest shared
    assert len({r.ident for r in runner.runs}) == 3
    assert sorted(r.chain for r in runner.runs) == ["hdfs-yarn", "spark", "zookeeper-kafka"]
    assert {r.group for r in runner.runs} == {action_id}
    assert len({(r.inventory, r.limit, r.known_hosts, r.timeout) for r in runner.runs}) == 1
    assert sorted(t.task for t in action.tasks) == sorted(
        f"Start {chain_name(c)}" for c in START_CHAINS)
    playbook = next(s for s in action.steps if s.name is StepName.PLAYBOOK)
    assert playbook.message.startswith("lambda-start.yml: 3 task results, rc 0; "
                                       "3 chains side by side")


def test_a_failed_chain_fails_the_start_with_its_message_and_the_others_finish(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    runner = ChainRunner(outcomes={"lambda-start-hdfs-yarn.yml": "failed"})
    orchestrator = make(uow_factory, FakeCompute(), runner, playbook_chains=PLAYBOOK_CHAINS,
                        max_attempts=1)
    assert orchestrator.run(action_id) is ActionState.FAILED
    action, instance = load(uow_factory, action_id)
    assert instance.status is InstanceStatus.FAILED
    assert ("host s1 failed at task 'Wait for the DataNode port' of "
            "lambda-start-hdfs-yarn.yml: port 9866 never opened") in action.error
    # the other chains ran to their end, their results recorded
    assert {t.task for t in action.tasks} >= {"Start zookeeper-kafka", "Start spark"}


def test_a_cancel_reaches_every_chain(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    cancel = Cancellation()
    waiting = dict.fromkeys(START_CHAINS, "wait-for-cancel")
    seen = []

    class Cancelling(ChainRunner):
        def run(self, run, on_task=None, cancel=None):
            result = ChainRunner.run(self, run, on_task=on_task, cancel=cancel)
            seen.append(result.status)
            return result

    runner = Cancelling(outcomes=waiting)
    threading.Timer(0.2, cancel.cancel, args=(CANCELLED,)).start()
    orchestrator = make(uow_factory, FakeCompute(), runner, playbook_chains=PLAYBOOK_CHAINS)
    assert orchestrator.run(action_id, cancel) is ActionState.CANCELLED
    assert seen == ["cancelled"] * 3
    action, _ = load(uow_factory, action_id)
    assert "lambda-start.yml was killed at task 'Wait in " in action.error


def test_the_checks_of_each_chain_run_side_by_side_as_a_group_of_their_own(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    runner = ChainRunner(CHECK_CHAINS)
    orchestrator = make(uow_factory, FakeCompute(), runner, playbook_chains=PLAYBOOK_CHAINS)
    assert orchestrator.run(action_id) is ActionState.SUCCEEDED
    assert sorted(r.playbook for r in runner.runs) == sorted(CHECK_CHAINS)
    assert {r.group for r in runner.runs} == {action_id + "-checks"}
    assert sorted(r.ident for r in runner.runs) == [
        f"{action_id}-1-checks-{chain}" for chain in ("hdfs-yarn", "spark", "zookeeper-kafka")]
    assert {r.extravars["lambda_checks_report_only"] for r in runner.runs} == {False}
    action, _ = load(uow_factory, action_id)
    checks = next(s for s in action.steps if s.name is StepName.SERVICE_CHECKS)
    assert checks.message.startswith("lambda-check.yml: 3 task results, rc 0; "
                                     "3 chains side by side")


def test_a_failed_check_fails_the_start_naming_it_and_the_other_checks_finish(uow_factory):
    add_instance(uow_factory)
    failing = accept(uow_factory)
    runner = ChainRunner(CHECK_CHAINS, {"lambda-check-hdfs-yarn.yml": "check-failed"})
    orchestrator = make(uow_factory, FakeCompute(), runner, playbook_chains=PLAYBOOK_CHAINS,
                        max_attempts=1)
    assert orchestrator.run(failing) is ActionState.FAILED
    action, _ = load(uow_factory, failing)
    assert action.error == ("start failed at step service_checks: service check failed: "
                            "HDFS on m failed: tried a file; saw no replica on s1; took 1.0s")
    # the other chains' checks ran to their end
    assert {t.task for t in action.tasks} >= {"Start zookeeper-kafka", "Start spark"}


def test_stop_runs_the_stop_chains_each_limited_to_the_hosts_on(uow_factory):
    add_instance(uow_factory, status=InstanceStatus.STARTED)
    compute, runner = FakeCompute("ACTIVE"), ChainRunner(STOP_CHAINS)
    compute.status["2"] = "STOPPED"
    action_id = accept(uow_factory, "stop")
    orchestrator = make(uow_factory, compute, runner, playbook_chains=PLAYBOOK_CHAINS)
    assert orchestrator.run(action_id) is ActionState.SUCCEEDED
    assert sorted(r.playbook for r in runner.runs) == sorted(STOP_CHAINS)
    assert {r.limit for r in runner.runs} == {"m"}


@pytest.mark.parametrize("whole", sorted(PLAYBOOK_CHAINS))
def test_the_whole_playbook_imports_exactly_its_chains_in_order(whole):
    plays = yaml.safe_load((FILES_ROOT / "playbooks" / whole).read_text())
    imported = [play["ansible.builtin.import_playbook"] for play in plays]
    assert tuple(imported) == PLAYBOOK_CHAINS[whole]
