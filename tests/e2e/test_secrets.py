"""Secrets stay secret, through a real server running a real playbook.

The service's environment holds the server keys and URLs with passwords, the request a
caller's token: none of them may reach a playbook's processes (ansible-playbook, the
daemons a play starts), any process's command line, or a file of the run's artifacts.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography.fernet import Fernet

from api.adapters import proctree
from api.adapters.ansible import RUN_MARKER_ENV
from lambda_testbed.demo import kill_processes_under
from lambda_testbed.demo_data import DEMO_INSTANCE_ID, DEMO_USER_ID, demo_seed
from lambda_testbed.emulator import Emulator
from tests.e2e.conftest import ROOT, Service, free_port
from tests.support import wait_until

pytestmark = pytest.mark.slow

FIXTURES = ROOT / "tests" / "fixtures" / "secrets"
URL_WITH_PASSWORD = re.compile(rb"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:[^\s/@]+@")


def read_proc(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""  # gone, or not ours to read


def all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


class SecretService:
    """``lambda-service serve`` whose environment and caller carry known secrets."""

    def __init__(self, tmp_path: Path):
        self.token = secrets.token_urlsafe(32)  # a token no other process can hold
        self.new_key = Fernet.generate_key().decode()
        self.old_key = Fernet.generate_key().decode()
        self.broker_password = secrets.token_hex(12)
        self.galaxy_password = secrets.token_hex(12)
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.out = tmp_path / "out"
        self.out.mkdir()
        seed = demo_seed(instances=1)
        seed["users"] = [{"id": DEMO_USER_ID, "name": "demo@example.org",
                          "tokens": [self.token]}]
        seed["emulator"] = {"transition_seconds": 0.2}
        self.emulator = Emulator.from_seed(seed)
        self.emulator.start("127.0.0.1", 0)
        seed_file = tmp_path / "seed.yml"
        seed_file.write_text(yaml.safe_dump(seed))
        extravars = tmp_path / "extravars.yml"
        extravars.write_text(yaml.safe_dump({"out_dir": str(self.out)}))
        temp = tmp_path / "tmp"
        temp.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")}
        env.update({
            "TMPDIR": str(temp),
            "LAMBDA_DATABASE_URL": f"sqlite:///{self.state / 'lambda.db'}",
            "LAMBDA_AUTH_URL": self.emulator.auth_url,
            "LAMBDA_BIND": f"127.0.0.1:{free_port()}",
            "LAMBDA_STATE_DIR": str(self.state),
            "LAMBDA_PLAYBOOK_DIR": str(FIXTURES),
            # The fixture playbooks are whole, with no chains to run side by side and no
            # service checks.
            "LAMBDA_PLAYBOOK_CHAINS": "one-after-another",
            "LAMBDA_CHECKS": "off",
            "LAMBDA_ANSIBLE_CONNECTION": "local",
            "LAMBDA_EXTRAVARS_FILE": str(extravars),
            "LAMBDA_SECRET_KEY": f"{self.new_key},{self.old_key}",
            # Not used by the local dispatcher, but in the environment as in production.
            "LAMBDA_BROKER_URL": f"amqp://lambda:{self.broker_password}@127.0.0.1:1//",
            # An Ansible setting (passed by name) whose value holds a password.
            "ANSIBLE_GALAXY_SERVER": f"https://galaxy:{self.galaxy_password}@galaxy.invalid/",
            "LAMBDA_POLL_INTERVAL": "0.2",
            "LAMBDA_HTTP_WORKERS": "1",
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        })
        subprocess.run([sys.executable, "-m", "api.cli", "seed", str(seed_file)], env=env,
                       cwd=ROOT, check=True, capture_output=True)
        self.service = Service(env, tmp_path / "serve.log")

    @property
    def secrets(self) -> list[bytes]:
        return [s.encode() for s in (self.token, self.new_key, self.old_key,
                                     self.broker_password, self.galaxy_password)]

    def leaks(self, text: bytes) -> list[str]:
        found = [f"secret #{n}" for n, s in enumerate(self.secrets) if s in text]
        return found + [m.group(0).decode() for m in URL_WITH_PASSWORD.finditer(text)]

    def close(self) -> None:
        (self.out / "release").touch()
        self.service.stop()
        self.emulator.stop()
        kill_processes_under(self.state)
        pid_file = self.out / "daemon.pid"
        if pid_file.is_file():
            proctree.kill_until_gone(lambda: [p for p in [int(pid_file.read_text())]
                                              if b"sleep" in read_proc(p, "cmdline")], 1.0)


@pytest.fixture
def service(tmp_path):
    running = SecretService(tmp_path)
    try:
        running.service.start()
        yield running
    finally:
        running.close()


def _read_unless_renamed(path: Path) -> bytes:
    """A file of a running run, or nothing if it is gone: ansible-runner writes each event
    as ``<uuid>-partial.json``, then into ``<counter>-<uuid>.json`` and removes the
    partial one; the check after the run reads the final ones."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def test_no_secret_reaches_a_playbook_a_daemon_a_command_line_or_an_artifact(service):
    resp = service.service.call("POST", f"/api/lambda-instances/{DEMO_INSTANCE_ID}/",
                                token=service.token, data={"action": "start"})
    assert resp.status_code == 202, resp.text
    assert wait_until(lambda: (service.out / "daemon.pid").is_file()
                      and (service.out / "daemon.pid").read_text().strip(), timeout=120), (
        service.service.log_path.read_text()[-3000:])
    marker = (service.out / "marker").read_text().strip()
    daemon = int((service.out / "daemon.pid").read_text())

    # While the play runs (it waits for "release"): its processes and every command line.
    run_pids = proctree.find_processes_with_env(RUN_MARKER_ENV, marker)
    cmdlines = {pid: read_proc(pid, "cmdline") for pid in run_pids}
    assert any(b"ansible-playbook" in line for line in cmdlines.values()), cmdlines
    assert daemon in run_pids, "the play's daemon did not inherit the run's environment"
    for pid in run_pids:
        assert service.leaks(read_proc(pid, "environ")) == [], (pid, cmdlines.get(pid))
    for pid in all_pids():
        assert service.leaks(read_proc(pid, "cmdline")) == [], read_proc(pid, "cmdline")
    playbook_cmdline = next(line for line in cmdlines.values() if b"ansible-playbook" in line)
    assert re.search(rb"-e\x00@[^\x00]*/env/extravars\x00", playbook_cmdline), (
        "extra variables are not passed by file")
    # The artifacts as they are during the run (ansible-runner's "command" is still there).
    run_files = [p for p in (service.state / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "command" for p in run_files), "nothing was checked"
    for path in run_files:
        assert service.leaks(_read_unless_renamed(path)) == [], path

    (service.out / "release").touch()
    def ended():
        data = service.service.call("GET", resp.headers["Location"], token=service.token)
        state = data.json()["data"]["state"]
        return state if state in ("succeeded", "failed", "cancelled") else None

    assert wait_until(ended, timeout=120) == "succeeded"
    for path in (service.state / "runs").rglob("*"):
        if path.is_file():
            assert service.leaks(path.read_bytes()) == [], path


def test_the_server_refuses_to_start_scaled_out_without_a_shared_key(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")}
    env.update({"LAMBDA_DISPATCHER": "celery", "LAMBDA_STATE_DIR": str(tmp_path),
                "LAMBDA_DATABASE_URL": f"sqlite:///{tmp_path / 'lambda.db'}",
                "LAMBDA_BIND": f"127.0.0.1:{free_port()}"})
    for command in ("serve", "worker"):
        done = subprocess.run([sys.executable, "-m", "api.cli", command], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stderr[-2000:])
        assert "LAMBDA_SECRET_KEY is required when LAMBDA_DISPATCHER is celery" in done.stderr
    assert not (tmp_path / "secret.key").exists()  # no per-machine key was made instead


def test_a_key_that_is_not_a_fernet_key_stops_the_server_without_echoing_it(tmp_path):
    bad = "not-a-key-" + secrets.token_hex(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")}
    env.update({"LAMBDA_SECRET_KEY": f"{Fernet.generate_key().decode()},{bad}",
                "LAMBDA_DATABASE_URL": f"sqlite:///{tmp_path / 'lambda.db'}"})
    done = subprocess.run([sys.executable, "-m", "api.cli", "serve"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "LAMBDA_SECRET_KEY: key 2 of 2 is not a Fernet key" in done.stderr
    assert bad not in done.stderr

