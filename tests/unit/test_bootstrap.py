"""The composition root: what it builds, what it starts, and who closes it."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet
from falcon import testing

from api.adapters.ansible import control_root, remove_control_root
from api.bootstrap import bootstrap, create_http_app
from api.domain.ports import Identity
from api.server import LifespanApp
from api.settings import Settings, SettingsError
from api.worker.celery_dispatch import CeleryDispatcher
from api.worker.local import LocalDispatcher
from tests.conftest import FakeIdentity

TOKEN = "t0ken"


def settings_in(tmp_path, **changes) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'lambda.db'}",
                    state_dir=str(tmp_path / "state"), auth_url="http://127.0.0.1:9/",
                    **changes)


def test_bootstrap_builds_the_pieces_and_starts_nothing(tmp_path):
    container = bootstrap(settings_in(tmp_path))
    try:
        assert container.dispatcher is None  # no pool, no sweeper thread, no broker yet
        assert container.orchestrator.deps.uow_factory is container.uow_factory
        with container.uow_factory(readonly=True) as uow:  # migrated
            assert uow.instances.get("9ac8e7ab-57f9-48a6-af18-ef8a749b1e8c") is None
    finally:
        container.close()


def test_the_http_app_runs_on_the_containers_pieces_and_close_stops_the_pool(tmp_path):
    container = bootstrap(settings_in(tmp_path, pool_size=1))
    identity = FakeIdentity({TOKEN: Identity("u", "u@example.org", "http://compute")})
    client = testing.TestClient(create_http_app(container, identity=identity))
    assert isinstance(container.dispatcher, LocalDispatcher)
    resp = client.simulate_get("/api/authenticate", headers={"Authorization": f"Token {TOKEN}"})
    assert resp.json["data"]["name"] == "u@example.org"
    container.close()
    assert container.dispatcher.runtime.stopping


def test_close_removes_the_processs_ssh_control_root(tmp_path):
    # A server worker ends with os._exit, where no atexit hook runs: closing its container
    # is what removes the private directory its playbook runs kept ssh sockets in.
    container = bootstrap(settings_in(tmp_path))
    root = control_root()
    assert root.is_dir()
    container.close()
    assert not root.exists()
    assert control_root() != root  # a later run in this process gets a fresh one
    remove_control_root()


def test_celery_settings_give_the_api_a_publisher_not_a_pool(tmp_path):
    container = bootstrap(settings_in(tmp_path, dispatcher="celery",
                                      broker_url="redis://127.0.0.1:1/0",
                                      secret_key=Fernet.generate_key().decode()))
    try:
        create_http_app(container, identity=FakeIdentity())
        assert isinstance(container.dispatcher, CeleryDispatcher)
    finally:
        container.close()


def test_a_server_worker_builds_its_container_at_startup_and_closes_it_at_shutdown(tmp_path):
    app = LifespanApp(settings_in(tmp_path, pool_size=1))
    events = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []
    built = []

    async def receive():
        message = next(events)
        if message["type"] == "lifespan.shutdown":
            built.append(app.close.__self__)  # the container this worker built
        return message

    async def send(message):
        sent.append(message["type"])

    asyncio.run(app.lifespan(receive, send))
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    container = built[0]
    assert isinstance(container.dispatcher, LocalDispatcher)
    assert container.dispatcher.runtime.stopping


def test_a_scaled_out_process_refuses_to_start_without_a_shared_key(tmp_path):
    settings = settings_in(tmp_path, dispatcher="celery", broker_url="redis://127.0.0.1:1/0")
    with pytest.raises(SettingsError, match="LAMBDA_SECRET_KEY is required"):
        bootstrap(settings)
    assert not (tmp_path / "state").exists()  # refused before any key or file was made
