"""Fixtures for every test: databases (SQLite and PostgreSQL), fake identity, an empty
working directory."""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from api.adapters.db import UnitOfWorkFactory
from api.adapters.db.engine import create_db_engine, migrate
from lambda_testbed.demo_data import DEMO_NET
from tests.fakes import FakeIdentity  # noqa: F401 (tests import it from here too)

POSTGRES_ADMIN_URL = os.environ.get(
    "LAMBDA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means "not here"
        return str(exc).splitlines()[0]


# The end-to-end and integration tests bind loopback addresses and fixed daemon ports there:
# by default the demo's (127.42.x.y) and ports of 127.0.0.1. A second pytest process on the
# same machine (`make test` runs two; a developer's targeted run may be a third) takes turns
# with them test by test rather than failing on "Address already in use". A module whose
# hosts have addresses of their own says so (``LOOPBACK_NET = "127.44"``), and holds only
# the lock of those.
LOOPBACK_NET = DEMO_NET


def loopback_lock(net: str) -> Path:
    return Path(tempfile.gettempdir()) / f"lambda-tests-loopback-{net}.lock"


@pytest.fixture(autouse=True)
def _loopback_addresses_held(request):
    if not {"e2e", "integration"} & set(request.node.path.parts):
        yield
        return
    net = getattr(request.module, "LOOPBACK_NET", LOOPBACK_NET)
    with open(loopback_lock(net), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(autouse=True)
def _logging_as_it_was():
    """A test that builds a container configures the process's logging (api.logs), as a
    process of the service does once: put it back for the next test."""
    loggers = [logging.getLogger(), logging.getLogger("hypercorn.access")]
    saved = [(logger, logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, level, propagate in saved:
        for handler in [h for h in logger.handlers if getattr(h, "_lambda_logging", False)]:
            logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    logging.captureWarnings(False)


@pytest.fixture(scope="session")
def postgres_server():
    reason = _postgres_reachable()
    if reason:
        if os.environ.get("LAMBDA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (LAMBDA_REQUIRE_POSTGRES=1): {reason}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {reason}")
    return POSTGRES_ADMIN_URL


@pytest.fixture(scope="session")
def postgres_template(postgres_server):
    """A database migrated once per session: each test's database is a copy of it, which
    costs a third of creating and migrating one."""
    name = f"lambda_template_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = create_db_engine(_database_url(postgres_server, name))
    migrate(engine)
    engine.dispose()  # a template must have no connection while it is copied
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _database_url(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def _fresh_postgres_database(admin_url: str, template: str | None = None
                             ) -> tuple[str, callable]:
    """A new database, empty or a copy of ``template``; and the function that drops it."""
    name = f"lambda_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        copy = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{copy}'))

    def drop():
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return _database_url(admin_url, name), drop


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, migrated database of each kind the product supports."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'lambda.db'}"
        engine = create_db_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
        return
    url, drop = _fresh_postgres_database(request.getfixturevalue("postgres_server"),
                                         request.getfixturevalue("postgres_template"))
    yield url
    drop()


@pytest.fixture
def uow_factory(database_url):
    engine = create_db_engine(database_url)
    yield UnitOfWorkFactory(engine)
    engine.dispose()


@pytest.fixture
def in_empty_dir(tmp_path, monkeypatch):
    """An empty working directory and no LAMBDA_* settings from the caller's environment."""
    for name in list(os.environ):
        if name.startswith("LAMBDA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KAMAKIRC", str(tmp_path / "no-kamakirc"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work
