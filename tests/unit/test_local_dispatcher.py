"""The embedded pool: the database is the queue, so a new process resumes everything."""

from __future__ import annotations

import time

from api.domain.model import ActionState, InstanceStatus
from api.worker.local import LocalDispatcher
from tests.unit.test_orchestration import FakeCompute, FakeRunner, accept, load, make
from tests.unit.test_services import add_instance


def wait_finished(uow_factory, action_id, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        action, instance = load(uow_factory, action_id)
        if action.state.finished:
            return action, instance
        time.sleep(0.05)
    raise AssertionError("the action never finished")


def test_dispatch_runs_the_action(uow_factory):
    add_instance(uow_factory)
    pool = LocalDispatcher(make(uow_factory, FakeCompute(), FakeRunner()), uow_factory,
                           size=2, sweep_interval=60).start()
    try:
        action_id = accept(uow_factory)
        pool.dispatch(action_id)
        action, instance = wait_finished(uow_factory, action_id)
    finally:
        pool.stop()
    assert action.state is ActionState.SUCCEEDED and instance.status is InstanceStatus.STARTED


def test_a_new_process_resumes_actions_never_dispatched(uow_factory):
    add_instance(uow_factory)
    action_id = accept(uow_factory)  # committed, then the process died before dispatch
    pool = LocalDispatcher(make(uow_factory, FakeCompute(), FakeRunner()), uow_factory,
                           size=2, sweep_interval=0.2, accepted_grace=0).start()
    try:
        action, instance = wait_finished(uow_factory, action_id)
    finally:
        pool.stop()
    assert action.state is ActionState.SUCCEEDED and instance.status is InstanceStatus.STARTED
