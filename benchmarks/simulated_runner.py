"""A playbook runner that replays recorded runs: the scale run measures the control plane.

``SimulatedRunner`` implements ``PlaybookRunnerPort`` as ``api.adapters.ansible.AnsibleRunner``
does, without Ansible: it reads the run's rendered inventory (its ``master`` and ``slaves``
groups, host aliases and addresses), narrows it to ``run.limit``, and replays the tasks
recorded for ``run.playbook`` from real runs (``benchmarks/data/playbook_timings.json``,
built by ``benchmarks.record_timings``) in their recorded order. Each task runs on the hosts
of the inventory groups it ran on when recorded, so a recording of 1 master + 2 slaves
stands for any number of slaves; it takes its slowest host's recorded time (Ansible's linear
strategy runs a task on every host at once and waits for all), then reports one
``TaskResult`` per host, fastest first, as the real runner's events would. The whole
playbooks (``lambda-start.yml``...) are their chains in order (``api.domain.chains``).

Sleeps wait on the run's cancel event, so a cancel ends a run at once ("cancelled"), and
``run.timeout`` ends it as the real runner does ("timeout"). ``fail_rate`` is the chance that
a run fails: one of its tasks fails on one host with a message of the kind Ansible writes,
and the run ends there (the playbooks' plays are ``any_errors_fatal``).

A journal (``journal=``) gets one JSON line at the start and one at the end of each run
(``{"event", "t", "pid", "ident", "group", "chain", "playbook", "hosts"}``, and ``status``
at the end), each one ``write`` to a file opened with ``O_APPEND``: the scale driver reads
it to check that no two runs on the same hosts overlapped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from api.domain.chains import PLAYBOOK_CHAINS
from api.domain.model import TaskResult
from api.domain.ports import PlaybookResult, PlaybookRun

log = logging.getLogger(__name__)

DEFAULT_TIMINGS = Path(__file__).resolve().parent / "data" / "playbook_timings.json"
SOURCES = ("lab", "demo")
# ansible-playbook's exit codes: 2 when a host failed; ansible-runner's 254 for a run it
# was told to stop (the real runner stops a timed out run the same way as a cancelled one).
RC_OK, RC_FAILED, RC_STOPPED = 0, 2, 254
# Placeholders record_timings puts in recorded messages for what names a recorded host.
HOST, IP, MASTER, MASTER_IP = "<host>", "<ip>", "<master>", "<master_ip>"


@dataclass(frozen=True)
class Host:
    name: str  # the inventory alias
    group: str  # master | slaves (the inventory group it is listed in)
    ip: str | None = None


def parse_inventory(text: str) -> list[Host]:
    """The hosts of a rendered INI inventory, in the order listed, with their group.

    Host lines are those of plain group sections (``[master]``, ``[slaves]``): the first
    word is the alias, ``ansible_host=`` its address; ``[x:vars]`` and ``[x:children]``
    sections hold no hosts."""
    hosts: list[Host] = []
    seen: set[str] = set()
    group = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip()
            group = None if ":" in name else name
            continue
        if group is None:
            continue
        words = line.split()
        alias = words[0]
        if alias in seen:
            continue
        seen.add(alias)
        ip = next((w.split("=", 1)[1] for w in words[1:] if w.startswith("ansible_host=")),
                  None)
        hosts.append(Host(alias, group, ip))
    return hosts


def apply_limit(hosts: list[Host], limit: str | None) -> list[Host]:
    """The hosts ``limit`` selects, as ``ansible-playbook --limit`` would for the patterns
    the service writes: host aliases and group names, separated by ``,`` or ``:``, ``all``,
    and ``!pattern`` to leave some out."""
    if not limit:
        return list(hosts)
    include: set[str] = set()
    exclude: set[str] = set()
    any_include = False
    for pattern in filter(None, (p.strip() for p in re.split(r"[,:]", limit))):
        target = exclude if pattern.startswith("!") else include
        pattern = pattern.lstrip("!&")
        if target is include:
            any_include = True
        for host in hosts:
            if pattern in ("all", "*", "lambda", host.name, host.group):
                target.add(host.name)
    chosen = include if any_include else {h.name for h in hosts}
    return [h for h in hosts if h.name in chosen and h.name not in exclude]


def load_timings(path: str | Path = DEFAULT_TIMINGS, source: str | None = None) -> dict:
    """The recordings of one source of the timings file: ``source``, else the file's
    ``default_source`` (the lab when it was recorded there, else the demo)."""
    data = json.loads(Path(path).read_text())
    sources = data["sources"]
    name = source or data.get("default_source") or next(
        (s for s in SOURCES if s in sources), None)
    if name not in sources:
        raise ValueError(f"no recordings of source {name!r} in {path} "
                         f"(it has {', '.join(sorted(sources)) or 'none'})")
    return {"name": name, **sources[name]}


def failure_message(task: str, host: Host) -> str:
    """A message of the kind Ansible gives for a task of this name that failed."""
    lowered = task.lower()
    if any(word in lowered for word in ("wait", "ready", "listen", "answer", "registered")):
        return f"Timeout when waiting for {host.ip or host.name}"
    return ("non-zero return code | simulated failure: the command exited 1 "
            f"on {host.name}")


class _Stopped(Exception):
    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


class SimulatedRunner:
    """``PlaybookRunnerPort`` replaying recorded runs (see the module's docstring)."""

    def __init__(self, timings: Mapping | None = None, *, timings_path: str | Path | None = None,
                 source: str | None = None, speed: float = 1.0, fail_rate: float = 0.0,
                 seed: int | None = None, journal: str | Path | None = None,
                 default_timeout: float | None = None):
        if timings is None:
            timings = load_timings(timings_path or DEFAULT_TIMINGS, source)
        self.timings = timings
        self.source = timings.get("name", source)
        self.playbooks: Mapping[str, dict] = timings["playbooks"]
        if speed < 0:
            raise ValueError("speed must not be negative")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be within 0 and 1")
        self.speed = float(speed)
        self.fail_rate = float(fail_rate)
        self.default_timeout = default_timeout
        self.journal = str(journal) if journal else None
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()

    # --- the port -------------------------------------------------------------------------

    def run(self, run: PlaybookRun, on_task: Callable[[TaskResult], None] | None = None,
            cancel: threading.Event | None = None) -> PlaybookResult:
        hosts = apply_limit(parse_inventory(run.inventory), run.limit)
        self._journal("start", run, hosts)
        result = None
        try:
            result = self._replay(run, hosts, on_task, cancel or threading.Event())
            return result
        finally:
            self._journal("end", run, hosts,
                          status=result.status if result is not None else "crashed")

    # --- one run --------------------------------------------------------------------------

    def _recordings(self, playbook: str) -> list[dict] | None:
        if playbook in self.playbooks:
            return [self.playbooks[playbook]]
        chains = PLAYBOOK_CHAINS.get(playbook)
        if chains and all(c in self.playbooks for c in chains):
            return [self.playbooks[c] for c in chains]
        return None

    def _replay(self, run: PlaybookRun, hosts: list[Host], on_task, cancel: threading.Event
                ) -> PlaybookResult:
        recordings = self._recordings(run.playbook)
        if recordings is None:
            failure = TaskResult(host="-", task="ansible-playbook", status="failed",
                                 message=f"playbook {run.playbook} not found in the "
                                         "playbooks directory")
            return PlaybookResult(status="failed", rc=None, tasks=[], failure=failure)
        if not hosts:
            failure = TaskResult(host="-", task="ansible-playbook", status="failed",
                                 message="[ERROR]: Specified inventory, host pattern and/or "
                                         "--limit leaves us with no hosts to target.")
            return PlaybookResult(status="failed", rc=1, tasks=[], failure=failure)
        timeout = run.timeout if run.timeout is not None else self.default_timeout
        deadline = time.monotonic() + timeout if timeout else None
        master = next((h for h in hosts if h.group == "master"), None)
        steps = [(rec, task) for rec in recordings for task in rec["tasks"]]
        injected = self._pick_failure(steps, hosts)
        tasks: list[TaskResult] = []
        current: list[TaskResult] = []  # the task running now, on each of its hosts
        try:
            for n, rec in enumerate(recordings):
                # A whole playbook is one ansible-playbook: one start-up, one teardown.
                if n == 0:
                    self._sleep(rec.get("startup", 0.0), cancel, deadline)
                for task in rec["tasks"]:
                    on = [(h, task["hosts"][h.group]) for h in hosts if h.group in task["hosts"]]
                    if not on:
                        continue  # Ansible: no hosts matched, no events
                    self._sleep(task.get("gap", 0.0), cancel, deadline)
                    results = [self._result(task, host, rec_host, master)
                               for host, rec_host in on]
                    current[:] = results
                    fail_here = injected is not None and injected[0] is task
                    # The slowest host (hosts run a task side by side), or the task's
                    # recorded span when its hosts' starts were spread out.
                    self._sleep(max([task.get("span", 0.0)] + [
                        recorded.get("duration") or 0.0 for _host, recorded in on]),
                        cancel, deadline)
                    current.clear()
                    fatal = None
                    for result in sorted(results, key=lambda r: r.duration or 0.0):
                        if fail_here and result.host == injected[1].name:
                            result = dataclasses.replace(
                                result, status="failed",
                                message=failure_message(result.task, injected[1]))
                        self._emit(result, tasks, on_task)
                        if result.status in ("failed", "unreachable") and not (
                                result.message or "").startswith("ignored"):
                            fatal = fatal or result
                    if fatal is not None:
                        return PlaybookResult(status="failed", rc=RC_FAILED, tasks=tasks,
                                              failure=fatal)
                if n == len(recordings) - 1:
                    self._sleep(rec.get("teardown", 0.0), cancel, deadline)
        except _Stopped as stopped:
            why = (f"timed out after {timeout:g}s" if stopped.status == "timeout"
                   else "cancelled")
            if current:
                now = current[0]
                failure = TaskResult(host=now.host, task=now.task, status="failed",
                                     role=now.role, play=now.play,
                                     message=f"playbook {why} while this task was running")
            else:
                failure = TaskResult(host="-", task="ansible-playbook", status="failed",
                                     message=f"playbook {why}")
            return PlaybookResult(status=stopped.status, rc=RC_STOPPED, tasks=tasks,
                                  failure=failure)
        return PlaybookResult(status="successful", rc=RC_OK, tasks=tasks)

    def _result(self, task: dict, host: Host, recorded: dict, master: Host | None
                ) -> TaskResult:
        message = recorded.get("message")
        if message:
            message = (message.replace(HOST, host.name).replace(IP, host.ip or host.name)
                       .replace(MASTER_IP, (master.ip or master.name) if master else "-")
                       .replace(MASTER, master.name if master else "-"))
        duration = recorded.get("duration")
        return TaskResult(host=host.name, task=task["task"], status=recorded["status"],
                          role=task.get("role"), play=task.get("play"), message=message,
                          duration=duration * self.speed if duration is not None else None)

    @staticmethod
    def _emit(result: TaskResult, tasks: list[TaskResult], on_task) -> None:
        tasks.append(result)
        if on_task is not None:
            try:
                on_task(result)
            except Exception:
                log.exception("on_task callback failed for task %r", result.task)

    def _pick_failure(self, steps: list[tuple[dict, dict]], hosts: list[Host]):
        """(task, host) to fail in this run, or None: ``fail_rate`` is the chance per run."""
        if self.fail_rate <= 0 or not hosts:
            return None
        with self._rng_lock:
            if self._rng.random() >= self.fail_rate:
                return None
            candidates = []
            for _rec, task in steps:
                on = [h for h in hosts if task["hosts"].get(h.group, {}).get("status")
                      in ("ok", "changed")]
                if on:
                    candidates.append((task, on))
            if not candidates:
                return None
            task, on = self._rng.choice(candidates)
            return task, self._rng.choice(on)

    def _sleep(self, seconds: float, cancel: threading.Event, deadline: float | None) -> None:
        """Wait ``seconds`` times ``speed``, ending early with ``_Stopped`` on a cancel or the
        deadline."""
        end = time.monotonic() + max(seconds, 0.0) * self.speed
        while True:
            if cancel.is_set():
                raise _Stopped("cancelled")
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise _Stopped("timeout")
            if now >= end:
                return
            wake = end if deadline is None else min(end, deadline)
            if cancel.wait(wake - now):
                raise _Stopped("cancelled")

    # --- the journal ----------------------------------------------------------------------

    def _journal(self, event: str, run: PlaybookRun, hosts: list[Host], **extra) -> None:
        if not self.journal:
            return
        line = {"event": event, "t": time.time(), "pid": os.getpid(), "ident": run.ident,
                "group": run.group, "chain": run.chain, "playbook": run.playbook,
                "hosts": [h.name for h in hosts], **extra}
        data = (json.dumps(line, sort_keys=True) + "\n").encode()
        try:
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)  # one write: lines of concurrent runs never interleave
            finally:
                os.close(fd)
        except OSError as exc:
            log.error("cannot append to the journal %s: %s", self.journal, exc)
