"""Publish ``lambda.run_action`` to RabbitMQ in Celery's own message format, cheaply.

Celery's ``send_task`` costs the accept path about 0.25-0.45 ms of CPU per request
(routing, signals, ``as_task_v2``, kombu's producer pool, ``ensure`` and ``maybe_declare``),
a third of the whole request. This publisher keeps one AMQP channel per process and
sends a prebuilt message of Celery's task protocol v2 (the same headers, properties and
``[args, kwargs, embed]`` body that ``send_task`` sends, checked against
``app.amqp.as_task_v2`` by the tests). Workers are plain Celery workers: nothing changes on
their side.

Even so, py-amqp spent ~130-170 us of CPU a message here building the frames in Python
(the 19-entry header table above all), for ~4 us of socket write. Every message differs
from the next only in its two ids, which have a fixed length, so ``FrameTemplate`` has
py-amqp write one message once per channel and each publish copies those bytes with the
ids put in (~5 us; a whole publish, lock and write included, ~40 us). Ids of another
shape (not canonical UUIDs) and publisher confirms take py-amqp's own path, as does a
channel whose template could not be built.

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
import re
import socket
import threading
import time
import uuid
import weakref

from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from kombu import Connection

log = logging.getLogger(__name__)

# Celery's protocol v2 "embed" element: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# What a template's id slots take: the same length as the placeholder, and characters that
# json.dumps and repr copy as they are (so the frame's lengths and encodings still hold).
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# basic.publish's arguments, as py-amqp's Channel._basic_publish packs them.
_PUBLISH_ARGSIG = "Bssbb"


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


def prepare_task_message(channel, headers: dict, properties: dict, body: str):
    """The AMQP message of a task: Celery's properties, persistent."""
    return channel.prepare_message(
        body, priority=0, content_type="application/json", content_encoding="utf-8",
        headers=headers, properties=dict(properties, delivery_mode=2))


class _Capture:
    """A transport stand-in that keeps what py-amqp's frame writer writes."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, data) -> None:
        self.chunks.append(bytes(data))


def publish_frames(channel, message, exchange: str, routing_key: str) -> bytes:
    """The bytes py-amqp writes for ``channel.basic_publish(message, exchange, routing_key)``.

    Its own frame writer, as ``send_method`` calls it, into a capture instead of the socket.
    """
    connection = channel.connection
    capture = _Capture()
    write_frame = frame_writer(connection, capture)
    sent = connection.bytes_sent
    try:
        args = dumps(_PUBLISH_ARGSIG, (0, exchange, routing_key, False, False))
        write_frame(1, channel.channel_id, spec.Basic.Publish, args, message)
    finally:
        connection.bytes_sent = sent  # nothing went out
    return b"".join(capture.chunks)


class FrameTemplate:
    """One task message's frames, written once by py-amqp, with slots for the two ids.

    The task id fills three places (header ``id``, ``root_id``, ``correlation_id``) and
    the action id two (``argsrepr`` and the body). Both are placeholders of a canonical
    UUID's length, so every length field and the body size in the frames stay right.
    """

    def __init__(self, frames: bytes, task_slot: bytes, action_slot: bytes):
        self._frames = frames
        self._task_slot = task_slot
        self._action_slot = action_slot

    @classmethod
    def build(cls, channel, exchange: str, routing_key: str, task_name: str,
              origin: str) -> FrameTemplate | None:
        """None when it cannot be built as expected (py-amqp's own path then)."""
        task_slot, action_slot = str(uuid.uuid4()), str(uuid.uuid4())
        headers, properties, body = celery_task_message(task_name, task_slot, [action_slot],
                                                        origin)
        try:
            message = prepare_task_message(channel, headers, properties, body)
            frames = publish_frames(channel, message, exchange, routing_key)
        except Exception:  # py-amqp internals it relies on changed: publish as py-amqp does
            log.warning("AMQP frame template: cannot build one; publishing through py-amqp",
                        exc_info=True)
            return None
        task_slot_bytes, action_slot_bytes = task_slot.encode(), action_slot.encode()
        if frames.count(task_slot_bytes) != 3 or frames.count(action_slot_bytes) != 2:
            log.warning("AMQP frame template: unexpected layout; publishing through py-amqp")
            return None
        return cls(frames, task_slot_bytes, action_slot_bytes)

    @staticmethod
    def fits(task_id: str, action_id: str) -> bool:
        return (_CANONICAL_UUID.fullmatch(task_id) is not None
                and _CANONICAL_UUID.fullmatch(action_id) is not None)

    def fill(self, task_id: str, action_id: str) -> bytes:
        """The frames with these ids (both must ``fit``)."""
        return (self._frames.replace(self._task_slot, task_id.encode("ascii"))
                .replace(self._action_slot, action_id.encode("ascii")))


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
        self._connection = self._channel = self._template = None
        self._down_until = 0.0

    def publish(self, action_id: str) -> str:
        """Send ``task_name(action_id)``; return the task id. Raises ``PublishFailed``."""
        task_id = str(uuid.uuid4())
        with self._lock:
            if time.monotonic() < self._down_until:
                raise PublishFailed("the broker was unreachable moments ago")
            try:
                self._send(task_id, action_id)
            except Exception as first:  # a dead connection (broker restarted): once more
                self._reset()
                try:
                    self._send(task_id, action_id)
                except Exception as exc:
                    self._reset()
                    self._down_until = time.monotonic() + self._retry_after
                    raise PublishFailed(f"{type(exc).__name__}: {exc}") from first
        return task_id

    def close(self) -> None:
        with self._lock:
            self._reset()

    def _send(self, task_id: str, action_id: str) -> None:
        channel = self._ready_channel()
        template = self._template
        if template is not None and template.fits(task_id, action_id):
            self._send_frames(channel.connection, template.fill(task_id, action_id))
            return
        headers, properties, body = celery_task_message(
            self._task_name, task_id, [action_id], self._origin)
        message = prepare_task_message(channel, headers, properties, body)
        if self._confirm:  # py-amqp selects confirm mode on the first one
            channel.basic_publish_confirm(message, exchange=self._exchange,
                                          routing_key=self._routing_key,
                                          confirm_timeout=self._connect_timeout)
        else:
            channel.basic_publish(message, exchange=self._exchange,
                                  routing_key=self._routing_key)

    @staticmethod
    def _send_frames(connection, frames: bytes) -> None:
        """What ``Channel.basic_publish`` does around its frame writer, for ready frames."""
        # As py-amqp does before each publish: take in what the broker sent (a
        # connection.blocked, a channel.close, which then raises here).
        if connection.client_properties.get("capabilities", {}).get("connection.blocked"):
            with contextlib.suppress(TimeoutError):  # nothing came in
                connection.drain_events(timeout=0)
        connection.transport.write(frames)
        connection.bytes_sent += 1  # what the frame writer counts, for heartbeats

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
        # Confirms need py-amqp's own publish (it waits for the broker's ack).
        self._template = None if self._confirm else FrameTemplate.build(
            channel, self._exchange, self._routing_key, self._task_name, self._origin)
        return channel

    def _reset(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._template = None
        if connection is not None:
            with contextlib.suppress(Exception):  # already dead: nothing to release
                connection.release()
