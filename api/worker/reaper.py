"""Reaping, on this host, the processes a killed worker left behind.

A ``kill -9`` of a worker does not reach ansible-playbook (its own session), which would
otherwise keep running beside the attempt that resumes the action. Every worker marks its
environment (``LAMBDA_WORKER_MARK=<pid>:<start time>``), every child inherits the mark,
and a mark whose process is gone names orphans. The pid with its start time names one
process for good, even after the pid is recycled.
"""

from __future__ import annotations

import logging
import os

import psutil

from api.adapters import proctree

log = logging.getLogger(__name__)

WORKER_MARK_ENV = "LAMBDA_WORKER_MARK"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is gone.

    Ticks, as /proc gives them, not ``proctree.process_start_time``'s seconds: the mark's
    format is shared with workers of other versions on the same host, and a live mark
    read as dead would get that worker's playbooks killed."""
    try:
        seconds = psutil.Process(pid).create_time() - psutil.boot_time()
    except (psutil.Error, ValueError):
        return None
    return str(round(seconds * os.sysconf("SC_CLK_TCK")))


def worker_mark(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{pid}:{_start_time(pid)}"


def mark_worker_process() -> str:
    """Put this process's mark in the environment its children will inherit."""
    mark = worker_mark()
    os.environ[WORKER_MARK_ENV] = mark
    return mark


def _marks_in_use() -> set[str]:
    return proctree.env_values_in_use(WORKER_MARK_ENV)


def _mark_alive(mark: str) -> bool:
    pid, _, started = mark.partition(":")
    try:
        return _start_time(int(pid)) == started
    except ValueError:
        return True  # not a mark we wrote: leave it alone


def reap_orphans(own_mark: str | None) -> dict[str, list[int]]:
    """Kill the processes of workers that died on this host. -> {mark: pids left}."""
    result = {}
    for mark in _marks_in_use():
        if mark == own_mark or _mark_alive(mark):
            continue
        pids = proctree.find_processes_with_env(WORKER_MARK_ENV, mark)
        if not pids:
            continue
        log.warning("reaper: worker %s is gone; killing the %d processes it left: %s",
                    mark, len(pids), pids)
        result[mark] = proctree.kill_processes_with_env(WORKER_MARK_ENV, mark, grace=1.0,
                                                        timeout=10.0)
    return result
