"""The scale run's seed: users with a token each, instances of ``vms`` VMs spread over them,
half STARTED and half STOPPED, into the database (through the product's seed path) and into
a seed file the emulator process reads."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from api.adapters.db import UnitOfWorkFactory
from api.adapters.db.engine import create_db_engine, migrate
from api.seed import seed_database


@dataclass(frozen=True)
class User:
    id: str
    name: str
    token: str


def instance_id(k: int) -> str:
    return f"00000000-0000-4000-9000-{k:012d}"


def user_of(k: int, users: int) -> int:
    return k % users


def make_users(users: int) -> list[User]:
    return [User(id=f"5ca1e000-0000-4000-8000-{u:012d}", name=f"user{u}@scale.example.org",
                 token=f"scale-token-{u:04d}-{'x' * 24}") for u in range(users)]


def make_seed(instances: int, vms: int, users: int, transition_seconds: float) -> dict:
    """Instance k (1..instances) belongs to user k % users; even ones start STARTED."""
    people = make_users(users)
    items = []
    for k in range(1, instances + 1):
        hosts = [{"server_id": str(100_000 + k * 100 + n),
                  "name": f"s{k}-master" if n == 0 else f"s{k}-slave{n}",
                  "role": "master" if n == 0 else "slave",
                  "ip": f"10.{k // 250}.{k % 250}.{n + 1}"} for n in range(vms)]
        items.append({"id": instance_id(k), "owner": people[user_of(k, users)].id,
                      "name": f"scale-{k}", "status": "STARTED" if k % 2 == 0 else "STOPPED",
                      "services": ["hdfs", "yarn", "spark", "kafka"], "hosts": hosts})
    return {
        "users": [{"id": u.id, "name": u.name, "tokens": [u.token]} for u in people],
        "instances": items,
        "emulator": {"transition_seconds": transition_seconds, "build_seconds": 0},
    }


def seed_everything(database_url: str, seed: dict, seed_file: Path) -> dict:
    """Migrate and seed the database, write the emulator's seed file; returns timings (s)."""
    timings = {}
    began = time.monotonic()
    engine = create_db_engine(database_url)
    migrate(engine)
    timings["migrate"] = time.monotonic() - began
    began = time.monotonic()
    added, _kept = seed_database(UnitOfWorkFactory(engine), seed)
    timings["seed_database"] = time.monotonic() - began
    engine.dispose()
    began = time.monotonic()
    # JSON is YAML: the emulator's seed loader reads it as it is.
    seed_file.write_text(json.dumps(seed))
    timings["seed_file"] = time.monotonic() - began
    timings["instances"] = added
    return timings
