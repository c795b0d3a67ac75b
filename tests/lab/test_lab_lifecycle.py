"""Building and removing labs: nothing survives `down()`, a crashed run is purged."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lambda_testbed.lab import LAB_ROOT, Lab, purge_stale
from lambda_testbed.lab.netns import IFNAMSIZ, list_links, list_netns, netns_pids

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def _traces(prefix: str) -> dict:
    namespaces = [ns for ns in list_netns() if ns.startswith(prefix)]
    return {
        "netns": namespaces,
        "links": [link for link in list_links() if link.startswith(prefix)],
        "pids": [pid for ns in namespaces for pid in netns_pids(ns)],
    }


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie has released everything; only its parent's wait is due
            alive.append(pid)
    return alive


PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def adopt() -> Iterator[set[int]]:
    """Make this process the subreaper of the labs a test orphans (a SIGKILLed creator, a
    detached CLI) and reap the pids the test adds to the set, so no zombie waits on init."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    adopted: set[int] = set()
    try:
        yield adopted
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        deadline = time.monotonic() + 10
        pending = set(adopted)
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # not ours (its parent reaped it): nothing to do
                    done = pid
                if done:
                    pending.discard(pid)
            time.sleep(0.02)


def test_down_leaves_nothing_and_is_idempotent() -> None:
    lab = Lab("lambdalabd", hosts=["alpha", "beta"], subnet="10.213.202.0/24").up()
    try:
        lab.ssh("beta", "nohup sleep 1000 >/dev/null 2>&1 &")
        pids = _traces("lambdalabd-")["pids"]
        assert len(pids) >= 4  # two sshds, their unshare parents, the sleep
        assert lab.base_dir.exists()
    finally:
        lab.down()
    assert _traces("lambdalabd-") == {"netns": [], "links": [], "pids": []}
    assert _alive(pids) == []
    assert not lab.base_dir.exists()
    lab.down()  # a second call finds nothing to do


CREATOR = textwrap.dedent(
    """
    import sys, time
    from lambda_testbed.lab import Lab
    lab = Lab(sys.argv[1], hosts=2, subnet=sys.argv[2]).up()
    lab.ssh("slave-1", "nohup sleep 1000 >/dev/null 2>&1 &")
    print("ready", flush=True)
    time.sleep(600)
    """
)


def _crash_a_lab(name: str, subnet: str) -> list[int]:
    """Build a lab in a child process, SIGKILL the child, return the orphaned pids."""
    creator = subprocess.Popen(
        [sys.executable, "-c", CREATOR, name, subnet],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert creator.stdout.readline().strip() == "ready"
    finally:
        creator.send_signal(signal.SIGKILL)
        creator.wait()
    stale = _traces(f"{name}-")
    assert len(stale["netns"]) == 2 and stale["pids"], stale  # the crash left all this
    return stale["pids"]


def test_a_crashed_lab_is_purged_by_the_next_up(adopt: set[int]) -> None:
    name, subnet = "lambdalabk", "10.213.201.0/24"
    orphans = _crash_a_lab(name, subnet)
    adopt.update(orphans)
    lab = Lab(name, hosts=2, subnet=subnet)
    try:
        lab.up()
        assert _alive(orphans) == []
        result = lab.ssh("slave-1", "hostname; pgrep -x sleep || echo clean")
        assert result.stdout.split() == ["slave-1", "clean"]
    finally:
        lab.down()
    assert _traces(f"{name}-") == {"netns": [], "links": [], "pids": []}


def test_purge_stale_removes_a_crashed_lab(adopt: set[int]) -> None:
    name, subnet = "lambdalabk", "10.213.201.0/24"
    orphans = _crash_a_lab(name, subnet)
    adopt.update(orphans)
    base_dir = LAB_ROOT / name
    assert json.loads((base_dir / "lab.json").read_text())["name"] == name

    removed = purge_stale(name)

    assert f"netns {name}-master" in removed
    assert _traces(name) == {"netns": [], "links": [], "pids": []}
    assert _alive(orphans) == []
    assert not base_dir.exists()
    assert purge_stale(name) == []


def test_cli_up_leaves_the_lab_running_and_down_from_another_process(
    tmp_path: Path, adopt: set[int]
) -> None:
    name = "lambdalabc"
    base_dir = tmp_path / "cli-lab"  # a non-default base dir must be found again by name
    cli = [sys.executable, "-m", "lambda_testbed.lab.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cli, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )

    try:
        up = run("up", "--name", name, "--hosts", "2", "--subnet", "10.213.203.0/24",
                 "--base-dir", str(base_dir), "--bare")  # fmt: skip
        assert up.returncode == 0, up.stderr
        assert "ssh key:" in up.stdout and "example: ssh" in up.stdout
        # The CLI has exited; its hosts keep running.
        lab = Lab.load(name)
        assert lab.base_dir == base_dir
        adopt.update(_traces(f"{name}-")["pids"])
        assert lab.ssh("slave-1", "hostname").stdout.strip() == "slave-1"

        status = run("status", "--name", name)
        assert status.returncode == 0, status.stderr
        hosts = json.loads(status.stdout)["hosts"]
        assert [(h["name"], h["on"]) for h in hosts] == [("master", True), ("slave-1", True)]

        assert run("power-off", "--name", name, "slave-1").returncode == 0
        assert not lab.is_on("slave-1")
    finally:
        down = run("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert _traces(f"{name}-") == {"netns": [], "links": [], "pids": []}
    assert not base_dir.exists()


def test_names_are_validated_and_interfaces_fit_the_kernel_limit() -> None:
    with pytest.raises(ValueError):
        Lab("has-dash")
    with pytest.raises(ValueError):
        Lab("waytoolongname")
    with pytest.raises(ValueError):
        Lab("lambdalab", hosts=["a", "a"])
    with pytest.raises(ValueError):
        Lab("lambdalab", hosts=["Bad_Name"])
    big = Lab("abcdefghijk", hosts=99, subnet="10.213.204.0/24")
    assert max(len(h.veth) for h in big.hosts) <= IFNAMSIZ
    assert len(big.bridge) <= IFNAMSIZ
    assert big.hosts[0].role == "master" and big.hosts[98].name == "slave-98"
