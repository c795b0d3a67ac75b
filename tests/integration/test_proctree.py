"""proctree on real processes: found by environment, command line and unix socket; killed
with a grace period, and never when a fresh scan no longer lists them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from api.adapters import proctree

KEY = "LAMBDA_PROCTREE_TEST"
# Ignores SIGTERM: only the SIGKILL after the grace period stops it.
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def _ignores_sigterm(pid: int) -> bool:
    """Whether the process has set SIGTERM to ignored yet (its SigIgn mask in /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def _wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)
    return value


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(args, **env) -> subprocess.Popen:
        proc = subprocess.Popen(args, env={**os.environ, **env})
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)


def test_processes_are_found_by_their_environment_and_killed(spawn):
    mark = uuid.uuid4().hex
    marked = spawn([sys.executable, "-c", STUBBORN], **{KEY: mark})
    other = spawn(["sleep", "60"], **{KEY: "someone-else"})
    _wait_until(lambda: proctree.find_processes_with_env(KEY, mark) == [marked.pid])
    # Found as soon as it runs, but only stubborn once the interpreter has set the signal.
    _wait_until(lambda: _ignores_sigterm(marked.pid))
    assert mark in proctree.env_values_in_use(KEY)
    assert "someone-else" in proctree.env_values_in_use(KEY)

    started = time.monotonic()
    assert proctree.kill_processes_with_env(KEY, mark, grace=0.5, timeout=10) == []
    assert time.monotonic() - started >= 0.5  # SIGTERM ignored: killed after the grace
    assert marked.wait(timeout=5) == -9
    assert proctree.find_processes_with_env(KEY, mark) == []
    assert other.poll() is None  # another value of the variable: left alone


def test_processes_are_found_by_several_variables(spawn):
    """A chain's run kills what its own chain of the group left, not the group's others."""
    mark = uuid.uuid4().hex
    ours = spawn(["sleep", "60"], **{KEY: mark, "LAMBDA_PROCTREE_CHAIN": "a"})
    beside = spawn(["sleep", "60"], **{KEY: mark, "LAMBDA_PROCTREE_CHAIN": "b"})
    _wait_until(lambda: len(proctree.find_processes_with_env(KEY, mark)) == 2)
    chain = {"LAMBDA_PROCTREE_CHAIN": "a"}
    assert proctree.find_processes_with_env(KEY, mark, also=chain) == [ours.pid]
    assert proctree.kill_processes_with_env(KEY, mark, grace=0.5, timeout=10, also=chain) == []
    assert ours.wait(timeout=5) == -15
    assert beside.poll() is None


def test_processes_are_found_by_their_command_line(spawn, tmp_path):
    proc = spawn(["sh", "-c", f"sleep 60; : {tmp_path}"])
    assert _wait_until(lambda: proctree.find_processes_with_cmdline(str(tmp_path))) == [proc.pid]


def test_unix_socket_holders_are_found_by_the_directory_of_the_socket(spawn, tmp_path):
    control = tmp_path / "cp"
    control.mkdir()
    listen = ("import socket, sys, time; s = socket.socket(socket.AF_UNIX); "
              "s.bind(sys.argv[1]); s.listen(); time.sleep(60)")
    holder = spawn([sys.executable, "-c", listen, str(control / "master")])
    assert _wait_until(lambda: proctree.find_unix_socket_holders(str(control))) == [holder.pid]
    assert proctree.find_unix_socket_holders(str(tmp_path / "c")) == []  # a prefix only
    left = proctree.kill_until_gone(lambda: proctree.find_unix_socket_holders(str(control)),
                                    grace=1.0, timeout=5.0)
    assert left == []
    assert holder.wait(timeout=5) is not None


def test_a_process_the_fresh_scan_no_longer_lists_is_not_signalled(spawn):
    proc = spawn(["sleep", "60"])
    assert proctree.kill_processes([proc.pid], grace=0.2, confirm=lambda: []) == []
    assert proc.poll() is None


def test_start_time_names_one_process(spawn):
    proc = spawn(["sleep", "60"])
    first = proctree.process_start_time(proc.pid)
    assert first is not None and first == proctree.process_start_time(proc.pid)
    assert first != proctree.process_start_time(os.getpid())
    proc.kill()
    proc.wait()
    assert proctree.process_start_time(proc.pid) is None
