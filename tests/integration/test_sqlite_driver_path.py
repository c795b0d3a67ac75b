"""On SQLite the action request's statements run on the driver's connection: what they
write, SQLAlchemy reads back unchanged, and what SQLAlchemy wrote, they read the same."""

from __future__ import annotations

from datetime import datetime

import pytest

from api.adapters.db.engine import create_db_engine, migrate
from api.adapters.db.uow import SqlActionRepository, SqlInstanceRepository
from api.domain.model import (
    Action,
    ActionKind,
    ActionState,
    Host,
    HostRole,
    Instance,
    InstanceStatus,
)

CREATED = datetime(2026, 11, 27, 19, 30, 37, 123456)


@pytest.fixture
def engine(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'lambda.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def repositories(conn, driver: bool):
    raw = conn.connection.driver_connection if driver else None
    return SqlInstanceRepository(conn, raw=raw), SqlActionRepository(conn, raw=raw)


def make_instance(instance_id: str, created_at: datetime) -> Instance:
    return Instance(
        id=instance_id, owner="u1", name="i", status=InstanceStatus.STOPPED,
        services=("hdfs", "kafka"), failure_message="earlier failure",
        hosts=(Host("s1", "m", HostRole.MASTER, "10.0.0.1"),
               Host("s2", "s", HostRole.SLAVE, "10.0.0.2")),
        created_at=created_at)


@pytest.mark.parametrize("created_at", [CREATED, CREATED.replace(microsecond=0)])
def test_both_paths_read_the_same_instance(engine, created_at):
    with engine.begin() as conn:
        repositories(conn, driver=False)[0].add(make_instance("i-1", created_at))
    with engine.connect() as conn:
        via_core, via_driver = (repositories(conn, d)[0] for d in (False, True))
        for owner in (None, "u1"):
            assert via_driver.get("i-1", owner=owner) == via_core.get("i-1", owner=owner)
        assert via_driver.get("i-1", owner="u1").created_at == created_at
        assert via_driver.get("i-1", owner="someone else") is None
        assert via_driver.get("missing") is None


def test_what_the_driver_writes_sqlalchemy_reads_back(engine):
    with engine.begin() as conn:
        repositories(conn, driver=False)[0].add(make_instance("i-1", CREATED))
    action = Action(id="a-1", instance_id="i-1", owner="u1", kind=ActionKind.START,
                    state=ActionState.ACCEPTED, created_at=CREATED)
    with engine.begin() as conn:
        instances, actions = repositories(conn, driver=True)
        assert not instances.compare_and_set_status(
            "i-1", {InstanceStatus.STARTED}, InstanceStatus.STOPPING)
        assert instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED, InstanceStatus.FAILED}, InstanceStatus.STARTING)
        actions.add(action, compute_url="http://compute", token_cipher="cipher")
    with engine.connect() as conn:
        instances, actions = repositories(conn, driver=False)
        instance = instances.get("i-1")
        assert instance.status is InstanceStatus.STARTING
        assert instance.failure_message is None
        assert instance.updated_at > instance.created_at == CREATED
        stored = actions.get("a-1", instance_id="i-1", owner="u1")
        assert (stored.kind, stored.state, stored.created_at, stored.attempts) == (
            ActionKind.START, ActionState.ACCEPTED, CREATED, 0)
        claim = actions.claim("a-1", "w1", datetime(2026, 11, 28), 30)
        assert (claim.compute_url, claim.token_cipher) == ("http://compute", "cipher")
