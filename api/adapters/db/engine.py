"""Engine creation (SQLite or PostgreSQL) and schema migrations."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from api.adapters.db.wal_checkpointer import BACKSTOP_PAGES

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's lock


def create_db_engine(url: str) -> Engine:
    """An engine tuned for this service: WAL SQLite with write transactions that lock early."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # No rollback when a connection goes back to the pool: every unit of work ends its
        # own transaction (SqlUnitOfWork.__exit__; the tests check the pool's idle
        # connections), and SQLite's driver runs in autocommit here, so nothing opens
        # one behind our back. The pool's rollback was ~3 us of every request.
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT,
                                                  "check_same_thread": False},
                               pool_reset_on_return=None)
        _tune_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    return create_engine(url, poolclass=NullPool)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's begin event emit BEGIN itself, so writers can take the lock early.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        enter_wal_mode(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints run off the writers' path (wal_checkpointer); SQLite's own, inside a
        # COMMIT, only past a WAL this large.
        cursor.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A write transaction takes the write lock at BEGIN: two racing compare-and-set
        # updates then queue on busy_timeout instead of failing with "database is locked".
        # The unit of work may ask for a plain BEGIN (read-only) or none at all (reads
        # before a write, in autocommit: see SqlUnitOfWork).
        begin = conn.get_execution_options().get("lambda_begin", "BEGIN IMMEDIATE")
        if begin:
            conn.exec_driver_sql(begin)


def enter_wal_mode(cursor, timeout: float = SQLITE_BUSY_TIMEOUT) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while another connection holds the file.

    On a new database file, connections racing to switch it to WAL (an API and a worker
    starting together) can get "database is locked" at once: SQLite does not wait on the
    busy timeout where waiting could deadlock. The mode is the file's, so once one of
    them has switched it, the others' pragma finds it done.
    """
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Processes starting together on an empty database migrate one at a time.
            # (SQLite's BEGIN IMMEDIATE already serialises them.)
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7340001)")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    log.info("database schema is at the newest revision")
