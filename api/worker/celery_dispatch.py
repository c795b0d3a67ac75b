"""The API side of the scaled-out shape: publish ``lambda.run_action(action_id)``.

Only the action id crosses the broker; the token stays in the action row, encrypted.
A publish that fails (broker down, unreachable) is logged and dropped: the row is
already committed, so the API still answers 202 and a worker's sweeper sends the action
once it has waited ``accepted_grace`` unclaimed.

On RabbitMQ the message is sent by ``AmqpTaskPublisher`` (Celery's message format on one
channel per process, a sixth of ``send_task``'s CPU); other brokers go through Celery's
``send_task``.

The ``dispatched`` column is not set here: it would cost every request a second write,
and the sweeper cannot trust it anyway (a broker may lose a message it accepted), so it
goes by "unclaimed for a while" instead.
"""

from __future__ import annotations

import logging

from api.settings import Settings
from api.worker.amqp_publisher import AmqpTaskPublisher
from api.worker.celery_app import TASK_NAME, create_celery_app, queue_name

log = logging.getLogger(__name__)

AMQP_SCHEMES = ("amqp://", "pyamqp://")


class CeleryDispatcher:
    def __init__(self, settings: Settings, queue: str | None = None):
        self.queue = queue or queue_name(settings)
        self.app = create_celery_app(settings, self.queue)
        self.publisher = None
        if settings.broker_url.startswith(AMQP_SCHEMES):
            self.publisher = AmqpTaskPublisher(
                settings.broker_url, self.app.amqp.queues[self.queue], TASK_NAME,
                confirm=settings.broker_confirm,
                connect_timeout=self.app.conf.broker_connection_timeout)

    def dispatch(self, action_id: str) -> bool:
        """Publish the action; False (and a log line) when the broker did not take it."""
        try:
            if self.publisher is not None:
                self.publisher.publish(action_id)
            else:
                self.app.send_task(TASK_NAME, args=[action_id], queue=self.queue)
        except Exception as exc:  # kombu raises many kinds; every one means "not sent"
            log.warning("action %s: publish to the broker failed (%s: %s); a worker's "
                        "sweeper will dispatch it", action_id, type(exc).__name__, exc)
            return False
        log.debug("action %s: published to queue %s", action_id, self.queue)
        return True

    def stop(self) -> None:
        """Release the broker connections."""
        try:
            if self.publisher is not None:
                self.publisher.close()
            self.app.close()
        except Exception:
            log.exception("closing the broker connections failed")
