"""Seed documents (docs/ARCHITECTURE.md): the instances they list, into the database."""

from __future__ import annotations

from pathlib import Path

import yaml

from api.domain.errors import InstanceNotFound
from api.domain.model import SERVICES, Host, HostRole, Instance, InstanceStatus
from api.domain.names import InvalidValue, validate_instance
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
    """The seed's instances, every name and value checked (``api.domain.names``); a
    ``SeedError`` names the instance and the field."""
    result = []
    for i, item in enumerate(seed.get("instances") or []):
        try:
            hosts = tuple(
                Host(server_id=_number_as_text(h["server_id"]), name=h["name"],
                     role=HostRole(h["role"]), ip=h["ip"])
                for h in item.get("hosts") or [])
            if sum(h.role is HostRole.MASTER for h in hosts) != 1:
                raise SeedError(f"instance {i}: needs exactly one master host")
            instance_id = parse_instance_id(str(item["id"]))
            result.append(validate_instance(Instance(
                id=instance_id, owner=str(item["owner"]),
                name=item.get("name") or instance_id,
                status=InstanceStatus[item.get("status", "STOPPED")],
                services=tuple(item.get("services") or SERVICES), hosts=hosts)))
        except SeedError:
            raise
        except InvalidValue as exc:
            raise SeedError(f"instance {i}: {exc}") from exc
        except InstanceNotFound as exc:
            raise SeedError(f"instance {i}: id {item['id']!r} is not a UUID") from exc
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise SeedError(f"instance {i}: {exc!r}") from exc
    return result


def _number_as_text(value: object) -> object:
    # YAML reads a Cyclades server id (1001) as a number; anything else is checked as is.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


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
