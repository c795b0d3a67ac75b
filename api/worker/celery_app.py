"""The scaled-out worker: Celery over RabbitMQ or Redis, PostgreSQL as the state.

The broker carries only action ids (``lambda.run_action(action_id)``); the action row,
committed before the 202, holds everything else (the token Fernet-encrypted). A message
is a hint to run an action, not the action itself: ``Orchestrator.run`` claims a lease
first, so a duplicate, redelivered or re-swept message is a no-op, and a message the
broker lost is re-sent by the sweeper every worker runs (``api.worker.runtime``).

Pool: threads, not prefork. An action is I/O bound (HTTP polling, waiting on
ansible-playbook, which is its own process anyway) and the orchestrator already uses
threads (lease heartbeat, parallel power calls). One process per worker means one
database pool, one sweeper, and a graceful shutdown that reaches every running action's
``Cancellation`` directly; a ``kill -9`` takes the whole worker down at once (no pool
children left running under a dead parent), its unacked messages go back to the queue
(``acks_late``) and its leases expire, so another worker resumes its actions.

Settings: ``LAMBDA_QUEUE`` (the queue name; tests use one per test) and
``LAMBDA_SWEEP_INTERVAL``, besides the broker URL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from celery import Celery, bootsteps, signals
from celery.utils.functional import noop
from kombu import Queue

from api.settings import Settings
from api.worker.reaper import WORKER_MARK_ENV, mark_worker_process, reap_orphans
from api.worker.runtime import ActionRuntime

log = logging.getLogger(__name__)

TASK_NAME = "lambda.run_action"
DEFAULT_QUEUE = "lambda-actions"
# Publishing must not hold an API request for long when the broker is away: the row is
# durable, so a failed publish is left to the sweeper.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.3,
                        "interval_max": 0.5}
# The longest an idle worker's event loop sleeps: how soon a SIGTERM's warm shutdown starts.
WAKE_SECONDS = 0.5


def queue_name(settings: Settings) -> str:
    return settings.queue or DEFAULT_QUEUE


def sweep_interval(settings: Settings) -> float:
    """Seconds between sweeps: a third of the lease unless ``LAMBDA_SWEEP_INTERVAL`` says."""
    if settings.sweep_interval > 0:
        return max(settings.sweep_interval, 0.2)
    return min(max(settings.lease_seconds / 3, 0.5), 10.0)


class WakeUpEventLoop(bootsteps.StartStopStep):
    """Wake the worker's event loop every ``WAKE_SECONDS``, so that a SIGTERM stops it at once.

    Celery's SIGTERM handler only flags the warm shutdown; the loop acts on the flag when
    its poll returns. With nothing else scheduled, kombu's hub polls for up to 10 s, so an
    idle worker took 8-10 s to begin stopping (a deploy's restart, every test's teardown).
    A no-op timer bounds that poll; its cost is one wake-up per interval.
    """

    requires = ("celery.worker.components:Hub",)

    def __init__(self, worker, **kwargs):
        self.entry = None
        super().__init__(worker, **kwargs)

    def include_if(self, worker) -> bool:
        return worker.use_eventloop  # the Hub's own condition: no hub, no poll to bound

    def start(self, worker) -> None:
        self.entry = worker.hub.call_repeatedly(WAKE_SECONDS, noop)

    def stop(self, worker) -> None:
        if self.entry is not None:
            self.entry.cancel()
            self.entry = None


def create_celery_app(settings: Settings, queue: str | None = None,
                      run_action: Callable[[str], None] | None = None) -> Celery:
    """A Celery app for the settings; the task is registered, nothing is connected yet.

    ``run_action`` is the task's body in a worker (the runtime's ``run``); the API's app
    only publishes, so it has none."""
    queue = queue or queue_name(settings)
    app = Celery("lambda", broker=settings.broker_url, set_as_current=False)
    app.steps["worker"].add(WakeUpEventLoop)
    transport_options: dict = {}
    if settings.broker_confirm and settings.broker_url.startswith(("amqp", "pyamqp")):
        # Publisher confirms: a dispatch returns once RabbitMQ has the message. Off by
        # default: they cost the accept path a round trip and about a quarter of its
        # throughput, and buy only a log line, since a lost message is re-sent by the
        # sweepers either way (the action row, committed first, is the queue).
        transport_options["confirm_publish"] = True
    app.conf.update(
        task_default_queue=queue,
        task_queues=[Queue(queue, routing_key=queue, durable=True)],
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # A duplicate delivery is harmless (the lease decides), so a running action is
        # never cancelled because the broker connection dropped.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        # After a reconnect Celery lowers the prefetch while tasks run and restores it as
        # they are acked; their acks go to the closed channel and fail, so a worker would
        # stay at one task at a time. A redelivered task of an action running here is a
        # duplicate acked at once, so the full prefetch over-fetches nothing.
        worker_enable_prefetch_count_reduction=False,
        broker_connection_retry_on_startup=True,
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        broker_connection_timeout=3.0,
        broker_transport_options=transport_options,
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
        # No remote control, events or gossip: nothing here uses them, and they would
        # create broadcast queues shared by every worker on the broker.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        # api.logs configures the worker's logging (run_worker answers Celery's
        # setup_logging signal), in the format every process of the service writes.
        worker_hijack_root_logger=False,
    )

    # Not shared: a shared task is added to every app of the process, and a second app's
    # own task of the same name then lost to the first one's (its settings and its queue).
    @app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True,
              ignore_result=True, shared=False)
    def run_action_task(task, action_id: str) -> None:
        if run_action is None:
            raise RuntimeError("this Celery app only publishes; a worker runs the actions")
        run_action(str(action_id))

    return app


# --- the worker process ---------------------------------------------------------------------


def build_worker_runtime(container, app: Celery, queue: str) -> ActionRuntime:
    """The worker's runtime: runs tasks in Celery's threads; its sweeper re-publishes."""
    settings = container.settings
    mark = os.environ.get(WORKER_MARK_ENV)

    def send(action_id: str) -> None:
        app.send_task(TASK_NAME, args=[action_id], queue=queue)

    interval = sweep_interval(settings)
    return ActionRuntime(
        container.orchestrator, container.uow_factory, resume=send, hand_back=send,
        sweep_interval=interval,
        # A dispatched action is claimed within moments; one still unclaimed after a few
        # sweeps was most likely never sent.
        accepted_grace=max(3 * interval, 2.0),
        resend_after=max(settings.lease_seconds, 4 * interval),
        before_sweep=lambda: reap_orphans(mark), resumed_means="sent it again",
        metrics=container.metrics)


def run_worker(container, concurrency: int = 4) -> int:
    """Run a Celery worker in this process until it is stopped; returns its exit code.

    ``container`` is what ``api.bootstrap`` built: the settings, the unit-of-work factory,
    the orchestrator and the metrics, served on ``worker_metrics_bind`` unless empty."""
    from api.adapters.db.engine import migrate
    from api.logs import configure_logging

    settings = container.settings
    if settings.dispatcher != "celery":
        log.warning("LAMBDA_DISPATCHER is %r; a Celery worker runs anyway",
                    settings.dispatcher)
    # Children (ansible-playbook and everything it starts) inherit this mark, so a
    # surviving worker on this host can reap them if this process is killed.
    mark_worker_process()
    migrate(container.uow_factory.engine)  # a no-op at head; lets a worker start before any API
    queue = queue_name(settings)
    app = create_celery_app(settings, queue, run_action=lambda action_id: runtime.run(action_id))
    runtime = build_worker_runtime(container, app, queue)

    def on_ready(**_kwargs) -> None:
        runtime.start_sweeper()

    def on_shutting_down(**_kwargs) -> None:
        # Runs in a signal handler: do the work in a thread, never block here.
        threading.Thread(target=runtime.shutdown, name="hand-back", daemon=True).start()

    def on_setup_logging(**_kwargs) -> None:
        # A receiver of this signal stops Celery from configuring logging itself.
        configure_logging(settings)

    signals.setup_logging.connect(on_setup_logging, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutting_down.connect(on_shutting_down, weak=False)
    # A node name of its own: several workers may share a host.
    worker = app.Worker(hostname=f"lambda-{os.getpid()}@{socket.gethostname()}", pool="threads",
                        concurrency=concurrency, queues=[queue],
                        loglevel=settings.log_level, without_gossip=True,
                        without_mingle=True, without_heartbeat=True, optimization="fair",
                        # Its banner is printed, not logged: not in a JSON log.
                        quiet=settings.log_format == "json")
    log.info("worker %s: queue %s on %s, %d threads, sweeping every %.1fs",
             container.orchestrator.config.worker_id, queue, _redact(settings.broker_url),
             concurrency, runtime.sweep_interval)
    stop_metrics = (container.metrics.serve(settings.worker_metrics_bind)
                    if settings.worker_metrics_bind else None)
    try:
        worker.start()
    finally:
        runtime.close()
        if stop_metrics is not None:
            stop_metrics()
    return worker.exitcode or 0


def _redact(url: str) -> str:
    """The broker URL without its password, for logs."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)
