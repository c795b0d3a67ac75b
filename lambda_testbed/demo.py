"""``lambda-service demo``: the emulator and the API on embedded defaults, local hosts.

Every host of every demo instance is a loopback address (127.42.k.j) with its own
directory under the demo's state dir; stand-in Hadoop/Kafka/ZooKeeper/Spark
distributions play the services (real ones are not obtainable on this machine).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from api.adapters import proctree
from api.adapters.crypto import KEY_FILE, load_or_create_key
from api.adapters.db import UnitOfWorkFactory
from api.adapters.db.engine import create_db_engine, migrate
from api.domain.model import InstanceStatus
from api.seed import seed_database
from api.settings import Settings
from lambda_testbed.demo_data import DEMO_INSTANCE_ID, DEMO_TOKEN, OTHER_INSTANCE_ID, demo_seed

log = logging.getLogger(__name__)

POWERED = {InstanceStatus.STARTED, InstanceStatus.STOPPING}


def prepare_demo(state_dir: Path, instances: int, reset: bool,
                 database_url: str | None = None) -> dict:
    """Lay out the demo's state dir; return the paths and settings changes it needs.

    The database is SQLite in the state dir unless ``database_url`` names another."""
    from lambda_testbed import standins

    state_dir = state_dir.resolve()
    if reset and state_dir.exists():
        kill_processes_under(state_dir)
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    # The daemons' real start-to-ready delays, unless LAMBDA_STANDIN_LATENCY says otherwise.
    homes = standins.install(state_dir / "dist", latency=standins.latency_from_env())
    extravars = dict(homes)
    # Lazily templated per host by Ansible: each host gets its own root directory.
    extravars["lambda_host_root"] = str(state_dir / "hosts") + "/{{ inventory_hostname }}"
    extravars_file = state_dir / "extravars.yml"
    extravars_file.write_text(yaml.safe_dump(extravars, sort_keys=True))

    database_url = database_url or f"sqlite:///{state_dir / 'lambda.db'}"
    engine = create_db_engine(database_url)
    migrate(engine)
    uow_factory = UnitOfWorkFactory(engine)
    seed = demo_seed(instances)
    added, kept = seed_database(uow_factory, seed)
    # The emulator starts fresh each run: power its servers as the database remembers.
    servers = []
    with uow_factory(readonly=True) as uow:
        for item in seed["instances"]:
            instance = uow.instances.get(item["id"])
            for host in instance.hosts:
                servers.append({"id": host.server_id, "name": host.name,
                                "owner": instance.owner, "ips": [host.ip],
                                "status": "ACTIVE" if instance.status in POWERED
                                else "STOPPED"})
    engine.dispose()
    seed["servers"] = servers
    seed_file = state_dir / "seed.yml"
    seed_file.write_text(yaml.safe_dump(seed, sort_keys=False))
    log.info("demo state in %s: %d instances added, %d kept", state_dir, added, kept)
    return {"state_dir": state_dir, "seed_file": seed_file, "extravars_file": extravars_file,
            "database_url": database_url}


def start_emulator(seed_file: Path, bind: str, log_file: Path) -> subprocess.Popen:
    host, port = bind.rsplit(":", 1)
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lambda_testbed.emulator", "--seed", str(seed_file),
             "--bind", bind],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the emulator exited with {proc.returncode}; see {log_file}")
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the emulator did not listen on {bind} within 20s; see {log_file}")


def kill_processes_under(path: Path) -> int:
    """Kill the demo's leftover daemons: processes whose command line names ``path``.

    Matched by our own directory, never by a program name, so nothing else is touched."""
    killed = 0
    for pid in proctree.find_processes_with_cmdline(str(path)):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except OSError:
            pass
    return killed


# What the operator's commands need to act on the demo's instances as the service does.
OPERATOR_SETTINGS = ("database_url", "auth_url", "ansible_connection", "extravars_file",
                     "ssh_host_key_checking", "state_dir", "secret_key")


def write_settings_file(settings: Settings, path: Path) -> Path:
    """The demo's settings as a file ``--config``/``LAMBDA_CONFIG`` takes, so that
    ``lambda-service --config .lambda/demo/lambda.yml inventory ID`` reads the demo's
    database and renders the local connection the demo's hosts need."""
    values = {name: getattr(settings, name) for name in OPERATOR_SETTINGS
              if getattr(settings, name) is not None}
    text = ("# Written by lambda-service demo: the settings it serves with.\n"
            + yaml.safe_dump(values, sort_keys=False))
    # It may hold the server key and a database URL with its password: the owner's only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # a file an earlier demo left keeps its mode on O_CREAT
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def shared_secret_key(settings: Settings, state_dir: Path) -> str | None:
    """The key a scaled-out demo's API and workers share: ``LAMBDA_SECRET_KEY`` if set,
    else the demo's own key file (the settings file hands it to the workers)."""
    if settings.secret_key or not settings.scaled_out:
        return settings.secret_key
    return ",".join(key.decode() for key in load_or_create_key(state_dir / KEY_FILE))


def curl_examples(base: str) -> str:
    auth = f'-H "Authorization:Token {DEMO_TOKEN}"'
    url = f"{base}/api/lambda-instances/{DEMO_INSTANCE_ID}/"
    return "\n".join([
        "Try it:",
        f"  curl -X POST {auth} \\\n   -F \"action=start\" \\\n   '{url}'",
        f"  curl {auth} '{url}'                      # details (?filter=status|info)",
        f"  curl {auth} '{base}/api/lambda-instances/'   # your instances",
        "  curl -i ... (the 202 has a Location header: GET it to follow the action)",
        f"  curl -X POST {auth} '{base}<Location>/cancel'   # cancel it while it runs",
        f"  curl -X POST {auth} -d action=stop '{url}'",
        f"  curl -X POST {auth} -d action=start '{base}/api/lambda-instances/"
        f"{OTHER_INSTANCE_ID}/'   # someone else's: 404",
        f"  curl {base}/api/openapi.json",
        f"  curl {base}/metrics                       # metrics (from this machine only)",
    ])


def run_demo(settings: Settings, *, instances: int, state_dir: Path, emulator_bind: str,
             reset: bool) -> int:
    explicit_db = os.environ.get("LAMBDA_DATABASE_URL")
    prepared = prepare_demo(state_dir, instances, reset, database_url=explicit_db)
    emulator = start_emulator(prepared["seed_file"], emulator_bind,
                              prepared["state_dir"] / "emulator.log")
    settings = settings.replace(
        database_url=prepared["database_url"],
        auth_url=f"http://{emulator_bind}/identity/v2.0",
        ansible_connection="local",
        # Loopback hosts of one machine: no SSH, so no host key to pin.
        ssh_host_key_checking="off",
        extravars_file=str(prepared["extravars_file"]),
        state_dir=str(prepared["state_dir"]),
        # Local hosts on loopback: nothing is slow to power or reach.
        poll_interval=min(settings.poll_interval, 0.25),
    )
    settings = settings.replace(secret_key=shared_secret_key(settings, prepared["state_dir"]))
    config_file = write_settings_file(settings, prepared["state_dir"] / "lambda.yml")
    print(f"Synnefo emulator: http://{emulator_bind}  (token {DEMO_TOKEN})", flush=True)
    print(f"Settings:         {config_file}  (lambda-service --config it, e.g. inventory)",
          flush=True)
    print(f"Lambda service:   http://{settings.bind}", flush=True)
    print(f"Web page:         http://{settings.bind}/ui/  (sign in with the token above)",
          flush=True)
    print(curl_examples(f"http://{settings.bind}"), flush=True)
    if settings.dispatcher == "celery":
        # The settings file carries the database, the key and the rest: no secret is
        # printed or put on a command line.
        print("LAMBDA_DISPATCHER=celery: this demo starts no worker; start some with\n  "
              "LAMBDA_DISPATCHER=celery LAMBDA_BROKER_URL=... "
              f"lambda-service --config {config_file} worker", flush=True)
    try:
        from api.server import serve

        serve(settings)
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()
    return 0
