"""The API's publisher (Celery's send_task) on a real RabbitMQ: the message a plain Celery
worker takes, a connection the broker dropped, the broker away and back, confirms and
threads. Real workers consuming it, on RabbitMQ and Redis: tests/integration/test_scaleout.py."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import pytest
from kombu import Connection

from api.settings import Settings
from api.worker.celery_app import TASK_NAME
from api.worker.celery_dispatch import CeleryDispatcher
from tests.integration.test_scaleout import free_port, rabbitmq, wait_for  # noqa: F401


class BrokerLink:
    """A TCP relay in front of the broker: ``cut()`` drops every connection through it (what
    a broker restart does to its clients), ``down()``/``up()`` stop and start listening."""

    def __init__(self, target_url: str):
        parts = urlsplit(target_url)
        self.target = (parts.hostname, parts.port or 5672)
        self.port = free_port()
        self.url = target_url.replace(f"{parts.hostname}:{parts.port}",
                                      f"127.0.0.1:{self.port}")
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def up(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            # Wakes the relay thread's accept(), which a close alone would not.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        self.cut()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def queue(rabbitmq):  # noqa: F811 (the fixture imported above)
    name = f"q-pub-{uuid.uuid4().hex[:8]}"
    yield name
    with Connection(rabbitmq) as conn:
        conn.default_channel.queue_delete(name)
        conn.default_channel.exchange_delete(name)


@pytest.fixture
def link(rabbitmq):  # noqa: F811
    relay = BrokerLink(rabbitmq)
    relay.up()
    yield relay
    relay.down()


def _dispatcher(url: str, queue: str, **settings) -> CeleryDispatcher:
    return CeleryDispatcher(Settings(broker_url=url, **settings), queue=queue)


def _take(broker_url: str, queue: str):
    with Connection(broker_url) as conn:
        channel = conn.channel()
        return wait_for(lambda: channel.basic_get(queue, no_ack=True), 10, "the message")


def _action_of(message) -> str:
    args, kwargs, _embed = json.loads(message.body)
    assert kwargs == {}
    return args[0]


def test_dispatch_declares_the_queue_and_sends_a_celery_task_message(rabbitmq, queue):  # noqa: F811
    dispatcher = _dispatcher(rabbitmq, queue)
    try:
        action_id = str(uuid.uuid4())
        assert dispatcher.dispatch(action_id)  # no worker yet: the queue must exist anyway
    finally:
        dispatcher.stop()
    message = _take(rabbitmq, queue)
    assert message.headers["task"] == TASK_NAME
    assert message.properties["correlation_id"] == message.headers["id"]
    assert message.properties["delivery_mode"] == 2  # persistent
    assert message.content_type == "application/json"
    assert _action_of(message) == action_id


def test_dispatch_with_publisher_confirms(rabbitmq, queue):  # noqa: F811
    dispatcher = _dispatcher(rabbitmq, queue, broker_confirm=True)
    try:
        assert dispatcher.app.conf.broker_transport_options == {"confirm_publish": True}
        assert dispatcher.dispatch("action-confirmed")
    finally:
        dispatcher.stop()
    assert _action_of(_take(rabbitmq, queue)) == "action-confirmed"


def test_threads_share_the_process_connection(rabbitmq, queue):  # noqa: F811
    dispatcher = _dispatcher(rabbitmq, queue)
    ids = [f"action-{n}" for n in range(40)]
    try:
        threads = [threading.Thread(target=dispatcher.dispatch, args=(action_id,))
                   for action_id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    finally:
        dispatcher.stop()
    assert {_action_of(_take(rabbitmq, queue)) for _ in ids} == set(ids)


def test_a_connection_the_broker_dropped_is_replaced(rabbitmq, queue, link):  # noqa: F811
    dispatcher = _dispatcher(link.url, queue)
    try:
        assert dispatcher.dispatch("before")
        # Taken before the connection dies: a message still on its way when it drops may be
        # lost (no confirms; the sweeper re-sends such actions).
        assert _action_of(_take(rabbitmq, queue)) == "before"
        link.cut()  # what a broker restart leaves behind: a connection the other end closed
        time.sleep(0.2)
        assert dispatcher.dispatch("after")
        assert _action_of(_take(rabbitmq, queue)) == "after"
    finally:
        dispatcher.stop()


def test_with_the_broker_away_dispatch_reports_at_once_and_later_recovers(
        rabbitmq, queue, link, caplog):  # noqa: F811
    link.down()
    dispatcher = _dispatcher(link.url, queue)
    dispatcher.retry_after = 2.0
    try:
        started = time.monotonic()
        assert dispatcher.dispatch("a1") is False
        assert time.monotonic() - started < 5  # the retry policy is bounded
        started = time.monotonic()
        assert dispatcher.dispatch("a2") is False  # within retry_after: not even tried
        assert time.monotonic() - started < 0.1
        assert "unreachable moments ago" in caplog.text
        link.up()
        time.sleep(2.0)
        assert dispatcher.dispatch("a3")
    finally:
        dispatcher.stop()
    assert "sweeper will dispatch it" in caplog.text
    assert "guest:guest" not in caplog.text  # no broker password in the logs
    assert _action_of(_take(rabbitmq, queue)) == "a3"

