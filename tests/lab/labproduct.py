"""The product on the lab: a provisioned lab, the emulator driving its power, the API server.

Used by test_lab_product.py and test_lab_failures.py (one per module: a lab, an emulator
whose LabPowerHooks power the hosts, the product under `lambda-service serve` with the ssh
connection and the lab's key). Everything is torn down even when a test fails.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

from api.adapters import proctree
from api.adapters.ansible import RUN_GROUP_ENV
from lambda_testbed.emulator import Emulator
from lambda_testbed.lab import Lab, LabPowerHooks, netns
from lambda_testbed.lab.provision import host_names, install_distributions, lab_extravars, lab_seed
from tests.e2e.conftest import ROOT, Service, free_port
from tests.support import port_open

# A powered-on host with no daemons runs only these: its sshd (PID 1 of the host) and
# sessions, and `unshare`, which booted it and waits for it in the host's network namespace.
SSHD_COMMANDS = {"sshd", "sshd-session", "unshare"}


def ruok(ip: str, port: int = 2181) -> str:
    try:
        with socket.create_connection((ip, port), timeout=2) as conn:
            conn.sendall(b"ruok")
            conn.settimeout(2)
            return conn.recv(64).decode()
    except OSError:
        return ""


def spark_alive_workers(master_ip: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{master_ip}:8080/json/", timeout=3) as resp:
            state = json.load(resp)
    except (OSError, ValueError):
        return []
    return sorted(w["host"] for w in state.get("workers", []) if w.get("state") == "ALIVE")


def wait_until(what: str, predicate, timeout: float = 60.0, interval: float = 0.2):
    """Poll until truthy (a hang guard: the bound is generous, never the thing tested)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(interval)


def host_commands(lab: Lab, host: str) -> list[str]:
    """The command names of every process running on a lab host."""
    names = []
    for pid in netns.netns_pids(lab.host(host).netns):
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            continue
    return names


def daemons_on(lab: Lab, host: str) -> list[str]:
    return [name for name in host_commands(lab, host) if name not in SSHD_COMMANDS]


def run_processes(action_id: str) -> list[int]:
    """Processes of the product's playbook runs for this action (ansible-playbook, ssh)."""
    return proctree.find_processes_with_env(RUN_GROUP_ENV, action_id)


# Every standard port of every daemon, per role (the roles' defaults).
MASTER_PORTS = (8020, 9870, 8032, 8088, 2181, 9092, 7077, 8080)
SLAVE_PORTS = (9866, 8042, 9092, 8081)


def open_ports(lab: Lab) -> list[tuple[str, int]]:
    found = []
    for host in lab.hosts:
        for port in MASTER_PORTS if host.role == "master" else SLAVE_PORTS:
            if port_open(host.ip, port, timeout=0.5):
                found.append((host.name, port))
    return found


class LabProduct:
    def __init__(self, lab: Lab, emulator: Emulator, service: Service, seed: dict,
                 server_to_host: dict[str, str], instance_id: str):
        self.lab = lab
        self.emulator = emulator
        self.service = service
        self.seed = seed
        self.server_to_host = server_to_host
        self.host_to_server = {v: k for k, v in server_to_host.items()}
        self.instance_id = instance_id

    @property
    def master(self):
        return self.lab.hosts[0]

    @property
    def slaves(self):
        return self.lab.hosts[1:]

    def act(self, action: str) -> str:
        """POST the action; return the action resource's path."""
        resp = self.service.call("POST", f"/api/lambda-instances/{self.instance_id}/",
                                 data={"action": action})
        assert resp.status_code == 202, resp.text
        return resp.headers["Location"]

    def action(self, location: str) -> dict:
        return self.service.call("GET", location).json()["data"]

    def status(self) -> dict:
        return self.service.call(
            "GET", f"/api/lambda-instances/{self.instance_id}/").json()["data"][0]

    def wait_ended(self, location: str, timeout: float) -> tuple[dict, dict, float]:
        """Wait until the action ends; (action, instance, seconds it took to end)."""
        started = time.monotonic()
        action = self.service.wait_action(location, timeout=timeout)
        took = time.monotonic() - started
        return action, self.status(), took


@contextmanager
def lab_product(tmp_path: Path, name: str, subnet: str, *, env: dict | None = None,
                extravars: dict | None = None, services: tuple[str, ...] | None = None):
    """A provisioned 1-master/2-slave lab, every host powered OFF, and the product on it
    (its instance has ``services``, else every service)."""
    lab = Lab(name, hosts=host_names(2), subnet=subnet)
    emulator = service = None
    try:
        lab.up(power_on=False)
        install_distributions(lab)
        seed, server_to_host = (lab_seed(lab) if services is None
                                else lab_seed(lab, services=services))
        instance_id = seed["instances"][0]["id"]
        emulator = Emulator.from_seed(seed, power_hooks=LabPowerHooks(lab, server_to_host))
        emulator.start("127.0.0.1", 0)
        state = tmp_path / "state"
        state.mkdir()
        extravars_file = state / "extravars.yml"
        extravars_file.write_text(yaml.safe_dump(lab_extravars(**(extravars or {}))))
        seed_file = tmp_path / "seed.yml"
        seed_file.write_text(yaml.safe_dump(seed))
        service_env = dict(os.environ)
        service_env.pop("LAMBDA_CONFIG", None)
        service_env.update({
            "LAMBDA_DATABASE_URL": f"sqlite:///{state / 'lambda.db'}",
            "LAMBDA_AUTH_URL": emulator.auth_url,
            "LAMBDA_BIND": f"127.0.0.1:{free_port()}",
            "LAMBDA_STATE_DIR": str(state),
            "LAMBDA_DISPATCHER": "local",
            "LAMBDA_ANSIBLE_CONNECTION": "ssh",
            # A lab's hosts get new host keys with every lab: tests that check keys say so.
            "LAMBDA_SSH_HOST_KEY_CHECKING": "off",
            "LAMBDA_SSH_USER": lab.ssh_user,
            "LAMBDA_SSH_KEY_FILE": str(lab.ssh_key),
            "LAMBDA_EXTRAVARS_FILE": str(extravars_file),
            "LAMBDA_SECRET_KEY": Fernet.generate_key().decode(),
            "LAMBDA_POLL_INTERVAL": "0.2",
            "LAMBDA_SSH_TIMEOUT": "30",
            "LAMBDA_POWER_TIMEOUT": "60",
            "PATH": f"{Path(sys.executable).parent}:{service_env.get('PATH', '')}",
        })
        service_env.update(env or {})
        subprocess.run([sys.executable, "-m", "api.cli", "seed", str(seed_file)],
                       env=service_env, cwd=ROOT, check=True, capture_output=True)
        service = Service(service_env, tmp_path / "serve.log")
        service.start()
        yield LabProduct(lab, emulator, service, seed, server_to_host, instance_id)
    finally:
        if service is not None:
            service.stop()
        if emulator is not None:
            emulator.stop()
        lab.down()
