"""Engine creation (SQLite or PostgreSQL) and schema migrations."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT = 30.0  # seconds a connection waits for another's lock
# Execution option naming the BEGIN a SQLite transaction starts with (see _on_begin).
SQLITE_BEGIN = "lambda_sqlite_begin"


def create_db_engine(url: str) -> Engine:
    """An engine for this service: SQLite in WAL mode, or PostgreSQL.

    SQLite admits one writer at a time and suits one machine; write contention between
    many processes is what PostgreSQL is for.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            create_private_file(Path(parsed.database))
        # ``timeout`` is SQLite's busy timeout: a writer waits this long for the lock.
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT,
                                                  "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    return create_engine(url, poolclass=NullPool)


def _configure_sqlite(engine: Engine) -> None:
    """SQLAlchemy's recipe for SQLite transactions: the driver's own BEGIN handling is
    turned off and the "begin" event emits the BEGIN, so a writer can take the lock at once."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        enter_wal_mode(cursor)
        # FULL: every commit syncs the WAL before it returns, so a 202 (sent after the
        # commit) is never for an action a power loss takes back. NORMAL in WAL mode
        # syncs only at checkpoints: a commit survives a crash of the process but the
        # last ones may roll back on a power loss or an OS crash (SQLite's docs on
        # PRAGMA synchronous). The cost is one fsync of the WAL per commit.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # A transaction that will write takes the write lock at BEGIN, so racing writers
        # queue on the busy timeout; one that takes it at its first write instead fails
        # at once ("database is locked") when another wrote since it read.
        conn.exec_driver_sql(conn.get_execution_options().get(SQLITE_BEGIN, "BEGIN IMMEDIATE"))


def create_private_file(path: Path) -> None:
    """Create an absent SQLite database file empty with mode 0600, whatever the umask.

    SQLite gives the ``-wal`` and ``-shm`` files it creates the database file's own
    permissions, so they are private too. An existing file keeps its mode: an operator
    may have widened it on purpose (a backup group)."""
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # if new: private too
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return  # another process created it meanwhile, with the same mode
    try:
        os.fchmod(fd, 0o600)  # exactly: a strict umask must not leave it unwritable
    finally:
        os.close(fd)  # an empty file is an empty SQLite database


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
