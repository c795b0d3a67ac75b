"""The ansible-runner adapter against real ansible-playbook runs on local hosts."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from api.adapters import proctree
from api.adapters.ansible import (
    FAST_KEX,
    RUN_DIR_FLAG,
    RUN_MARKER_ENV,
    AnsibleRunner,
    client_kex_algorithms,
    control_root,
    resolve_kex,
    resolve_strategy,
)
from api.domain.ports import PlaybookRun
from api.settings import Settings
from tests.support import wait_until

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "playbooks"

LOCAL_VARS = f"ansible_connection=local ansible_python_interpreter={sys.executable}"


def local_inventory(*hosts: str, extra: str = "") -> str:
    lines = ["[lambda]"] + [f"{h} ansible_host=127.0.0.1 {LOCAL_VARS}" for h in hosts]
    return "\n".join(lines) + "\n" + extra


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def gone(pid: int) -> bool:
    """True once the process has exited (a zombie waiting for its reaper counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] in (b"Z", b"X")


def wait_for_files(paths: list[Path], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.is_file() and p.read_text().strip() for p in paths):
            return True
        time.sleep(0.1)
    return False


def fixture_runner(tmp_path, strategy: str = "linear", **options) -> AnsibleRunner:
    # The sshd fixture's host key is new every test: host keys have their own tests
    # (test_host_keys.py).
    options.setdefault("host_key_checking", "off")
    return AnsibleRunner(
        playbook_dir=str(FIXTURES),
        roles_dir=str(FIXTURES / "roles"),
        artifacts_dir=str(tmp_path / "runs"),
        forks=5,
        ssh_timeout=5,
        strategy=strategy,
        **options,
    )


@pytest.fixture
def runner(tmp_path) -> AnsibleRunner:
    return fixture_runner(tmp_path)


@pytest.fixture
def mitogen_runner(tmp_path) -> AnsibleRunner:
    """The runner as the product builds it for SSH hosts (``LAMBDA_ANSIBLE_STRATEGY=auto``)."""
    return fixture_runner(tmp_path, resolve_strategy("auto", "ssh"))


def by_host_task(tasks):
    return {(t.host, t.task): t for t in tasks}


def test_successful_run_reports_each_task_per_host(runner):
    seen = []
    run = PlaybookRun(
        playbook="ok.yml",
        inventory=local_inventory("h1", "h2"),
        ident="act-ok",
        extravars={"greeting": "kalimera"},
    )
    result = runner.run(run, on_task=seen.append)

    assert result.status == "successful", result.failure
    assert result.ok and result.rc == 0 and result.failure is None
    assert seen == result.tasks
    tasks = by_host_task(result.tasks)
    greet = tasks[("h1", "Ensure the greeting is shown")]
    assert greet.status == "ok"
    assert greet.role == "greeter"
    assert greet.play == "Exercise task outcomes"
    assert greet.message == "kalimera from h1"  # the extravar reached the play
    assert greet.duration is not None and greet.duration >= 0
    assert tasks[("h1", "Change something")].status == "changed"
    assert tasks[("h2", "Change something")].message == "changed"
    assert tasks[("h1", "Run only on h2")].status == "skipped"
    assert tasks[("h2", "Run only on h2")].status == "changed"
    ignored = tasks[("h2", "Fail but carry on")]
    assert ignored.status == "failed"
    assert ignored.message.startswith("ignored:") and "tolerated" in ignored.message


def test_a_run_gets_no_credential_of_the_services_environment(tmp_path, monkeypatch):
    key = "x0RkaNHdNUONRAMtHAeX9nYhzQTw7lEgtgVdEOTXn4s="
    monkeypatch.setenv("LAMBDA_SECRET_KEY", key)
    monkeypatch.setenv("LAMBDA_DATABASE_URL", "postgresql+psycopg://lambda:pw-db@db/lambda")
    monkeypatch.setenv("ANSIBLE_GALAXY_SERVER", "https://galaxy:pw-galaxy@galaxy.invalid/")
    monkeypatch.setenv("LAMBDA_SOMETHING_ELSE", "not-passed")
    monkeypatch.setenv("ANSIBLE_LOCALHOST_WARNING", "False")  # an Ansible setting: passed
    out = tmp_path / "out"
    out.mkdir()
    runner = fixture_runner(tmp_path, withheld_values=[key])
    commands = []
    run = PlaybookRun(playbook="environ.yml", inventory=local_inventory("h1"), ident="env",
                      extravars={"out_dir": str(out)})
    result = runner.run(run, on_task=lambda _: commands.extend(
        p.read_text() for p in (tmp_path / "runs").glob("*/artifacts/*/command")))

    assert result.status == "successful", result.failure
    module_env = (out / "h1.env").read_text()
    assert "LAMBDA_RUN_MARKER=" in module_env and "ANSIBLE_LOCALHOST_WARNING=False" in module_env
    for text in [module_env, *commands]:
        for leak in (key, "pw-db", "pw-galaxy", "LAMBDA_DATABASE_URL", "not-passed"):
            assert leak not in text
    assert commands, "the runner's command artifact was not seen during the run"
    assert '"@' in commands[0] and "env/extravars" in commands[0]  # extra vars by file
    assert str(out) not in commands[0].split('"env"')[0]  # and not on the command line


def test_failed_task_names_host_task_and_message(runner):
    run = PlaybookRun(playbook="fail.yml", inventory=local_inventory("h1", "h2"), ident="act-f")
    result = runner.run(run)

    assert result.status == "failed"
    assert result.rc == 2
    assert result.failure.host == "h2"
    assert result.failure.task == "Check the host is healthy"
    assert result.failure.status == "failed"
    assert "h2 is broken on purpose" in result.failure.message
    tasks = by_host_task(result.tasks)
    assert tasks[("h1", "Carry on where healthy")].status == "ok"
    assert ("h2", "Carry on where healthy") not in tasks


def test_unreachable_ssh_host(runner):
    inventory = local_inventory("h1") + (
        f"dead ansible_host=127.0.0.1 ansible_port={closed_port()} ansible_connection=ssh "
        "ansible_user=root\n"
    )
    run = PlaybookRun(playbook="fail.yml", inventory=inventory, ident="act-u")
    result = runner.run(run)

    assert result.status == "failed"
    assert result.failure.host == "dead"
    assert result.failure.status == "unreachable"
    assert "Connection refused" in result.failure.message
    assert by_host_task(result.tasks)[("h1", "Carry on where healthy")].status == "ok"


def _hang_and_stop(tmp_path, *, timeout=None, cancel_after_start=False):
    # A killed module cannot remove its AnsiballZ payload directory, which a local
    # connection makes in the controller's temp dir: keep those in the test's own.
    module_tmp = tmp_path / "module-tmp"
    module_tmp.mkdir()
    runner = fixture_runner(tmp_path, extra_env={"TMPDIR": str(module_tmp)})
    out = tmp_path / "out"
    out.mkdir()
    run = PlaybookRun(
        playbook="sleep.yml",
        inventory=local_inventory("h1", "h2"),
        ident="act-hang",
        extravars={"out_dir": str(out)},
        timeout=timeout,
    )
    files = [out / f"{h}.{kind}" for h in ("h1", "h2") for kind in ("marker", "fg", "bg")]
    cancel = threading.Event()
    if cancel_after_start:
        # Cancel from another thread once every sleep is running.
        threading.Thread(
            target=lambda: wait_for_files(files, 60) and cancel.set(), daemon=True
        ).start()
    result = runner.run(run, cancel=cancel)

    assert all(p.is_file() for p in files), "the sleeps never started: nothing was tested"
    markers = {(out / f"{h}.marker").read_text().strip() for h in ("h1", "h2")}
    assert len(markers) == 1 and all(markers)
    marker = markers.pop()
    assert proctree.find_processes_with_env(RUN_MARKER_ENV, marker) == []
    for path in files:
        if path.suffix in (".fg", ".bg"):
            pid = int(path.read_text())
            assert gone(pid), f"{path.name} pid {pid} is still running"
    return result


@pytest.mark.timeout(90)
def test_timeout_kills_the_whole_process_tree(tmp_path):
    result = _hang_and_stop(tmp_path, timeout=10)

    assert result.status == "timeout"
    assert result.failure.task == "Sleep for a long time"
    assert result.failure.host in ("h1", "h2")
    assert "timed out after 10s" in result.failure.message


@pytest.mark.timeout(90)
def test_cancel_from_another_thread_kills_the_whole_process_tree(tmp_path):
    result = _hang_and_stop(tmp_path, cancel_after_start=True)

    assert result.status == "cancelled"
    assert "cancelled" in result.failure.message


def test_missing_playbook_fails_cleanly(runner):
    result = runner.run(PlaybookRun(playbook="nope.yml", inventory="h1\n", ident="x"))
    assert result.status == "failed"
    assert result.failure.host == "-" and result.failure.task == "ansible-playbook"
    assert "nope.yml not found" in result.failure.message


def test_unparsable_inventory_fails_instead_of_matching_no_hosts(runner):
    run = PlaybookRun(playbook="fail.yml", inventory="[lambda\nh1 = = =\n", ident="bad-inv")
    result = runner.run(run)
    assert result.status == "failed"
    assert result.rc not in (0, None)
    assert result.failure.task == "ansible-playbook"
    assert "inventory" in result.failure.message.lower()


def test_missing_role_reports_ansibles_error(runner):
    run = PlaybookRun(playbook="broken.yml", inventory=local_inventory("h1"), ident="bad-role")
    result = runner.run(run)
    assert result.status == "failed"
    assert "no_such_role_anywhere" in result.failure.message


def test_missing_ansible_playbook_fails_cleanly(tmp_path):
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    runner = AnsibleRunner(
        playbook_dir=str(FIXTURES),
        roles_dir=str(FIXTURES / "roles"),
        artifacts_dir=str(tmp_path / "runs"),
        extra_env={"PATH": str(empty_bin)},
    )
    result = runner.run(PlaybookRun(playbook="ok.yml", inventory=local_inventory("h1"), ident="p"))
    assert result.status == "failed" and result.rc == 127
    assert "ansible-playbook not found" in result.failure.message


def test_run_directories_per_attempt_and_pruning(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for n in range(3):  # old runs of ours, oldest first
        old = runs / f"old-{n}"
        old.mkdir()
        (old / RUN_DIR_FLAG).write_text("old\n")
        os.utime(old / RUN_DIR_FLAG, (1_000_000 + n, 1_000_000 + n))
    (runs / "not-ours").mkdir()
    runner = AnsibleRunner(
        playbook_dir=str(FIXTURES),
        roles_dir=str(FIXTURES / "roles"),
        artifacts_dir=str(runs),
        keep_artifacts=2,
    )

    on_task_calls = []

    def broken_listener(result):
        on_task_calls.append(result)
        raise RuntimeError("listener bug")  # must not abort the run

    run = PlaybookRun(playbook="fail.yml", inventory=local_inventory("h1"), ident="act/p")
    assert runner.run(run, on_task=broken_listener).ok
    assert on_task_calls
    assert sorted(p.name for p in runs.iterdir()) == ["act_p-1", "not-ours", "old-2"]
    first = runs / "act_p-1"
    assert (first / "inventory" / "hosts").read_text() == run.inventory
    assert not list(first.glob("artifacts/*/command")), "the runner's env dump must be removed"

    assert runner.run(run).ok
    assert sorted(p.name for p in runs.iterdir()) == ["act_p-1", "act_p-2", "not-ours"]


def test_from_settings_maps_the_settings(tmp_path):
    extravars = tmp_path / "extra.yml"
    extravars.write_text("lambda_java_home: /opt/java\n")
    settings = Settings(
        state_dir=str(tmp_path / "state"),
        playbook_dir=str(FIXTURES),
        roles_dir=str(FIXTURES / "roles"),
        ansible_forks=7,
        playbook_timeout=123.0,
        extravars_file=str(extravars),
    )
    runner = AnsibleRunner.from_settings(settings)
    assert runner.artifacts_dir == tmp_path / "state" / "runs"
    assert runner.forks == 7 and runner.default_timeout == 123.0
    assert runner.base_extravars == {"lambda_java_home": "/opt/java"}
    assert runner.playbook_dir == FIXTURES and runner.roles_dir == str(FIXTURES / "roles")


def test_proctree_kills_detached_processes_by_marker(tmp_path):
    marker = f"test-{os.getpid()}-{time.monotonic_ns()}"
    pidfile = tmp_path / "bg.pid"
    env = {**os.environ, RUN_MARKER_ENV: marker}
    script = f"setsid sleep 302 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}; exec sleep 303"
    parent = subprocess.Popen(["sh", "-c", script], env=env, start_new_session=True)
    try:
        assert wait_for_files([pidfile], 10)
        detached = int(pidfile.read_text())
        found = proctree.find_processes_with_env(RUN_MARKER_ENV, marker)
        assert set(found) == {parent.pid, detached}
        assert os.getpid() not in found

        left = proctree.kill_processes_with_env(RUN_MARKER_ENV, marker, grace=1.0, timeout=10)

        assert left == []
        assert parent.wait(timeout=5) is not None
        assert gone(detached)
        assert proctree.find_processes_with_env(RUN_MARKER_ENV, marker) == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@pytest.fixture
def sshd(tmp_path):
    """A throwaway sshd on a free loopback port, with its own host and client keys.

    It logs at DEBUG1 to ``sshd.log`` beside the client key (the key exchange it agreed).
    """
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    if os.geteuid() != 0 or not os.path.exists(binary) or not shutil.which("ssh-keygen"):
        pytest.skip("needs root, sshd and ssh-keygen")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)], check=True
        )
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = closed_port()
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {d / 'host_key'}\nPidFile none\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nUsePAM no\nUseDNS no\nStrictModes no\n"
        "MaxStartups 100:30:200\nMaxSessions 100\nLogLevel DEBUG1\n"
    )
    proc = subprocess.Popen(
        [binary, "-D", "-E", str(d / "sshd.log"), "-f", str(d / "sshd_config")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert _wait_port(port, 10), "sshd did not start"
        yield port, d / "client_key"
    finally:
        # Connection children call setsid: kill them by ancestry before the listener.
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        proc.kill()
        proc.wait(timeout=5)


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes() if name.isdigit() else b""
        except OSError:
            continue
        if stat:
            ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def processes_mentioning(text: str) -> dict[int, str]:
    """Live processes whose command line mentions ``text`` (independent of proctree)."""
    found = {}
    for name in os.listdir("/proc"):
        try:
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes() if name.isdigit() else b""
        except OSError:
            continue
        if text.encode() in cmdline and not gone(int(name)):
            found[int(name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def ssh_inventory(port: int, key) -> str:
    """One host, s1, reached over real SSH at the test's own sshd."""
    return (
        "[lambda]\n"
        f"s1 ansible_host=127.0.0.1 ansible_port={port} ansible_user=root "
        f"ansible_ssh_private_key_file={key} ansible_python_interpreter={sys.executable}\n"
    )


def test_ssh_run_closes_its_control_masters(runner, sshd, tmp_path):
    port, key = sshd
    out = tmp_path / "out"
    out.mkdir()
    inventory = ssh_inventory(port, key)
    run = PlaybookRun(
        playbook="marker.yml", inventory=inventory, ident="ssh", extravars={"out_dir": str(out)}
    )
    during: list[str] = []
    result = runner.run(
        run, on_task=lambda _: during.extend(processes_mentioning(f"{control_root()}/").values())
    )

    assert result.status == "successful", result.failure
    marker = (out / "s1.marker").read_text().strip()
    assert marker
    control_dir = f"{control_root()}/{marker[:12]}"
    assert any(control_dir in cmdline for cmdline in during), (
        "no ssh control master was seen during the run: nothing was tested"
    )
    # ControlPersist would keep the master alive for 60 s: the run must have closed it.
    assert processes_mentioning(control_dir) == {}
    assert proctree.find_processes_with_env(RUN_MARKER_ENV, marker) == []
    assert not Path(control_dir).exists()


@contextlib.contextmanager
def cancelled_ssh_hang(runner, sshd, tmp_path, ident: str, timeout: float,
                      while_running: list | None = None):
    """Run hang.yml over SSH, cancel it once the host's sleep runs; yield (result, marker).

    The remote side belongs to the host, not the run: the sshd fixture reaps it, and the
    detached sleep (reparented when its session ended) is killed here afterwards.
    ``while_running`` gets the Mitogen sockets in the runs' control dirs at that moment.
    """
    port, key = sshd
    out = tmp_path / "out"
    out.mkdir()
    run = PlaybookRun(playbook="hang.yml", inventory=ssh_inventory(port, key), ident=ident,
                      extravars={"out_dir": str(out)}, timeout=timeout)
    cancel = threading.Event()
    remote = out / "s1.remote"
    # Cancel once the remote sleep runs, so the connections are up; the timeout is the
    # backstop.
    def cancel_once_running():
        if wait_for_files([remote], 60):
            if while_running is not None:
                while_running.extend(control_root().glob("*/mitogen_unix_*.sock"))
            cancel.set()

    threading.Thread(target=cancel_once_running).start()
    try:
        result = runner.run(run, cancel=cancel)
        yield result, (out / "s1.marker").read_text().strip()
    finally:
        cancel.set()
        if remote.is_file():
            pid = int(remote.read_text())
            if "sleep" in processes_mentioning("sleep").get(pid, ""):
                os.kill(pid, 9)


@pytest.mark.timeout(90)
def test_ssh_timeout_kills_control_masters(runner, sshd, tmp_path):
    # The run's timeout is only the backstop of the cancel: long enough for a loaded
    # machine to bring the connection up first.
    with cancelled_ssh_hang(runner, sshd, tmp_path, "ssh-hang", timeout=30) as (result, marker):
        assert result.status == "cancelled"
        assert result.failure.task == "Sleep for a long time on the host"
        control_dir = f"{control_root()}/{marker[:12]}"
        # The master's environment block is overwritten by its title: only the control
        # directory identifies it, and it must be gone with every marked process.
        assert processes_mentioning(control_dir) == {}
        assert proctree.find_processes_with_env(RUN_MARKER_ENV, marker) == []


def bound_unix_sockets() -> set[Path]:
    """Paths of the unix sockets some live process has bound (a killed one's file stays)."""
    return {Path(sock.laddr) for sock in psutil.net_connections(kind="unix")
            if isinstance(sock.laddr, str) and sock.laddr}


def mitogen_contexts(sshd) -> dict[int, str]:
    """The Mitogen interpreters on the host side of the test's own sshd: playbook runs
    elsewhere on the machine (the lab's, the end-to-end tests') have theirs. Mitogen
    retitles its interpreters "python3(mitogen:user@host:pid)"; the controller's side
    belongs to the run, whose processes the tests find by its marker."""
    _port, key = sshd
    ours = {child for listener in processes_mentioning(str(key.parent / "sshd_config"))
            for child in descendants(listener)}
    return {pid: line for pid, line in processes_mentioning("(mitogen:").items()
            if pid in ours}


def test_auto_strategy_is_mitogen_over_ssh_and_linear_over_a_local_connection():
    assert resolve_strategy("auto", "ssh") == "mitogen_linear"
    # Mitogen would run every local "host" of the demo in one interpreter, one at a time.
    assert resolve_strategy("auto", "local") == "linear"
    assert resolve_strategy("linear", "ssh") == "linear"


def test_ssh_kex_setting_puts_a_fast_exchange_first_only_where_the_client_has_it():
    both = frozenset({"sntrup761x25519-sha512", "curve25519-sha256", "mlkem768x25519-sha256"})
    assert resolve_kex("auto", both) == "^mlkem768x25519-sha256"
    assert resolve_kex("auto", both - {"mlkem768x25519-sha256"}) == "^curve25519-sha256"
    assert resolve_kex("auto", frozenset({"diffie-hellman-group14-sha256"})) is None
    assert resolve_kex("auto", frozenset()) is None  # no ssh client to ask
    assert resolve_kex("default", both) is None
    assert resolve_kex("curve25519-sha256,ecdh-sha2-nistp256", both) == (
        "curve25519-sha256,ecdh-sha2-nistp256")
    assert AnsibleRunner(playbook_dir=".", roles_dir=".", artifacts_dir=".",
                         ssh_kex="^curve25519-sha256").ssh_args.endswith(
        " -o KexAlgorithms=^curve25519-sha256")


def test_runner_over_ssh_agrees_the_preferred_key_exchange(sshd, tmp_path):
    """The real ssh client takes the option and the real sshd agrees on that exchange."""
    kex = resolve_kex("auto")
    if kex is None:
        pytest.skip(f"this ssh client knows none of {FAST_KEX}: {sorted(client_kex_algorithms())}")
    port, key = sshd
    out = tmp_path / "out"
    out.mkdir()
    runner = fixture_runner(tmp_path, resolve_strategy("auto", "ssh"), ssh_kex=kex)
    run = PlaybookRun(playbook="marker.yml", inventory=ssh_inventory(port, key),
                      ident="kex", extravars={"out_dir": str(out)})

    result = runner.run(run)

    assert result.status == "successful", result.failure
    agreed = [line.split("kex: algorithm: ", 1)[1].split()[0]
              for line in (key.parent / "sshd.log").read_text().splitlines()
              if "kex: algorithm: " in line]
    assert agreed and set(agreed) == {kex.lstrip("^")}, agreed


def test_mitogen_ssh_run_reports_every_task_and_leaves_nothing_running(
        mitogen_runner, sshd, tmp_path):
    port, key = sshd
    out = tmp_path / "out"
    out.mkdir()
    run = PlaybookRun(playbook="marker.yml", inventory=ssh_inventory(port, key),
                      ident="mitogen", extravars={"out_dir": str(out)})
    during: list[str] = []
    result = mitogen_runner.run(
        run, on_task=lambda _: during.extend(mitogen_contexts(sshd).values()))

    assert result.status == "successful", result.failure
    assert {(t.host, t.task, t.status) for t in result.tasks} == {
        ("s1", "Touch the host over its connection", "ok"),
        ("s1", "Record the run marker", "changed"),
    }
    assert during, "no Mitogen interpreter was seen during the run: nothing was tested"
    marker = (out / "s1.marker").read_text().strip()
    assert proctree.find_processes_with_env(RUN_MARKER_ENV, marker) == []
    # The host's interpreter exits once its connection is gone.
    assert wait_until(lambda: mitogen_contexts(sshd) == {}, 10), mitogen_contexts(sshd)


@pytest.mark.timeout(90)
def test_mitogen_ssh_cancel_kills_the_run_and_its_host_interpreter(
        mitogen_runner, sshd, tmp_path):
    in_tmp = set(Path(tempfile.gettempdir()).glob("mitogen_unix_*.sock"))
    sockets = []
    with cancelled_ssh_hang(mitogen_runner, sshd, tmp_path, "mitogen-hang",
                           timeout=30, while_running=sockets) as (result, marker):
        assert result.status == "cancelled"
        assert result.failure.task == "Sleep for a long time on the host"
        assert proctree.find_processes_with_env(RUN_MARKER_ENV, marker) == []
        assert wait_until(lambda: mitogen_contexts(sshd) == {}, 10), mitogen_contexts(sshd)
    # The multiplexer's socket lived in the run's control dir, and went with it: a killed
    # multiplexer cannot remove its own.
    assert [p.parent.name for p in sockets] == [marker[:12]]
    assert not any(p.exists() for p in sockets)
    # None left in /tmp: a new one there is another run's, still bound by its process.
    left = set(Path(tempfile.gettempdir()).glob("mitogen_unix_*.sock")) - in_tmp
    assert left <= bound_unix_sockets(), left
