"""The unit of work on real databases: a write counts only once committed, every unit hands
its connection back to the pool however it ends, and the compare-and-set and the lease
each let exactly one of many racing threads or processes through."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import uuid
from contextlib import nullcontext as _nothing
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from api.adapters.db import UnitOfWorkFactory, create_db_engine
from api.adapters.db.tables import actions
from api.domain.clock import utcnow
from api.domain.errors import ActionConflict
from api.domain.model import (
    Action,
    ActionKind,
    ActionState,
    Host,
    HostRole,
    Instance,
    InstanceStatus,
    StepName,
    StepState,
)
from api.domain.ports import Identity
from api.domain.services import request_action

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


def test_the_accept_path_commits_and_hands_the_connection_back(seeded):
    with seeded() as uow:
        assert uow.instances.get("i-1", owner="u1") is not None
        assert uow.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        uow.commit()
    assert checked_out(seeded) == 0
    assert status_of(seeded, "i-1") is InstanceStatus.STARTING
    assert action_exists(seeded, "a-1")


@pytest.mark.parametrize("then_read", [False, True], ids=["write-only", "then-read"])
def test_an_uncommitted_write_is_rolled_back(seeded, then_read):
    with pytest.raises(Boom), seeded() as uow:
        assert uow.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        if then_read:
            assert uow.actions.get("a-1") is not None  # its own write, seen before commit
        raise Boom
    assert checked_out(seeded) == 0
    assert status_of(seeded, "i-1") is InstanceStatus.STOPPED
    assert not action_exists(seeded, "a-1")


def test_the_writes_of_a_unit_commit_together_or_not_at_all(seeded):
    with pytest.raises(Boom), seeded() as uow:
        uow.instances.add(make_instance("i-2"))
        uow.instances.compare_and_set_status(
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
            assert uow.instances.count("u1") == 1
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
    """How many of the pool's idle connections a unit of work left inside a transaction
    (an open SQLite transaction would hold the write lock, or keep the WAL from resetting)."""
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


@pytest.mark.parametrize("ending", ["commit", "cas-write-raises", "insert-raises",
                                    "count-read", "get-read", "readonly-count"])
def test_every_unit_ends_its_own_transaction(seeded, ending):
    with pytest.raises(Boom) if ending.endswith("raises") else _nothing(), \
            seeded(readonly=ending == "readonly-count") as uow:
        if ending in ("commit", "cas-write-raises"):
            uow.instances.compare_and_set_status(
                "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        if ending == "insert-raises":
            uow.instances.add(make_instance("i-2"))
        if ending in ("count-read", "readonly-count"):
            assert uow.instances.count("u1") == 1
        if ending == "get-read":
            assert uow.instances.get("i-1") is not None
        if ending == "commit":
            uow.commit()
        if ending.endswith("raises"):
            raise Boom
    assert checked_out(seeded) == 0
    assert seeded.engine.pool.checkedin() >= 1
    assert idle_connections_in_a_transaction(seeded) == 0


def test_a_readonly_unit_does_not_wait_for_a_writer(seeded):
    """On SQLite a writer holds the write lock from its first statement; readers go on."""
    with seeded() as writer:
        writer.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        started = time.monotonic()
        assert status_of(seeded, "i-1") is InstanceStatus.STOPPED  # not committed yet
        assert time.monotonic() - started < 1.0
        writer.commit()
    assert status_of(seeded, "i-1") is InstanceStatus.STARTING


@pytest.mark.timeout(20)  # a SQLite unit that waited for the lock would wait 30 s, then fail
def test_a_rejected_request_does_not_wait_for_a_writer(seeded):
    """A 409 is decided by reads alone: it is answered while another unit holds the write
    lock, which on SQLite is the whole database's."""
    instance_id = str(uuid.uuid4())
    with seeded() as uow:
        uow.instances.add(make_instance(instance_id))
        uow.commit()
    caller = Identity(user_id="u1", user_name="u1", compute_url=None)
    with seeded() as writer:
        writer.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        with pytest.raises(ActionConflict, match="already stopped"):
            request_action(seeded, caller, instance_id, "stop", encrypt_token=lambda: None)
        writer.commit()


# -- races: threads and processes on one database -----------------------------------------

RACERS = 6
FORK = multiprocessing.get_context("fork")


def _read_then_accept(factory, action_id: str) -> bool:
    """One unit that reads, then writes (the shape that deadlocks SQLite writers without
    BEGIN IMMEDIATE): the compare-and-set and, if it won, the insert of the action."""
    with factory() as uow:
        assert uow.instances.get("i-1") is not None
        won = uow.instances.compare_and_set_status(
            "i-1", {InstanceStatus.STOPPED}, InstanceStatus.STARTING)
        if won:
            uow.actions.add(make_action(action_id, "i-1"), "c", "t")
        uow.commit()
    return won


def _accept_once(url: str, start, results) -> None:
    """A process of its own: the compare-and-set and the insert of one accepted action."""
    engine = create_db_engine(url)
    factory = UnitOfWorkFactory(engine)
    start.wait(10)
    try:
        won = _read_then_accept(factory, f"a-{os.getpid()}")
        results.put("won" if won else "lost")
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(f"error: {exc}")
    finally:
        engine.dispose()


def test_racing_processes_move_the_instance_exactly_once(seeded, database_url):
    start, results = FORK.Event(), FORK.Queue()
    racers = [FORK.Process(target=_accept_once, args=(database_url, start, results))
              for _ in range(RACERS)]
    for racer in racers:
        racer.start()
    start.set()
    outcomes = sorted(results.get(timeout=60) for _ in racers)
    for racer in racers:
        racer.join(30)
    assert outcomes == ["lost"] * (RACERS - 1) + ["won"]
    assert status_of(seeded, "i-1") is InstanceStatus.STARTING
    with seeded(readonly=True) as uow:
        assert uow.instances.get("i-1") is not None
        assert len([p for p in racers if uow.actions.get(f"a-{p.pid}")]) == 1


def _claim_once(url: str, action_id: str, worker: str, start, results) -> None:
    engine = create_db_engine(url)
    factory = UnitOfWorkFactory(engine)
    start.wait(10)
    try:
        with factory() as uow:
            claim = uow.actions.claim(action_id, worker, utcnow(), 60)
            uow.commit()
        results.put(None if claim is None else (claim.attempt, worker))
    except Exception as exc:
        results.put(f"error: {exc}")
    finally:
        engine.dispose()


def test_racing_workers_claim_an_action_exactly_once(seeded, database_url):
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        uow.commit()
    start, results = FORK.Event(), FORK.Queue()
    racers = [FORK.Process(target=_claim_once,
                           args=(database_url, "a-1", f"w{n}", start, results))
              for n in range(RACERS)]
    for racer in racers:
        racer.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in racers]
    for racer in racers:
        racer.join(30)
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1, outcomes
    attempt, winner = winners[0]
    assert attempt == 1
    with seeded() as uow:  # the lease holds against everyone else, and its holder renews it
        assert uow.actions.claim("a-1", "late", utcnow(), 60) is None
        assert not uow.actions.renew("a-1", "late", utcnow(), 60)
        assert uow.actions.renew("a-1", winner, utcnow(), 60)
        uow.commit()


def test_racing_threads_move_the_instance_exactly_once(seeded):
    barrier = threading.Barrier(RACERS)
    outcomes = []

    def race(n: int) -> None:
        barrier.wait()
        won = _read_then_accept(seeded, f"a-{n}")
        outcomes.append(won)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [False] * (RACERS - 1) + [True]


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_finish(seeded):
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        first = uow.actions.claim("a-1", "dead", CREATED, 0)  # a lease that has expired
        uow.commit()
    with seeded() as uow:
        second = uow.actions.claim("a-1", "alive", utcnow(), 60)
        uow.commit()
    assert (first.attempt, second.attempt) == (1, 2)
    assert second.encrypted_token == "t"
    with seeded() as uow:
        assert not uow.actions.renew("a-1", "dead", utcnow(), 60)
        assert not uow.actions.finish("a-1", "dead", ActionState.FAILED, "x", utcnow())
        assert uow.actions.finish("a-1", "alive", ActionState.SUCCEEDED, None, utcnow())
        uow.commit()
    with seeded() as uow:  # ended: nobody claims it, its token is gone
        assert uow.actions.claim("a-1", "third", utcnow(), 60) is None
        assert uow.actions.get("a-1").state is ActionState.SUCCEEDED
    with seeded.engine.connect() as conn:
        assert conn.execute(select(actions.c.encrypted_token)).scalar_one() is None


def test_a_claim_fails_the_steps_an_earlier_attempt_left_running(seeded):
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        first = uow.actions.claim("a-1", "dead", CREATED, 0)
        uow.actions.start_step("a-1", first.attempt, StepName.POWER_ON, CREATED)
        uow.commit()
    with seeded() as uow:
        second = uow.actions.claim("a-1", "next", utcnow(), 60)
        uow.commit()
    with seeded(readonly=True) as uow:
        [step] = uow.actions.get("a-1").steps
    assert step.state is StepState.FAILED
    assert step.message == f"interrupted; resumed as attempt {second.attempt}"


def test_a_released_lease_is_claimed_again_at_once_and_its_attempt_given_back(seeded):
    with seeded() as uow:
        uow.actions.add(make_action("a-1", "i-1"), compute_url="c", encrypted_token="t")
        assert uow.actions.claim("a-1", "stopping", utcnow(), 60).attempt == 1
        uow.actions.release("a-1", "someone else", utcnow())  # only the holder can give it back
        assert uow.actions.claim("a-1", "next", utcnow(), 60) is None
        uow.actions.release("a-1", "stopping", utcnow())
        # A hand-back is no failed attempt: the next claim is attempt 1 again.
        assert uow.actions.claim("a-1", "next", utcnow(), 60).attempt == 1
        uow.commit()
    with seeded(readonly=True) as uow:
        assert uow.actions.get("a-1").attempts == 1


def test_find_resumable_finds_orphans_only(seeded):
    now = utcnow()
    old, fresh = now - timedelta(seconds=60), now - timedelta(seconds=1)
    with seeded() as uow:
        for n, (action_id, created) in enumerate([
                ("never-sent", old), ("just-accepted", fresh), ("held", old),
                ("holder-died", old), ("ended", old)]):
            created += timedelta(milliseconds=n)  # oldest first: in this order
            action = make_action(action_id, "i-1")
            action.created_at = created
            uow.actions.add(action, compute_url="c", encrypted_token="t")
        uow.actions.claim("held", "w1", now, 60)
        uow.actions.claim("holder-died", "w2", old, 30)
        uow.actions.claim("ended", "w3", now, 60)
        uow.actions.finish("ended", "w3", ActionState.SUCCEEDED, None, now)
        uow.commit()
    with seeded(readonly=True) as uow:
        assert uow.actions.find_resumable(now, accepted_grace=10) == [
            "never-sent", "holder-died"]
        assert uow.actions.find_resumable(now, accepted_grace=10, limit=1) == ["never-sent"]


@pytest.mark.parametrize("in_memory", [False, True], ids=["sql", "fake"])
def test_the_history_is_newest_first_in_pages_and_counts_only_its_instance(seeded, in_memory):
    from tests.fakes import InMemoryUnitOfWorkFactory

    factory = InMemoryUnitOfWorkFactory() if in_memory else seeded
    with factory() as uow:
        if in_memory:
            uow.instances.add(make_instance("i-1"))
        uow.instances.add(make_instance("i-2"))
        for k in range(5):
            action = make_action(f"a-{k}", "i-1")
            uow.actions.add(replace(action, created_at=CREATED + timedelta(minutes=k)),
                            compute_url="c", encrypted_token="t")
        uow.actions.add(make_action("other", "i-2"), compute_url="c", encrypted_token="t")
        uow.commit()
    with factory(readonly=True) as uow:
        assert [a.id for a in uow.actions.history("i-1", 2, 0)] == ["a-4", "a-3"]
        assert [a.id for a in uow.actions.history("i-1", 2, 4)] == ["a-0"]
        assert uow.actions.history("i-1", 0, 0) == []
        assert uow.actions.count("i-1") == 5
        assert uow.actions.count("i-2") == 1
        newest = uow.actions.history("i-1", 1, 0)[0]
    assert newest.kind is ActionKind.START and newest.owner == "u1"
    assert newest.created_at == CREATED + timedelta(minutes=4)
    assert newest.steps == [] and newest.tasks == []
