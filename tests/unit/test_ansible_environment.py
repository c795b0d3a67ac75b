"""What a playbook run gets of the service's environment, and where its ssh sockets live."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from api.adapters.ansible import (
    CONTROL_ROOT_MAX,
    CONTROL_ROOT_PREFIX,
    PASSED_ENV,
    _is_private_dir,
    control_root,
    playbook_environment,
)
from api.worker.reaper import WORKER_MARK_ENV

KEY = "x0RkaNHdNUONRAMtHAeX9nYhzQTw7lEgtgVdEOTXn4s="
SERVICE_ENV = {
    "PATH": "/usr/bin", "HOME": "/home/lambda", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
    "SSH_AUTH_SOCK": "/run/agent", "ANSIBLE_VAULT_PASSWORD_FILE": "/etc/lambda/vault",
    WORKER_MARK_ENV: "123:456",
    "LAMBDA_SECRET_KEY": KEY,
    "LAMBDA_DATABASE_URL": "postgresql+psycopg://lambda:s3cret@db/lambda",
    "LAMBDA_BROKER_URL": "amqp://lambda:s3cret@mq//",
    "LAMBDA_CONFIG": "/etc/lambda/lambda.yml",
    "AWS_SECRET_ACCESS_KEY": "abc", "JAVA_OPTS": "-Xmx1g",
    "HTTPS_PROXY": "http://proxy:pr0xy@proxy.example.org:3128",
    "ANSIBLE_GALAXY_SERVER": "https://galaxy:g4laxy@galaxy.example.org/",
    "ANSIBLE_COPY_OF_THE_KEY": f"key={KEY}",
}
OURS = {"PATH": "/venv/bin:/usr/bin", "ANSIBLE_STRATEGY": "linear", "LAMBDA_RUN_MARKER": "m"}
# What ansible-runner prepares: the whole service environment, ours, then its own.
PREPARED = {**SERVICE_ENV, **OURS, "ANSIBLE_STDOUT_CALLBACK": "awx_display",
            "AWX_ISOLATED_DATA_DIR": "/runs/x/artifacts/x"}


def test_a_run_gets_the_allow_list_ours_and_the_runners_own_and_no_credential():
    env = playbook_environment(PREPARED, OURS, SERVICE_ENV, withheld_values=[KEY])
    assert env == {
        "PATH": "/venv/bin:/usr/bin", "HOME": "/home/lambda", "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8", "SSH_AUTH_SOCK": "/run/agent",
        "ANSIBLE_VAULT_PASSWORD_FILE": "/etc/lambda/vault", WORKER_MARK_ENV: "123:456",
        "ANSIBLE_STRATEGY": "linear", "LAMBDA_RUN_MARKER": "m",
        "ANSIBLE_STDOUT_CALLBACK": "awx_display", "AWX_ISOLATED_DATA_DIR": "/runs/x/artifacts/x",
    }


def test_further_names_are_passed_on_request_but_a_password_url_never():
    service = {**SERVICE_ENV, "MY_URL": "https://u:p@example.org/", "MY_TAG": "t"}
    env = playbook_environment(service, {}, service, names=["JAVA_OPTS", "MY_URL", "MY_TAG"])
    assert (env["JAVA_OPTS"], env["MY_TAG"]) == ("-Xmx1g", "t")
    assert "MY_URL" not in env


def test_the_worker_mark_is_passed_so_a_dead_workers_playbooks_can_be_found():
    assert WORKER_MARK_ENV in PASSED_ENV


def test_the_control_root_is_private_short_and_not_a_fixed_name():
    root = control_root()
    info = os.lstat(root)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert root.name.startswith(CONTROL_ROOT_PREFIX) and root.name != CONTROL_ROOT_PREFIX
    assert len(str(root)) <= CONTROL_ROOT_MAX
    assert control_root() == root  # one per process
    other = subprocess.run(
        [sys.executable, "-c", "from api.adapters.ansible import control_root; "
         "print(control_root())"], capture_output=True, text=True, check=True).stdout.strip()
    assert other != str(root) and not Path(other).exists()  # its own, removed at its exit


def test_a_root_that_stopped_being_private_is_replaced(tmp_path):
    root = control_root()
    root.chmod(0o777)
    try:
        assert control_root() != root
    finally:
        root.chmod(0o700)
        root.rmdir()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory of another user needs root")
def test_directories_another_user_made_first_are_not_used():
    base = Path(tempfile.mkdtemp(prefix="l", dir="/tmp"))  # short: sockets live below
    try:
        # The old fixed name, and what an attacker would guess, made by "nobody" and open.
        for name in ("lambda-cp", CONTROL_ROOT_PREFIX):
            (base / name).mkdir(mode=0o777)
            os.chown(base / name, 65534, 65534)
            assert not _is_private_dir(base / name)
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        env["TMPDIR"] = str(base)
        made = Path(subprocess.run(
            [sys.executable, "-c", "from api.adapters.ansible import control_root; "
             "r = control_root(); import os; print(r); os._exit(0)"],  # keep it to look at
            env=env, capture_output=True, text=True, check=True).stdout.strip())
        assert made.parent == base and made.name.startswith(CONTROL_ROOT_PREFIX)
        assert made.name not in ("lambda-cp", CONTROL_ROOT_PREFIX)
        assert _is_private_dir(made) and os.lstat(made).st_uid == os.geteuid()
        link = base / "link"
        link.symlink_to(made)
        assert not _is_private_dir(link)
    finally:
        subprocess.run(["rm", "-rf", "--", str(base)], check=True)
