"""Lab hosts behave like small VMs: own name, own disk, SSH, power and network faults."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from lambda_testbed.lab import Lab, LabPowerHooks
from lambda_testbed.lab.netns import netns_pids

pytestmark = pytest.mark.lab


def _cmdlines(pids: list[int]) -> list[str]:
    """Command lines of `pids` (inspection only; processes are never chosen by name)."""
    lines = []
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        lines.append(raw.replace(b"\0", b" ").decode(errors="replace").strip())
    return lines


def test_each_host_answers_ssh_with_its_own_hostname(running_lab: Lab) -> None:
    for host in running_lab.hosts:
        result = subprocess.run(
            ["ssh", *running_lab.ssh_options(), f"root@{host.ip}", "hostname"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == host.name


def test_opt_lambda_and_tmp_are_private_to_each_host(running_lab: Lab) -> None:
    token = uuid.uuid4().hex
    master, slave = running_lab.host("master"), running_lab.host("slave-1")
    write = running_lab.ssh(
        master.name, f"echo {token} > /opt/lambda/marker-{token} && echo {token} > /tmp/t-{token}"
    )
    assert write.returncode == 0, write.stderr
    # The host's disk is its directory on the machine...
    assert (master.root / f"marker-{token}").read_text().strip() == token
    # ...and nobody else's.
    look = running_lab.ssh(slave.name, f"ls /opt/lambda/marker-{token} /tmp/t-{token}")
    assert look.returncode != 0
    assert not (slave.root / f"marker-{token}").exists()
    again = running_lab.ssh(master.name, f"cat /tmp/t-{token}")
    assert again.stdout.strip() == token


def test_host_names_resolve_between_hosts(running_lab: Lab) -> None:
    slave = running_lab.host("slave-2")
    for other in running_lab.hosts:
        result = running_lab.ssh(slave.name, f"getent hosts {other.name}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == other.ip
    # Not just the hosts file: a connection by name reaches the other host's sshd.
    banner = running_lab.ssh(
        slave.name, "timeout 5 bash -c 'exec 3<>/dev/tcp/master/22; head -c 4 <&3'"
    )
    assert banner.stdout == "SSH-"


def test_power_off_kills_every_process_and_power_on_boots_again(running_lab: Lab) -> None:
    host = running_lab.host("slave-2")
    started = running_lab.ssh(host.name, "nohup sleep 1000 >/dev/null 2>&1 & echo started")
    assert started.stdout.strip() == "started"
    before = _cmdlines(netns_pids(host.netns))
    assert any(line == "sleep 1000" for line in before), before

    running_lab.power_off(host.name)

    assert netns_pids(host.netns) == []
    assert not running_lab.is_on(host.name)
    refused = running_lab.ssh(host.name, "true", timeout=30)
    assert refused.returncode == 255
    assert "refused" in refused.stderr.lower()

    running_lab.power_on(host.name)
    assert running_lab.is_on(host.name)
    after = running_lab.ssh(host.name, "hostname; pgrep -x sleep || echo no-sleep")
    assert after.stdout.split() == [host.name, "no-sleep"]
    # Power-on is a no-op on a running host.
    running_lab.power_on(host.name)
    assert running_lab.is_on(host.name)


def test_link_down_makes_ssh_time_out_and_link_up_heals(running_lab: Lab) -> None:
    host = running_lab.host("slave-1")
    # An established session must notice the cut (keepalives), not hang for ever.
    session = subprocess.Popen(
        running_lab.ssh_command(host.name, "sleep 600"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert running_lab.ssh(host.name, "true").returncode == 0  # the link works
        running_lab.link_down(host.name)
        assert not running_lab.is_link_up(host.name)
        # The hang guard below is generous; ServerAliveInterval=1 x 3 ends it much sooner.
        session.communicate(timeout=60)
        assert session.returncode == 255  # ssh gave up: "Timeout, server not responding"

        fresh = running_lab.ssh(host.name, "true", timeout=60)
        assert fresh.returncode == 255
        assert "timed out" in fresh.stderr.lower(), fresh.stderr
        # The host itself kept running: only the cable was cut.
        assert running_lab.is_on(host.name)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
        running_lab.link_up(host.name)
    assert running_lab.ssh(host.name, "hostname").stdout.strip() == host.name


def test_power_hooks_drive_hosts_by_server_id(running_lab: Lab) -> None:
    hooks = LabPowerHooks(running_lab, {"101": "master", "103": "slave-2"})
    server = {"id": "103", "name": "lambda-1-slave-2", "status": "ACTIVE"}
    hooks.power_off(server)
    assert not running_lab.is_on("slave-2")
    assert running_lab.is_on("master")
    hooks.power_off({"id": "999", "name": "not-in-the-lab"})  # no lab host: ignored
    hooks.power_on(server)
    assert running_lab.is_on("slave-2")
    assert running_lab.ssh("slave-2", "hostname").stdout.strip() == "slave-2"


def test_inventory_hosts_name_the_master_first(running_lab: Lab) -> None:
    hosts = running_lab.inventory_hosts()
    assert [h["role"] for h in hosts] == ["master", "slave", "slave"]
    assert [h["name"] for h in hosts] == ["master", "slave-1", "slave-2"]
    assert len({h["ip"] for h in hosts}) == 3
    status = running_lab.status()
    assert status["up"] and all(h["on"] and h["link_up"] for h in status["hosts"])


def test_power_off_with_grace_lets_daemons_exit_cleanly(running_lab: Lab) -> None:
    host = running_lab.host("slave-1")
    marker, ready = host.root / "stopped-cleanly", host.root / "trap-ready"
    marker.unlink(missing_ok=True)
    ready.unlink(missing_ok=True)
    daemon = (
        'nohup sh -c \'trap "echo yes > /opt/lambda/stopped-cleanly; exit 0" TERM;'
        " touch /opt/lambda/trap-ready; while :; do sleep 0.1; done' >/dev/null 2>&1 &"
        " while [ ! -e /opt/lambda/trap-ready ]; do sleep 0.05; done; echo started"
    )
    assert running_lab.ssh(host.name, daemon).stdout.strip() == "started"
    running_lab.power_off(host.name, grace=5)
    assert netns_pids(host.netns) == []
    assert marker.read_text().strip() == "yes"
