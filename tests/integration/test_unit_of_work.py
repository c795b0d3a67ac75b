"""The unit of work on real databases: a write counts only once committed, whether it went
through the driver's connection (SQLite's hot statements), SQLAlchemy's, or both, and
every unit hands its connection back to the pool, however it ends."""

from __future__ import annotations

from contextlib import nullcontext as _nothing
from datetime import datetime

import pytest

from api.domain.model import (
    Action,
    ActionKind,
    ActionState,
    Host,
    HostRole,
    Instance,
    InstanceStatus,
)

CREATED = datetime(2026, 12, 2, 10, 0, 0, 123456)


class Boom(Exception):
    pass


def make_instance(instance_id: str) -> Instance:
    return Instance(id=instance_id, owner="u1", name=instance_id,
                    status=InstanceStatus.STOPPED, services=("hdfs",),
                    hosts=(Host(f"{instance_id}-m", "m", HostRole.MASTER, "10.0.0.1"),),
                    created_at=CREATED)


def make_action(action_id: str, instance_id: str) -> Action:
    return Action(id=action_id, instance_id=instance_id, owner="u1", kind=ActionKind.START,
                  state=ActionState.ACCEPTED, created_at=CREATED)


@pytest.fixture
def seeded(uow_factory):
    with uow_factory() as uow:
        uow.instances.add(make_instance("i-1"))
        uow.commit()
    return uow_factory


def status_of(uow_factory, instance_id: str) -> InstanceStatus:
    with uow_factory(readonly=True) as uow:
        return uow.instances.get(instance_id).status


def action_exists(uow_factory, action_id: str) -> bool:
    with uow_factory(readonly=True) as uow:
        return uow.actions.get(action_id) is not None


def checked_out(uow_factory) -> int:
    return uow_factory.engine.pool.checkedout()


def test_hot_statements_commit_and_hand_the_connection_back(seeded):
    with seeded() as uow:
        assert uow.instances.get("i-1", owner="u1") is not None
        assert uow.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", token_cipher="t")
        uow.commit()
    assert checked_out(seeded) == 0
    assert status_of(seeded, "i-1") is InstanceStatus.STARTING
    assert action_exists(seeded, "a-1")


@pytest.mark.parametrize("then_core", [False, True], ids=["hot-only", "then-core"])
def test_an_uncommitted_write_is_rolled_back(seeded, then_core):
    """Also when a statement through SQLAlchemy follows the driver-level write."""
    with pytest.raises(Boom), seeded() as uow:
        assert uow.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", token_cipher="t")
        if then_core:
            assert uow.actions.get("a-1") is not None  # its own write, seen before commit
        raise Boom
    assert checked_out(seeded) == 0
    assert status_of(seeded, "i-1") is InstanceStatus.STOPPED
    assert not action_exists(seeded, "a-1")


def test_core_and_driver_writes_commit_together_or_not_at_all(seeded):
    with pytest.raises(Boom), seeded() as uow:
        uow.instances.add(make_instance("i-2"))  # SQLAlchemy Core
        uow.instances.compare_and_set_status(  # the driver, on SQLite
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        raise Boom
    with seeded(readonly=True) as uow:
        assert uow.instances.get("i-2") is None
    assert status_of(seeded, "i-1") is InstanceStatus.STOPPED

    with seeded() as uow:
        uow.instances.add(make_instance("i-2"))
        uow.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        uow.commit()
    assert checked_out(seeded) == 0
    assert status_of(seeded, "i-1") is InstanceStatus.STARTING
    assert status_of(seeded, "i-2") is InstanceStatus.STOPPED


def test_a_unit_that_only_reads_hands_the_connection_back(seeded):
    for readonly in (True, False):
        with seeded(readonly=readonly) as uow:
            assert uow.instances.get("i-1") is not None
            assert uow.instances.count("u1") == 1  # SQLAlchemy Core
        with seeded(readonly=readonly) as uow:
            pass
    assert checked_out(seeded) == 0


def test_reads_after_a_commit_in_the_same_unit_see_it(seeded):
    with seeded() as uow:
        uow.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        uow.commit()
        assert uow.instances.get("i-1").status is InstanceStatus.STARTING
        assert uow.instances.list("u1", None, 0)[0].status is InstanceStatus.STARTING
    assert status_of(seeded, "i-1") is InstanceStatus.STARTING


def idle_connections_in_a_transaction(uow_factory) -> int:
    """How many of the pool's idle connections a unit of work left inside a transaction.

    On SQLite the pool does not roll back what it is handed back (``reset_on_return``
    is off, see ``create_db_engine``): every unit of work must end its own transaction.
    """
    engine = uow_factory.engine
    idle = [engine.raw_connection() for _ in range(engine.pool.checkedin())]
    try:
        if engine.dialect.name == "sqlite":
            return sum(c.driver_connection.in_transaction for c in idle)
        from psycopg.pq import TransactionStatus

        return sum(c.driver_connection.info.transaction_status != TransactionStatus.IDLE
                   for c in idle)
    finally:
        for c in idle:
            c.close()


@pytest.mark.parametrize("ending", ["commit", "hot-write-raises", "core-write-raises",
                                    "core-read", "hot-read", "readonly-core"])
def test_every_unit_ends_its_own_transaction(seeded, ending):
    with pytest.raises(Boom) if ending.endswith("raises") else _nothing(), \
            seeded(readonly=ending == "readonly-core") as uow:
        if ending in ("commit", "hot-write-raises"):
            uow.instances.compare_and_set_status(
                "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        if ending == "core-write-raises":
            uow.instances.add(make_instance("i-2"))
        if ending in ("core-read", "readonly-core"):
            assert uow.instances.count("u1") == 1
        if ending == "hot-read":
            assert uow.instances.get("i-1") is not None
        if ending == "commit":
            uow.commit()
        if ending.endswith("raises"):
            raise Boom
    assert checked_out(seeded) == 0
    assert seeded.engine.pool.checkedin() >= 1
    assert idle_connections_in_a_transaction(seeded) == 0
