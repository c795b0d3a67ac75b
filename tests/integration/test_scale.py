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
