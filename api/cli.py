"""``lambda-service``: serve, worker, inventory, hostkeys, seed, migrate, paths; and the demo, the
emulator, the stand-ins and the SSH lab (``lambda_testbed``, imported only when they run)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from api.settings import Settings, SettingsError, load_settings, require_shared_secret

log = logging.getLogger(__name__)


class CliError(Exception):
    """A one-line error for the operator: printed, no traceback."""


def _settings(args):
    settings = load_settings(config_file=getattr(args, "config", None))
    if getattr(args, "bind", None):
        settings = settings.replace(bind=args.bind)
    return settings


def cmd_serve(args) -> int:
    from api.server import serve

    settings = _settings(args)
    require_shared_secret(settings)  # here too: a server worker's refusal is buried in its log
    serve(settings)
    return 0


def cmd_worker(args) -> int:
    from api.bootstrap import bootstrap
    from api.worker.celery_app import run_worker

    try:
        # Built before consuming: a broken configuration stops the worker at once instead
        # of failing every task it takes.
        container = bootstrap(_settings(args), run_migrations=False)
    except (SettingsError, CliError):
        raise
    except Exception:
        log.exception("worker: cannot build the orchestrator")
        return 1
    try:
        return run_worker(container, concurrency=args.concurrency)
    finally:
        container.close()


def cmd_emulator(args) -> int:
    from lambda_testbed.emulator import main

    return main(["--seed", args.seed, "--bind", args.bind])


def cmd_demo(args) -> int:
    from lambda_testbed.demo import run_demo

    settings = _settings(args)
    return run_demo(settings, instances=args.instances, state_dir=Path(args.state_dir),
                    emulator_bind=args.emulator_bind, reset=args.reset)


def _describe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


POINT_ELSEWHERE = ("name another with --config FILE, LAMBDA_CONFIG or LAMBDA_DATABASE_URL "
                   "(the demo's: --config .lambda/demo/lambda.yml)")


def open_existing_database(settings: Settings):
    """The unit-of-work factory of a database that exists and holds our tables.

    Never creates anything: a missing SQLite file or an empty database is a ``CliError``
    that names the database read and how to point at another."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from api.adapters.db import UnitOfWorkFactory
    from api.adapters.db.engine import create_db_engine
    from api.adapters.db.tables import instances

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        if not path.is_file():
            raise CliError(f"no database at {path.resolve()}: {POINT_ELSEWHERE}")
        # mode=rw never creates the file; and unlike mode=ro, its last close removes the
        # WAL files it opened. Reads go through it, and hostkeys forget's one delete.
        engine = create_engine(url.set(database=f"file:{path.resolve()}?mode=rw",
                                       query={"uri": "true"}))
    else:
        engine = create_db_engine(settings.database_url)
    try:
        has_tables = inspect(engine).has_table(instances.name)
    except SQLAlchemyError as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise CliError(f"cannot read the database {_describe(settings.database_url)} "
                       f"({reason}): {POINT_ELSEWHERE}") from exc
    if not has_tables:
        engine.dispose()
        raise CliError(f"the database {_describe(settings.database_url)} holds no lambda "
                       f"instances (run lambda-service seed FILE), or {POINT_ELSEWHERE}")
    return UnitOfWorkFactory(engine)


def _get_instance(uow, settings: Settings, instance_id: str):
    from api.domain.errors import InstanceNotFound
    from api.domain.services import parse_instance_id

    try:
        instance = uow.instances.get(parse_instance_id(instance_id))
    except InstanceNotFound:
        instance = None
    if instance is None:
        raise CliError(f"no lambda instance {instance_id} in the database "
                       f"{_describe(settings.database_url)}: {POINT_ELSEWHERE}")
    return instance


def _pinned_host_keys(uow, settings: Settings, hosts) -> list:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return uow.host_keys.pinned([h.server_id for h in hosts])
    except SQLAlchemyError as exc:
        raise CliError(f"the database {_describe(settings.database_url)} has no host key "
                       "table yet: run lambda-service migrate (or start the service)") from exc


def _write_known_hosts(path: str, hosts, pins, settings: Settings) -> None:
    from api.adapters.host_keys import by_server, render_known_hosts

    text = render_known_hosts(hosts, by_server(pins), settings.ssh_port)
    if not text:
        raise CliError("no SSH host key is pinned for this instance yet: the service pins "
                       "them at the instance's first start")
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text)


def cmd_inventory(args) -> int:
    from api.adapters.inventory import InventoryError, render_inventory

    settings = _settings(args)
    uow_factory = open_existing_database(settings)
    try:
        with uow_factory(readonly=True) as uow:
            instance = _get_instance(uow, settings, args.instance_id)
            pins = (_pinned_host_keys(uow, settings, instance.hosts) if args.known_hosts
                    else None)
    finally:
        uow_factory.engine.dispose()
    known_hosts_file = None
    if args.known_hosts:
        _write_known_hosts(args.known_hosts, instance.hosts, pins, settings)
        known_hosts_file = str(Path(args.known_hosts).resolve())
    try:
        text = render_inventory(instance, settings=settings, known_hosts_file=known_hosts_file)
    except InventoryError as exc:
        raise CliError(f"lambda instance {instance.id}: {exc}") from exc
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _select_hosts(instance, wanted: list[str]):
    """The instance's hosts named by host name, inventory alias or server id (all if none)."""
    from api.domain.names import host_aliases

    if not wanted:
        return list(instance.hosts)
    aliases = host_aliases(h.name for h in instance.hosts)
    chosen = []
    for name in wanted:
        found = [h for h, alias in zip(instance.hosts, aliases, strict=True)
                 if name in (h.name, alias, str(h.server_id))]
        if not found:
            known = ", ".join(aliases)
            raise CliError(f"instance {instance.id} has no host {name!r} (its hosts: {known})")
        chosen += [h for h in found if h not in chosen]
    return chosen


def cmd_hostkeys(args) -> int:
    from api.adapters.host_keys import fingerprint

    settings = _settings(args)
    uow_factory = open_existing_database(settings)
    try:
        with uow_factory(readonly=args.verb != "forget") as uow:
            instance = _get_instance(uow, settings, args.instance_id)
            hosts = _select_hosts(instance, args.hosts)
            pins = _pinned_host_keys(uow, settings, hosts)
            if args.verb == "forget":
                dropped = uow.host_keys.forget([h.server_id for h in hosts])
                uow.commit()
    finally:
        uow_factory.engine.dispose()
    if args.verb == "list":
        names = {h.server_id: h.name for h in hosts}
        for pin in pins:
            print(f"{names[pin.server_id]}\tserver {pin.server_id}\t{pin.key.key_type}\t"
                  f"{fingerprint(pin.key)}\tpinned {pin.pinned_at:%Y-%m-%d %H:%M:%S} UTC")
    elif args.verb == "known-hosts":
        _write_known_hosts(args.output or "-", hosts, pins, settings)
    else:
        print(f"forgot {dropped} pinned host keys of {len(hosts)} hosts; the next start or "
              "stop pins what they offer then")
    return 0


def cmd_paths(args) -> int:
    settings = _settings(args)
    paths = {
        "playbooks": settings.playbook_dir,
        "roles": settings.roles_dir,
        "inventory_template": settings.inventory_template,
        "ansible_cfg": str(settings.ansible_cfg),
        "database": _describe(settings.database_url),
        "state_dir": str(Path(settings.state_dir).resolve()),
    }
    if args.name:
        print(paths[args.name])
    else:
        for name, value in paths.items():
            print(f"{name}: {value}")
    return 0


def cmd_seed(args) -> int:
    from api.adapters.db import UnitOfWorkFactory
    from api.adapters.db.engine import create_db_engine, migrate
    from api.seed import SeedError, load_seed, seed_database

    settings = _settings(args)
    try:
        seed = load_seed(args.file)
        engine = create_db_engine(settings.database_url)
        migrate(engine)
        added, kept = seed_database(UnitOfWorkFactory(engine), seed, replace=args.replace)
    except SeedError as exc:
        raise CliError(str(exc)) from exc
    print(f"{added} instances added, {kept} already present")
    return 0


def cmd_migrate(args) -> int:
    from api.adapters.db.engine import create_db_engine, migrate

    migrate(create_db_engine(_settings(args).database_url))
    return 0


def cmd_standins(args) -> int:
    from lambda_testbed import standins

    homes = standins.install(Path(args.dest))
    for name, home in sorted(homes.items()):
        print(f"{name}: {home}")
    return 0


def cmd_lab(args) -> int:
    from lambda_testbed.lab import main

    return main(args.lab_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambda-service", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (else $LAMBDA_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="serve the API (hypercorn, several worker processes)")
    p.add_argument("--bind", help="HOST:PORT (else $LAMBDA_BIND, 127.0.0.1:8000)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run a Celery worker (LAMBDA_DISPATCHER=celery)")
    p.add_argument("--concurrency", type=int, default=4)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("emulator", help="serve the Synnefo identity+compute emulator")
    p.add_argument("--seed", required=True, help="seed YAML (docs/ARCHITECTURE.md)")
    p.add_argument("--bind", default="127.0.0.1:9100")
    p.set_defaults(func=cmd_emulator)

    p = sub.add_parser("demo", help="emulator + API with the seed's token and instance")
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--state-dir", default=".lambda/demo")
    p.add_argument("--bind", help="API HOST:PORT (default 127.0.0.1:8000)")
    p.add_argument("--emulator-bind", default="127.0.0.1:9100")
    p.add_argument("--reset", action="store_true",
                   help="forget earlier demo state and stop its daemons first")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("inventory", help="render the Ansible inventory of an instance")
    p.add_argument("instance_id")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument("--known-hosts", metavar="FILE",
                   help="write the instance's pinned SSH host keys to FILE and have the "
                   "inventory check the hosts against exactly those")
    p.set_defaults(func=cmd_inventory)

    p = sub.add_parser("hostkeys", help="the SSH host keys pinned for an instance's servers")
    p.add_argument("verb", choices=["list", "known-hosts", "forget"],
                   help="list them; print them as known_hosts lines; forget them (after a "
                   "VM was reinstalled: the next action pins its new key)")
    p.add_argument("instance_id")
    p.add_argument("hosts", nargs="*", help="only these hosts (name or server id)")
    p.add_argument("-o", "--output", help="known-hosts: write to this file instead of stdout")
    p.set_defaults(func=cmd_hostkeys)

    p = sub.add_parser("paths", help="where the playbooks, roles, inventory template, "
                       "ansible.cfg and database are")
    p.add_argument("name", nargs="?", choices=["playbooks", "roles", "inventory_template",
                                               "ansible_cfg", "database", "state_dir"],
                   help="print only this one")
    p.set_defaults(func=cmd_paths)

    p = sub.add_parser("seed", help="add the instances of a seed YAML to the database")
    p.add_argument("file")
    p.add_argument("--replace", action="store_true")
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("standins", help="lay out the stand-in distributions in DEST")
    p.add_argument("dest")
    p.set_defaults(func=cmd_standins)

    p = sub.add_parser("lab", help="the SSH lab of network namespaces (up|down|status|purge)")
    p.add_argument("lab_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_lab)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (SettingsError, CliError) as exc:
        print(f"lambda-service: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
