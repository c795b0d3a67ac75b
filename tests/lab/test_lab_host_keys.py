"""SSH host keys checked on the lab (``LAMBDA_SSH_HOST_KEY_CHECKING=pinned``, the default).

The product under its server, the emulator powering the lab's hosts, an instance with HDFS
(stand-in daemons on every host, so each playbook reaches every host over SSH): the first
start pins each host's key, later actions check against the pins and the playbooks trust
exactly those; a host whose sshd got a new key fails the start at wait_ssh, naming host and
server; ``lambda-service hostkeys forget`` accepts the new key.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from api.adapters.host_keys import fingerprint
from api.domain.ports import HostKey
from lambda_testbed.lab import sshd
from tests.e2e.conftest import ROOT
from tests.lab.labproduct import lab_product

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    with lab_product(tmp_path_factory.mktemp("hostkeys"), "lambdalabh", "10.213.208.0/24",
                     env={"LAMBDA_SSH_HOST_KEY_CHECKING": "pinned"}, services=("hdfs",)) as p:
        yield p


def served_key(lab, host: str) -> HostKey:
    kind, blob = (lab.host(host).sshd_dir / "host_ed25519.pub").read_text().split()[:2]
    return HostKey(kind, blob)


def cli(product, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "api.cli", *args], env=product.service.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def act(product, action: str) -> tuple[dict, dict]:
    location = product.act(action)
    action_data, instance, took = product.wait_ended(location, timeout=300)
    steps = ", ".join(f"{s['name']} {s['duration']}s" for s in action_data["steps"])
    print(f"\nLAB host keys {action}: {took:.1f}s, {action_data['state']} ({steps})")
    return action_data, instance


def wait_ssh_message(action: dict) -> str:
    return next(s["message"] for s in action["steps"] if s["name"] == "wait_ssh")


def test_keys_are_pinned_then_checked_and_a_changed_one_stops_the_start(product) -> None:
    lab, instance_id = product.lab, product.instance_id
    names = [h.name for h in lab.hosts]
    master, slave1, slave2 = names
    changed_server = product.host_to_server[slave1]

    # First start: every key pinned on first sight, the playbook reaches every host with them.
    action, instance = act(product, "start")
    assert action["state"] == "succeeded", action["error"]
    assert wait_ssh_message(action) == f"SSH host keys pinned on first sight: {', '.join(names)}"
    assert action["playbook"]["hosts"].keys() == set(names)
    listed = cli(product, "hostkeys", "list", instance_id).splitlines()
    assert sorted((line.split("\t")[0], line.split("\t")[3]) for line in listed) == sorted(
        (name, fingerprint(served_key(lab, name))) for name in names)
    # Every playbook run of the start (each chain's, each chain's checks') trusted exactly
    # the pinned keys (their idents: action id, attempt, [checks,] chain).
    runs = Path(product.service.env["LAMBDA_STATE_DIR"], "runs")
    pinned = cli(product, "hostkeys", "known-hosts", instance_id)
    known = {path.parent.name: path.read_text()
             for path in runs.glob(f"{action['id']}-1-*/known_hosts")}
    assert len(known) == 6, sorted(known)  # three chains, then their three checks
    assert all(text == pinned for text in known.values()), known

    # Stop and a second start check the hosts against the pins.
    action, instance = act(product, "stop")
    assert action["state"] == "succeeded", action["error"]
    action, instance = act(product, "start")
    assert action["state"] == "succeeded", action["error"]
    assert wait_ssh_message(action) == f"SSH host keys matched their pins: {', '.join(names)}"
    action, instance = act(product, "stop")
    assert action["state"] == "succeeded", action["error"]

    # slave-1 comes back with a new host key (a reinstall, or someone in between).
    old_key = served_key(lab, slave1)
    key_file = lab.host(slave1).sshd_dir / "host_ed25519"
    key_file.unlink()
    key_file.with_suffix(".pub").unlink()
    sshd.keygen(key_file, f"host-{slave1}-reinstalled")
    new_key = served_key(lab, slave1)
    assert new_key != old_key

    action, instance = act(product, "start")
    assert action["state"] == "failed"
    assert instance["status"]["message"] == "FAILED"
    ip = lab.host(slave1).ip
    assert instance["status"]["failure_message"] == action["error"]
    assert action["error"].startswith(
        f"start failed at step wait_ssh: the SSH host key of host {slave1} "
        f"(server {changed_server}, {ip}) changed: it offers ssh-ed25519 "
        f"{fingerprint(new_key)}, pinned is ssh-ed25519 {fingerprint(old_key)}"), action["error"]
    assert action["error"].endswith(f"lambda-service hostkeys forget {instance_id} {slave1}")
    assert [s["name"] for s in action["steps"]] == ["power_on", "wait_ssh"]

    # The operator accepts the new key: the next start pins it and checks the others.
    assert "forgot 1 pinned host keys of 1 hosts" in cli(
        product, "hostkeys", "forget", instance_id, slave1)
    action, instance = act(product, "start")
    assert action["state"] == "succeeded", action["error"]
    assert wait_ssh_message(action) == (f"SSH host keys pinned on first sight: {slave1}; "
                                        f"matched their pins: {master}, {slave2}")
    assert fingerprint(new_key) in cli(product, "hostkeys", "list", instance_id, slave1)
    action, instance = act(product, "stop")
    assert action["state"] == "succeeded", action["error"]
