"""Find and kill the processes of one playbook run, by an environment marker (with psutil).

ansible-playbook runs in its own session and ssh control masters daemonize (setsid), so
neither the process group nor the parent/child tree reaches every process a run started.
What they all share is the environment they inherited: each run sets a unique marker
variable, and a process's environment tells us which processes carry it. ssh control
masters are the exception (they overwrite that memory when they retitle themselves); they
are found by the unix socket they hold in the run's own control directory. Processes are
never picked by name.

A process is signalled through a ``psutil.Process`` made when it was found: psutil checks
that the pid still names that process (its creation time) before each signal, so a pid
recycled in between is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator, Mapping

import psutil

log = logging.getLogger(__name__)

_POLL = 0.05  # seconds between checks while waiting for processes to exit
# Gone, exited while we looked, or not ours to read: each means "not one of ours".
_GONE = (psutil.NoSuchProcess, psutil.AccessDenied)


def _others(attrs: list[str]) -> Iterator[psutil.Process]:
    """Every live process but this one, with ``attrs`` read into ``.info`` (None if denied)."""
    me = os.getpid()
    for proc in psutil.process_iter(attrs, ad_value=None):
        if proc.pid != me:
            yield proc


def find_processes_with_cmdline(fragment: str) -> list[int]:
    """Pids of every live process whose command line contains ``fragment`` (a path of
    ours, such as a demo's state dir: never a program name), not this process."""
    return sorted(proc.pid for proc in _others(["cmdline"])
                  if any(fragment in arg for arg in proc.info["cmdline"] or ()))


def find_processes_with_env(key: str, value: str,
                            also: Mapping[str, str] | None = None) -> list[int]:
    """Pids of every live process whose environment holds ``key=value`` and every pair of
    ``also`` (not this process).

    A zombie's environment reads empty: it is already dead and cannot be killed anyway.
    """
    wanted = {key: value, **(also or {})}
    return sorted(proc.pid for proc in _others(["environ"])
                  if all((proc.info["environ"] or {}).get(k) == v for k, v in wanted.items()))


def env_values_in_use(key: str) -> set[str]:
    """Every value of the variable ``key`` in the live processes' environments (not this
    process's)."""
    values = set()
    for proc in _others(["environ"]):
        value = (proc.info["environ"] or {}).get(key)
        if value is not None:
            values.add(value)
    return values


def process_start_time(pid: int) -> str | None:
    """When the process started (seconds since the epoch, as text), None if there is none:
    with the pid it names one process for good, even after the pid is recycled."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except _GONE:
        return None


def find_unix_socket_holders(directory: str) -> list[int]:
    """Pids of processes holding a unix socket bound under ``directory``.

    ssh control masters overwrite their environment block when they set their process
    title ("ssh: <path> [mux]"), so the marker cannot be read back from them; the socket
    they listen on in the run's own control directory identifies them instead.
    """
    prefix = directory.rstrip("/") + "/"
    me = os.getpid()
    try:
        sockets = psutil.net_connections(kind="unix")
    except psutil.AccessDenied:
        log.warning("not allowed to list unix sockets; no holders found under %s", directory)
        return []
    return sorted({sock.pid for sock in sockets
                   if sock.pid is not None and sock.pid != me
                   and isinstance(sock.laddr, str) and sock.laddr.startswith(prefix)})


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except _GONE:
        return False


def _wait(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive after up to ``timeout`` seconds.

    Not ``psutil.wait_procs``: it reaps children of this process (``os.waitpid``), and
    ansible-playbook is ansible-runner's child, whose exit status the runner still reads.
    A zombie counts as gone.
    """
    deadline = time.monotonic() + timeout
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(_POLL)
        alive = [p for p in alive if _alive(p)]
    return alive


def _signal(proc: psutil.Process, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except psutil.NoSuchProcess:
        pass  # exited, or its pid now names another process: nothing to do
    except psutil.AccessDenied:
        log.warning("not allowed to signal pid %s", proc.pid)


def _pin(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except _GONE:
        return None


def kill_processes(
    pids: list[int], grace: float = 2.0, *, confirm: Callable[[], list[int]] | None = None
) -> list[int]:
    """SIGTERM ``pids``, wait up to ``grace`` seconds, SIGKILL the rest.

    With ``confirm`` (a fresh scan), each process is first pinned and then signalled only
    if the scan still lists it: a pid recycled since the first scan is left alone. Returns
    the pids still alive shortly after the SIGKILL (normally none).
    """
    procs = [proc for proc in map(_pin, pids) if proc is not None]
    if confirm is not None:
        current = set(confirm())
        procs = [proc for proc in procs if proc.pid in current]
    if grace > 0:
        for proc in procs:
            _signal(proc, signal.SIGTERM)
        survivors = _wait(procs, grace)
    else:
        survivors = procs
    for proc in survivors:
        _signal(proc, signal.SIGKILL)
    return [proc.pid for proc in _wait(survivors, 1.0)]


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
    key: str, value: str, grace: float = 2.0, timeout: float = 15.0,
    also: Mapping[str, str] | None = None,
) -> list[int]:
    """Kill every process carrying ``key=value`` (and ``also``) until none is left (see
    kill_until_gone)."""
    return kill_until_gone(lambda: find_processes_with_env(key, value, also), grace, timeout)
