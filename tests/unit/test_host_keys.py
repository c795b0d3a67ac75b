"""SSH host keys, trust on first use: pinning, checking, the orchestrator's use of it, and
the setting that turns it off (fakes of the scanner and the database; the real ssh-keyscan,
sshd and ssh are in tests/integration/test_host_keys.py and tests/lab)."""

from __future__ import annotations

import base64

import pytest
from cryptography.fernet import Fernet

from api.adapters.crypto import TokenCipher
from api.adapters.host_keys import (
    HostKeyPinning,
    fingerprint,
    matches,
    parse_keyscan,
    render_known_hosts,
)
from api.adapters.ssh import host_key_args
from api.bootstrap import build_orchestrator
from api.domain.errors import HostKeyError
from api.domain.model import ActionState, Host, HostRole, InstanceStatus, StepName, StepState
from api.domain.ports import HostKey, HostKeyCheck
from api.settings import Settings, SettingsError, load_settings
from tests.fakes import InMemoryUnitOfWorkFactory
from tests.unit.test_orchestration import FakeCompute, FakeRunner, accept, load, make
from tests.unit.test_services import INSTANCE_ID, add_instance

MASTER = Host("srv-1", "lambda-1-master", HostRole.MASTER, "10.0.0.2")
SLAVE = Host("srv-2", "lambda-1-slave-1", HostRole.SLAVE, "10.0.0.3")


def key(kind: str, seed: str) -> HostKey:
    return HostKey(kind, base64.b64encode(seed.encode() * 4).decode())


ED_A, ED_B = key("ssh-ed25519", "a"), key("ssh-ed25519", "b")
RSA_A = key("ssh-rsa", "ra")


class FakeScanner:
    """Offers whatever ``keys`` says per IP at the time of the scan."""

    def __init__(self, keys: dict[str, list[HostKey]]):
        self.keys = keys
        self.scans: list[list[str]] = []

    def __call__(self, ips, port, timeout):
        self.scans.append(list(ips))
        return {ip: list(self.keys[ip]) for ip in ips if self.keys.get(ip)}


@pytest.fixture
def uow_factory():
    return InMemoryUnitOfWorkFactory()


def pinning(uow_factory, scanner, port=22) -> HostKeyPinning:
    return HostKeyPinning(uow_factory, port=port, scan=scanner)


def pinned(uow_factory) -> dict[str, list[HostKey]]:
    with uow_factory(readonly=True) as uow:
        pins = uow.host_keys.pinned(["srv-1", "srv-2"])
    found: dict[str, list[HostKey]] = {}
    for pin in pins:
        found.setdefault(pin.server_id, []).append(pin.key)
    return found


def test_first_sight_pins_every_key_then_a_later_check_matches(uow_factory):
    scanner = FakeScanner({MASTER.ip: [ED_A, RSA_A], SLAVE.ip: [ED_B]})
    check = pinning(uow_factory, scanner)

    first = check(INSTANCE_ID, [MASTER, SLAVE])

    assert pinned(uow_factory) == {"srv-1": [ED_A, RSA_A], "srv-2": [ED_B]}
    assert "pinned on first sight: lambda-1-master, lambda-1-slave-1" in first.summary
    assert first.known_hosts == (
        "# lambda-1-master (server srv-1)\n"
        f"10.0.0.2 ssh-ed25519 {ED_A.key}\n10.0.0.2 ssh-rsa {RSA_A.key}\n"
        "# lambda-1-slave-1 (server srv-2)\n"
        f"10.0.0.3 ssh-ed25519 {ED_B.key}\n")

    second = check(INSTANCE_ID, [MASTER, SLAVE])
    assert second.summary == "SSH host keys matched their pins: lambda-1-master, lambda-1-slave-1"
    assert second.known_hosts == first.known_hosts


def test_a_changed_key_fails_naming_host_server_and_the_way_to_accept_it(uow_factory):
    scanner = FakeScanner({MASTER.ip: [ED_A], SLAVE.ip: [ED_B]})
    check = pinning(uow_factory, scanner)
    check(INSTANCE_ID, [SLAVE])
    scanner.keys[SLAVE.ip] = [ED_A]  # slave-1 was reinstalled, or someone sits in between

    with pytest.raises(HostKeyError) as failure:
        check(INSTANCE_ID, [MASTER, SLAVE])

    message = str(failure.value)
    assert message.startswith("the SSH host key of host lambda-1-slave-1 (server srv-2, "
                              "10.0.0.3) changed")
    assert f"it offers ssh-ed25519 {fingerprint(ED_A)}" in message
    assert f"pinned is ssh-ed25519 {fingerprint(ED_B)}" in message
    assert message.endswith(f"lambda-service hostkeys forget {INSTANCE_ID} lambda-1-slave-1")
    assert "lambda-1-master" not in message
    # The master, seen for the first time, stays pinned; the slave keeps its old pin.
    assert pinned(uow_factory) == {"srv-1": [ED_A], "srv-2": [ED_B]}


def test_forgetting_a_pin_lets_the_next_check_pin_the_new_key(uow_factory):
    scanner = FakeScanner({SLAVE.ip: [ED_B]})
    check = pinning(uow_factory, scanner)
    check(INSTANCE_ID, [SLAVE])
    scanner.keys[SLAVE.ip] = [ED_A]
    with uow_factory() as uow:
        assert uow.host_keys.forget(["srv-2"]) == 1
        uow.commit()

    assert "pinned on first sight: lambda-1-slave-1" in check(INSTANCE_ID, [SLAVE]).summary
    assert pinned(uow_factory) == {"srv-2": [ED_A]}


def test_a_host_offering_no_key_is_scanned_again_then_fails(uow_factory, monkeypatch):
    monkeypatch.setattr("api.adapters.host_keys.SCAN_RETRY_SECONDS", 0.0)
    scanner = FakeScanner({MASTER.ip: [ED_A]})
    with pytest.raises(HostKeyError, match=r"host lambda-1-slave-1 \(server srv-2, "
                       r"10.0.0.3\) offered no SSH host key"):
        pinning(uow_factory, scanner)(INSTANCE_ID, [MASTER, SLAVE])
    assert scanner.scans == [["10.0.0.2", "10.0.0.3"], ["10.0.0.3"], ["10.0.0.3"]]


def test_a_key_of_a_type_never_pinned_is_not_trusted():
    assert matches([ED_A], [ED_A, RSA_A])  # ssh prefers the pinned type
    assert not matches([ED_A], [RSA_A])  # nothing pinned is offered
    assert not matches([ED_A, RSA_A], [ED_A, key("ssh-rsa", "other")])  # one type changed
    assert not matches([ED_A], [])


def test_keyscan_output_is_read_by_host_on_any_port():
    out = (f"# 10.0.0.2:22 SSH-2.0-OpenSSH_9.2\n10.0.0.2 ssh-ed25519 {ED_A.key}\n"
           f"10.0.0.2 ssh-rsa {RSA_A.key}\n10.0.0.3 ssh-ed25519 {ED_B.key}\n")
    assert parse_keyscan(out, 22) == {"10.0.0.2": [ED_A, RSA_A], "10.0.0.3": [ED_B]}
    assert parse_keyscan(f"[10.0.0.2]:2222 ssh-ed25519 {ED_A.key}\n", 2222) == {
        "10.0.0.2": [ED_A]}


def test_known_hosts_names_a_host_by_its_address_and_port():
    text = render_known_hosts([MASTER, SLAVE], {"srv-1": [ED_A]}, 2222)
    assert text == f"# lambda-1-master (server srv-1)\n[10.0.0.2]:2222 ssh-ed25519 {ED_A.key}\n"


def test_ssh_options_check_against_exactly_the_file_or_not_at_all(tmp_path):
    assert host_key_args(None) == "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    odd = tmp_path / "a dir" / "100%" / "known_hosts"
    args = host_key_args(odd)
    assert args.startswith("-o StrictHostKeyChecking=yes ")
    assert args.endswith(" -o GlobalKnownHostsFile=/dev/null")
    import shlex  # as Ansible splits ssh_args

    assert shlex.split(args)[3] == f'UserKnownHostsFile="{str(odd).replace("%", "%%")}"'


# --- the orchestrator ---------------------------------------------------------------------


class FakeHostKeys:
    def __init__(self, error: str | None = None):
        self.error = error
        self.calls: list[tuple[str, list[str]]] = []

    def __call__(self, instance_id, hosts):
        self.calls.append((instance_id, [h.server_id for h in hosts]))
        if self.error:
            raise HostKeyError(self.error)
        return HostKeyCheck(known_hosts="10.0.0.2 ssh-ed25519 AAAA\n",
                            summary="SSH host keys matched their pins: m, s")


def with_host_keys(uow_factory, compute, runner, host_keys):
    orchestrator = make(uow_factory, compute, runner, ssh=lambda hosts, timeout, cancel: None)
    orchestrator.deps.check_host_keys = host_keys
    return orchestrator


def test_start_checks_the_keys_at_wait_ssh_and_the_playbook_trusts_exactly_those(uow_factory):
    add_instance(uow_factory)
    runner, host_keys = FakeRunner(), FakeHostKeys()
    action_id = accept(uow_factory)

    state = with_host_keys(uow_factory, FakeCompute(), runner, host_keys).run(action_id)

    assert state is ActionState.SUCCEEDED
    assert host_keys.calls == [(INSTANCE_ID, ["1", "2"])]
    action, _ = load(uow_factory, action_id)
    wait_ssh = action.steps[1]
    assert (wait_ssh.name, wait_ssh.state) == (StepName.WAIT_SSH, StepState.SUCCEEDED)
    assert wait_ssh.message == "SSH host keys matched their pins: m, s"
    assert runner.runs[0].known_hosts == "10.0.0.2 ssh-ed25519 AAAA\n"


def test_a_changed_key_fails_the_start_at_wait_ssh_before_any_playbook(uow_factory):
    add_instance(uow_factory)
    runner = FakeRunner()
    action_id = accept(uow_factory)
    host_keys = FakeHostKeys("the SSH host key of host s (server 2, 127.0.0.3) changed")

    state = with_host_keys(uow_factory, FakeCompute(), runner, host_keys).run(action_id)

    assert state is ActionState.FAILED
    action, instance = load(uow_factory, action_id)
    assert instance.status is InstanceStatus.FAILED
    assert instance.failure_message == (
        "start failed at step wait_ssh: the SSH host key of host s (server 2, 127.0.0.3) "
        "changed")
    assert [(s.name, s.state) for s in action.steps][-1] == (StepName.WAIT_SSH,
                                                             StepState.FAILED)
    assert runner.runs == []


def test_stop_checks_the_keys_of_the_hosts_still_running(uow_factory):
    add_instance(uow_factory, status=InstanceStatus.STARTED)
    compute, runner, host_keys = FakeCompute("ACTIVE"), FakeRunner(), FakeHostKeys()
    compute.status["1"] = "STOPPED"
    action_id = accept(uow_factory, "stop")

    state = with_host_keys(uow_factory, compute, runner, host_keys).run(action_id)

    assert state is ActionState.SUCCEEDED
    assert host_keys.calls == [(INSTANCE_ID, ["2"])]
    assert runner.runs[0].known_hosts == "10.0.0.2 ssh-ed25519 AAAA\n"


# --- the setting ----------------------------------------------------------------------------


def test_checking_is_on_unless_explicitly_turned_off():
    assert load_settings({}).ssh_host_key_checking == "pinned"
    assert load_settings({"LAMBDA_SSH_HOST_KEY_CHECKING": "off"}).ssh_host_key_checking == "off"
    with pytest.raises(SettingsError, match="LAMBDA_SSH_HOST_KEY_CHECKING must be one of "
                       "pinned, off, not 'no'"):
        load_settings({"LAMBDA_SSH_HOST_KEY_CHECKING": "no"})


@pytest.mark.parametrize(("changes", "checked"), [
    ({}, True),
    ({"ssh_host_key_checking": "off"}, False),
    ({"ansible_connection": "local"}, False),  # no SSH at all
])
def test_the_orchestrator_checks_keys_over_ssh_when_the_setting_says_so(tmp_path, changes,
                                                                        checked):
    settings = Settings(state_dir=str(tmp_path), **changes)
    orchestrator = build_orchestrator(settings, InMemoryUnitOfWorkFactory(),
                                      TokenCipher(Fernet.generate_key()), runner=FakeRunner(),
                                      compute_factory=object)
    assert (orchestrator.deps.check_host_keys is not None) is checked
