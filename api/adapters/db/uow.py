"""Unit of work and repositories over SQLAlchemy Core (Core is ~25% cheaper than the ORM
per request here, see PERF.md, and the rows map to domain dataclasses in a few lines)."""

from __future__ import annotations

import functools
import json
import logging
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from api.adapters.db.tables import actions, hosts, instances, steps, tasks
from api.adapters.db.wal_checkpointer import WalCheckpointer
from api.adapters.db.writer_gate import WriterGate
from api.domain.clock import utcnow
from api.domain.model import (
    Action,
    ActionKind,
    ActionState,
    Host,
    HostRole,
    Instance,
    InstanceStatus,
    Step,
    StepName,
    StepState,
    TaskResult,
)
from api.domain.ports import ActionClaim

log = logging.getLogger(__name__)

UNFINISHED = (ActionState.ACCEPTED.value, ActionState.RUNNING.value)

# One instance and its hosts in one query, built once: the hot read of every request.
_INSTANCE_WITH_HOSTS = (
    select(
        instances.c.id,
        instances.c.owner,
        instances.c.name,
        instances.c.status,
        instances.c.services,
        instances.c.failure_message,
        instances.c.created_at,
        instances.c.updated_at,
        hosts.c.server_id,
        hosts.c.name,
        hosts.c.role,
        hosts.c.ip,
    )
    .select_from(instances.outerjoin(hosts, hosts.c.instance_id == instances.c.id))
    .where(instances.c.id == bindparam("instance_id"))
    .order_by(hosts.c.position)
)
_OWNED_INSTANCE_WITH_HOSTS = _INSTANCE_WITH_HOSTS.where(instances.c.owner == bindparam("owner"))
# The accept path's two writes, built once (bind names must differ from column names).
_SET_STATUS = update(instances).where(instances.c.id == bindparam("b_id"))
_SET_STATUS_VALUES = {"status": bindparam("b_status"),
                      "failure_message": bindparam("b_failure_message"),
                      "updated_at": bindparam("b_updated_at")}
_COMPARE_AND_SET_STATUS = _SET_STATUS.where(
    instances.c.status.in_(bindparam("b_expected", expanding=True))
).values(_SET_STATUS_VALUES)
_SET_STATUS = _SET_STATUS.values(_SET_STATUS_VALUES)
_INSERT_ACTION = insert(actions)

# On SQLite the same three statements also go straight to the driver's connection: they
# are the whole database work of every action request (404/409, details, 202), and
# SQLAlchemy's execute costs ~50-80 us each here, several times SQLite's own work.
# Values are stored exactly as SQLAlchemy stores them (DATETIME as text with
# microseconds, JSON as text), so both paths read and write the same rows; the tests
# check that on a real database file.
_SQLITE_INSTANCE_WITH_HOSTS = (
    "SELECT i.id, i.owner, i.name, i.status, i.services, i.failure_message,"
    " i.created_at, i.updated_at, h.server_id, h.name, h.role, h.ip"
    " FROM lambda_instances AS i LEFT OUTER JOIN instance_hosts AS h"
    " ON h.instance_id = i.id WHERE i.id = ?{owner} ORDER BY h.position"
)
_SQLITE_OWNED_INSTANCE_WITH_HOSTS = _SQLITE_INSTANCE_WITH_HOSTS.format(owner=" AND i.owner = ?")
_SQLITE_INSTANCE_WITH_HOSTS = _SQLITE_INSTANCE_WITH_HOSTS.format(owner="")
_SQLITE_SET_STATUS = ("UPDATE lambda_instances SET status = ?, failure_message = ?,"
                      " updated_at = ? WHERE id = ?")
_SQLITE_INSERT_ACTION = (
    "INSERT INTO actions (id, instance_id, owner, kind, state, created_at, attempts,"
    " compute_url, token_cipher) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's storage format for DATETIME


def _sqlite_datetime(value: datetime | None) -> str | None:
    return None if value is None else value.strftime(_SQLITE_DATETIME)


def _from_sqlite_datetime(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# An instance read turns the same few strings into the same values, request after
# request: a dict lookup instead of HostRole(...) (~0.4 us a host), and the services'
# JSON text parsed once per distinct text instead of per read (~1.5 us).
_HOST_ROLES = {role.value: role for role in HostRole}


@functools.lru_cache(maxsize=256)
def _services_from_json(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


class _CoreOnDemand:
    """The unit of work's SQLAlchemy Connection, opened at the first statement that needs it.

    On SQLite the hot statements use the driver's connection (see ``_SQLITE_*``), so most
    requests never need SQLAlchemy's Connection, whose set-up and tear-down (execution
    options, transaction bookkeeping, its rollback) cost ~70 us a unit of work here.
    """

    def __init__(self, open_core):
        self._open_core = open_core

    def execute(self, *args, **kwargs):
        return self._open_core().execute(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._open_core(), name)


class SqlUnitOfWork:
    """A transaction. On SQLite a read-write one reads in autocommit mode and takes the
    write lock (``BEGIN IMMEDIATE``) only at its first write, so a request that only
    reads (a 404, 400 or 409 of the action endpoint) never queues on the write lock.
    Reads made before the first write are not isolated from it: every write that depends
    on them is a compare-and-set (``UPDATE ... WHERE status IN ...``) or fails on a key."""

    def __init__(self, engine: Engine, readonly: bool = False,
                 writer_gate: WriterGate | None = None,
                 checkpointer: WalCheckpointer | None = None):
        self._engine = engine
        self._readonly = readonly
        self._writer_gate = writer_gate
        self._gated = False
        self._checkpointer = checkpointer
        self._sqlite = engine.dialect.name == "sqlite"
        self._core: Connection | None = None
        self._pooled = None  # SQLite: the pool's connection, held for the whole unit
        self._tx = None
        self._lazy_write = not readonly and self._sqlite
        self._writing = not self._lazy_write

    def __enter__(self) -> SqlUnitOfWork:
        self._writing = not self._lazy_write
        self._raw_tx = False
        if self._sqlite:
            # SQLite: no BEGIN at all until the first write (see _before_write). Reads are
            # single statements (an instance and its hosts in one join), atomic by
            # themselves; a BEGIN/ROLLBACK pair would cost more than the query.
            self._pooled = self._engine.raw_connection()
            self._raw = self._pooled.driver_connection  # for the hot statements (_SQLITE_*)
            self._conn = _CoreOnDemand(self._open_core)
        else:
            self._raw = None
            self._conn = self._open_core()
        self.instances = SqlInstanceRepository(self._conn, self._before_write, self._raw)
        self.actions = SqlActionRepository(self._conn, self._before_write, self._raw)
        return self

    def _open_core(self) -> Connection:
        if self._core is None:
            if self._pooled is not None:
                # On the connection the unit of work already holds, in autocommit: the
                # writes' transaction is the driver-level one _before_write begins.
                core = Connection(self._engine, connection=self._pooled)
                core = core.execution_options(lambda_begin=None)
            else:
                core = self._engine.connect()
            self._tx = core.begin()
            self._core = core
        return self._core

    def _before_write(self) -> None:
        """Turn a deferred SQLite read into a write transaction before the first write.

        BEGIN IMMEDIATE and, in ``commit``, COMMIT go straight to the driver; a write not
        committed is rolled back when the unit of work ends.
        """
        if self._writing:
            return
        self._writing = True
        if self._writer_gate is not None:
            self._gated = self._writer_gate.acquire()
        self._raw.execute("BEGIN IMMEDIATE")
        self._raw_tx = True

    def __exit__(self, *exc) -> None:
        core, pooled = self._core, self._pooled
        self._core = self._pooled = self._tx = None
        try:
            if core is not None:
                # Rolls back an uncommitted write, the driver-level one included, and
                # hands the pooled connection back.
                core.close()
            elif pooled is not None:
                if self._raw.in_transaction:
                    self._raw.rollback()
                pooled.close()
        finally:
            if self._gated:
                self._gated = False
                self._writer_gate.release()

    def commit(self) -> None:
        if self._raw_tx:
            self._raw.execute("COMMIT")
            self._raw_tx = False
        elif self._tx is not None:
            self._tx.commit()
        else:
            return
        if self._checkpointer is not None:
            self._checkpointer.notify()  # sets an event: the checkpoint runs later


class UnitOfWorkFactory:
    """Hands out units of work on one engine; ``readonly`` ones skip SQLite's write lock.

    On a SQLite file, writers queue at the database's ``WriterGate`` before they ask
    SQLite for its write lock (see ``writer_gate``), and their commits are checkpointed
    into the database file by the process's ``WalCheckpointer`` (see ``wal_checkpointer``).
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.writer_gate = self.checkpointer = None
        database = engine.url.database
        if engine.dialect.name == "sqlite" and database not in (None, "", ":memory:"):
            self.writer_gate = WriterGate.for_database(database)
            self.checkpointer = WalCheckpointer.for_database(database)

    def __call__(self, readonly: bool = False) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine, readonly=readonly, writer_gate=self.writer_gate,
                             checkpointer=self.checkpointer)


def _no_op() -> None:
    pass


class SqlInstanceRepository:
    def __init__(self, conn: Connection, before_write=_no_op, raw=None):
        self._conn = conn
        self._before_write = before_write
        self._raw = raw  # the sqlite3 connection under ``conn``, on SQLite

    def get(self, instance_id: str, owner: str | None = None) -> Instance | None:
        if self._raw is not None:
            if owner is None:
                rows = self._raw.execute(_SQLITE_INSTANCE_WITH_HOSTS, (instance_id,))
            else:
                rows = self._raw.execute(_SQLITE_OWNED_INSTANCE_WITH_HOSTS, (instance_id, owner))
            rows = rows.fetchall()
            if not rows:
                return None
            first = rows[0]
            return self._instance_from_row(
                first, rows, _services_from_json(first[4]) if first[4] else (),
                _from_sqlite_datetime(first[6]), _from_sqlite_datetime(first[7]))
        if owner is None:
            rows = self._conn.execute(_INSTANCE_WITH_HOSTS, {"instance_id": instance_id})
        else:
            rows = self._conn.execute(_OWNED_INSTANCE_WITH_HOSTS,
                                      {"instance_id": instance_id, "owner": owner})
        rows = rows.all()
        if not rows:
            return None
        first = rows[0]
        return self._instance_from_row(first, rows, first[4] or (), first[6], first[7])

    @staticmethod
    def _instance_from_row(first, rows, services, created_at, updated_at) -> Instance:
        """An instance from the rows of ``_INSTANCE_WITH_HOSTS`` (one per host)."""
        instance_hosts = tuple(
            Host(server_id=r[8], name=r[9], role=_HOST_ROLES[r[10]], ip=r[11])
            for r in rows if r[8] is not None
        )
        return Instance(
            id=first[0],
            owner=first[1],
            name=first[2],
            status=InstanceStatus[first[3]],
            services=tuple(services),
            hosts=instance_hosts,
            failure_message=first[5],
            created_at=created_at,
            updated_at=updated_at,
        )

    def list(self, owner: str, limit: int | None, offset: int) -> list[Instance]:
        query = (
            select(instances)
            .where(instances.c.owner == owner)
            .order_by(instances.c.created_at, instances.c.id)
            .offset(offset)
        )
        if limit is not None:
            query = query.limit(limit)
        rows = self._conn.execute(query).mappings().all()
        by_instance = self._hosts_of([r["id"] for r in rows])
        return [self._to_instance(r, by_instance.get(r["id"], ())) for r in rows]

    def count(self, owner: str) -> int:
        query = select(func.count()).select_from(instances).where(instances.c.owner == owner)
        return self._conn.execute(query).scalar_one()

    def add(self, instance: Instance) -> None:
        self._before_write()
        now = utcnow()
        self._conn.execute(
            insert(instances).values(
                id=instance.id,
                owner=instance.owner,
                name=instance.name,
                status=instance.status.name,
                services=list(instance.services),
                failure_message=instance.failure_message,
                created_at=instance.created_at or now,
                updated_at=now,
            )
        )
        if instance.hosts:
            self._conn.execute(
                insert(hosts),
                [
                    {
                        "instance_id": instance.id,
                        "server_id": h.server_id,
                        "position": i,
                        "name": h.name,
                        "role": h.role.value,
                        "ip": h.ip,
                    }
                    for i, h in enumerate(instance.hosts)
                ],
            )

    def delete(self, instance_id: str) -> None:
        self._before_write()
        self._conn.execute(delete(instances).where(instances.c.id == instance_id))

    def compare_and_set_status(
        self, instance_id: str, expected, new: InstanceStatus, failure_message: str | None = None
    ) -> bool:
        """Move the instance to ``new`` only if its status is one of ``expected``.

        One UPDATE ... WHERE status IN (...) is atomic on SQLite and PostgreSQL alike, so
        of two racing requests exactly one sees a row changed.
        """
        self._before_write()
        if self._raw is not None:
            sql, args = _SQLITE_SET_STATUS, [new.name, failure_message,
                                             _sqlite_datetime(utcnow()), instance_id]
            if expected is not None:
                expected = [s.name for s in expected]
                sql += f" AND status IN ({', '.join('?' * len(expected))})"
                args += expected
            return self._raw.execute(sql, args).rowcount == 1
        params = {"b_id": instance_id, "b_status": new.name,
                  "b_failure_message": failure_message, "b_updated_at": utcnow()}
        if expected is None:
            result = self._conn.execute(_SET_STATUS, params)
        else:
            params["b_expected"] = [s.name for s in expected]
            result = self._conn.execute(_COMPARE_AND_SET_STATUS, params)
        return result.rowcount == 1

    def _hosts_of(self, instance_ids: list[str]) -> dict[str, tuple[Host, ...]]:
        if not instance_ids:
            return {}
        rows = (
            self._conn.execute(
                select(hosts)
                .where(hosts.c.instance_id.in_(instance_ids))
                .order_by(hosts.c.instance_id, hosts.c.position)
            )
            .mappings()
            .all()
        )
        result: dict[str, list[Host]] = {}
        for r in rows:
            result.setdefault(r["instance_id"], []).append(
                Host(server_id=r["server_id"], name=r["name"], role=HostRole(r["role"]), ip=r["ip"])
            )
        return {k: tuple(v) for k, v in result.items()}

    @staticmethod
    def _to_instance(row, instance_hosts) -> Instance:
        return Instance(
            id=row["id"],
            owner=row["owner"],
            name=row["name"],
            status=InstanceStatus[row["status"]],
            services=tuple(row["services"] or ()),
            hosts=tuple(instance_hosts),
            failure_message=row["failure_message"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


class SqlActionRepository:
    def __init__(self, conn: Connection, before_write=_no_op, raw=None):
        self._conn = conn
        self._before_write = before_write
        self._raw = raw  # the sqlite3 connection under ``conn``, on SQLite

    def add(self, action: Action, compute_url: str | None, token_cipher: str | None) -> None:
        self._before_write()
        if self._raw is not None:
            self._raw.execute(_SQLITE_INSERT_ACTION, (
                action.id, action.instance_id, action.owner, action.kind.value,
                action.state.value, _sqlite_datetime(action.created_at), 0, compute_url,
                token_cipher))
            return
        self._conn.execute(
            _INSERT_ACTION,
            {
                "id": action.id,
                "instance_id": action.instance_id,
                "owner": action.owner,
                "kind": action.kind.value,
                "state": action.state.value,
                "created_at": action.created_at,
                "attempts": 0,
                "compute_url": compute_url,
                "token_cipher": token_cipher,
            },
        )

    def get(
        self, action_id: str, instance_id: str | None = None, owner: str | None = None
    ) -> Action | None:
        query = select(actions).where(actions.c.id == action_id)
        if instance_id is not None:
            query = query.where(actions.c.instance_id == instance_id)
        if owner is not None:
            query = query.where(actions.c.owner == owner)
        row = self._conn.execute(query).mappings().first()
        if row is None:
            return None
        step_rows = (
            self._conn.execute(
                select(steps).where(steps.c.action_id == action_id).order_by(steps.c.id)
            )
            .mappings()
            .all()
        )
        task_rows = (
            self._conn.execute(
                select(tasks).where(tasks.c.action_id == action_id).order_by(tasks.c.id)
            )
            .mappings()
            .all()
        )
        action = self._to_action(row)
        action.steps = [
            Step(
                name=StepName(s["name"]),
                state=StepState(s["state"]),
                started_at=s["started_at"],
                finished_at=s["finished_at"],
                message=s["message"],
            )
            for s in step_rows
        ]
        action.tasks = [
            TaskResult(
                host=t["host"],
                task=t["task"],
                status=t["status"],
                role=t["role"],
                play=t["play"],
                message=t["message"],
                duration=t["duration"],
            )
            for t in task_rows
        ]
        return action

    def claim(
        self, action_id: str, worker: str, now: datetime, lease_seconds: float
    ) -> ActionClaim | None:
        """Take the lease on an unfinished action nobody holds (or whose holder died)."""
        self._before_write()
        result = self._conn.execute(
            update(actions)
            .where(
                actions.c.id == action_id,
                actions.c.state.in_(UNFINISHED),
                or_(actions.c.lease_owner.is_(None), actions.c.lease_expires_at < now),
            )
            .values(
                lease_owner=worker,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=actions.c.attempts + 1,
                state=ActionState.RUNNING.value,
                started_at=func.coalesce(actions.c.started_at, now),
            )
        )
        if result.rowcount != 1:
            return None
        row = self._conn.execute(select(actions).where(actions.c.id == action_id)).mappings().one()
        # Steps an earlier attempt left running were cut off (its worker stopped or died).
        self._conn.execute(
            update(steps)
            .where(steps.c.action_id == action_id, steps.c.state == StepState.RUNNING.value)
            .values(state=StepState.FAILED.value, finished_at=now,
                    message=f"interrupted; resumed as attempt {row['attempts']}")
        )
        return ActionClaim(
            action_id=row["id"],
            instance_id=row["instance_id"],
            kind=row["kind"],
            attempt=row["attempts"],
            compute_url=row["compute_url"],
            token_cipher=row["token_cipher"],
        )

    def renew(self, action_id: str, worker: str, now: datetime, lease_seconds: float) -> bool:
        self._before_write()
        result = self._conn.execute(
            update(actions)
            .where(
                actions.c.id == action_id,
                actions.c.lease_owner == worker,
                actions.c.state.in_(UNFINISHED),
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
        return result.rowcount == 1

    def release(self, action_id: str, worker: str) -> None:
        """Give the lease back without finishing, so another worker resumes at once."""
        self._before_write()
        self._conn.execute(
            update(actions)
            .where(actions.c.id == action_id, actions.c.lease_owner == worker)
            .values(lease_owner=None, lease_expires_at=None)
        )

    def finish(
        self,
        action_id: str,
        worker: str | None,
        state: ActionState,
        error: str | None,
        now: datetime,
    ) -> bool:
        """End the action; erase the token it carried."""
        self._before_write()
        query = update(actions).where(actions.c.id == action_id, actions.c.state.in_(UNFINISHED))
        if worker is not None:
            query = query.where(actions.c.lease_owner == worker)
        result = self._conn.execute(
            query.values(
                state=state.value,
                error=error,
                finished_at=now,
                token_cipher=None,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        return result.rowcount == 1

    def find_resumable(self, now: datetime, accepted_grace: float, limit: int = 100) -> list[str]:
        """Unfinished actions nobody holds: orphans of a crash or of a lost dispatch."""
        grace_edge = now - timedelta(seconds=accepted_grace)
        rows = self._conn.execute(
            select(actions.c.id)
            .where(
                actions.c.state.in_(UNFINISHED),
                or_(
                    and_(actions.c.lease_owner.is_(None), actions.c.created_at < grace_edge),
                    actions.c.lease_expires_at < now,
                ),
            )
            .order_by(actions.c.created_at)
            .limit(limit)
        ).all()
        return [r[0] for r in rows]

    def start_step(self, action_id: str, attempt: int, name: StepName, now: datetime) -> int:
        self._before_write()
        result = self._conn.execute(
            insert(steps).values(
                action_id=action_id,
                attempt=attempt,
                name=name.value,
                state=StepState.RUNNING.value,
                started_at=now,
            )
        )
        return result.inserted_primary_key[0]

    def add_step(
        self,
        action_id: str,
        attempt: int,
        name: StepName,
        state: StepState,
        now: datetime,
        message: str | None,
    ) -> None:
        self._before_write()
        self._conn.execute(
            insert(steps).values(
                action_id=action_id,
                attempt=attempt,
                name=name.value,
                state=state.value,
                started_at=now,
                finished_at=now,
                message=message,
            )
        )

    def end_step(self, step_id: int, state: StepState, now: datetime, message: str | None) -> None:
        self._before_write()
        self._conn.execute(
            update(steps)
            .where(steps.c.id == step_id)
            .values(state=state.value, finished_at=now, message=message)
        )

    def add_tasks(self, action_id: str, attempt: int, results: list[TaskResult]) -> None:
        self._before_write()
        if not results:
            return
        self._conn.execute(
            insert(tasks),
            [
                {
                    "action_id": action_id,
                    "attempt": attempt,
                    "host": r.host,
                    "task": r.task,
                    "role": r.role,
                    "play": r.play,
                    "status": r.status,
                    "message": (r.message or None) and r.message[:2000],
                    "duration": r.duration,
                }
                for r in results
            ],
        )

    @staticmethod
    def _to_action(row) -> Action:
        return Action(
            id=row["id"],
            instance_id=row["instance_id"],
            owner=row["owner"],
            kind=ActionKind(row["kind"]),
            state=ActionState(row["state"]),
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            error=row["error"],
            attempts=row["attempts"],
        )
