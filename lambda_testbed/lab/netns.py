"""Thin wrappers over `ip` for network namespaces, links and the processes inside them.

Processes are always found through their network namespace (`ip netns pids NS`), never by
name: a lab host *is* its namespace, and everything it runs lives there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

IP = "ip"
IFNAMSIZ = 15  # the kernel's limit on interface names (16 bytes with the NUL)


class NetnsError(RuntimeError):
    """An `ip` command failed."""


def ip(*args: str, check: bool = True, netns: str | None = None) -> str:
    cmd = [IP]
    if netns:
        cmd += ["-n", netns]
    cmd += list(args)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def ip_batch(lines: Iterable[str], netns: str | None = None) -> None:
    """Run many `ip` commands in one process (`ip -batch -`); stops at the first error."""
    cmd = [IP] + (["-n", netns] if netns else []) + ["-batch", "-"]
    script = "".join(line + "\n" for line in lines)
    proc = subprocess.run(cmd, input=script, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"ip -batch failed: {proc.stderr.strip()}\n{script}")


def list_netns() -> list[str]:
    # `ip netns list` prints "NAME" or "NAME (id: N)".
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def list_links() -> list[str]:
    names = []
    for line in ip("-o", "link", "show").splitlines():
        # "12: name@peer: <...>" -> name
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def netns_pids(netns: str) -> list[int]:
    if netns not in list_netns():
        return []
    out = ip("netns", "pids", netns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_netns_processes(netns: str, timeout: float = 10.0, grace: float = 0.0) -> None:
    """Kill every process in `netns` and wait until none is left.

    With `grace` > 0 the processes first get SIGTERM and that many seconds to exit (a
    shutdown rather than a power cut). Killing the PID 1 of a host's pid namespace takes
    the whole namespace down with it; the loop catches anything that raced in meanwhile.
    """
    own_ns = _pid_ns("self")

    def inside() -> list[int]:  # processes of the host's own pid namespace
        return [p for p in netns_pids(netns) if _pid_ns(p) not in (None, own_ns)]

    if grace > 0:
        # A shutdown: daemons first (the host's PID 1 dying would SIGKILL them at once).
        _signal_all([p for p in inside() if not _is_ns_init(p)], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(not _is_ns_init(p) for p in inside()):
            time.sleep(0.05)
    # Kill the processes inside the pid namespace (the host's PID 1 and its daemons) before
    # their `unshare` parent outside it, so that parent reaps them rather than init.
    _signal_all(inside(), signal.SIGKILL)
    settle = time.monotonic() + 1.0
    while netns_pids(netns) and time.monotonic() < settle:
        time.sleep(0.01)
    deadline = time.monotonic() + timeout
    while True:
        pids = netns_pids(netns)
        if not pids:
            return
        if time.monotonic() > deadline:
            raise NetnsError(f"processes still alive in netns {netns}: {pids}")
        _signal_all(pids, signal.SIGKILL)
        time.sleep(0.02)


def _pid_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _is_ns_init(pid: int) -> bool:
    """True for the PID 1 of a nested pid namespace (a lab host's sshd)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                ids = line.split()[1:]
                return len(ids) > 1 and ids[-1] == "1"
    except OSError:
        pass
    return False


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.kill(pid, sig)


def delete_netns(netns: str) -> None:
    if netns in list_netns():
        kill_netns_processes(netns)
        ip("netns", "delete", netns, check=False)


def delete_link(name: str) -> None:
    if name in list_links():
        ip("link", "delete", name, check=False)


def route_exists(subnet: str) -> bool:
    """True if the root namespace already routes `subnet` (e.g. another lab or a LAN)."""
    return any(
        line.split()[0] == subnet for line in ip("route", "show").splitlines() if line.strip()
    )


def check_usable() -> str | None:
    """Why network namespaces cannot be used here, or None if they can."""
    if os.geteuid() != 0:
        return "not running as root"
    probe = f"lambdaprobe{os.getpid()}"[:IFNAMSIZ]
    try:
        ip("netns", "add", probe)
    except (NetnsError, FileNotFoundError) as exc:
        return f"ip netns add failed: {exc}"
    try:
        ip("link", "set", "lo", "up", netns=probe)
    except NetnsError as exc:
        return f"ip -n {probe} link set lo up failed: {exc}"
    finally:
        ip("netns", "delete", probe, check=False)
    return None
