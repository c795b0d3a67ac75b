"""SSH host keys against the real thing: ssh-keyscan and ssh (plain and under Mitogen)
against a throwaway sshd, the repository on SQLite, the operator's commands."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect

from api.adapters.ansible import KNOWN_HOSTS_FILE, AnsibleRunner, resolve_strategy
from api.adapters.db import UnitOfWorkFactory
from api.adapters.db.engine import alembic_config, create_db_engine, migrate
from api.adapters.host_keys import HostKeyPinning, fingerprint, keyscan
from api.cli import main
from api.domain.model import Host, HostRole, Instance, InstanceStatus
from api.domain.ports import HostKey, PlaybookRun
from api.settings import FILES_ROOT
from tests.integration import test_ansible_runner as runner_tests
from tests.integration.test_ansible_runner import FIXTURES, ssh_inventory

sshd = runner_tests.sshd  # a throwaway sshd on a free loopback port (needs root)
INSTANCE_ID = "9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c"


def host_key_of(sshd_dir: Path) -> HostKey:
    kind, blob = (sshd_dir / "host_key.pub").read_text().split()[:2]
    return HostKey(kind, blob)


def other_key(tmp_path: Path) -> HostKey:
    path = tmp_path / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    kind, blob = path.with_suffix(".pub").read_text().split()[:2]
    return HostKey(kind, blob)


def test_keyscan_reads_the_host_key_sshd_serves(sshd):
    port, key = sshd
    expected = host_key_of(key.parent)

    assert keyscan(["127.0.0.1"], port, 5) == {"127.0.0.1": [expected]}
    shown = subprocess.run(["ssh-keygen", "-lf", str(key.parent / "host_key.pub")],
                           capture_output=True, text=True, check=True).stdout.split()[1]
    assert fingerprint(expected) == shown


def pinned_runner(tmp_path: Path, strategy: str) -> AnsibleRunner:
    # A state directory whose path needs quoting, as an operator's may.
    return AnsibleRunner(playbook_dir=str(FIXTURES), roles_dir=str(FIXTURES / "roles"),
                         artifacts_dir=str(tmp_path / "state dir" / "runs"), forks=5,
                         ssh_timeout=5, strategy=strategy, host_key_checking="pinned")


@pytest.mark.parametrize("strategy", ["mitogen_linear", "linear"])
def test_a_checked_run_trusts_exactly_the_pinned_key(sshd, tmp_path, strategy):
    port, key = sshd
    runner = pinned_runner(tmp_path, strategy)
    out = tmp_path / "out"
    out.mkdir()
    good = f"[127.0.0.1]:{port} {host_key_of(key.parent).key_type} {host_key_of(key.parent).key}\n"
    impostor = other_key(tmp_path)
    wrong = f"[127.0.0.1]:{port} {impostor.key_type} {impostor.key}\n"

    def run(ident: str, known_hosts: str | None):
        return runner.run(PlaybookRun(playbook="marker.yml", inventory=ssh_inventory(port, key),
                                      ident=ident, extravars={"out_dir": str(out)},
                                      known_hosts=known_hosts))

    result = run("pinned", good)
    assert result.status == "successful", result.failure
    run_dir = tmp_path / "state dir" / "runs" / "pinned-1"
    assert (run_dir / KNOWN_HOSTS_FILE).read_text() == good

    for ident, known_hosts in (("impostor", wrong), ("unpinned", None)):
        result = run(ident, known_hosts)
        assert result.status == "failed", ident
        assert result.failure.status == "unreachable", (ident, result.failure)
        assert "host key" in result.failure.message.lower(), (ident, result.failure.message)


def test_checking_off_trusts_any_key(sshd, tmp_path):
    port, key = sshd
    runner = AnsibleRunner(playbook_dir=str(FIXTURES), roles_dir=str(FIXTURES / "roles"),
                           artifacts_dir=str(tmp_path / "runs"), ssh_timeout=5,
                           strategy=resolve_strategy("auto", "ssh"), host_key_checking="off")
    out = tmp_path / "out"
    out.mkdir()
    result = runner.run(PlaybookRun(playbook="marker.yml", inventory=ssh_inventory(port, key),
                                    ident="off", extravars={"out_dir": str(out)},
                                    known_hosts="127.0.0.1 ssh-ed25519 AAAAnotit\n"))
    assert result.status == "successful", result.failure
    assert not (tmp_path / "runs" / "off-1" / KNOWN_HOSTS_FILE).exists()


# --- the repository and the operator's commands ----------------------------------------------


@pytest.fixture
def database(tmp_path):
    url = f"sqlite:///{tmp_path / 'lambda.db'}"
    engine = create_db_engine(url)
    migrate(engine)
    yield url, UnitOfWorkFactory(engine)
    engine.dispose()


def test_the_migration_adds_and_drops_the_table(database):
    url, uow_factory = database
    engine = uow_factory.engine
    assert {c["name"] for c in inspect(engine).get_columns("host_keys")} == {
        "server_id", "key_type", "public_key", "host_name", "pinned_at"}
    config = alembic_config(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0004")
    assert not inspect(engine).has_table("host_keys")
    migrate(engine)
    assert inspect(engine).has_table("host_keys")


def test_the_repository_pins_lists_and_forgets_on_each_database(uow_factory):
    """``uow_factory``: SQLite, and PostgreSQL where one is reachable."""
    ed, rsa = HostKey("ssh-ed25519", "AAAAed"), HostKey("ssh-rsa", "AAAArsa")
    now = datetime(2026, 1, 2, 3, 4, 5)
    with uow_factory() as uow:
        uow.host_keys.pin("srv-2", "s", [rsa, ed], now)
        uow.host_keys.pin("srv-1", "m", [ed], now)
        uow.host_keys.pin("srv-3", "t", [ed], now)
        uow.commit()
        uow.host_keys.pin("srv-4", "u", [ed], now)  # rolled back: no commit after it
    with uow_factory(readonly=True) as uow:
        assert [(p.server_id, p.host_name, p.key, p.pinned_at)
                for p in uow.host_keys.pinned(["srv-1", "srv-2", "srv-4"])] == [
            ("srv-1", "m", ed, now), ("srv-2", "s", ed, now), ("srv-2", "s", rsa, now)]
        assert uow.host_keys.pinned([]) == []
    with uow_factory() as uow:
        assert uow.host_keys.forget(["srv-2", "srv-9"]) == 2
        uow.commit()
    with uow_factory(readonly=True) as uow:
        assert [p.server_id for p in uow.host_keys.pinned(["srv-1", "srv-2", "srv-3"])] == [
            "srv-1", "srv-3"]


def add_local_instance(uow_factory, name="lambda-1-master") -> None:
    with uow_factory() as uow:
        uow.instances.add(Instance(
            id=INSTANCE_ID, owner="alice", name="one", status=InstanceStatus.STARTED,
            services=(), hosts=(Host("srv-1", name, HostRole.MASTER, "127.0.0.1"),)))
        uow.commit()


@pytest.fixture
def operator_env(monkeypatch, database, sshd):
    url, _ = database
    port, key = sshd
    for name in list(os.environ):
        if name.startswith("LAMBDA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LAMBDA_DATABASE_URL", url)
    monkeypatch.setenv("LAMBDA_SSH_PORT", str(port))
    monkeypatch.setenv("LAMBDA_SSH_KEY_FILE", str(key))
    monkeypatch.setenv("KAMAKIRC", "/nonexistent")


def test_operator_commands_list_export_and_forget_the_pins(operator_env, database, sshd,
                                                           tmp_path, capsys):
    _, uow_factory = database
    port, key = sshd
    add_local_instance(uow_factory)
    pinned = HostKeyPinning(uow_factory, port=port)(INSTANCE_ID, [
        Host("srv-1", "lambda-1-master", HostRole.MASTER, "127.0.0.1")])
    served = host_key_of(key.parent)

    assert main(["hostkeys", "list", INSTANCE_ID]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith(f"lambda-1-master\tserver srv-1\t{served.key_type}\t"
                             f"{fingerprint(served)}\tpinned ")

    assert main(["hostkeys", "known-hosts", INSTANCE_ID]) == 0
    assert capsys.readouterr().out == pinned.known_hosts

    # A plain ansible-playbook run, with the repository's ansible.cfg (host_key_checking =
    # False there): the inventory alone makes it check against exactly the pinned keys.
    inventory, known_hosts = tmp_path / "hosts.ini", tmp_path / "known_hosts"
    assert main(["inventory", INSTANCE_ID, "-o", str(inventory),
                 "--known-hosts", str(known_hosts)]) == 0
    assert known_hosts.read_text() == pinned.known_hosts
    out = tmp_path / "out"
    out.mkdir()

    def operator_run():
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env["ANSIBLE_PYTHON_INTERPRETER"] = sys.executable  # the fixture host is this machine
        env["ANSIBLE_HOME"] = str(tmp_path / "ansible-home")
        return subprocess.run(
            ["ansible-playbook", "-i", str(inventory), "-e", f"out_dir={out}",
             "-e", f"ansible_python_interpreter={sys.executable}", str(FIXTURES / "marker.yml")],
            cwd=FILES_ROOT, env=env, capture_output=True, text=True, timeout=120)

    done = operator_run()
    assert done.returncode == 0, done.stdout[-2000:]
    impostor = other_key(tmp_path)
    known_hosts.write_text(f"[127.0.0.1]:{port} {impostor.key_type} {impostor.key}\n")
    refused = operator_run()
    assert refused.returncode != 0 and "UNREACHABLE" in refused.stdout, refused.stdout[-2000:]

    assert main(["hostkeys", "forget", INSTANCE_ID, "lambda-1-master"]) == 0
    assert "forgot 1 pinned host keys of 1 hosts" in capsys.readouterr().out
    assert main(["hostkeys", "list", INSTANCE_ID]) == 0
    assert capsys.readouterr().out == ""
    assert main(["inventory", INSTANCE_ID, "--known-hosts", str(known_hosts)]) == 2
    assert "no SSH host key is pinned" in capsys.readouterr().err
    assert main(["hostkeys", "forget", INSTANCE_ID, "nosuchhost"]) == 2
    assert "has no host 'nosuchhost' (its hosts: lambda-1-master)" in capsys.readouterr().err
