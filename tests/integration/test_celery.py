"""The Celery pieces: what crosses the broker, publishing with the broker away, the
sweeper's choices on a real database, the orphan reaper on real processes, and orphaned
actions picked up by a real worker."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from kombu import Connection
from kombu.asynchronous import set_event_loop
from sqlalchemy import update

from api.adapters.crypto import TokenCipher
from api.adapters.db.tables import actions
from api.domain import services
from api.domain.clock import utcnow
from api.domain.ports import Identity
from api.settings import Settings
from api.worker.celery_app import TASK_NAME, WAKE_SECONDS, WakeUpEventLoop, create_celery_app
from api.worker.celery_dispatch import CeleryDispatcher
from api.worker.reaper import WORKER_MARK_ENV, reap_orphans, worker_mark
from api.worker.runtime import ActionRuntime
from tests.integration.test_scaleout import (  # noqa: F401 (fixtures: make_cluster, ...)
    TOKEN,
    USER,
    free_port,
    instance_id,
    make_cluster,
    make_seed,
    pg_url,
    rabbitmq,
    wait_for,
)

# --- fast: no broker process needed -----------------------------------------------------------


def test_app_carries_ids_only_as_json_and_acks_late():
    app = create_celery_app(Settings(broker_url="redis://127.0.0.1:1/0"), queue="q-test")
    conf = app.conf
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1 and conf.task_ignore_result
    assert conf.task_default_queue == "q-test"
    assert TASK_NAME in app.tasks


def test_a_workers_event_loop_never_sleeps_past_the_wake_up_interval():
    # Celery's SIGTERM handler only flags a warm shutdown, which the worker acts on when its
    # event loop's poll returns. The poll's timeout is what the hub's timers give back.
    app = create_celery_app(Settings(broker_url="amqp://guest:guest@127.0.0.1:1//"),
                            queue="q-test")
    worker = app.WorkController(pool="threads", concurrency=1, without_heartbeat=True,
                                without_mingle=True, without_gossip=True)
    # The real worker's blueprint runs the step, once.
    [step] = [s for s in worker.blueprint.steps.values() if isinstance(s, WakeUpEventLoop)]
    worker.hub.call_later(30, lambda: None)  # an idle worker: its next timer is far away
    assert worker.hub.fire_timers() == 10  # kombu's bound: SIGTERM waited up to that long
    step.start(worker)
    try:
        assert worker.hub.fire_timers() <= WAKE_SECONDS
    finally:
        step.stop(worker)
        set_event_loop(None)  # the worker set kombu's process-wide hub: no later test gets it


def test_dispatch_with_the_broker_away_reports_and_does_not_raise(caplog):
    dead = f"amqp://guest:guest@127.0.0.1:{free_port()}//"  # nothing listens there
    dispatcher = CeleryDispatcher(Settings(broker_url=dead), queue="q-nowhere")
    try:
        assert dispatcher.dispatch("7b0c3d4e-0000-4000-8000-000000000001") is False
    finally:
        dispatcher.stop()
    assert "sweeper will dispatch it" in caplog.text
    assert "guest:guest" not in caplog.text  # no broker password in the logs


ALICE = Identity(user_id=USER, user_name="demo@example.org", compute_url="http://compute")


def _seed(uow_factory, k=2):
    from api.seed import seed_database

    seed_database(uow_factory, make_seed(k))


def _accept(uow_factory, k: int) -> str:
    return services.request_action(uow_factory, ALICE, instance_id(k), "start",
                                   encrypt_token=lambda: "cipher").action.id


def test_sweeper_sends_orphans_once_per_window(uow_factory):
    _seed(uow_factory)
    orphan = _accept(uow_factory, 1)
    held = _accept(uow_factory, 2)
    with uow_factory() as uow:  # a live lease: somebody is running it
        assert uow.actions.claim(held, "w-alive", utcnow(), 60)
        uow.commit()
    sent = []
    runtime = ActionRuntime(None, uow_factory, resume=sent.append, accepted_grace=0.0,
                            resend_after=60.0)
    assert runtime.sweep() == [orphan]
    assert runtime.sweep() == []  # within resend_after: not sent twice
    assert sent == [orphan]

    # The holder dies: its lease expires and the action is resumable.
    with uow_factory() as uow:
        uow._conn.execute(update(actions).where(actions.c.id == held)
                          .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
        uow.commit()
    assert runtime.sweep() == [held]

    def broken(_action_id):
        raise ConnectionError("broker away")
    quiet = ActionRuntime(None, uow_factory, resume=broken, accepted_grace=0.0)
    assert quiet.sweep() == []  # no exception: the next sweep tries again


def test_reaper_kills_only_processes_of_dead_workers():
    dead_mark = "999999999:1"  # a pid beyond pid_max: that worker is surely gone
    env = dict(os.environ)
    orphan = subprocess.Popen(["sleep", "60"], env={**env, WORKER_MARK_ENV: dead_mark})
    alive = subprocess.Popen(["sleep", "60"], env={**env, WORKER_MARK_ENV: worker_mark()})
    try:
        environ = Path(f"/proc/{orphan.pid}/environ")
        wait_for(lambda: WORKER_MARK_ENV.encode() in environ.read_bytes(), 5,
                 "the child to exec")
        left = reap_orphans(own_mark=None)
        assert left == {dead_mark: []}
        assert orphan.wait(timeout=5) is not None
        assert alive.poll() is None  # its worker (this process) is alive
    finally:
        for proc in (orphan, alive):
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)


# --- slow: real processes on RabbitMQ ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.celery
def test_only_the_action_id_crosses_the_broker_and_orphans_are_swept(
        rabbitmq, make_cluster):  # noqa: F811 (fixtures imported above)
    cluster = make_cluster(rabbitmq, instances=2)
    api = cluster.start_api(LAMBDA_HTTP_WORKERS="1")  # no worker yet: the message waits
    action_id = cluster.accept(api, instance_id(1), "start")

    with Connection(rabbitmq) as conn:
        channel = conn.channel()
        message = wait_for(lambda: channel.basic_get(cluster.queue, no_ack=True), 10,
                           "the task message")
    raw = message.body if isinstance(message.body, bytes) else message.body.encode()
    everything = repr((raw, message.headers, message.properties, message.delivery_info))
    assert TOKEN not in everything
    cipher = cluster.row(action_id)["encrypted_token"]
    assert cipher and cipher not in everything  # not even encrypted: only the id travels
    assert message.content_type == "application/json"
    args, kwargs, _embed = json.loads(raw)
    assert (args, kwargs) == ([action_id], {})
    assert message.headers["task"] == TASK_NAME
    assert TokenCipher(cluster.secret_key).decrypt(cipher) == TOKEN  # at rest: encrypted

    # The test took the message: as good as lost. An action recorded by an API that died
    # before publishing is the same case: a row, no message.
    unsent = services.request_action(
        cluster.uow_factory,
        Identity(user_id=USER, user_name="demo@example.org",
                 compute_url=cluster.emulator.compute_url),
        instance_id(2), "start",
        encrypt_token=lambda: TokenCipher(cluster.secret_key).encrypt(TOKEN)).action.id

    worker = cluster.start_worker()
    for orphan in (action_id, unsent):
        action = cluster.wait_finished(orphan, 60)
        assert action.state.value == "succeeded", action.error
        assert action.attempts == 1
        assert cluster.row(orphan)["encrypted_token"] is None  # erased once it ended
    assert worker.log_path.read_text().count("was orphaned; sent it again") >= 2
    assert TOKEN not in worker.log_path.read_text()
