"""The README's paths, run as a new user would.

- From a checkout: ``lambda-service demo``, then the operator's commands verbatim
  (``lambda-service --config .lambda/demo/lambda.yml inventory ...`` and a plain
  ``ansible-playbook -i hosts.ini -e @.lambda/demo/extravars.yml playbooks/...``).
- From a wheel: ``pip wheel .``, installed into a fresh virtualenv, run in an empty
  directory with the checkout out of reach: the demo serves the seed's curl example to
  STARTED and back, ``lambda-service paths`` names installed files, and the inventory
  plus a plain ``ansible-playbook`` work from them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from lambda_testbed.demo import kill_processes_under
from lambda_testbed.demo_data import DEMO_INSTANCE_ID, DEMO_TOKEN
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
URL = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
INVENTORY = ["lambda-service", "--config", ".lambda/demo/lambda.yml", "inventory",
             DEMO_INSTANCE_ID, "-o", "hosts.ini"]


def clean_env(bin_dir: Path, tmp: Path) -> dict:
    """A user's shell: the given bin dir first on PATH, no PYTHONPATH, no LAMBDA_* (but
    the stand-ins' latency)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LAMBDA_", "ANSIBLE_", "PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    env["TMPDIR"] = str(tmp)
    env["KAMAKIRC"] = str(tmp / "no-kamakirc")
    env["LAMBDA_STANDIN_LATENCY"] = "0"  # the demo's daemons ready at once: tests wait for nothing
    return env


def copy_checkout(dest: Path) -> Path:
    """The repository's files as a fresh clone has them (tracked and new, not ignored)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


class Demo:
    """``lambda-service demo`` in a subprocess, in ``cwd``, on free ports."""

    def __init__(self, cwd: Path, env: dict):
        self.cwd = cwd
        self.env = env
        self.bind = f"127.0.0.1:{free_port()}"
        self.base = f"http://{self.bind}"
        self.log_path = cwd.parent / "demo.log"
        self.session = requests.Session()
        self.session.trust_env = False
        self.proc = None

    def __enter__(self) -> Demo:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["lambda-service", "demo", "--bind", self.bind,
                 "--emulator-bind", f"127.0.0.1:{free_port()}"],
                cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"demo exited: {self.log_path.read_text()[-3000:]}")
            try:
                self.session.get(f"{self.base}/api/openapi.json", timeout=5)
                return self
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.3)
        self.__exit__()
        raise RuntimeError(f"demo did not come up: {self.log_path.read_text()[-3000:]}")

    def __exit__(self, *_exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        state = self.cwd / ".lambda" / "demo"
        if state.exists():
            kill_processes_under(state.resolve())

    def curl(self, action: str) -> str:
        """The README's curl example, with ``action``; returns the action's location."""
        out = subprocess.run(
            ["curl", "-s", "-i", "-X", "POST", "-H", f"Authorization:Token {DEMO_TOKEN}",
             "-F", f"action={action}", f"{self.base}{URL}"],
            capture_output=True, text=True, check=True, timeout=30).stdout
        head = out.partition("\n\n")[0].replace("\r", "")
        assert head.startswith("HTTP/1.1 202"), out
        return next(line.split(": ", 1)[1].strip() for line in head.splitlines()
                    if line.lower().startswith("location: "))

    def follow(self, location: str, timeout: float = 180.0) -> dict:
        headers = {"Authorization": f"Token {DEMO_TOKEN}"}
        deadline = time.monotonic() + timeout
        data = None
        while time.monotonic() < deadline:
            data = self.session.get(f"{self.base}{location}", headers=headers,
                                    timeout=10).json()["data"]
            if data["state"] in ("succeeded", "failed", "cancelled"):
                return data
            time.sleep(0.5)
        raise AssertionError(f"the action never ended: {data}")

    def status(self) -> str:
        item = self.session.get(f"{self.base}{URL}", timeout=10,
                                headers={"Authorization": f"Token {DEMO_TOKEN}"}).json()
        return item["data"][0]["status"]["message"]


def run(cmd: list[str], cwd: Path, env: dict, timeout: float = 600):
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{cmd}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def run_playbooks_as_the_readme_says(cwd: Path, env: dict, playbooks: str) -> None:
    run(INVENTORY, cwd, env)
    text = (cwd / "hosts.ini").read_text()
    assert "ansible_connection=local" in text  # what the demo's hosts need
    for name in ("lambda-start.yml", "lambda-stop.yml"):
        out = run(["ansible-playbook", "-i", "hosts.ini", "-e", "@.lambda/demo/extravars.yml",
                   f"{playbooks}/{name}"], cwd, env).stdout
        assert "unreachable=0" in out and "failed=0" in out, out[-3000:]


def test_after_the_demo_the_readmes_operator_commands_run_verbatim(tmp_path):
    checkout = copy_checkout(tmp_path / "clone")
    env = clean_env(VENV_BIN, tmp_path)
    with Demo(checkout, env):
        run_playbooks_as_the_readme_says(checkout, env, "playbooks")


def test_a_wheel_installed_elsewhere_serves_the_demo_and_the_operators_path(tmp_path):
    # Not "src": setuptools failed to build this project from a directory of that name.
    source = copy_checkout(tmp_path / "lambda-service")
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source)],
        tmp_path, clean_env(VENV_BIN, tmp_path))
    [wheel] = dist.glob("lambda_service-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, clean_env(VENV_BIN, tmp_path))
    env = clean_env(venv / "bin", tmp_path)
    run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], tmp_path, env,
        timeout=900)
    shutil.rmtree(source)  # the checkout it was built from is gone
    work = tmp_path / "work"
    work.mkdir()

    out = run(["lambda-service", "paths"], work, env).stdout
    paths = dict(line.split(": ", 1) for line in out.splitlines())
    for name in ("playbooks", "roles", "inventory_template", "ansible_cfg"):
        path = Path(paths[name])
        assert path.exists() and path.is_relative_to(venv), (name, path)
        assert not path.is_relative_to(ROOT)
    assert (Path(paths["playbooks"]) / "lambda-start.yml").is_file()
    assert (Path(paths["roles"]) / "hadoop" / "tasks").is_dir()
    assert list(work.iterdir()) == []  # paths leaves nothing behind

    with Demo(work, env) as demo:
        assert demo.status() == "STOPPED"
        # The web page's files are in the wheel too, and the demo prints the page's address.
        assert f"Web page:         {demo.base}/ui/" in demo.log_path.read_text()
        for name in ("", "app.js", "action.js", "app.css", "favicon.svg"):
            resp = demo.session.get(f"{demo.base}/ui/{name}", timeout=10)
            assert resp.status_code == 200 and resp.content, name
        started = demo.follow(demo.curl("start"))
        assert started["state"] == "succeeded", started["error"]
        assert demo.status() == "STARTED"
        stopped = demo.follow(demo.curl("stop"))
        assert stopped["state"] == "succeeded", stopped["error"]
        assert demo.status() == "STOPPED"
        # The operator's path from the installed files: ansible.cfg found through
        # ANSIBLE_CONFIG, as the README says.
        with contextlib.suppress(FileNotFoundError):
            (work / "hosts.ini").unlink()
        run_playbooks_as_the_readme_says(
            work, {**env, "ANSIBLE_CONFIG": paths["ansible_cfg"]}, paths["playbooks"])
