"""Find and kill the processes of one playbook run, by an environment marker.

ansible-playbook runs in its own session and ssh control masters daemonize (setsid), so
neither the process group nor the parent/child tree reaches every process a run started.
What they all share is the environment they inherited: each run sets a unique marker
variable, and ``/proc/<pid>/environ`` tells us which processes carry it. ssh control
masters are the exception (they overwrite that memory when they retitle themselves); they
are found by the unix socket they hold in the run's own control directory. Processes are
never picked by name.

Linux only (``/proc``). Where available, a pidfd pins each process between the check of
its environment and the signal, so a recycled pid is never signalled.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

_PROC = "/proc"
_POLL = 0.05  # seconds between checks while waiting for processes to exit


def _environ_has(pid: int, needle: bytes) -> bool:
    """Whether the process's initial environment holds ``needle`` (``KEY=VALUE``)."""
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as fh:
            data = fh.read()
    except OSError:
        # Exited while we looked (ENOENT/ESRCH), or not ours to read (EACCES).
        return False
    # A zombie's environ reads empty: it is already dead and cannot be killed anyway.
    return needle in data.split(b"\0")


def find_processes_with_cmdline(fragment: str) -> list[int]:
    """Pids of every live process whose command line contains ``fragment`` (a path of
    ours, such as a demo's state dir: never a program name), not this process."""
    needle = fragment.encode()
    found = []
    for pid in _other_pids():
        try:
            with open(f"{_PROC}/{pid}/cmdline", "rb") as fh:
                if needle in fh.read():
                    found.append(pid)
        except OSError:
            continue
    return sorted(found)


def _other_pids() -> list[int]:
    """Every live pid but this process's (a snapshot: any may exit while we look)."""
    try:
        entries = os.listdir(_PROC)
    except OSError:
        log.warning("cannot list %s; no processes found", _PROC)
        return []
    me = os.getpid()
    return [int(name) for name in entries if name.isdigit() and int(name) != me]


def find_processes_with_env(key: str, value: str) -> list[int]:
    """Pids of every live process whose environment holds ``key=value`` (not this process)."""
    needle = f"{key}={value}".encode()
    return sorted(pid for pid in _other_pids() if _environ_has(pid, needle))


class _Proc:
    """One process to kill: its pid and, when the kernel allows, a pidfd pinning it."""

    def __init__(self, pid: int, fd: int | None):
        self.pid = pid
        self.fd = fd

    @classmethod
    def open(cls, pid: int) -> _Proc | None:
        if not hasattr(os, "pidfd_open"):
            return cls(pid, None)
        try:
            return cls(pid, os.pidfd_open(pid))
        except ProcessLookupError:
            return None  # already gone
        except OSError:
            return cls(pid, None)  # e.g. ENOSYS on an old kernel: fall back to the pid

    def signal(self, sig: int) -> None:
        try:
            if self.fd is not None:
                signal.pidfd_send_signal(self.fd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            log.warning("not allowed to signal pid %s", self.pid)

    def alive(self) -> bool:
        if self.fd is not None:
            # A pidfd polls readable once the process has exited (zombie or reaped).
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            return not poller.poll(0)
        try:
            with open(f"{_PROC}/{self.pid}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            return False
        # The state follows the ")" that closes the command name; Z and X are dead.
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        return state not in (b"Z", b"X")

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _wait(procs: list[_Proc], timeout: float) -> list[_Proc]:
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if p.alive()]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL)
        alive = [p for p in alive if p.alive()]
    return alive


def find_unix_socket_holders(directory: str) -> list[int]:
    """Pids of processes holding a unix socket bound under ``directory``.

    ssh control masters overwrite their environment block when they set their process
    title ("ssh: <path> [mux]"), so the marker cannot be read back from them; the socket
    they listen on in the run's own control directory identifies them instead.
    """
    prefix = directory.rstrip("/") + "/"
    inodes = set()
    try:
        with open(f"{_PROC}/net/unix") as fh:
            next(fh, None)  # header
            for line in fh:
                fields = line.split()
                if len(fields) >= 8 and fields[7].startswith(prefix):
                    inodes.add(f"socket:[{fields[6]}]")
    except OSError:
        return []
    if not inodes:
        return []
    found = []
    for pid in _other_pids():
        try:
            fds = os.listdir(f"{_PROC}/{pid}/fd")
        except OSError:
            continue  # exited, or not ours to look at
        for fd in fds:
            try:
                target = os.readlink(f"{_PROC}/{pid}/fd/{fd}")
            except OSError:
                continue
            if target in inodes:
                found.append(pid)
                break
    return sorted(found)


def kill_processes(
    pids: list[int], grace: float = 2.0, *, confirm: Callable[[], list[int]] | None = None
) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace`` seconds, SIGKILL the rest.

    With ``confirm`` (a fresh scan), each process is first pinned and then signalled only
    if the scan still lists it: a pid recycled since the first scan is left alone. Returns
    the pids still alive shortly after the SIGKILL (normally none).
    """
    procs = [proc for proc in map(_Proc.open, pids) if proc is not None]
    try:
        if confirm is not None:
            current = set(confirm())
            keep = [p for p in procs if p.pid in current]
            for proc in procs:
                if proc.pid not in current:
                    proc.close()
            procs = keep
        if grace > 0:
            for proc in procs:
                proc.signal(signal.SIGTERM)
            survivors = _wait(procs, grace)
        else:
            survivors = procs
        for proc in survivors:
            proc.signal(signal.SIGKILL)
        return [p.pid for p in _wait(survivors, 1.0)]
    finally:
        for proc in procs:
            proc.close()


def kill_until_gone(
    find: Callable[[], list[int]], grace: float = 2.0, timeout: float = 15.0
) -> list[int]:
    """Kill what ``find`` lists until it lists nothing, or ``timeout`` passes.

    Scans again after each round because a process may fork between a scan and its
    signal (ansible-playbook starting a worker). Only the first round gets ``grace``;
    later rounds go straight to SIGKILL. Returns the pids left (empty on success).
    """
    deadline = time.monotonic() + timeout
    first = True
    signalled = 0
    while True:
        pids = find()
        if not pids:
            if signalled:
                log.info("signalled %s processes", signalled)
            return []
        if time.monotonic() >= deadline:
            log.error("processes still alive after %.0fs: %s", timeout, pids)
            return pids
        signalled += len(pids)
        kill_processes(pids, grace if first else 0.0, confirm=find)
        first = False


def kill_processes_with_env(
    key: str, value: str, grace: float = 2.0, timeout: float = 15.0
) -> list[int]:
    """Kill every process carrying ``key=value`` until none is left (see kill_until_gone)."""
    return kill_until_gone(lambda: find_processes_with_env(key, value), grace, timeout)
