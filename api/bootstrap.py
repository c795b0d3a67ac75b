"""The composition root: the one place that decides which adapters run.

``bootstrap(settings)`` builds a ``Container`` of the adapters and the orchestrator; the
entry points (``api.cli``, ``api.server``) take what they need from it: the HTTP app
(``create_http_app``), the dispatcher (``start_dispatcher``), the Celery worker
(``api.worker.celery_app.run_worker``). Nothing below this module imports it, and no
module keeps the wiring in a global: each process holds its container where it runs.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from functools import partial

from api.adapters.ansible import AnsibleRunner, remove_control_root
from api.adapters.compute import compute_factory as make_compute_factory
from api.adapters.crypto import TokenCipher
from api.adapters.db import UnitOfWorkFactory
from api.adapters.db.engine import create_db_engine, migrate
from api.adapters.host_keys import HostKeyPinning
from api.adapters.inventory import render_inventory
from api.adapters.metrics import PrometheusMetrics
from api.adapters.ssh import SshWaiter
from api.domain.chains import PLAYBOOK_CHAINS
from api.domain.orchestration import Orchestrator, OrchestratorConfig, OrchestratorDeps
from api.domain.ports import NO_METRICS, Metrics
from api.logs import configure_logging
from api.settings import Settings, require_shared_secret

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    uow_factory: UnitOfWorkFactory
    token_cipher: TokenCipher
    orchestrator: Orchestrator
    metrics: PrometheusMetrics
    dispatcher: object | None = None  # set by start_dispatcher: LocalDispatcher | Celery's

    def close(self) -> None:
        """Stop the dispatcher (a local pool hands its actions back) and the database."""
        stop = getattr(self.dispatcher, "stop", None)
        if stop is not None:
            stop()
        self.uow_factory.engine.dispose()
        remove_control_root()  # the playbooks' ssh control root, once none runs


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def build_orchestrator(settings: Settings, uow_factory, token_cipher,
                       runner=None, compute_factory=None,
                       metrics: Metrics = NO_METRICS) -> Orchestrator:
    over_ssh = settings.ansible_connection != "local"
    deps = OrchestratorDeps(
        uow_factory=uow_factory,
        compute_factory=compute_factory or make_compute_factory(settings),
        runner=runner or AnsibleRunner.from_settings(settings),
        render_inventory=partial(render_inventory, settings=settings),
        decrypt_token=token_cipher.decrypt,
        wait_for_ssh=SshWaiter(port=settings.ssh_port) if over_ssh else None,
        check_host_keys=(HostKeyPinning(uow_factory, port=settings.ssh_port)
                         if over_ssh and settings.ssh_host_key_checking == "pinned" else None),
        metrics=metrics,
    )
    config = OrchestratorConfig(
        worker_id=worker_id(), power_timeout=settings.power_timeout,
        ssh_timeout=settings.ssh_timeout, playbook_timeout=settings.playbook_timeout,
        lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts,
        cancel_poll_interval=settings.cancel_poll_interval, checks=settings.checks,
        playbook_chains=PLAYBOOK_CHAINS if settings.playbook_chains == "side-by-side" else {})
    return Orchestrator(deps, config)


def bootstrap(settings: Settings, *, run_migrations: bool = True, runner=None,
              compute_factory=None) -> Container:
    """Build the adapters the settings describe. Nothing is started: no thread, no broker
    connection, no identity client (``create_http_app`` builds that for the API).

    Refuses (``SettingsError``) a scaled-out process without ``LAMBDA_SECRET_KEY``."""
    require_shared_secret(settings)
    configure_logging(settings)
    engine = create_db_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    uow_factory = UnitOfWorkFactory(engine)
    token_cipher = TokenCipher.from_settings(settings)
    # A registry of this container's own: under the server, the values go to the shared
    # multiprocess directory anyway (api.adapters.metrics).
    metrics = PrometheusMetrics()
    orchestrator = build_orchestrator(settings, uow_factory, token_cipher, runner=runner,
                                      compute_factory=compute_factory, metrics=metrics)
    return Container(settings=settings, uow_factory=uow_factory, token_cipher=token_cipher,
                     orchestrator=orchestrator, metrics=metrics)


def start_dispatcher(container: Container):
    """The API's dispatcher: the local pool (started: its sweeper resumes at once) or a
    Celery publisher. Kept on the container, whose ``close`` stops it."""
    settings = container.settings
    if settings.dispatcher == "celery":
        from api.worker.celery_dispatch import CeleryDispatcher

        container.dispatcher = CeleryDispatcher(settings, metrics=container.metrics)
    else:
        from api.worker.local import LocalDispatcher

        container.dispatcher = LocalDispatcher(container.orchestrator, container.uow_factory,
                                               size=settings.pool_size,
                                               metrics=container.metrics).start()
    return container.dispatcher


def create_http_app(container: Container, identity=None):
    """The Falcon app on the container's pieces, its dispatcher started if need be.
    ``identity`` may be passed by tests; else the settings' Astakos client."""
    from api.adapters.identity import identity_from_settings
    from api.http.app import create_app

    if container.dispatcher is None:
        start_dispatcher(container)
    settings = container.settings
    metrics = container.metrics
    return create_app(identity=identity or identity_from_settings(settings, metrics=metrics),
                      uow_factory=container.uow_factory, dispatcher=container.dispatcher,
                      token_cipher=container.token_cipher,
                      domain_threads=settings.http_threads,
                      identity_threads=settings.http_identity_threads,
                      identity_waiting=settings.http_identity_waiting,
                      body_timeout=settings.http_body_timeout,
                      events_poll_interval=settings.events_poll_interval,
                      events_keepalive=settings.events_keepalive,
                      event_streams=settings.event_streams, metrics=metrics,
                      exposition=metrics.exposition,
                      metrics_allow=settings.metrics_allow_networks)
