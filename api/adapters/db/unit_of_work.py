"""The unit of work: one database transaction and the repositories that use it."""

from __future__ import annotations

from sqlalchemy import Connection, Engine

from api.adapters.db.actions import SqlActionRepository
from api.adapters.db.engine import SQLITE_BEGIN
from api.adapters.db.host_keys import SqlHostKeyRepository
from api.adapters.db.instances import SqlInstanceRepository


class SqlUnitOfWork:
    """One connection and its transaction. Leaving the ``with`` block without ``commit()``
    rolls back; after a commit, the next statement begins a new transaction.

    On SQLite a unit that may write takes the write lock at its first statement
    (``BEGIN IMMEDIATE``); a ``readonly`` one never queues for it (plain ``BEGIN``).

    A ``readonly`` unit reads one snapshot on either database: SQLite's read transaction
    is one already; on PostgreSQL it runs at REPEATABLE READ, where READ COMMITTED would
    give each statement a newer one. So an action read with its steps, tasks and
    ``last_event`` is of one instant (a client resumes its event stream there), and a
    read-only transaction at that level never fails to serialise.
    """

    instances: SqlInstanceRepository
    actions: SqlActionRepository
    host_keys: SqlHostKeyRepository

    def __init__(self, engine: Engine, readonly: bool = False):
        self._engine = engine
        self._readonly = readonly
        self._conn: Connection | None = None

    def __enter__(self) -> SqlUnitOfWork:
        conn = self._engine.connect()
        if self._readonly and conn.dialect.name == "sqlite":
            conn.execution_options(**{SQLITE_BEGIN: "BEGIN"})
        elif self._readonly and conn.dialect.name == "postgresql":
            # No round trip: psycopg puts it in the BEGIN; the pool resets it on return.
            conn.execution_options(isolation_level="REPEATABLE READ")
        self._conn = conn
        self.instances = SqlInstanceRepository(conn)
        self.actions = SqlActionRepository(conn)
        self.host_keys = SqlHostKeyRepository(conn)
        return self

    def __exit__(self, *exc) -> None:
        conn, self._conn = self._conn, None
        conn.close()  # rolls back what was not committed and hands the connection back

    def commit(self) -> None:
        self._conn.commit()


class UnitOfWorkFactory:
    """Hands out units of work on one engine: ``factory()`` or ``factory(readonly=True)``."""

    reads_never_wait: bool

    def __init__(self, engine: Engine):
        self.engine = engine
        # SQLite in WAL mode: readers see the last commit without any lock, so a read
        # never queues behind a writer. A server's round trips can always be slow.
        self.reads_never_wait = engine.dialect.name == "sqlite"

    def __call__(self, readonly: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, readonly=readonly)
