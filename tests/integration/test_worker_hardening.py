"""The worker against the real things, on SQLite and PostgreSQL: a worker cut off from the
database kills its playbook before another worker can claim the action; an action's error
names the step without the server's internals; instances left in a transitional status
with no action are reconciled."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from api.adapters import proctree
from api.adapters.ansible import RUN_GROUP_ENV, AnsibleRunner
from api.domain import services
from api.domain.clock import utcnow
from api.domain.model import (
    ActionState,
    Host,
    HostRole,
    Instance,
    InstanceStatus,
    StepName,
    StepState,
)
from api.domain.orchestration import Orchestrator, OrchestratorConfig, OrchestratorDeps
from api.worker.runtime import ActionRuntime
from tests.unit.test_orchestration import CutOff, FakeCompute
from tests.unit.test_services import ALICE, INSTANCE_ID, add_instance

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "playbooks"


def local_inventory(instance: Instance) -> str:
    local = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
    return "[lambda]\n" + "".join(f"{h.name} ansible_host=127.0.0.1 {local}\n"
                                  for h in instance.hosts)


def orchestrator(uow_factory, runner, **config) -> Orchestrator:
    deps = OrchestratorDeps(uow_factory=uow_factory,
                            compute_factory=lambda url, token: FakeCompute(), runner=runner,
                            render_inventory=local_inventory, decrypt_token=lambda c: c,
                            wait_for_ssh=None)
    return Orchestrator(deps, OrchestratorConfig(worker_id="cut-off", **config))


def accept(uow_factory) -> str:
    return services.request_action(uow_factory, ALICE, INSTANCE_ID, "start",
                                   encrypt_token=lambda: "tok").action.id


def runner_for(tmp_path, playbooks: Path, **options) -> AnsibleRunner:
    # A killed module leaves its AnsiballZ payload in the temp dir: the test's own.
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir(exist_ok=True)
    extra_env = {"TMPDIR": str(module_tmp), **options.pop("extra_env", {})}
    return AnsibleRunner(playbook_dir=str(playbooks), roles_dir=str(FIXTURES / "roles"),
                         artifacts_dir=str(tmp_path / "runs"), forks=5, extra_env=extra_env,
                         **options)


# --- a worker that lost its lease stops -----------------------------------------------------------


@pytest.mark.timeout(120)
def test_a_worker_cut_off_from_the_database_kills_its_playbook_before_a_claim_can_succeed(
        uow_factory, tmp_path):
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    shutil.copy(FIXTURES / "sleep.yml", playbooks / "lambda-start.yml")  # hangs
    out = tmp_path / "out"
    out.mkdir()
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    cut_off = CutOff(uow_factory)
    worker = orchestrator(cut_off, runner_for(tmp_path, playbooks), lease_seconds=10,
                          lease_safety=5, extravars={"out_dir": str(out)})
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(worker.run(action_id)))
    thread.start()
    try:
        pid_files = [out / f"{h}.{kind}" for h in ("m", "s") for kind in ("fg", "bg")]
        deadline = time.monotonic() + 60
        while not all(p.is_file() and p.read_text().strip() for p in pid_files):
            assert time.monotonic() < deadline, "the playbook never got to its sleeps"
            time.sleep(0.1)
        assert proctree.find_processes_with_env(RUN_GROUP_ENV, action_id)

        cut_off.cut.set()  # renewals now fail; the lease others see runs out
        claim = None
        while claim is None:  # another worker, trying as often as it can
            assert time.monotonic() < deadline + 60, "the lease never lapsed"
            with uow_factory() as uow:
                claim = uow.actions.claim(action_id, "other", utcnow(), 10)
                uow.commit()
            if claim is None:
                time.sleep(0.05)
        # The first moment another worker could run a playbook on these hosts: the cut-off
        # worker's is gone already, every process of it.
        assert proctree.find_processes_with_env(RUN_GROUP_ENV, action_id) == []
        assert all(_gone(int(path.read_text())) for path in pid_files)
    finally:
        thread.join(timeout=30)
        proctree.kill_processes_with_env(RUN_GROUP_ENV, action_id, grace=0)
    assert outcome == [None]  # no finish, no hand-back: the action is the other worker's
    assert claim.attempt == 2
    with uow_factory(readonly=True) as uow:
        action = uow.actions.get(action_id)
    playbook = next(s for s in action.steps if s.name is StepName.PLAYBOOK)
    assert playbook.state is StepState.FAILED
    assert playbook.message == "interrupted; resumed as attempt 2"


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for its reaper counts)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


# --- errors help without exposing internals -------------------------------------------------------


def _internals(tmp_path) -> list[str]:
    return [str(tmp_path), os.environ.get("PATH", "/usr/bin"), sys.prefix, "Error(",
            "Traceback", "object at 0x"]


def test_a_missing_playbook_is_named_without_the_servers_directories(uow_factory, tmp_path):
    empty = tmp_path / "playbooks"
    empty.mkdir()
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    assert orchestrator(uow_factory, runner_for(tmp_path, empty)).run(action_id) \
        is ActionState.FAILED
    with uow_factory(readonly=True) as uow:
        action = uow.actions.get(action_id)
        instance = uow.instances.get(INSTANCE_ID)
    assert action.error == ("start failed at step playbook: lambda-start.yml could not run: "
                            "playbook lambda-start.yml not found in the playbooks directory")
    assert instance.failure_message == action.error
    assert not [x for x in _internals(tmp_path) if x in action.error]


def test_a_missing_ansible_playbook_is_said_without_the_path(uow_factory, tmp_path):
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    shutil.copy(FIXTURES / "ok.yml", playbooks / "lambda-start.yml")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    add_instance(uow_factory)
    action_id = accept(uow_factory)
    runner = runner_for(tmp_path, playbooks, extra_env={"PATH": str(empty_bin)})
    orchestrator(uow_factory, runner).run(action_id)
    with uow_factory(readonly=True) as uow:
        error = uow.actions.get(action_id).error
    assert error.startswith("start failed at step playbook: lambda-start.yml could not run: "
                            "ansible-playbook not found on the worker's PATH")
    assert not [x for x in [*_internals(tmp_path), str(empty_bin)] if x in error]


# --- nothing is stuck by data ---------------------------------------------------------------------


def _instance(instance_id: str, status: InstanceStatus) -> Instance:
    return Instance(id=instance_id, owner=ALICE.user_id, name=instance_id, status=status,
                    services=("hdfs",),
                    hosts=(Host(f"{instance_id[-4:]}-m", "m", HostRole.MASTER, "127.0.0.2"),))


def test_instances_left_starting_or_stopping_with_no_action_are_failed(uow_factory, caplog):
    stranded = {"00000000-0000-4000-8000-000000000001": InstanceStatus.STARTING,
                "00000000-0000-4000-8000-000000000002": InstanceStatus.STOPPING}
    ended = "00000000-0000-4000-8000-000000000003"  # STOPPING; its action ended
    live = "00000000-0000-4000-8000-000000000004"  # STARTING; its action is under way
    stopped = "00000000-0000-4000-8000-000000000005"
    with uow_factory() as uow:
        for instance_id, status in stranded.items():
            uow.instances.add(_instance(instance_id, status))
        uow.instances.add(_instance(ended, InstanceStatus.STARTED))
        uow.instances.add(_instance(live, InstanceStatus.STOPPED))
        uow.instances.add(_instance(stopped, InstanceStatus.STOPPED))
        uow.commit()
    stop = services.request_action(uow_factory, ALICE, ended, "stop",
                                   encrypt_token=lambda: "tok").action.id
    with uow_factory() as uow:  # the stop ended, but a crash left the status behind
        uow.actions.claim(stop, "w", utcnow(), 30)
        uow.actions.finish(stop, "w", ActionState.FAILED, "crashed", utcnow())
        uow.commit()
    stranded[ended] = InstanceStatus.STOPPING
    services.request_action(uow_factory, ALICE, live, "start", encrypt_token=lambda: "tok")

    resumed: list[str] = []
    runtime = ActionRuntime(None, uow_factory, resume=resumed.append, accepted_grace=3600)
    with caplog.at_level(logging.WARNING, logger="api.domain.orchestration"):
        runtime.sweep()
    assert resumed == []
    with uow_factory(readonly=True) as uow:
        statuses = {i: uow.instances.get(i) for i in [*stranded, live, stopped]}
    for instance_id, was in stranded.items():
        instance = statuses[instance_id]
        assert instance.status is InstanceStatus.FAILED
        assert instance.failure_message.startswith(f"found {was.name} with no action in "
                                                   "progress")
        assert f"instance {instance_id}: was {was.name} with no action in progress; now " \
               "FAILED" in caplog.text
    assert statuses[live].status is InstanceStatus.STARTING
    assert statuses[stopped].status is InstanceStatus.STOPPED
    # FAILED allows the next action, start or stop.
    first, second, _ = stranded
    assert services.request_action(uow_factory, ALICE, first, "start",
                                   encrypt_token=lambda: "tok").action is not None
    assert services.request_action(uow_factory, ALICE, second, "stop",
                                   encrypt_token=lambda: "tok").action is not None
    caplog.clear()
    runtime.sweep()  # nothing left to reconcile: the two with actions now are left alone
    assert "no action in progress" not in caplog.text
