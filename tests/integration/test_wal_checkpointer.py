"""WAL checkpoints off the writers' path, against real SQLite files, threads and forks."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import sqlite3
import threading
import time

import pytest

from api.adapters.db.engine import create_db_engine, migrate
from api.adapters.db.uow import UnitOfWorkFactory
from api.adapters.db.wal_checkpointer import BACKSTOP_PAGES, WalCheckpointer
from api.domain.model import Host, HostRole, Instance, InstanceStatus

FORK = multiprocessing.get_context("fork")
PAGE = 4096


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def add_instances(factory: UnitOfWorkFactory, prefix: str, count: int,
                  name_bytes: int = 10) -> None:
    for n in range(count):
        with factory() as uow:
            instance_id = f"{prefix}-{n}"
            uow.instances.add(Instance(
                id=instance_id, owner="u1", name=instance_id.ljust(name_bytes, "x"),
                status=InstanceStatus.STOPPED, services=("hdfs",),
                hosts=(Host(f"{instance_id}-m", "m", HostRole.MASTER, "10.0.0.1"),)))
            uow.commit()


def instances_in_file_alone(database: str, tmp_path) -> int:
    """The instances the database file holds by itself, its WAL left out."""
    copy = tmp_path / "file-alone.db"
    shutil.copyfile(database, copy)
    with sqlite3.connect(copy) as conn:
        return conn.execute("SELECT count(*) FROM lambda_instances").fetchone()[0]


@pytest.fixture
def factory(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'lambda.db'}")
    migrate(engine)
    yield UnitOfWorkFactory(engine)
    engine.dispose()


def checkpointer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wal-checkpointer:")]


def test_commits_reach_the_database_file_through_a_thread_of_the_process(factory, tmp_path):
    checkpointer = factory.checkpointer
    assert checkpointer is not None and checkpointer.database == str(tmp_path / "lambda.db")
    add_instances(factory, "i", 30)

    # The thread's checkpoint a moment after the last commit copies every frame.
    assert wait_until(lambda: checkpointer.last is not None
                      and checkpointer.last[1] == checkpointer.last[2] > 0)
    assert checkpointer.last[0] == 0
    assert any(t.name == "wal-checkpointer:lambda.db" for t in checkpointer_threads())
    assert instances_in_file_alone(checkpointer.database, tmp_path) == 30


def test_a_commit_checkpoints_by_itself_only_past_the_backstop(factory):
    with factory.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == BACKSTOP_PAGES
    factory.checkpointer.delay = 60.0  # its thread waits: only commits could checkpoint

    # ~2,000 pages in 40 commits: SQLite's default (1,000 pages) would have checkpointed
    # inside one of them and started the WAL over, keeping it near 4 MB.
    add_instances(factory, "big", 40, name_bytes=200 * 1024)
    wal = os.path.getsize(factory.checkpointer.database + "-wal")
    assert wal > 1_500 * PAGE


def _child_writes(factory: UnitOfWorkFactory, result) -> None:
    factory.engine.dispose(close=False)  # the parent's pooled connections stay the parent's
    checkpointer = factory.checkpointer
    before = checkpointer.runs
    add_instances(factory, "child", 10)
    ran = wait_until(lambda: checkpointer.runs > before)
    result.put((ran, [t.native_id for t in checkpointer_threads()], checkpointer.last))


def test_a_forked_child_checkpoints_with_a_thread_of_its_own(factory):
    add_instances(factory, "parent", 3)
    assert wait_until(lambda: factory.checkpointer.runs >= 1)
    parent_threads = [t.native_id for t in checkpointer_threads()]

    result = FORK.Queue()
    child = FORK.Process(target=_child_writes, args=(factory, result))
    child.start()
    ran, child_threads, last = result.get(timeout=60)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert ran and last[1] == last[2]
    assert len(child_threads) == 1 and child_threads[0] not in parent_threads


def test_an_idle_thread_ends_and_the_next_commit_starts_another(factory):
    checkpointer = WalCheckpointer(factory.checkpointer.database, delay=0.01, idle=0.2)
    checkpointer.notify()
    assert wait_until(lambda: checkpointer.runs == 1)
    first = checkpointer._thread
    assert wait_until(lambda: checkpointer._thread is None)
    assert not first.is_alive()

    checkpointer.notify()
    assert wait_until(lambda: checkpointer.runs == 2)


def test_a_removed_database_file_is_not_made_again(tmp_path, caplog):
    missing = tmp_path / "gone.db"
    checkpointer = WalCheckpointer(str(missing), delay=0.01, idle=0.2)
    checkpointer.notify()
    assert wait_until(lambda: checkpointer._thread is None)
    assert not missing.exists()
    assert checkpointer.runs == 0
    assert "cannot open" in caplog.text


def _note_start(result) -> None:
    result.put(time.monotonic())


def test_a_fork_waits_for_a_checkpoint_under_way(factory):
    """A child forked while the thread is inside SQLite could inherit one of SQLite's
    mutexes held, and hang on its first call: the fork waits for the checkpoint."""
    checkpointer = factory.checkpointer
    inside, released = threading.Event(), []

    def checkpoint_under_way():
        with checkpointer._checkpointing:  # what the thread holds around its SQLite calls
            inside.set()
            time.sleep(0.3)
            released.append(time.monotonic())

    holder = threading.Thread(target=checkpoint_under_way)
    holder.start()
    assert inside.wait(5)
    result = FORK.Queue()
    child = FORK.Process(target=_note_start, args=(result,))
    child.start()
    child_started = result.get(timeout=30)
    child.join(timeout=30)
    holder.join()
    assert child_started > released[0]
