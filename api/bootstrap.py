"""The composition root: the one place that decides which adapters run."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from functools import partial

from api.adapters.crypto import TokenCipher
from api.adapters.db.engine import create_db_engine, migrate
from api.adapters.db.uow import UnitOfWorkFactory
from api.domain.orchestration import Orchestrator, OrchestratorConfig, OrchestratorDeps
from api.settings import Settings, load_settings

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    uow_factory: UnitOfWorkFactory
    token_cipher: TokenCipher
    orchestrator: Orchestrator | None = None
    dispatcher: object | None = None
    identity: object | None = None
    app: object | None = None

    def close(self) -> None:
        stop = getattr(self.dispatcher, "stop", None)
        if stop is not None:
            stop()
        self.uow_factory.engine.dispose()


CURRENT: Container | None = None  # the process's container, for gunicorn's exit hook


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def build_orchestrator(settings: Settings, uow_factory, token_cipher,
                       runner=None, compute_factory=None) -> Orchestrator:
    from api.adapters.ansible import AnsibleRunner
    from api.adapters.compute import compute_factory as make_compute_factory
    from api.adapters.inventory import render_inventory
    from api.adapters.ssh import SshWaiter

    deps = OrchestratorDeps(
        uow_factory=uow_factory,
        compute_factory=compute_factory or make_compute_factory(settings),
        runner=runner or AnsibleRunner.from_settings(settings),
        render_inventory=partial(render_inventory, settings=settings),
        decrypt_token=token_cipher.decrypt,
        wait_for_ssh=(None if settings.ansible_connection == "local"
                      else SshWaiter(port=settings.ssh_port)),
    )
    config = OrchestratorConfig(
        worker_id=worker_id(), power_timeout=settings.power_timeout,
        ssh_timeout=settings.ssh_timeout, playbook_timeout=settings.playbook_timeout,
        lease_seconds=settings.lease_seconds, max_attempts=settings.max_attempts)
    return Orchestrator(deps, config)


def build_dispatcher(settings: Settings, uow_factory, orchestrator):
    if settings.dispatcher == "celery":
        from api.worker.celery_dispatch import CeleryDispatcher

        return CeleryDispatcher(settings)
    from api.worker.local import LocalDispatcher

    return LocalDispatcher(orchestrator, uow_factory, size=settings.pool_size).start()


def bootstrap(settings: Settings | None = None, *, identity=None, with_app: bool = True,
              run_migrations: bool = True, start_dispatcher: bool = True) -> Container:
    """Build everything the settings describe. ``identity`` may be passed by tests."""
    global CURRENT
    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    engine = create_db_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    uow_factory = UnitOfWorkFactory(engine)
    container = Container(settings=settings, uow_factory=uow_factory,
                          token_cipher=TokenCipher.from_settings(settings))
    if start_dispatcher:
        if settings.dispatcher == "local":
            container.orchestrator = build_orchestrator(settings, uow_factory,
                                                        container.token_cipher)
        container.dispatcher = build_dispatcher(settings, uow_factory, container.orchestrator)
    if with_app:
        from api.adapters.identity import identity_from_settings
        from api.http.app import create_app

        container.identity = identity or identity_from_settings(settings)
        container.app = create_app(identity=container.identity, uow_factory=uow_factory,
                                   dispatcher=container.dispatcher,
                                   token_cipher=container.token_cipher)
    CURRENT = container
    return container
