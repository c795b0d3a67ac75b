"""End to end: the product under its real server (`lambda-service serve`), against the
emulator over HTTP, running real ansible-runner playbooks on local (loopback) hosts with
the stand-in distributions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from cryptography.fernet import Fernet

from lambda_testbed.demo import kill_processes_under
from lambda_testbed.demo_data import DEMO_INSTANCE_ID, DEMO_NET, DEMO_TOKEN, demo_seed
from lambda_testbed.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Service:
    """``lambda-service serve`` in a subprocess, restartable."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.base = f"http://{env['LAMBDA_BIND']}"
        self.session = requests.Session()
        self.session.trust_env = False

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve"], env=self.env, cwd=ROOT,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop(signal.SIGKILL)  # a server that never came up must not outlive us
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log_path.read_text()[-3000:]}")
            try:
                self.session.get(f"{self.base}/api/openapi.json", timeout=5)
                return
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        raise RuntimeError("serve did not come up")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def call(self, method, path, token=DEMO_TOKEN, **kwargs):
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers.setdefault("Authorization", f"Token {token}")
        return self.session.request(method, f"{self.base}{path}", headers=headers,
                                    timeout=30, **kwargs)

    def wait_status(self, instance_id, wanted, timeout=120.0) -> dict:
        deadline = time.monotonic() + timeout
        item = None
        while time.monotonic() < deadline:
            item = self.call("GET", f"/api/lambda-instances/{instance_id}/").json()["data"][0]
            if item["status"]["message"] in wanted:
                return item
            time.sleep(0.5)
        raise AssertionError(f"instance never reached {wanted}: {item}")

    def wait_action(self, location, timeout=120.0) -> dict:
        deadline = time.monotonic() + timeout
        data = None
        while time.monotonic() < deadline:
            data = self.call("GET", location).json()["data"]
            if data["state"] in ("succeeded", "failed", "cancelled"):
                return data
            time.sleep(0.5)
        raise AssertionError(f"action never ended: {data}")


@pytest.fixture
def product(tmp_path, request):
    """Emulator + seeded database + stand-ins + the server; everything gone afterwards.
    Settings of a test's own: parametrize ``product`` indirectly with a dict of them;
    ``{state}`` in a value is the state directory; its ``extravars`` (a dict) go to every
    playbook run. The hosts' addresses are the demo's, or those of the test module's
    ``LOOPBACK_NET``, the addresses whose lock the module holds (tests/conftest.py)."""
    from lambda_testbed import standins

    settings = dict(getattr(request, "param", {}))
    net = getattr(request.module, "LOOPBACK_NET", DEMO_NET)

    state = tmp_path / "state"
    state.mkdir()
    seed = demo_seed(instances=2, net=net)
    seed["emulator"] = {"transition_seconds": 0.3}
    emulator = Emulator.from_seed(seed)
    emulator.start("127.0.0.1", 0)
    homes = standins.install(state / "dist", latency=0)  # tests: ready at once
    extravars = dict(homes, lambda_host_root=str(state / "hosts") + "/{{ inventory_hostname }}",
                     **settings.pop("extravars", {}))
    (state / "extravars.yml").write_text(yaml.safe_dump(extravars))
    seed_file = tmp_path / "seed.yml"
    seed_file.write_text(yaml.safe_dump(seed))
    # The product's temp files in the test's own dir: the tests that stop or kill the
    # server mid-playbook leave its killed modules' AnsiballZ payload dirs there.
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = dict(os.environ)
    env.update({
        "TMPDIR": str(temp),
        "LAMBDA_DATABASE_URL": f"sqlite:///{state / 'lambda.db'}",
        "LAMBDA_AUTH_URL": emulator.auth_url,
        "LAMBDA_BIND": f"127.0.0.1:{free_port()}",
        "LAMBDA_STATE_DIR": str(state),
        "LAMBDA_ANSIBLE_CONNECTION": "local",
        "LAMBDA_EXTRAVARS_FILE": str(state / "extravars.yml"),
        "LAMBDA_SECRET_KEY": Fernet.generate_key().decode(),
        "LAMBDA_POLL_INTERVAL": "0.2",
        "LAMBDA_LEASE_SECONDS": "6",
        # The service checks cost a demo start about 12 s: the tests that look at them
        # turn them on (``{"LAMBDA_CHECKS": "enforce"}``, the product's default).
        "LAMBDA_CHECKS": "off",
        # Mitogen, as the runner uses over SSH: half the CPU of the demo's linear for local
        # hosts (README, "Running the playbooks directly"), whose start-to-ready waits the
        # tests skip; the operator's path (test_operator_path) runs the demo's default.
        "LAMBDA_ANSIBLE_STRATEGY": "mitogen_linear",
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        **{name: value.format(state=state)
           for name, value in settings.items()},
    })
    env.pop("LAMBDA_CONFIG", None)
    subprocess.run([sys.executable, "-m", "api.cli", "seed", str(seed_file)], env=env,
                   cwd=ROOT, check=True, capture_output=True)
    service = Service(env, tmp_path / "serve.log")
    service.emulator = emulator
    service.state = state
    try:
        service.start()
        yield service
    finally:
        service.stop()
        emulator.stop()
        kill_processes_under(state)


__all__ = ["DEMO_INSTANCE_ID", "DEMO_TOKEN", "Service", "free_port", "product"]
