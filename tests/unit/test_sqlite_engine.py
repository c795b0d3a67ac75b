"""SQLite engines: switching a new database file to WAL while other connections race;
durable commits; private files."""

from __future__ import annotations

import os
import sqlite3
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from api.adapters.db.engine import create_db_engine, enter_wal_mode, migrate


class FlakyCursor:
    """Answers the WAL pragma with ``errors`` first, as SQLite does under a racing switch."""

    def __init__(self, *errors: Exception):
        self.errors = list(errors)
        self.calls = 0

    def execute(self, sql: str):
        assert sql == "PRAGMA journal_mode=WAL"
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def test_a_locked_database_is_tried_again_until_the_switch_goes_through():
    locked = sqlite3.OperationalError("database is locked")
    cursor = FlakyCursor(locked, locked)
    enter_wal_mode(cursor, timeout=5)
    assert cursor.calls == 3


def test_other_errors_and_a_lock_past_the_timeout_are_raised():
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        enter_wal_mode(FlakyCursor(sqlite3.OperationalError("disk I/O error")), timeout=5)
    forever = FlakyCursor(*[sqlite3.OperationalError("database is locked")] * 1000)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enter_wal_mode(forever, timeout=0.05)
    assert 1 < forever.calls < 1000


def test_engines_connecting_together_to_a_new_file_all_get_wal(tmp_path):
    """Before the retry, about 1 in 40 of these rounds failed with "database is locked"."""
    for n in range(150):
        url = f"sqlite:///{tmp_path / f'new-{n}.db'}"
        engines = [create_db_engine(url) for _ in range(6)]

        def journal_mode(engine):
            with engine.connect() as conn:
                return conn.exec_driver_sql("PRAGMA journal_mode").scalar()

        try:
            with ThreadPoolExecutor(len(engines)) as pool:
                assert set(pool.map(journal_mode, engines)) == {"wal"}
        finally:
            for engine in engines:
                engine.dispose()


def test_every_connection_commits_durably(tmp_path):
    """synchronous=FULL (2): in WAL mode, NORMAL (1) syncs only at checkpoints, and a power
    loss may take back commits whose 202 was already sent."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'lambda.db'}")
    try:
        for _ in range(2):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_a_new_database_and_its_wal_files_are_the_owners_only(tmp_path, mask):
    path = tmp_path / "new" / "lambda.db"
    previous = os.umask(mask)
    try:
        engine = create_db_engine(f"sqlite:///{path}")
        migrate(engine)
        with engine.connect() as conn:  # an open connection keeps -wal and -shm in place
            conn.exec_driver_sql("SELECT 1")
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
        engine.dispose()
    finally:
        os.umask(previous)
    assert modes == {"lambda.db": 0o600, "lambda.db-wal": 0o600, "lambda.db-shm": 0o600}
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 & ~mask


def test_an_existing_database_keeps_the_mode_its_operator_gave_it(tmp_path):
    path = tmp_path / "lambda.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    create_db_engine(f"sqlite:///{path}").dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
