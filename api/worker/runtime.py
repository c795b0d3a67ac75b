"""What every process that runs actions keeps: the actions in flight, the sweeper, hand-back.

The local pool and the Celery worker differ only in how an action reaches a thread:
the pool submits it to its own executor, the worker receives it as a task. Both use one
``ActionRuntime``: it registers each running action's ``Cancellation`` (so a duplicate is
ignored and a shutdown reaches every one), sweeps the database for actions nobody holds
and hands them to ``resume``, and on shutdown cancels what runs so its lease is given back
at once (``hand_back`` then re-queues it where another process takes it). Each sweep also
sets FAILED the instances left STARTING or STOPPING with no action to move them on.

The action row, committed before the 202, is the queue: a resumed, duplicated or
re-swept action is a no-op unless its lease can be claimed.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from api.domain.clock import utcnow
from api.domain.log_context import about_action
from api.domain.orchestration import SHUTDOWN, Cancellation, Orchestrator, reconcile_stranded
from api.domain.ports import NO_METRICS, Metrics

log = logging.getLogger(__name__)


class ActionRuntime:
    """In-flight tracking, cancel, sweeping and hand-back for one process.

    ``resume(action_id)`` is how the sweeper starts an orphan (submit it, or send it to the
    broker); ``hand_back(action_id)``, if given, re-queues an action stopped by a shutdown.
    ``capacity`` bounds how many actions the sweeper starts at once (a pool's size), and
    ``resend_after`` keeps it from resuming one action again within that many seconds
    (a broker message is in flight meanwhile). ``before_sweep`` runs first on every pass.
    ``metrics`` counts the actions the sweeper resumes.
    """

    def __init__(self, orchestrator: Orchestrator | None, uow_factory, *,
                 resume: Callable[[str], object],
                 hand_back: Callable[[str], object] | None = None,
                 capacity: int | None = None, sweep_interval: float = 5.0,
                 accepted_grace: float = 2.0, resend_after: float = 0.0,
                 before_sweep: Callable[[], object] | None = None,
                 resumed_means: str = "dispatched it", metrics: Metrics = NO_METRICS):
        self.orchestrator = orchestrator
        self.uow_factory = uow_factory
        self.resume = resume
        self.hand_back = hand_back
        self.capacity = capacity
        self.sweep_interval = sweep_interval
        self.accepted_grace = accepted_grace
        self.resend_after = resend_after
        self.before_sweep = before_sweep
        self.resumed_means = resumed_means  # for the log: what resume did
        self.metrics = metrics
        self._inflight: dict[str, Cancellation] = {}
        self._resumed: dict[str, float] = {}  # action id -> when the sweeper last resumed it
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    # -- running actions -----------------------------------------------------------------

    def reserve(self, action_id: str) -> Cancellation | None:
        """Register the action as running here; None if it already is or we are stopping."""
        with self._lock:
            if self._stopping.is_set() or action_id in self._inflight:
                return None
            cancel = self._inflight[action_id] = Cancellation()
            return cancel

    def run_reserved(self, action_id: str, cancel: Cancellation) -> None:
        """Run a reserved action in this thread until it ends, fails or is cancelled."""
        with about_action(action_id):
            self._run_reserved(action_id, cancel)

    def _run_reserved(self, action_id: str, cancel: Cancellation) -> None:
        try:
            if not self._stopping.is_set():
                self.orchestrator.run(action_id, cancel)
        except Exception:
            # The database was away, say: the row still says what to do, and a sweeper
            # resumes the action once its lease (if any) expires.
            log.exception("action %s: run failed; left to the sweeper", action_id)
        finally:
            with self._lock:
                self._inflight.pop(action_id, None)
        if cancel.reason == SHUTDOWN:
            self._hand_back(action_id, "handed back on shutdown")

    def run(self, action_id: str) -> None:
        """Reserve and run in this thread (a Celery task's body)."""
        cancel = self.reserve(action_id)
        if cancel is None:
            with about_action(action_id):
                if self._stopping.is_set():
                    self._hand_back(action_id, "this process is shutting down")
                else:
                    log.info("action %s: already running here; duplicate ignored", action_id)
            return
        self.run_reserved(action_id, cancel)

    def inflight(self) -> list[str]:
        with self._lock:
            return list(self._inflight)

    def _hand_back(self, action_id: str, why: str) -> None:
        if self.hand_back is None:
            return  # the next process's first sweep resumes it
        try:
            self.hand_back(action_id)
            log.info("action %s: queued again (%s)", action_id, why)
        except Exception as exc:
            log.warning("action %s: could not queue it again (%s): %s; left to the sweeper",
                        action_id, why, exc)

    # -- the sweeper ---------------------------------------------------------------------

    def sweep(self) -> list[str]:
        """Resume every action nobody holds that this process is not running; returns them.
        First, instances stuck in a transitional status with no action are set FAILED."""
        try:
            reconcile_stranded(self.uow_factory)
        except Exception:
            log.exception("sweeper: reconciling stranded instances failed")
        with self.uow_factory(readonly=True) as uow:
            found = uow.actions.find_resumable(utcnow(), self.accepted_grace)
        now = time.monotonic()
        with self._lock:
            running = set(self._inflight)
            free = None if self.capacity is None else max(self.capacity - len(running), 0)
        fresh = [a for a in found if a not in running
                 and now - self._resumed.get(a, -self.resend_after) >= self.resend_after]
        if free is not None:
            fresh = fresh[:free]
        resumed = []
        for action_id in fresh:
            try:
                self.resume(action_id)
            except Exception as exc:
                log.warning("sweeper: cannot resume action %s: %s", action_id, exc)
                break  # the broker is away, say: the next sweep tries again
            resumed.append(action_id)
            if self.resend_after > 0:
                self._resumed[action_id] = now
            with about_action(action_id):
                log.info("sweeper: action %s was orphaned; %s", action_id, self.resumed_means)
        self.metrics.actions_resumed(len(resumed))
        for action_id, when in list(self._resumed.items()):
            if now - when > 4 * self.resend_after:
                del self._resumed[action_id]
        return resumed

    def start_sweeper(self) -> None:
        """Sweep now (what a previous process left unfinished) and then every interval."""
        with self._lock:
            if self._sweeper is not None or self._stopping.is_set():
                return
            self._sweeper = threading.Thread(target=self._sweep_loop, name="action-sweeper",
                                             daemon=True)
        self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            if self.before_sweep is not None:
                try:
                    self.before_sweep()
                except Exception:
                    log.exception("sweeper: preparing the sweep failed")
            try:
                self.sweep()
            except Exception:
                log.exception("sweeper: sweep failed")
            # Jitter keeps the sweepers of many processes from resuming in lockstep.
            self._stopping.wait(self.sweep_interval * random.uniform(0.8, 1.2))

    # -- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Cancel running actions with reason ``shutdown``: each kills its playbook, gives
        its lease back and is handed back, so it resumes now rather than after the lease."""
        self._stopping.set()
        with self._lock:
            running = dict(self._inflight)
        for action_id, cancel in running.items():
            log.info("action %s: handing back on shutdown", action_id)
            cancel.cancel(SHUTDOWN)

    def close(self, timeout: float = 15.0) -> None:
        self.shutdown()
        if self._sweeper is not None:
            self._sweeper.join(timeout=timeout)
