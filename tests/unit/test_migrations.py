"""Migrations upgrade a database that holds data, and step back down (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest
from alembic import command
from sqlalchemy import inspect, text

from api.adapters.db.engine import alembic_config, create_db_engine, migrate
from tests.conftest import _fresh_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    url, drop = _fresh_postgres_database(request.getfixturevalue("postgres_server"))
    yield url
    drop()


def _alembic(engine, url: str, verb: str, revision: str) -> None:
    """Run alembic's upgrade or downgrade to ``revision`` on the engine's database."""
    config = alembic_config(url)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, verb)(config, revision)


def _database_at(url: str, revision: str, status: str = "STARTED", with_step: bool = True,
                 **action_columns):
    """An engine on a database migrated to ``revision`` that holds one instance ('i1', of
    ``status``), its start action ('a1', finished unless ``action_columns`` say otherwise,
    in the columns of that revision) and, ``with_step``, the action's power_on step."""
    engine = create_db_engine(url)
    _alembic(engine, url, "upgrade", revision)
    action = {"id": "a1", "instance_id": "i1", "owner": "u", "kind": "start",
              "state": "succeeded", "created_at": "2026-01-01", "attempts": 1,
              **action_columns}
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO lambda_instances (id, owner, name, status, services, created_at, "
            "updated_at) VALUES ('i1', 'u', 'n', :status, '[]', '2026-01-01', '2026-01-01')"),
            {"status": status})
        conn.execute(text(f"INSERT INTO actions ({', '.join(action)}) "
                          f"VALUES ({', '.join(':' + name for name in action)})"), action)
        if with_step:
            conn.execute(text(
                "INSERT INTO action_steps (action_id, attempt, name, state) "
                "VALUES ('a1', 1, 'power_on', 'succeeded')"))
    return engine


def test_upgrade_from_the_first_revision_keeps_the_actions_and_steps(empty_database):
    engine = _database_at(empty_database, "0001", status="STOPPED", state="accepted",
                          attempts=0, dispatched=False)
    migrate(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("actions")}
    assert "dispatched" not in columns
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, state FROM actions")).all() == [("a1", "accepted")]
        # Not cascaded away with a rebuilt actions table.
        assert conn.execute(text("SELECT name FROM action_steps")).all() == [("power_on",)]
    _alembic(engine, empty_database, "downgrade", "0001")
    assert "dispatched" in {c["name"] for c in inspect(engine).get_columns("actions")}
    engine.dispose()


def test_hosts_are_read_in_index_order(empty_database):
    """0003: an instance's hosts come out of an index in order, with no sort per read."""
    from sqlalchemy import event

    from api.adapters.db import UnitOfWorkFactory

    engine = create_db_engine(empty_database)
    migrate(engine)
    indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("instance_hosts")}
    assert indexes["ix_instance_hosts_position"] == ["instance_id", "position"]
    if engine.dialect.name == "sqlite":
        statements = []
        event.listen(engine, "before_cursor_execute",
                     lambda _c, _cur, sql, params, _ctx, _many: statements.append((sql, params)))
        with UnitOfWorkFactory(engine)(readonly=True) as uow:
            uow.instances.get("i", owner="u")
        [(sql, params)] = [s for s in statements if "instance_hosts" in s[0]]
        with engine.connect() as conn:
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql, params))
        assert "ix_instance_hosts_position" in plan and "TEMP B-TREE" not in plan, plan
    _alembic(engine, empty_database, "downgrade", "0002")
    assert "ix_instance_hosts_position" not in {
        i["name"] for i in inspect(engine).get_indexes("instance_hosts")}
    engine.dispose()


def test_upgrade_from_0003_renames_the_token_column_and_keeps_the_steps(empty_database):
    """0004: token_cipher becomes encrypted_token in place; nothing else of a row moves."""
    engine = _database_at(empty_database, "0003", status="STARTING", state="running",
                          token_cipher="gAAAA-secret")
    migrate(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("actions")}
    assert "encrypted_token" in columns and "token_cipher" not in columns
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, state, encrypted_token FROM actions")).all() == [
            ("a1", "running", "gAAAA-secret")]
        assert conn.execute(text("SELECT name FROM action_steps")).all() == [("power_on",)]
    _alembic(engine, empty_database, "downgrade", "0003")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT token_cipher FROM actions")).all() == [
            ("gAAAA-secret",)]
    engine.dispose()


def test_upgrade_from_0005_numbers_no_events_for_earlier_actions_and_keeps_the_steps(
        empty_database):
    """0006: actions recorded before it have no events (last_event 0), and keep their
    steps (no table rebuilt); the downgrade drops the events and the column."""
    from api.adapters.db import UnitOfWorkFactory

    engine = _database_at(empty_database, "0005")
    migrate(engine)
    factory = UnitOfWorkFactory(engine)
    with factory(readonly=True) as uow:
        action = uow.actions.get("a1")
        assert (action.last_event, len(action.steps)) == (0, 1)
        assert uow.actions.events("a1", 0, 10) == []
    _alembic(engine, empty_database, "downgrade", "0005")
    assert "action_events" not in inspect(engine).get_table_names()
    assert "last_event" not in {c["name"] for c in inspect(engine).get_columns("actions")}
    engine.dispose()


def test_upgrade_to_0008_reads_rows_from_before_as_nothing_left_out(empty_database):
    """0008: instances and actions from before it have no hosts left out or excluded (NULL
    reads as none); the downgrade drops the two columns and keeps the rows."""
    from api.adapters.db import UnitOfWorkFactory

    engine = _database_at(empty_database, "0007", with_step=False)
    migrate(engine)
    with UnitOfWorkFactory(engine)(readonly=True) as uow:
        assert uow.instances.get("i1").left_out_hosts == ()
        assert uow.actions.get("a1").excluded_hosts == ()
    _alembic(engine, empty_database, "downgrade", "0007")
    assert "left_out_hosts" not in {
        c["name"] for c in inspect(engine).get_columns("lambda_instances")}
    assert "excluded_hosts" not in {c["name"] for c in inspect(engine).get_columns("actions")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM actions")).all() == [("a1",)]
    engine.dispose()


def test_migrations_build_exactly_the_declared_tables(empty_database):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from api.adapters.db.tables import metadata

    engine = create_db_engine(empty_database)
    migrate(engine)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_concurrent_migrations_of_an_empty_database_agree(kind, tmp_path, request):
    from concurrent.futures import ThreadPoolExecutor

    drop = None
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        url, drop = _fresh_postgres_database(request.getfixturevalue("postgres_server"))
    engines = [create_db_engine(url) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(migrate, engines))
        assert "actions" in inspect(engines[0]).get_table_names()
    finally:
        for engine in engines:
            engine.dispose()
        if drop:
            drop()
