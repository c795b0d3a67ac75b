"""Fixtures shared by the integration tests."""

from __future__ import annotations

import copy

import pytest

from lambda_testbed.emulator import Emulator

DEMO_USER = "7d2f3c8e-0b6b-4a53-9d57-2f0c3f1a6b11"
OTHER_USER = "5b0e9f3a-3c1d-4e8b-8f4e-1d2c3b4a5f60"

# Five STOPPED servers (101-105) of the demo user and one (201) of another user.
_EMULATOR_SEED = {
    "users": [
        {"id": DEMO_USER, "name": "demo@example.org",
         "tokens": ["tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY", "demo-second-token"]},
        {"id": OTHER_USER, "name": "other@example.org", "tokens": ["other-user-token"]},
    ],
    "instances": [
        {"id": "9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c", "owner": DEMO_USER,
         "name": "demo-instance", "status": "STOPPED",
         "services": ["hdfs", "yarn", "zookeeper", "kafka", "spark"],
         "hosts": [{"server_id": "101", "name": "lambda-1-master", "role": "master",
                    "ip": "127.42.1.1"}]
         + [{"server_id": str(100 + n), "name": f"lambda-1-slave-{n - 1}", "role": "slave",
             "ip": f"127.42.1.{n}"} for n in range(2, 6)]},
    ],
    "servers": [
        {"id": "201", "name": "someone-elses-vm", "owner": OTHER_USER, "status": "ACTIVE",
         "ips": ["127.42.2.1"]},
    ],
    "emulator": {"transition_seconds": 0.2, "build_seconds": 0},
}


@pytest.fixture
def emulator_seed() -> dict:
    """The seed the ``emulator`` fixture serves; override or parametrize (indirect) it."""
    return copy.deepcopy(_EMULATOR_SEED)


@pytest.fixture
def emulator(emulator_seed):
    """A Synnefo emulator serving ``emulator_seed`` on 127.0.0.1 (a free port)."""
    instance = Emulator.from_seed(emulator_seed)
    instance.start("127.0.0.1", 0)
    yield instance
    instance.stop()
