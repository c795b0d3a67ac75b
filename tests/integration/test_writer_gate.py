"""The SQLite writer gate against real SQLite files, threads and forked processes."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import sqlite3
import threading
import time

import pytest

from api.adapters.db.engine import create_db_engine, migrate
from api.adapters.db.uow import UnitOfWorkFactory
from api.adapters.db.writer_gate import WriterGate
from api.domain.model import InstanceStatus

FORK = multiprocessing.get_context("fork")


def _write_rows(database: str, worker: int, threads: int, rows: int, spans) -> None:
    """Threads that insert through the gate, noting when each held it (monotonic clock)."""
    gate = WriterGate.for_database(database)

    def run(thread: int) -> None:
        conn = sqlite3.connect(database, isolation_level=None, timeout=30)
        for n in range(rows):
            assert gate.acquire()
            try:
                began = time.monotonic()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO t VALUES (?)", (f"{worker}-{thread}-{n}",))
                conn.execute("COMMIT")
                spans.append((began, time.monotonic()))
            finally:
                gate.release()
        conn.close()

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def _child_writes(database: str, result) -> None:
    spans: list[tuple[float, float]] = []
    _write_rows(database, 1, 4, 50, spans)
    result.put(spans)


def test_writers_of_two_processes_take_turns(tmp_path):
    database = str(tmp_path / "gate.db")
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY)")
    conn.close()

    result = FORK.Queue()
    child = FORK.Process(target=_child_writes, args=(database, result))
    child.start()
    spans: list[tuple[float, float]] = []
    _write_rows(database, 0, 4, 50, spans)
    child_spans = result.get(timeout=60)
    child.join(timeout=60)

    # CLOCK_MONOTONIC is one clock for the whole machine: no two write transactions, of
    # any thread of either process, overlapped.
    ordered = sorted(spans + child_spans)
    assert len(ordered) == 2 * 4 * 50
    overlaps = [(a, b) for a, b in itertools.pairwise(ordered) if b[0] < a[1]]
    assert overlaps == []
    count = sqlite3.connect(database).execute("SELECT count(*) FROM t").fetchone()[0]
    assert count == 2 * 4 * 50


def _hold_flock(path: str, held, release) -> None:
    gate = WriterGate(path)
    assert gate.acquire()
    held.set()
    release.wait(30)
    gate.release()


@contextlib.contextmanager
def gate_held_by_another_process(path: str):
    """Another process holds the gate of ``path`` until the yielded event is set."""
    held, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_flock, args=(path, held, release))
    holder.start()
    try:
        assert held.wait(10)
        yield release
    finally:
        release.set()
        holder.join(10)


def test_a_writer_waits_for_another_process_then_gets_its_turn(tmp_path):
    path = str(tmp_path / "db.writers")
    with gate_held_by_another_process(path) as release:
        gate = WriterGate(path, timeout=10)
        threading.Timer(0.3, release.set).start()
        started = time.monotonic()
        assert gate.acquire()
        waited = time.monotonic() - started
        gate.release()
    assert waited >= 0.25, "the gate did not wait for the other process"


def test_a_gate_held_too_long_lets_the_writer_go_on_without_it(tmp_path):
    path = str(tmp_path / "db.writers")
    with gate_held_by_another_process(path):
        gate = WriterGate(path, timeout=0.2)
        assert gate.acquire() is False
        # Giving up left nothing held in this process: the next writer tries again.
        assert gate.acquire() is False
    assert gate.acquire() is True
    gate.release()


@pytest.mark.parametrize("readonly", [False, True])
def test_units_of_work_take_the_gate_only_to_write(tmp_path, readonly):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'lambda.db'}")
    migrate(engine)
    factory = UnitOfWorkFactory(engine)
    gate = factory.writer_gate
    assert gate is not None and gate.lock_path.endswith("lambda.db.writers")

    with factory(readonly=readonly) as uow:
        uow.instances.get("00000000-0000-0000-0000-000000000000")
        assert gate._threads.acquire(blocking=False), "a read took the gate"
        gate._threads.release()
        if not readonly:
            uow.instances.compare_and_set_status(
                "00000000-0000-0000-0000-000000000000", {InstanceStatus.STOPPED},
                InstanceStatus.STARTING)
            assert gate._threads.locked(), "a write did not take the gate"
    assert not gate._threads.locked(), "the gate outlived its unit of work"


def test_no_gate_for_postgresql_or_an_in_memory_database():
    assert UnitOfWorkFactory(create_db_engine("sqlite://")).writer_gate is None
    assert UnitOfWorkFactory(
        create_db_engine("postgresql+psycopg://u@127.0.0.1:1/x")).writer_gate is None
