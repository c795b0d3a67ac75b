"""The embedded dispatcher: a durable in-process pool.

Durable because the pool keeps nothing of its own: the action row, committed before the
202, is the queue. ``dispatch`` is only a fast path; a sweeper claims every unfinished
action that nobody holds (a process restarted, crashed, or lost a dispatch), so a
restart resumes every unfinished action and forgets none.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from api.domain.clock import utcnow
from api.domain.orchestration import Cancellation, Orchestrator

log = logging.getLogger(__name__)


class LocalDispatcher:
    def __init__(self, orchestrator: Orchestrator, uow_factory, *, size: int = 4,
                 sweep_interval: float = 5.0, accepted_grace: float = 2.0):
        self.orchestrator = orchestrator
        self.uow_factory = uow_factory
        self.size = size
        self.sweep_interval = sweep_interval
        self.accepted_grace = accepted_grace
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[str, Cancellation] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None

    def start(self) -> LocalDispatcher:
        self._pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="action")
        self._sweeper = threading.Thread(target=self._sweep_loop, name="action-sweeper",
                                         daemon=True)
        self._sweeper.start()
        return self

    def dispatch(self, action_id: str) -> None:
        with self._lock:
            if action_id in self._inflight or self._stopping.is_set():
                return
            cancel = Cancellation()
            self._inflight[action_id] = cancel
        self._pool.submit(self._run, action_id, cancel)

    def sweep(self) -> list[str]:
        """Dispatch every resumable action; returns their ids."""
        with self.uow_factory(readonly=True) as uow:
            found = uow.actions.find_resumable(utcnow(), self.accepted_grace)
        with self._lock:
            free = self.size - len(self._inflight)
            fresh = [a for a in found if a not in self._inflight][:max(free, 0)]
        for action_id in fresh:
            log.info("sweeper: resuming action %s", action_id)
            self.dispatch(action_id)
        return fresh

    def stop(self, timeout: float = 30.0) -> None:
        """Hand running actions back (their playbooks are killed) so the next process
        resumes them at once instead of waiting for a lease to expire."""
        self._stopping.set()
        with self._lock:
            for cancel in self._inflight.values():
                cancel.cancel("shutdown")
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._sweeper is not None:
            self._sweeper.join(timeout=timeout)

    def _run(self, action_id: str, cancel: Cancellation) -> None:
        try:
            if not self._stopping.is_set():
                self.orchestrator.run(action_id, cancel)
        except Exception:
            log.exception("action %s: worker error", action_id)
        finally:
            with self._lock:
                self._inflight.pop(action_id, None)

    def _sweep_loop(self) -> None:
        # The first sweep at once: resume what a previous process left unfinished.
        while not self._stopping.is_set():
            try:
                self.sweep()
            except Exception:
                log.exception("sweeper: sweep failed")
            self._stopping.wait(self.sweep_interval)
