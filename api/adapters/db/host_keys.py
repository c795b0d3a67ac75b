"""The host key repository: SSH host keys pinned per server."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from api.adapters.db.tables import host_keys
from api.domain.ports import HostKey, PinnedHostKey


class SqlHostKeyRepository:
    def __init__(self, conn: Connection):
        self._conn = conn

    def pinned(self, server_ids: Collection[str]) -> list[PinnedHostKey]:
        if not server_ids:
            return []
        rows = self._conn.execute(
            select(host_keys)
            .where(host_keys.c.server_id.in_(list(server_ids)))
            .order_by(host_keys.c.server_id, host_keys.c.key_type)
        ).mappings()
        return [
            PinnedHostKey(server_id=r["server_id"], host_name=r["host_name"],
                          key=HostKey(r["key_type"], r["public_key"]), pinned_at=r["pinned_at"])
            for r in rows
        ]

    def pin(self, server_id: str, host_name: str, keys: Collection[HostKey], now: datetime
            ) -> None:
        if keys:
            self._conn.execute(insert(host_keys), [
                {"server_id": server_id, "key_type": k.key_type, "public_key": k.key,
                 "host_name": host_name, "pinned_at": now}
                for k in keys
            ])

    def forget(self, server_ids: Collection[str]) -> int:
        if not server_ids:
            return 0
        result = self._conn.execute(
            delete(host_keys).where(host_keys.c.server_id.in_(list(server_ids))))
        return result.rowcount
