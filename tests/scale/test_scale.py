"""The scale run's short version (``python -m benchmarks.scale --quick``): 100 instances of
10 VMs over 10 users on PostgreSQL and a private RabbitMQ node, 2 API processes, 2
simulated workers of which one is SIGKILLed mid-run, the users' mix for 45 s, then the
same end checks as the full run (``benchmarks.scale``; no logic of its own here)."""

from __future__ import annotations

import pytest

from benchmarks.scale import ScaleConfig, run_scale
from benchmarks.scale_procs import PrivateRabbit

pytestmark = [pytest.mark.postgres, pytest.mark.celery, pytest.mark.slow]


def test_quick_scale_run_loses_nothing_when_a_worker_is_killed(postgres_server):
    problem = PrivateRabbit.available()
    if problem:
        pytest.skip(f"rabbitmq-server is needed for a private node: {problem}")
    result = run_scale(ScaleConfig.quick())
    failed = [c.line() for c in result.checks if not c.ok]
    assert not failed, "\n".join(failed)
    assert [c.name for c in result.checks] == [
        "every accepted action ended", "no instance STARTING or STOPPING",
        "no two runs on the same hosts at once", "instances agree with the emulator's servers"]
    # The kill happened, and a worker was started in the killed one's place.
    assert sum("SIGKILLed" in line for line in result.lines) == 1
    [phase] = result.phases
    assert phase.ended > 0 and phase.accept_ms


def test_workers_take_work_at_full_concurrency_again_after_a_broker_restart(postgres_server):
    """The broker restarts while every worker thread runs an action, with a backlog queued:
    nothing is lost, and in the 20 s after it is back the worker's threads are busy."""
    problem = PrivateRabbit.available()
    if problem:
        pytest.skip(f"rabbitmq-server is needed for a private node: {problem}")
    # The restart at 0.65 x 80 s = 52 s, down for 5-10 s: the last 20 s are all after it.
    result = run_scale(ScaleConfig.quick(faults=("broker",), duration=80.0, workers=(1,),
                                         concurrency=8, speed=0.25))
    failed = [c.line() for c in result.checks if not c.ok]
    assert not failed, "\n".join(failed)
    assert sum("broker up again" in line for line in result.lines) == 1
    [phase] = result.phases
    # A worker left with a lowered prefetch runs one action at a time (an eighth of its
    # threads) or stalls; recovered, it keeps its threads busy (75-80% over the tail's
    # 20 s here, as the backlog thins).
    before, after = phase.occupancy_timeline[1], phase.occupancy_timeline[-1]
    assert before is not None and before > 0.8, phase.occupancy_timeline
    assert after is not None and after > 0.5, phase.occupancy_timeline
