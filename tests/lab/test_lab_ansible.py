"""Plain Ansible reaches every lab host over SSH with the lab's key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lambda_testbed.lab import Lab

pytestmark = pytest.mark.lab

VENV_BIN = Path(sys.executable).parent

PLAYBOOK = """\
- name: Prove the lab behaves like a set of VMs
  hosts: all
  gather_facts: false
  tasks:
    - name: Ensure a file exists on the host's private disk
      ansible.builtin.copy:
        dest: /opt/lambda/ansible-was-here
        content: "{{ inventory_hostname }}\\n"
        mode: "0644"
    - name: Read the host's own hostname
      ansible.builtin.command: hostname
      register: hostname_out
      changed_when: false
    - name: Check that the host is who the inventory says
      ansible.builtin.assert:
        that: hostname_out.stdout == inventory_hostname
"""


def _inventory(lab: Lab, path: Path) -> Path:
    lines = []
    for group, role in (("master", "master"), ("slaves", "slave")):
        lines.append(f"[{group}]")
        lines += [f"{h['name']} ansible_host={h['ip']}" for h in lab.inventory_hosts()
                  if h["role"] == role]  # fmt: skip
    ssh_args = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    ssh_args += " -o ServerAliveInterval=1 -o ServerAliveCountMax=3"
    lines += [
        "[lambda:children]",
        "master",
        "slaves",
        "[all:vars]",
        f"ansible_user={lab.ssh_user}",
        f"ansible_ssh_private_key_file={lab.ssh_key}",
        "ansible_python_interpreter=/usr/bin/python3",
        f"ansible_ssh_common_args='{ssh_args}'",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _env(tmp_path: Path) -> dict:
    return {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_TIMEOUT": "10",
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        # No ControlPersist: a test must not leave ssh mux processes behind.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        "ANSIBLE_NOCOLOR": "1",
    }


def test_ansible_ping_reaches_every_host(running_lab: Lab, tmp_path: Path) -> None:
    inventory = _inventory(running_lab, tmp_path / "hosts.ini")
    result = subprocess.run(
        [
            str(VENV_BIN / "ansible"),
            "-i",
            str(inventory),
            "all",
            "-m",
            "ansible.builtin.ping",
            "-o",
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for host in running_lab.hosts:
        assert f"{host.name} | SUCCESS" in result.stdout


def test_ansible_playbook_runs_on_every_host(running_lab: Lab, tmp_path: Path) -> None:
    inventory = _inventory(running_lab, tmp_path / "hosts.ini")
    playbook = tmp_path / "lab.yml"
    playbook.write_text(PLAYBOOK)
    result = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr
    recap = result.stdout.split("PLAY RECAP", 1)[1]
    for host in running_lab.hosts:
        line = next(line for line in recap.splitlines() if line.startswith(host.name + " "))
        assert "unreachable=0" in line and "failed=0" in line, line
    for host in running_lab.hosts:
        assert (host.root / "ansible-was-here").read_text() == f"{host.name}\n"
