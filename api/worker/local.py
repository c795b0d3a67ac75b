"""The embedded dispatcher: a durable in-process pool.

Durable because the pool keeps nothing of its own: the action row, committed before the
202, is the queue. ``dispatch`` is only a fast path; the runtime's sweeper claims every
unfinished action that nobody holds (a process restarted, crashed, or lost a dispatch), so
a restart resumes every unfinished action and forgets none.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from api.domain.orchestration import Orchestrator
from api.domain.ports import NO_METRICS, Metrics
from api.worker.runtime import ActionRuntime

log = logging.getLogger(__name__)


class LocalDispatcher:
    def __init__(self, orchestrator: Orchestrator, uow_factory, *, size: int = 4,
                 sweep_interval: float = 5.0, accepted_grace: float = 2.0,
                 metrics: Metrics = NO_METRICS):
        self.size = size
        self._pool: ThreadPoolExecutor | None = None
        # No hand-back: a stopped action's lease is released, and the next process's first
        # sweep resumes it.
        self.runtime = ActionRuntime(orchestrator, uow_factory, resume=self.dispatch,
                                     capacity=size, sweep_interval=sweep_interval,
                                     accepted_grace=accepted_grace, metrics=metrics)

    def start(self) -> LocalDispatcher:
        self._pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="action")
        self.runtime.start_sweeper()
        return self

    def dispatch(self, action_id: str) -> None:
        cancel = self.runtime.reserve(action_id)
        if cancel is not None:
            self._pool.submit(self.runtime.run_reserved, action_id, cancel)

    def sweep(self) -> list[str]:
        """Dispatch every resumable action the pool has room for; returns their ids."""
        return self.runtime.sweep()

    def stop(self, timeout: float = 30.0) -> None:
        """Hand running actions back (their playbooks are killed) so the next process
        resumes them at once instead of waiting for a lease to expire."""
        self.runtime.shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.runtime.close(timeout=timeout)
