"""The roles' lambda_daemon module, run as Ansible runs a module (its arguments in a JSON
file), against real processes: is the process a pid file names a live daemon of this kind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from api.settings import FILES_ROOT
from tests.support import wait_until

MODULE = FILES_ROOT / "roles" / "lambda_daemon" / "library" / "lambda_daemon.py"
MARK = "lambda-daemon-test-marker"


def run_module(tmp_path: Path, **args) -> dict:
    arguments = tmp_path / "args.json"
    arguments.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, str(MODULE), str(arguments)], capture_output=True,
                          text=True, timeout=60)
    result = json.loads(done.stdout)
    assert not result.get("failed"), result
    return result


def spawn(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def daemon_code(ignore_term: bool) -> str:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    return code + f"time.sleep(300)  # {MARK}\n"


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def test_a_live_daemon_is_running(tmp_path, processes):
    daemon = spawn(sys.executable, "-c", daemon_code(False), MARK)
    processes.append(daemon)
    pid_file = tmp_path / "daemon.pid"
    pid_file.write_text(f"{daemon.pid}\n")

    result = run_module(tmp_path, pid_file=str(pid_file), match=MARK)

    assert (result["running"], result["pid"], result["changed"]) == (True, daemon.pid, False)


def test_a_stale_pid_file_is_not_running(tmp_path, processes):
    gone = spawn("true")
    gone.wait()
    pid_file = tmp_path / "daemon.pid"
    pid_file.write_text(f"{gone.pid}\n")
    assert run_module(tmp_path, pid_file=str(pid_file), match=MARK)["running"] is False
    for missing in ("none.pid", "empty.pid"):
        (tmp_path / "empty.pid").write_text("")
        result = run_module(tmp_path, pid_file=str(tmp_path / missing), match=MARK)
        assert result["running"] is False


def test_a_pid_reused_by_another_process_is_not_running(tmp_path, processes):
    other = spawn("sleep", "300")
    processes.append(other)
    pid_file = tmp_path / "daemon.pid"
    pid_file.write_text(f"{other.pid}\n")
    assert run_module(tmp_path, pid_file=str(pid_file), match=MARK)["running"] is False


def test_the_check_itself_is_not_the_daemon(tmp_path):
    """A stale pid can name the check's own process or a parent, whose command lines name
    the daemon's paths (here: the match is in the check's own argument file path)."""
    check_dir = tmp_path / MARK
    check_dir.mkdir()
    pid_file = check_dir / "daemon.pid"
    script = (f"echo $$ > {pid_file}; exec {sys.executable} {MODULE} {check_dir}/args.json")
    (check_dir / "args.json").write_text(json.dumps(
        {"ANSIBLE_MODULE_ARGS": {"pid_file": str(pid_file), "match": MARK}}))
    done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout)["running"] is False

    parent_script = f"echo $$ > {pid_file}; {sys.executable} {MODULE} {check_dir}/args.json"
    done = subprocess.run(["sh", "-c", parent_script], capture_output=True, text=True,
                          timeout=60)
    assert json.loads(done.stdout)["running"] is False


def test_record_writes_the_newest_matching_process(tmp_path, processes):
    older = spawn(sys.executable, "-c", daemon_code(False), MARK)
    processes.append(older)
    time.sleep(0.05)
    newer = spawn(sys.executable, "-c", daemon_code(False), MARK)
    processes.append(newer)
    pid_file = tmp_path / "run" / "daemon.pid"

    result = run_module(tmp_path, pid_file=str(pid_file), match=MARK, record=True)

    assert (result["running"], result["pid"], result["changed"]) == (True, newer.pid, True)
    assert pid_file.read_text().strip() == str(newer.pid)
    again = run_module(tmp_path, pid_file=str(pid_file), match=MARK, record=True)
    assert (again["pid"], again["changed"]) == (newer.pid, False)


def test_stopped_ends_a_daemon_with_sigterm_and_removes_its_pid_file(tmp_path, processes):
    daemon = spawn(sys.executable, "-c", daemon_code(False), MARK)
    processes.append(daemon)
    pid_file = tmp_path / "daemon.pid"
    pid_file.write_text(f"{daemon.pid}\n")

    result = run_module(tmp_path, pid_file=str(pid_file), match=MARK, state="stopped")

    assert (result["running"], result["changed"], result["forced"]) == (False, True, False)
    assert daemon.wait(timeout=5) == -signal.SIGTERM
    assert not pid_file.exists()
    again = run_module(tmp_path, pid_file=str(pid_file), match=MARK, state="stopped")
    assert again["changed"] is False


def test_stopped_kills_a_daemon_that_outlives_its_timeout(tmp_path, processes):
    daemon = spawn(sys.executable, "-c", daemon_code(True), MARK)
    processes.append(daemon)
    # The daemon ignores SIGTERM only once its handler is set.
    assert wait_until(lambda: signal.SIGTERM in _ignored(daemon.pid), 10)
    pid_file = tmp_path / "daemon.pid"
    pid_file.write_text(f"{daemon.pid}\n")

    result = run_module(tmp_path, pid_file=str(pid_file), match=MARK, state="stopped",
                        stop_timeout=1)

    assert (result["running"], result["changed"], result["forced"]) == (False, True, True)
    assert daemon.wait(timeout=5) == -signal.SIGKILL


def test_stopped_leaves_a_process_that_is_not_the_daemon_alone(tmp_path, processes):
    other = spawn("sleep", "300")
    processes.append(other)
    pid_file = tmp_path / "daemon.pid"
    pid_file.write_text(f"{other.pid}\n")

    result = run_module(tmp_path, pid_file=str(pid_file), match=MARK, state="stopped")

    assert result["changed"] is False
    assert other.poll() is None
    os.kill(other.pid, 0)


def _ignored(pid: int) -> set[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {n for n in range(1, 64) if mask & (1 << (n - 1))}
    return set()
