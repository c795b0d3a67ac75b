"""What a Celery worker process keeps beside Celery: the orchestrator, the actions it is
running, and a sweeper.

The sweeper re-sends the task of every action nobody is working on: accepted but never
dispatched (the API died between its commit and its publish, or the broker refused the
publish), queued in a broker that lost it (a Redis restart without persistence), or
running under a lease that expired (its worker was killed). Sending is all it does;
claiming the lease decides who runs the action, so several workers sweeping at once only
cost a few duplicate messages, which end as no-ops.

It also reaps, on this host, the processes a killed worker left behind: a ``kill -9`` of
a worker does not reach ansible-playbook (its own session), which would otherwise keep
running beside the attempt that resumes the action. Every worker marks its environment
(``LAMBDA_WORKER_MARK=<pid>:<start time>``), every child inherits the mark, and a mark
whose process is gone names orphans.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from dataclasses import dataclass, field

from api.adapters import proctree
from api.domain.clock import utcnow
from api.domain.orchestration import Cancellation, Orchestrator

log = logging.getLogger(__name__)

WORKER_MARK_ENV = "LAMBDA_WORKER_MARK"


# --- orphan reaping ------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/pid/stat):
    with the pid it names one process for good, even after the pid is recycled."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rfind(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else None


def worker_mark(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{pid}:{_start_time(pid)}"


def mark_worker_process() -> str:
    """Put this process's mark in the environment its children will inherit."""
    mark = worker_mark()
    os.environ[WORKER_MARK_ENV] = mark
    return mark


def _marks_in_use() -> set[str]:
    prefix = f"{WORKER_MARK_ENV}=".encode()
    marks = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                data = fh.read()
        except OSError:
            continue  # gone, or not ours to read
        for item in data.split(b"\0"):
            if item.startswith(prefix):
                marks.add(item[len(prefix):].decode(errors="replace"))
                break
    return marks


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


# --- the runtime -------------------------------------------------------------------------------


@dataclass
class WorkerRuntime:
    orchestrator: Orchestrator
    uow_factory: object
    send: object  # (action_id) -> None: publishes the task
    interval: float = 5.0
    accepted_grace: float = 10.0
    resend_after: float = 30.0
    close_hooks: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._inflight: dict[str, Cancellation] = {}
        self._sent: dict[str, float] = {}  # action id -> when this process last sent it
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None
        self.mark = os.environ.get(WORKER_MARK_ENV)

    @classmethod
    def build(cls, settings, app) -> WorkerRuntime:
        """The orchestrator from ``api.bootstrap`` pieces; no HTTP app, no dispatcher."""
        from api.adapters.crypto import TokenCipher
        from api.adapters.db.engine import create_db_engine
        from api.adapters.db.uow import UnitOfWorkFactory
        from api.bootstrap import build_orchestrator
        from api.worker.celery_app import TASK_NAME, queue_name, sweep_interval

        engine = create_db_engine(settings.database_url)
        uow_factory = UnitOfWorkFactory(engine)
        orchestrator = build_orchestrator(settings, uow_factory,
                                          TokenCipher.from_settings(settings))
        queue = queue_name(settings)

        def send(action_id: str) -> None:
            app.send_task(TASK_NAME, args=[action_id], queue=queue)

        interval = sweep_interval(settings)
        runtime = cls(orchestrator=orchestrator, uow_factory=uow_factory, send=send,
                      interval=interval,
                      # A dispatched action is claimed within moments; one still
                      # unclaimed after a few sweeps was most likely never sent.
                      accepted_grace=max(3 * interval, 2.0),
                      resend_after=max(settings.lease_seconds, 4 * interval),
                      close_hooks=[engine.dispose])
        log.info("worker %s: sweeping every %.1fs", orchestrator.config.worker_id, interval)
        return runtime

    # -- running actions ---------------------------------------------------------------

    def run(self, action_id: str) -> None:
        with self._lock:
            if self._stopping.is_set():
                stopping = True
            elif action_id in self._inflight:
                log.info("action %s: already running in this worker; duplicate ignored",
                         action_id)
                return
            else:
                stopping = False
                cancel = Cancellation()
                self._inflight[action_id] = cancel
        if stopping:
            self._resend(action_id, "worker is shutting down")
            return
        try:
            self.orchestrator.run(action_id, cancel)
        except Exception:
            # The database was away, say: the row still says what to do, and the sweeper
            # sends the action again once its lease (if any) expires.
            log.exception("action %s: run failed; left to the sweeper", action_id)
        finally:
            with self._lock:
                self._inflight.pop(action_id, None)
        if cancel.reason == "shutdown":
            self._resend(action_id, "handed back on shutdown")

    def _resend(self, action_id: str, why: str) -> None:
        """Queue the action again at once, so another worker resumes it now rather than
        at the next sweep."""
        try:
            self.send(action_id)
            log.info("action %s: sent again (%s)", action_id, why)
        except Exception as exc:
            log.warning("action %s: could not send it again (%s): %s; left to the sweeper",
                        action_id, why, exc)

    def inflight(self) -> list[str]:
        with self._lock:
            return list(self._inflight)

    # -- the sweeper -------------------------------------------------------------------

    def start_sweeper(self) -> None:
        with self._lock:
            if self._sweeper is not None or self._stopping.is_set():
                return
            self._sweeper = threading.Thread(target=self._loop, name="action-sweeper",
                                             daemon=True)
        self._sweeper.start()

    def sweep(self) -> list[str]:
        """Send every resumable action not sent lately by this process; returns them."""
        with self.uow_factory(readonly=True) as uow:
            found = uow.actions.find_resumable(utcnow(), self.accepted_grace)
        now = time.monotonic()
        running = set(self.inflight())
        sent = []
        for action_id in found:
            last = self._sent.get(action_id)
            if action_id in running or (last is not None and now - last < self.resend_after):
                continue
            try:
                self.send(action_id)
            except Exception as exc:
                log.warning("sweeper: cannot send action %s (broker away?): %s", action_id, exc)
                break  # the next sweep tries again
            self._sent[action_id] = now
            sent.append(action_id)
            log.info("sweeper: action %s was orphaned; sent it again", action_id)
        for action_id, when in list(self._sent.items()):
            if now - when > 4 * self.resend_after:
                del self._sent[action_id]
        return sent

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                reap_orphans(self.mark)
            except Exception:
                log.exception("reaper: scan failed")
            try:
                self.sweep()
            except Exception:
                log.exception("sweeper: sweep failed")
            # Jitter keeps the sweepers of many workers from sending in lockstep.
            self._stopping.wait(self.interval * random.uniform(0.8, 1.2))

    # -- shutdown ----------------------------------------------------------------------

    def shutdown(self) -> None:
        """Warm shutdown: cancel running actions with reason ``shutdown``; each kills its
        playbook, gives its lease back and is sent again for another worker."""
        self._stopping.set()
        with self._lock:
            running = dict(self._inflight)
        for action_id, cancel in running.items():
            log.info("action %s: handing back on shutdown", action_id)
            cancel.cancel("shutdown")

    def close(self) -> None:
        self._stopping.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=15)
        for hook in self.close_hooks:
            hook()
