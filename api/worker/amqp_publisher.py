"""Publish ``lambda.run_action`` to RabbitMQ in Celery's own message format, cheaply.

Celery's ``send_task`` costs the accept path about 0.25-0.45 ms of CPU per request
(routing, signals, ``as_task_v2``, kombu's producer pool, ``ensure`` and ``maybe_declare``),
a third of the whole request. This publisher keeps one AMQP channel per process and
sends a prebuilt message of Celery's task protocol v2 (the same headers, properties and
``[args, kwargs, embed]`` body that ``send_task`` sends, checked against
``app.amqp.as_task_v2`` by the tests), about 0.04 ms a message. Workers are plain Celery
workers: nothing changes on their side.

It is AMQP only (the ``amqp://`` and ``pyamqp://`` brokers); ``CeleryDispatcher`` keeps
``send_task`` for the others (Redis).

Failure handling matches the product's rule that a publish is a hint: the action row is
committed first and the workers' sweepers re-send what was never claimed. So a publish
that fails is retried once on a fresh connection (a broker restart leaves the old one
dead), then reported as not sent. After a failed connect, dispatches answer "not sent" at
once for ``retry_after`` seconds instead of each holding a request on a dead broker.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref

from kombu import Connection

log = logging.getLogger(__name__)

# Celery's protocol v2 "embed" element: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


# Publishers of this process, for the at-fork hook below.
_publishers: weakref.WeakSet = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for publisher in list(_publishers):
        publisher._forget_parent_state()


os.register_at_fork(after_in_child=_after_fork_in_child)


class PublishFailed(Exception):
    """The broker did not take the message (the cause is chained)."""


def celery_task_message(task_name: str, task_id: str, args: list, origin: str
                        ) -> tuple[dict, dict, str]:
    """(headers, properties, body) of a Celery protocol v2 task message.

    The fields ``app.amqp.as_task_v2`` fills for a plain ``send_task(name, args)``.
    """
    headers = {
        "lang": "py",
        "task": task_name,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": repr(args),
        "kwargsrepr": "{}",
        "origin": origin,
        "ignore_result": False,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    properties = {"correlation_id": task_id, "reply_to": ""}
    body = json.dumps([args, {}, _EMBED])
    return headers, properties, body


class AmqpTaskPublisher:
    """One connection and channel per process, shared by its threads under a lock."""

    def __init__(self, broker_url: str, queue, task_name: str, confirm: bool = False,
                 connect_timeout: float = 3.0, retry_after: float = 1.0):
        self._broker_url = broker_url
        self._queue = queue  # a kombu Queue: Celery's entity, declared as Celery declares it
        self._exchange = queue.exchange.name
        self._routing_key = queue.routing_key
        self._task_name = task_name
        self._confirm = confirm
        self._connect_timeout = connect_timeout
        self._retry_after = retry_after
        self._origin = f"{os.getpid()}@{socket.gethostname()}"
        self._connection: Connection | None = None
        self._forget_parent_state()
        _publishers.add(self)

    def _forget_parent_state(self) -> None:
        """The per-process state, fresh: a new lock, no connection, the broker not down.

        Also what a forked child (a gunicorn worker) starts from: the parent's socket is
        dropped, never closed or used, since it is still the parent's.
        """
        self._lock = threading.Lock()
        self._connection = self._channel = None
        self._down_until = 0.0

    def publish(self, action_id: str) -> str:
        """Send ``task_name(action_id)``; return the task id. Raises ``PublishFailed``."""
        task_id = str(uuid.uuid4())
        headers, properties, body = celery_task_message(
            self._task_name, task_id, [action_id], self._origin)
        with self._lock:
            if time.monotonic() < self._down_until:
                raise PublishFailed("the broker was unreachable moments ago")
            try:
                self._send(headers, properties, body)
            except Exception as first:  # a dead connection (broker restarted): once more
                self._reset()
                try:
                    self._send(headers, properties, body)
                except Exception as exc:
                    self._reset()
                    self._down_until = time.monotonic() + self._retry_after
                    raise PublishFailed(f"{type(exc).__name__}: {exc}") from first
        return task_id

    def close(self) -> None:
        with self._lock:
            self._reset()

    def _send(self, headers: dict, properties: dict, body: str) -> None:
        channel = self._ready_channel()
        message = channel.prepare_message(
            body, priority=0, content_type="application/json",
            content_encoding="utf-8", headers=headers,
            properties=dict(properties, delivery_mode=2))
        if self._confirm:  # py-amqp selects confirm mode on the first one
            channel.basic_publish_confirm(message, exchange=self._exchange,
                                          routing_key=self._routing_key,
                                          confirm_timeout=self._connect_timeout)
        else:
            channel.basic_publish(message, exchange=self._exchange,
                                  routing_key=self._routing_key)

    def _ready_channel(self):
        if self._channel is not None:
            return self._channel
        # write_timeout: a broker that stops reading (a memory alarm) fails the publish
        # instead of holding every request of the process on this lock.
        connection = Connection(self._broker_url, connect_timeout=self._connect_timeout,
                                transport_options={"write_timeout": self._connect_timeout})
        try:
            channel = connection.channel()
            # Declared as Celery declares it (durable exchange, queue and binding), so a
            # message sent before any worker started waits in the queue.
            self._queue.bind(channel).declare()
        except Exception:
            connection.release()
            raise
        self._connection, self._channel = connection, channel
        return channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):  # already dead: nothing to release
                connection.release()
