"""Seed documents (docs/ARCHITECTURE.md): the instances they list, into the database."""

from __future__ import annotations

from pathlib import Path

import yaml

from api.domain.model import SERVICES, Host, HostRole, Instance, InstanceStatus
from api.domain.services import parse_instance_id


class SeedError(ValueError):
    pass


def load_seed(path: str | Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SeedError(f"cannot read seed file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SeedError(f"seed file {path} must hold a mapping")
    return data


def instances_from_seed(seed: dict) -> list[Instance]:
    result = []
    for i, item in enumerate(seed.get("instances") or []):
        try:
            services = tuple(item.get("services") or SERVICES)
            unknown = set(services) - set(SERVICES)
            if unknown:
                raise SeedError(f"instance {i}: unknown services {sorted(unknown)}")
            hosts = tuple(
                Host(server_id=str(h["server_id"]), name=str(h["name"]),
                     role=HostRole(h["role"]), ip=str(h["ip"]))
                for h in item.get("hosts") or [])
            if sum(h.role is HostRole.MASTER for h in hosts) != 1:
                raise SeedError(f"instance {i}: needs exactly one master host")
            result.append(Instance(
                id=parse_instance_id(str(item["id"])), owner=str(item["owner"]),
                name=str(item.get("name") or item["id"]),
                status=InstanceStatus[item.get("status", "STOPPED")], services=services,
                hosts=hosts))
        except SeedError:
            raise
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise SeedError(f"instance {i}: {exc!r}") from exc
    return result


def seed_database(uow_factory, seed: dict, replace: bool = False) -> tuple[int, int]:
    """Add the seed's instances; existing ones are kept (or replaced). -> (added, kept)."""
    added = kept = 0
    with uow_factory() as uow:
        for instance in instances_from_seed(seed):
            if uow.instances.get(instance.id) is not None:
                if not replace:
                    kept += 1
                    continue
                uow.instances.delete(instance.id)
            uow.instances.add(instance)
            added += 1
        uow.commit()
    return added, kept
