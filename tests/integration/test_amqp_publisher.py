"""The API's RabbitMQ publisher: Celery's own message format, on a real broker, through a
dead connection, with the broker away, and across a fork (gunicorn workers); its prebuilt
frames byte for byte against py-amqp's."""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest
from kombu import Connection

from api.settings import Settings
from api.worker.amqp_publisher import (
    AmqpTaskPublisher,
    FrameTemplate,
    PublishFailed,
    celery_task_message,
    prepare_task_message,
    publish_frames,
)
from api.worker.celery_app import TASK_NAME, create_celery_app
from api.worker.celery_dispatch import CeleryDispatcher
from tests.integration.test_scaleout import free_port, rabbitmq, wait_for  # noqa: F401


def test_message_is_the_one_celery_builds_for_send_task():
    """Same headers, properties and body as Celery's ``as_task_v2`` (a Celery upgrade that
    changes its protocol fails here, not in a worker)."""
    app = create_celery_app(Settings(broker_url="amqp://guest:guest@127.0.0.1:1//"), "q-fmt")
    task_id, action_id = str(uuid.uuid4()), str(uuid.uuid4())
    celery = app.amqp.as_task_v2(task_id, TASK_NAME, args=[action_id], kwargs={})
    headers, properties, body = celery_task_message(TASK_NAME, task_id, [action_id], "me@host")
    assert {k: v for k, v in headers.items() if k != "origin"} == {
        k: v for k, v in celery.headers.items() if k != "origin"}
    assert properties == celery.properties
    assert json.loads(body) == json.loads(json.dumps(celery.body))


@pytest.fixture
def queue_and_publisher(rabbitmq):  # noqa: F811 (the fixture imported above)
    name = f"q-pub-{uuid.uuid4().hex[:8]}"
    app = create_celery_app(Settings(broker_url=rabbitmq), name)
    publisher = AmqpTaskPublisher(rabbitmq, app.amqp.queues[name], TASK_NAME)
    yield name, publisher
    publisher.close()
    with Connection(rabbitmq) as conn:
        conn.default_channel.queue_delete(name)
        conn.default_channel.exchange_delete(name)


@pytest.fixture
def template_fills(monkeypatch):
    """How many publishes went out as prebuilt frames (the product's code runs as is)."""
    fills = []
    fill = FrameTemplate.fill

    def counted(self, task_id, action_id):
        fills.append(action_id)
        return fill(self, task_id, action_id)

    monkeypatch.setattr(FrameTemplate, "fill", counted)
    return fills


# Action ids as the product makes them (canonical UUIDs: prebuilt frames), and ids of any
# other shape (py-amqp builds the frames).
ID_KINDS = {
    "uuid": lambda word: str(uuid.uuid4()),
    "other": lambda word: word,
}


def _take(broker_url: str, queue: str):
    with Connection(broker_url) as conn:
        channel = conn.channel()
        return wait_for(lambda: channel.basic_get(queue, no_ack=True), 10, "the message")


def test_publish_declares_the_queue_and_sends_a_persistent_task_message(
        rabbitmq, queue_and_publisher):  # noqa: F811
    queue, publisher = queue_and_publisher
    task_id = publisher.publish("action-1")  # no worker yet: the queue must exist anyway
    message = _take(rabbitmq, queue)
    assert message.headers["task"] == TASK_NAME and message.headers["id"] == task_id
    assert message.properties["correlation_id"] == task_id
    assert message.properties["delivery_mode"] == 2
    assert message.content_type == "application/json"
    assert json.loads(message.body)[:2] == [["action-1"], {}]


def test_template_frames_are_the_bytes_py_amqp_writes(queue_and_publisher):
    _, publisher = queue_and_publisher
    publisher.publish(str(uuid.uuid4()))
    channel = publisher._channel
    template = publisher._template
    assert template is not None
    for _ in range(50):
        task_id, action_id = str(uuid.uuid4()), str(uuid.uuid4())
        message = prepare_task_message(channel, *celery_task_message(
            TASK_NAME, task_id, [action_id], publisher._origin))
        expected = publish_frames(channel, message, publisher._exchange,
                                  publisher._routing_key)
        assert template.fill(task_id, action_id) == expected


def test_only_canonical_uuids_fit_the_template_slots():
    task_id = str(uuid.uuid4())
    assert FrameTemplate.fits(task_id, str(uuid.uuid4()))
    for action_id in ("action-1", str(uuid.uuid4()).upper(), uuid.uuid4().hex,
                      str(uuid.uuid4())[:-1] + '"', str(uuid.uuid4()) + "0", ""):
        assert not FrameTemplate.fits(task_id, action_id), action_id


def test_a_uuid_action_goes_out_prebuilt_and_arrives_as_celery_sends_it(
        rabbitmq, queue_and_publisher, template_fills):  # noqa: F811
    queue, publisher = queue_and_publisher
    action_id = str(uuid.uuid4())
    task_id = publisher.publish(action_id)
    assert template_fills == [action_id]
    message = _take(rabbitmq, queue)
    headers, properties, body = celery_task_message(TASK_NAME, task_id, [action_id],
                                                    publisher._origin)
    assert message.headers == headers
    assert message.properties["correlation_id"] == properties["correlation_id"] == task_id
    assert message.properties["reply_to"] == properties["reply_to"]
    assert message.properties["delivery_mode"] == 2
    assert message.content_type == "application/json"
    assert message.content_encoding == "utf-8"
    assert json.loads(message.body) == json.loads(body)


def test_other_ids_and_confirms_take_py_amqps_own_publish(
        rabbitmq, queue_and_publisher, template_fills):  # noqa: F811
    queue, publisher = queue_and_publisher
    publisher.publish("action-1")
    assert template_fills == []
    confirming = AmqpTaskPublisher(rabbitmq, publisher._queue, TASK_NAME, confirm=True)
    try:
        confirming.publish(str(uuid.uuid4()))
        assert confirming._template is None and template_fills == []
    finally:
        confirming.close()
    assert json.loads(_take(rabbitmq, queue).body)[0] == ["action-1"]
    assert _take(rabbitmq, queue).headers["task"] == TASK_NAME


def test_without_a_template_a_uuid_action_still_goes_out(
        rabbitmq, queue_and_publisher, monkeypatch, caplog):  # noqa: F811
    """What a py-amqp whose internals moved would do to the template: py-amqp's own path."""
    from api.worker import amqp_publisher

    def moved(*args, **kwargs):
        raise AttributeError("frame_writer changed")

    monkeypatch.setattr(amqp_publisher, "publish_frames", moved)
    queue, publisher = queue_and_publisher
    action_id = str(uuid.uuid4())
    publisher.publish(action_id)
    assert publisher._template is None
    assert "cannot build one" in caplog.text
    assert json.loads(_take(rabbitmq, queue).body)[0] == [action_id]


@pytest.mark.parametrize("ids", ID_KINDS)
def test_a_dead_connection_is_replaced_and_the_message_still_sent(
        rabbitmq, queue_and_publisher, ids):  # noqa: F811
    queue, publisher = queue_and_publisher
    before, after = ID_KINDS[ids]("before"), ID_KINDS[ids]("after")
    publisher.publish(before)
    # Taken before the socket dies: a message still on its way to the broker when the
    # connection drops may be lost (no confirms; the sweeper re-sends such actions).
    assert json.loads(_take(rabbitmq, queue).body)[0][0] == before
    # What a broker restart leaves behind: a socket the other end has dropped.
    publisher._connection.connection.transport.sock.shutdown(socket.SHUT_RDWR)
    publisher.publish(after)
    assert json.loads(_take(rabbitmq, queue).body)[0][0] == after


def test_with_the_broker_away_dispatch_reports_at_once_and_later_recovers(caplog):
    port = free_port()
    url = f"amqp://guest:guest@127.0.0.1:{port}//"
    dispatcher = CeleryDispatcher(Settings(broker_url=url), queue="q-away")
    try:
        assert dispatcher.publisher is not None  # RabbitMQ: the direct publisher
        assert dispatcher.dispatch("a1") is False
        # Within retry_after the next dispatch does not even try to connect.
        with pytest.raises(PublishFailed, match="unreachable moments ago"):
            dispatcher.publisher.publish("a2")
    finally:
        dispatcher.stop()
    assert "sweeper will dispatch it" in caplog.text


@pytest.mark.parametrize("ids", ID_KINDS)
def test_a_forked_child_publishes_on_its_own_connection(
        rabbitmq, queue_and_publisher, ids):  # noqa: F811
    queue, publisher = queue_and_publisher
    names = {word: ID_KINDS[ids](word) for word in ("parent-1", "child", "parent-2")}
    publisher.publish(names["parent-1"])
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker forked after the app was loaded
        code = 1
        try:
            publisher.publish(names["child"])
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    publisher.publish(names["parent-2"])  # the parent's connection survived the child's exit
    bodies = {json.loads(_take(rabbitmq, queue).body)[0][0] for _ in range(3)}
    assert bodies == set(names.values())
