"""The API side of the scaled-out shape: publish ``lambda.run_action(action_id)``.

Only the action id crosses the broker; the token stays in the action row, encrypted.
A publish that fails (broker down, unreachable) is logged and dropped: the row is
already committed, so the API still answers 202 and a worker's sweeper sends the action
once it has waited ``accepted_grace`` unclaimed.

Messages go out through Celery's ``send_task``: its producer pool keeps the process's
broker connections and reuses them across threads, declares the queue as the workers do,
retries a lost connection under ``PUBLISH_RETRY_POLICY`` and, with ``LAMBDA_BROKER_CONFIRM``,
waits for RabbitMQ's publisher confirm (the app's transport options). Build one per
process: the server builds the app in each worker process at its startup (after the
fork), so no pooled connection is shared with another process.

The ``dispatched`` column is not set here: it would cost every request a second write,
and the sweeper cannot trust it anyway (a broker may lose a message it accepted), so it
goes by "unclaimed for a while" instead.
"""

from __future__ import annotations

import logging
import time

from api.domain.ports import NO_METRICS, Metrics
from api.settings import Settings
from api.worker.celery_app import TASK_NAME, create_celery_app, queue_name

log = logging.getLogger(__name__)

# After a publish failed (retries spent), dispatches answer "not sent" at once for this
# long instead of each holding a request on a broker that is away.
RETRY_AFTER = 1.0


class CeleryDispatcher:
    def __init__(self, settings: Settings, queue: str | None = None,
                 retry_after: float = RETRY_AFTER, metrics: Metrics = NO_METRICS):
        self.queue = queue or queue_name(settings)
        self.retry_after = retry_after
        self.metrics = metrics
        self.app = create_celery_app(settings, self.queue)
        self._down_until = 0.0

    def dispatch(self, action_id: str) -> bool:
        """Publish the action; False (and a log line) when the broker did not take it."""
        if time.monotonic() < self._down_until:
            log.warning("action %s: the broker was unreachable moments ago; a worker's "
                        "sweeper will dispatch it", action_id)
            self.metrics.dispatch_failed()
            return False
        try:
            self.app.send_task(TASK_NAME, args=[action_id], queue=self.queue)
        except Exception as exc:  # kombu raises many kinds; every one means "not sent"
            self._down_until = time.monotonic() + self.retry_after
            log.warning("action %s: publish to the broker failed (%s: %s); a worker's "
                        "sweeper will dispatch it", action_id, type(exc).__name__, exc)
            self.metrics.dispatch_failed()
            return False
        log.debug("action %s: published to queue %s", action_id, self.queue)
        return True

    def stop(self) -> None:
        """Release the broker connections."""
        try:
            self.app.close()
        except Exception:
            log.exception("closing the broker connections failed")

