"""The demo's seed: its users, tokens and instances (the README's curl example uses them).

Demo and test data, not the product's: ``lambda-service seed FILE`` loads any seed.
"""

from __future__ import annotations

from api.domain.model import SERVICES
from api.seed import SeedError

DEMO_TOKEN = "tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY"
DEMO_INSTANCE_ID = "9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c"
DEMO_USER_ID = "7d2f3c8e-0b6b-4a53-9d57-2f0c3f1a6b11"
DEMO_USER_NAME = "demo@example.org"
# A second user, so that "someone else's instance" can be tried in the demo.
OTHER_TOKEN = "oTh3rUs3rT0k3n_d3m0_9Fq2LxW8vB6nM4kJ1hG5dS7aZ0c"
OTHER_USER_ID = "3b9a1f6e-5c2d-4e8f-a7b0-c1d2e3f4a5b6"
OTHER_INSTANCE_ID = "0f6c2a1e-8d3b-4c5a-9e7f-1a2b3c4d5e6f"
# The first two numbers of the demo's host addresses (127.42.k.j).
DEMO_NET = "127.42"


def demo_seed(instances: int = 1, slaves: int = 2, net: str = DEMO_NET) -> dict:
    """The demo's user, token and ``instances`` instances, the first with the seed's id.

    Instance k's hosts live on 127.42.k.1.. : 127.0.0.0/8 is all loopback on Linux, so
    every host gets its own address and the daemons of many instances never collide.
    Another ``net`` (the first two numbers) puts them on addresses of their own, beside a
    demo on the default ones.
    """
    if not 1 <= instances <= 250:
        raise SeedError("the demo seeds 1 to 250 instances")
    items = []
    for k in range(1, instances + 1):
        instance_id = DEMO_INSTANCE_ID if k == 1 else _demo_uuid(k)
        hosts = [{"server_id": str(1000 + k * 10), "name": f"lambda-{k}-master",
                  "role": "master", "ip": f"{net}.{k}.1"}]
        hosts += [{"server_id": str(1000 + k * 10 + j), "name": f"lambda-{k}-slave-{j}",
                   "role": "slave", "ip": f"{net}.{k}.{j + 1}"} for j in range(1, slaves + 1)]
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
