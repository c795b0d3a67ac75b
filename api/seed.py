"""Seed documents (docs/ARCHITECTURE.md): instances into the database, and the demo's."""

from __future__ import annotations

from pathlib import Path

import yaml

from api.domain.model import SERVICES, Host, HostRole, Instance, InstanceStatus
from api.domain.services import parse_instance_id

DEMO_TOKEN = "tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY"
DEMO_INSTANCE_ID = "9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c"
DEMO_USER_ID = "7d2f3c8e-0b6b-4a53-9d57-2f0c3f1a6b11"
DEMO_USER_NAME = "demo@example.org"
# A second user, so that "someone else's instance" can be tried in the demo.
OTHER_TOKEN = "oTh3rUs3rT0k3n_d3m0_9Fq2LxW8vB6nM4kJ1hG5dS7aZ0c"
OTHER_USER_ID = "3b9a1f6e-5c2d-4e8f-a7b0-c1d2e3f4a5b6"
OTHER_INSTANCE_ID = "0f6c2a1e-8d3b-4c5a-9e7f-1a2b3c4d5e6f"

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

def demo_seed(instances: int = 1, slaves: int = 2) -> dict:
    """The demo's user, token and ``instances`` instances, the first with the seed's id.

    Instance k's hosts live on 127.42.k.1.. : 127.0.0.0/8 is all loopback on Linux, so
    every host gets its own address and the daemons of many instances never collide.
    """
    if not 1 <= instances <= 250:
        raise SeedError("the demo seeds 1 to 250 instances")
    items = []
    for k in range(1, instances + 1):
        instance_id = DEMO_INSTANCE_ID if k == 1 else _demo_uuid(k)
        hosts = [{"server_id": str(1000 + k * 10), "name": f"lambda-{k}-master",
                  "role": "master", "ip": f"127.42.{k}.1"}]
        hosts += [{"server_id": str(1000 + k * 10 + j), "name": f"lambda-{k}-slave-{j}",
                   "role": "slave", "ip": f"127.42.{k}.{j + 1}"} for j in range(1, slaves + 1)]
        items.append({"id": instance_id, "owner": DEMO_USER_ID, "name": f"demo-instance-{k}",
                      "status": "STOPPED", "services": list(SERVICES), "hosts": hosts})
    items.append({"id": OTHER_INSTANCE_ID, "owner": OTHER_USER_ID, "name": "someone-elses",
                  "status": "STOPPED", "services": ["spark"],
                  "hosts": [{"server_id": "9001", "name": "other-master", "role": "master",
                             "ip": "127.43.0.1"}]})
    return {
        "users": [{"id": DEMO_USER_ID, "name": DEMO_USER_NAME, "tokens": [DEMO_TOKEN]},
                  {"id": OTHER_USER_ID, "name": "other@example.org", "tokens": [OTHER_TOKEN]}],
        "instances": items,
        "emulator": {"transition_seconds": 1.0},
    }

def _demo_uuid(k: int) -> str:
    return f"9ac8e7ab-57f9-48a6-af18-{k:012x}"
