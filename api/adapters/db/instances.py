"""The instance repository: lambda instances and their hosts."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, select, update

from api.adapters.db.tables import actions, hosts, instances
from api.domain.clock import utcnow
from api.domain.model import ACTION_RULES, ActionState, Host, HostRole, Instance, InstanceStatus
from api.domain.names import validate_instance

# The statements of every action request, built once with bound parameters: SQLAlchemy
# then reuses their cache keys and compiled SQL instead of building them per request,
# which is most of a request's database time on SQLite.
_INSTANCE_WITH_HOSTS = (
    select(instances, hosts.c.server_id, hosts.c.name.label("host_name"), hosts.c.role,
           hosts.c.ip)
    .select_from(instances.outerjoin(hosts, hosts.c.instance_id == instances.c.id))
    .where(instances.c.id == bindparam("instance_id"))
    .order_by(hosts.c.position)
)
_OWNED_INSTANCE_WITH_HOSTS = _INSTANCE_WITH_HOSTS.where(instances.c.owner == bindparam("owner"))
# Bind names differ from the column names, which SQLAlchemy reserves for SET values.
_SET_STATUS = (
    update(instances)
    .where(instances.c.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), failure_message=bindparam("b_failure_message"),
            updated_at=bindparam("b_updated_at"))
)
_COMPARE_AND_SET_STATUS = _SET_STATUS.where(
    instances.c.status.in_(bindparam("b_expected", expanding=True)))


class SqlInstanceRepository:
    def __init__(self, conn: Connection):
        self._conn = conn

    def get(self, instance_id: str, owner: str | None = None) -> Instance | None:
        """The instance and its hosts in one query (the read of every action request)."""
        if owner is None:
            result = self._conn.execute(_INSTANCE_WITH_HOSTS, {"instance_id": instance_id})
        else:
            result = self._conn.execute(_OWNED_INSTANCE_WITH_HOSTS,
                                        {"instance_id": instance_id, "owner": owner})
        rows = result.mappings().all()
        if not rows:
            return None
        instance_hosts = [_host(r["server_id"], r["host_name"], r["role"], r["ip"])
                          for r in rows if r["server_id"] is not None]
        return _instance(rows[0], instance_hosts)

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
        return [_instance(r, by_instance.get(r["id"], ())) for r in rows]

    def count(self, owner: str) -> int:
        query = select(func.count()).select_from(instances).where(instances.c.owner == owner)
        return self._conn.execute(query).scalar_one()

    def add(self, instance: Instance) -> None:
        """Insert the instance and its hosts; ``InvalidValue`` if a name or value may not
        be stored (IPs are stored in canonical form)."""
        instance = validate_instance(instance)
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
                left_out_hosts=list(instance.left_out_hosts),
            )
        )
        if instance.hosts:
            self._conn.execute(
                insert(hosts),
                [
                    {"instance_id": instance.id, "server_id": h.server_id, "position": i,
                     "name": h.name, "role": h.role.value, "ip": h.ip}
                    for i, h in enumerate(instance.hosts)
                ],
            )

    def delete(self, instance_id: str) -> None:
        self._conn.execute(delete(instances).where(instances.c.id == instance_id))

    def compare_and_set_status(
        self,
        instance_id: str,
        expected: Collection[InstanceStatus] | None,
        new: InstanceStatus,
        failure_message: str | None = None,
    ) -> bool:
        """Move the instance to ``new`` only if its status is one of ``expected`` (any
        status when ``expected`` is None); True if it moved.

        One UPDATE ... WHERE status IN (...) is atomic on SQLite and PostgreSQL alike, so
        of two racing requests exactly one sees a row changed.
        """
        params = {"b_id": instance_id, "b_status": new.name,
                  "b_failure_message": failure_message, "b_updated_at": utcnow()}
        if expected is None:
            result = self._conn.execute(_SET_STATUS, params)
        else:
            params["b_expected"] = [s.name for s in expected]
            result = self._conn.execute(_COMPARE_AND_SET_STATUS, params)
        return result.rowcount == 1

    def set_left_out_hosts(self, instance_id: str, host_names: Collection[str]) -> None:
        self._conn.execute(update(instances).where(instances.c.id == instance_id)
                           .values(left_out_hosts=list(host_names)))

    def find_stranded(self, limit: int = 100) -> list[tuple[str, InstanceStatus]]:
        """Instances in a transitional status with no unfinished action to end it."""
        transitional = [rule.transitional.name for rule in ACTION_RULES.values()]
        live_action = exists().where(
            actions.c.instance_id == instances.c.id,
            actions.c.state.in_([s.value for s in ActionState if not s.finished]),
        )
        rows = self._conn.execute(
            select(instances.c.id, instances.c.status)
            .where(instances.c.status.in_(transitional), ~live_action)
            .order_by(instances.c.updated_at)
            .limit(limit)
        )
        return [(r.id, InstanceStatus[r.status]) for r in rows]

    def _hosts_of(self, instance_ids: list[str]) -> dict[str, tuple[Host, ...]]:
        if not instance_ids:
            return {}
        rows = self._conn.execute(
            select(hosts)
            .where(hosts.c.instance_id.in_(instance_ids))
            .order_by(hosts.c.instance_id, hosts.c.position)
        ).mappings()
        result: dict[str, list[Host]] = {}
        for r in rows:
            result.setdefault(r["instance_id"], []).append(
                _host(r["server_id"], r["name"], r["role"], r["ip"]))
        return {k: tuple(v) for k, v in result.items()}


def _host(server_id: str, name: str, role: str, ip: str) -> Host:
    return Host(server_id=server_id, name=name, role=HostRole(role), ip=ip)


def _instance(row, instance_hosts) -> Instance:
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
        left_out_hosts=tuple(row["left_out_hosts"] or ()),
    )
