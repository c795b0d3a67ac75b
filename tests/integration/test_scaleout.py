"""The scaled-out shape end to end: real ``lambda-service serve`` and ``lambda-service
worker`` processes over PostgreSQL and a real broker (RabbitMQ, or a private Redis this
module starts), an in-process Synnefo emulator, and stand-in playbooks that run locally
and take a few seconds, so workers can be killed and brokers restarted mid-playbook.

The ``Cluster`` helper here is shared with ``test_celery.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from api.adapters import proctree
from api.adapters.ansible import RUN_GROUP_ENV
from api.adapters.db import UnitOfWorkFactory
from api.adapters.db.engine import create_db_engine, migrate
from api.adapters.db.tables import actions, steps
from api.seed import seed_database
from api.worker.reaper import WORKER_MARK_ENV, worker_mark
from lambda_testbed.emulator import Emulator
from tests.conftest import _fresh_postgres_database
from tests.support import join_calls, sse_events, start_calls

pytestmark = [pytest.mark.postgres, pytest.mark.celery, pytest.mark.slow]

LAMBDA_SERVICE = str(Path(sys.executable).parent / "lambda-service")
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "scaleout"
RABBIT_URL = os.environ.get("LAMBDA_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
TOKEN = "tJ3b3f32f23ceuqdoS_TH7m0d6yxmlWL1r2ralKcttY"
USER = "7d2f3c8e-0b6b-4a53-9d57-2f0c3f1a6b11"
TEST_TAG_ENV = "LAMBDA_TEST_TAG"  # every process a test starts inherits it: the cleanup net


def instance_id(k: int) -> str:
    return f"00000000-0000-4000-8000-{k:012d}"


def make_seed(instances: int) -> dict:
    """``instances`` STOPPED instances of one user, a master and a slave each."""
    return {
        "users": [{"id": USER, "name": "demo@example.org", "tokens": [TOKEN]}],
        "instances": [
            {"id": instance_id(k), "owner": USER, "name": f"scale-{k}", "status": "STOPPED",
             "services": ["hdfs", "spark"],
             "hosts": [{"server_id": str(1000 + 10 * k + n), "name": f"scale-{k}-{role}",
                        "role": role, "ip": f"127.43.{k}.{n + 1}"}
                       for n, role in enumerate(("master", "slave"))]}
            for k in range(1, instances + 1)],
        "emulator": {"transition_seconds": 0.2, "build_seconds": 0},
    }


def broker_problem(url: str) -> str | None:
    try:
        with Connection(url, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1)
        return None
    except Exception as exc:
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    problem = broker_problem(RABBIT_URL)
    if problem:
        pytest.skip(f"RabbitMQ not reachable at {RABBIT_URL}: {problem}")
    return RABBIT_URL


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(url: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL past ``timeout``; always reaped. By pid, never by name."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class PrivateRedis:
    """A redis-server of the test's own (no persistence: a restart loses every message)."""

    def __init__(self, workdir: Path, env: dict):
        self.port = free_port()
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
        wait_for(lambda: broker_problem(self.url) is None, 15, "the private redis-server")

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
            self.proc = None


class Cluster:
    """API and worker processes of one test, on a fresh database and a queue of its own."""

    def __init__(self, tmp_path: Path, database_url: str, broker_url: str, *,
                 instances: int = 2, delay: float = 0, lease: float = 5.0):
        self.tmp = tmp_path
        self.database_url = database_url
        self.broker_url = broker_url
        self.queue = f"lambda-test-{uuid.uuid4().hex[:10]}"
        self.tag = uuid.uuid4().hex
        self.secret_key = Fernet.generate_key().decode()
        self.out = tmp_path / "out"
        self.out.mkdir()
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.procs: list[subprocess.Popen] = []
        self.seed = make_seed(instances)
        self.emulator = Emulator.from_seed(self.seed)
        self.emulator.start("127.0.0.1", 0)
        engine = create_db_engine(database_url)
        migrate(engine)  # once, before any process: they would race to create the schema
        self.uow_factory = UnitOfWorkFactory(engine)
        seed_database(self.uow_factory, self.seed)
        # The processes' temp files in the test's own dir: a killed worker's playbook
        # leaves its modules' AnsiballZ payload dirs behind.
        temp = tmp_path / "tmp"
        temp.mkdir(exist_ok=True)
        self.base_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")},
            "TMPDIR": str(temp),
            TEST_TAG_ENV: self.tag,
            "LAMBDA_DISPATCHER": "celery",
            "LAMBDA_BROKER_URL": broker_url,
            "LAMBDA_QUEUE": self.queue,
            "LAMBDA_DATABASE_URL": database_url,
            "LAMBDA_SECRET_KEY": self.secret_key,
            "LAMBDA_AUTH_URL": self.emulator.auth_url,
            "LAMBDA_STATE_DIR": str(tmp_path / "state"),
            "LAMBDA_PLAYBOOK_DIR": str(FIXTURES),
            # The fixture playbooks are whole, with no chains to run side by side and no
            # service checks.
            "LAMBDA_PLAYBOOK_CHAINS": "one-after-another",
            "LAMBDA_CHECKS": "off",
            "LAMBDA_ANSIBLE_CONNECTION": "local",
            "LAMBDA_LEASE_SECONDS": str(lease),
            "LAMBDA_SWEEP_INTERVAL": "1",
            "LAMBDA_POLL_INTERVAL": "0.2",
            "LAMBDA_HTTP_WORKERS": "2",
            "LAMBDA_HTTP_THREADS": "4",
            "LAMBDA_SCALEOUT_OUT": str(self.out),
            "LAMBDA_SCALEOUT_DELAY": str(delay),
            # Playbooks see only an allow-list of the environment: these too.
            "LAMBDA_ANSIBLE_ENV": f"{TEST_TAG_ENV},LAMBDA_SCALEOUT_OUT,LAMBDA_SCALEOUT_DELAY",
        }

    # -- processes -----------------------------------------------------------------------

    def _spawn(self, args: list[str], name: str, env: dict) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen([LAMBDA_SERVICE, *args], env={**self.base_env, **env},
                                stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        log.close()
        proc.log_path = self.logs / f"{name}.log"
        self.procs.append(proc)
        return proc

    def start_worker(self, concurrency: int = 2, **env) -> subprocess.Popen:
        name = f"worker-{len(self.procs)}"
        metrics = f"127.0.0.1:{free_port()}"  # each worker serves its metrics on its own
        proc = self._spawn(["worker", "--concurrency", str(concurrency)], name,
                           {"LAMBDA_WORKER_METRICS_BIND": metrics, **env})
        proc.metrics_url = f"http://{metrics}/metrics"
        wait_for(lambda: self._ready(proc, " ready."), 60, f"{name} to be ready")
        return proc

    def start_api(self, **env) -> str:
        port = free_port()
        name = f"api-{len(self.procs)}"
        proc = self._spawn(["serve"], name, {"LAMBDA_BIND": f"127.0.0.1:{port}", **env})
        base = f"http://127.0.0.1:{port}"

        def answers():
            self._check_alive(proc)
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{base}/api/authenticate/", timeout=2,
                                    headers={"Authorization": f"Token {TOKEN}"}).ok
            return False
        wait_for(answers, 60, f"{name} to answer")
        return base

    def _ready(self, proc, needle: str) -> bool:
        self._check_alive(proc)
        return needle in proc.log_path.read_text(errors="replace")

    @staticmethod
    def _check_alive(proc) -> None:
        if proc.poll() is not None:
            tail = proc.log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"process {proc.args} exited with {proc.returncode}:\n{tail}")

    def close(self) -> None:
        # All at once: a worker's warm shutdown takes a few seconds of Celery's own.
        with ThreadPoolExecutor(max(len(self.procs), 1)) as pool:
            list(pool.map(stop_process, self.procs))
        # Anything a process left behind (a playbook of a killed worker) goes too.
        left = proctree.kill_processes_with_env(TEST_TAG_ENV, self.tag, grace=1.0)
        self.emulator.stop()
        self.uow_factory.engine.dispose()
        if self.broker_url == RABBIT_URL:
            with contextlib.suppress(Exception), Connection(self.broker_url) as conn:
                conn.default_channel.queue_delete(self.queue)
                conn.default_channel.exchange_delete(self.queue)  # Celery's, of the same name
        assert not left, f"processes left running: {left}"

    # -- HTTP ----------------------------------------------------------------------------

    @staticmethod
    def post(base: str, instance: str, action: str) -> requests.Response:
        return requests.post(f"{base}/api/lambda-instances/{instance}/",
                             headers={"Authorization": f"Token {TOKEN}"},
                             data={"action": action}, timeout=30)

    def accept(self, base: str, instance: str, action: str) -> str:
        resp = self.post(base, instance, action)
        assert resp.status_code == 202, resp.text
        return resp.headers["Location"].rstrip("/").rsplit("/", 1)[-1]

    @staticmethod
    def events(base: str, instance: str, action_id: str) -> list[dict]:
        """The action's event stream from ``base``, read until the server ends it."""
        with requests.get(f"{base}/api/lambda-instances/{instance}/actions/{action_id}/events",
                          headers={"Authorization": f"Token {TOKEN}"}, stream=True,
                          timeout=(5, 40)) as resp:
            assert resp.status_code == 200, resp.text
            return list(sse_events(resp))

    @staticmethod
    def cancel(base: str, instance: str, action_id: str) -> requests.Response:
        return requests.post(
            f"{base}/api/lambda-instances/{instance}/actions/{action_id}/cancel",
            headers={"Authorization": f"Token {TOKEN}"}, timeout=30)

    # -- the database --------------------------------------------------------------------

    def action(self, action_id: str):
        with self.uow_factory(readonly=True) as uow:
            return uow.actions.get(action_id)

    def instance(self, k_or_id):
        iid = instance_id(k_or_id) if isinstance(k_or_id, int) else k_or_id
        with self.uow_factory(readonly=True) as uow:
            return uow.instances.get(iid)

    def row(self, action_id: str) -> dict:
        with self.uow_factory.engine.connect() as conn:
            return dict(conn.execute(select(actions).where(actions.c.id == action_id))
                        .mappings().one())

    def step_rows(self, action_id: str) -> list[dict]:
        with self.uow_factory.engine.connect() as conn:
            return [dict(r) for r in conn.execute(
                select(steps).where(steps.c.action_id == action_id).order_by(steps.c.id))
                .mappings()]

    def wait_finished(self, action_id: str, timeout: float):
        return wait_for(lambda: (a := self.action(action_id)) and a.state.finished and a,
                        timeout, f"action {action_id} to finish")

    def runs(self) -> list[list[str]]:
        path = self.out / "runs.log"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def pg_url(postgres_server):
    url, drop = _fresh_postgres_database(postgres_server)
    yield url
    drop()


@pytest.fixture
def make_cluster(tmp_path, pg_url):
    made = []

    def make(broker_url: str, **kwargs) -> Cluster:
        cluster = Cluster(tmp_path, pg_url, broker_url, **kwargs)
        made.append(cluster)
        return cluster
    yield make
    for cluster in made:
        cluster.close()


# --- (a) and (b): start/stop through two API processes, racing requests -----------------------


def test_racing_requests_on_two_apis_then_start_and_stop(rabbitmq, make_cluster):
    cluster = make_cluster(rabbitmq, instances=1)
    cluster.start_worker()
    cluster.start_worker()
    apis = [cluster.start_api(), cluster.start_api()]

    # Twelve requests at once, alternating between the two API processes.
    barrier = threading.Barrier(12)

    def fire(n):
        barrier.wait()
        return cluster.post(apis[n % 2], instance_id(1), "start")
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(fire, range(12)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [202] + [409] * 11, codes
    winner = next(r for r in responses if r.status_code == 202)
    assert winner.json()["status"] == {"code": 202,
                                       "short-description": "Your request has been accepted"}
    start_id = winner.headers["Location"].rstrip("/").rsplit("/", 1)[-1]

    started = cluster.wait_finished(start_id, 60)
    assert started.state.value == "succeeded", started.error
    assert started.attempts == 1
    assert cluster.instance(1).status.name == "STARTED"
    assert [(s.name.value, s.state.value) for s in started.steps] == [
        ("power_on", "succeeded"), ("wait_ssh", "skipped"), ("playbook", "succeeded"),
        ("service_checks", "skipped")]
    assert cluster.row(start_id)["encrypted_token"] is None  # erased when the action ended
    # The action resource is served by either API process.
    body = requests.get(f"{apis[1]}/api/lambda-instances/{instance_id(1)}/actions/{start_id}",
                        headers={"Authorization": f"Token {TOKEN}"}, timeout=10).json()
    assert "succeeded" in str(body["data"])

    stop_id = cluster.accept(apis[1], instance_id(1), "stop")
    stopped = cluster.wait_finished(stop_id, 60)
    assert stopped.state.value == "succeeded", stopped.error
    assert cluster.instance(1).status.name == "STOPPED"
    assert all(cluster.emulator.server_status(h["server_id"]) == "STOPPED"
               for h in cluster.seed["instances"][0]["hosts"])
    # Exactly one playbook run per action: two hosts, one begin and one end each.
    runs = cluster.runs()
    for kind, action_id in (("start", start_id), ("stop", stop_id)):
        mine = [r for r in runs if r[1] == kind and r[2] == action_id]
        assert sorted(r[0] for r in mine) == ["begin", "begin", "end", "end"], runs


# --- (c): kill -9 of the worker running a playbook ---------------------------------------------


def test_worker_killed_mid_playbook_resumes_once(rabbitmq, make_cluster):
    cluster = make_cluster(rabbitmq, instances=1, delay=6, lease=5)
    workers = [cluster.start_worker(), cluster.start_worker()]
    api = cluster.start_api(LAMBDA_HTTP_WORKERS="1")
    action_id = cluster.accept(api, instance_id(1), "start")
    # Followed from the API process, which runs no action: it reads the rows the workers
    # write, across the kill and the second attempt, to the end.
    reader, streamed = start_calls(lambda _: cluster.events(api, instance_id(1), action_id),
                                   [0])

    wait_for(lambda: any(r[0] == "begin" and r[2] == action_id for r in cluster.runs()), 30,
             "the playbook to begin")
    owner = cluster.row(action_id)["lease_owner"]
    victim = next(w for w in workers if owner.split(":")[1] == str(w.pid))
    mark = worker_mark(victim.pid)
    assert proctree.find_processes_with_env(WORKER_MARK_ENV, mark), "no playbook processes"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)

    # Lease 5s, sweep 1s, playbook 6s: well within 60s unless something is stuck.
    action = cluster.wait_finished(action_id, 60)
    assert action.state.value == "succeeded", action.error
    assert action.attempts == 2
    assert cluster.instance(1).status.name == "STARTED"
    rows = cluster.step_rows(action_id)
    # The killed attempt's playbook step is closed as interrupted when attempt 2 claims.
    playbooks = [(r["attempt"], r["state"]) for r in rows if r["name"] == "playbook"]
    assert playbooks == [(1, "failed"), (2, "succeeded")], rows
    assert "resumed as attempt 2" in next(r["message"] for r in rows
                                          if r["name"] == "playbook" and r["attempt"] == 1)
    assert not [r for r in rows if r["state"] == "running"], rows
    # The killed worker's playbook was reaped by the survivor, not left to finish beside
    # the second attempt: every "end" line is from the second run.
    runs = [r for r in cluster.runs() if r[2] == action_id]
    markers = {r[4] for r in runs if r[0] == "begin"}
    ended = {r[4] for r in runs if r[0] == "end"}
    assert len(markers) == 2 and len(ended) == 1 and ended < markers, runs
    assert proctree.find_processes_with_env(WORKER_MARK_ENV, mark) == []
    assert cluster.row(action_id)["encrypted_token"] is None

    join_calls(reader)
    [events] = streamed
    assert isinstance(events, list), events  # not the exception the reader raised
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [(e["state"], e["attempt"]) for e in events if e["type"] == "state"] == [
        ("accepted", None), ("running", 1), ("running", 2), ("succeeded", 2)]
    [interrupted] = [e for e in events if e.get("interrupted")]
    assert (interrupted["name"], interrupted["attempt"]) == ("playbook", 1)
    assert events.index(interrupted) < next(
        i for i, e in enumerate(events) if e["type"] == "state" and e["attempt"] == 2)
    hosts = {h["name"] for h in cluster.seed["instances"][0]["hosts"]}
    assert {e["host"] for e in events if e["type"] == "task" and e["attempt"] == 2} == hosts


# --- graceful shutdown: the running action is handed back, not waited for ----------------------


def test_worker_sigterm_hands_the_action_back(rabbitmq, make_cluster):
    cluster = make_cluster(rabbitmq, instances=1, delay=5, lease=30)
    first = cluster.start_worker()
    api = cluster.start_api(LAMBDA_HTTP_WORKERS="1")
    action_id = cluster.accept(api, instance_id(1), "start")
    wait_for(lambda: any(r[0] == "begin" and r[2] == action_id for r in cluster.runs()), 30,
             "the playbook to begin")
    cluster.start_worker()  # after the claim, so the first worker holds the action
    first.send_signal(signal.SIGTERM)
    # With a 30s lease, only a hand-back (not a lease expiry) lets the second worker
    # resume within the wait below; the first exits without finishing its playbook.
    assert first.wait(timeout=25) == 0
    action = cluster.wait_finished(action_id, 25)
    assert action.state.value == "succeeded", action.error
    assert action.attempts == 1  # a hand-back gives its attempt back
    assert "handed back" in first.log_path.read_text()


# --- cancel: by the API when no worker holds the action, else by the worker that does ----------


def test_cancel_ends_a_queued_action_at_once_and_stops_one_on_a_worker(rabbitmq, make_cluster):
    cluster = make_cluster(rabbitmq, instances=2, delay=60)
    api = cluster.start_api(LAMBDA_HTTP_WORKERS="1")
    # No worker yet: nobody holds the action, so the API ends it itself.
    queued = cluster.accept(api, instance_id(1), "start")
    resp = cluster.cancel(api, instance_id(1), queued)
    assert resp.status_code == 202, resp.text
    assert resp.json()["data"]["action"]["state"] == "cancelled"
    assert cluster.instance(1).status.name == "FAILED"

    cluster.start_worker()
    running = cluster.accept(api, instance_id(2), "start")
    wait_for(lambda: any(r[0] == "begin" and r[2] == running for r in cluster.runs()), 30,
             "the playbook to begin")
    assert proctree.find_processes_with_env(RUN_GROUP_ENV, running), "no playbook processes"
    resp = cluster.cancel(api, instance_id(2), running)
    assert resp.status_code == 202, resp.text
    action = cluster.wait_finished(running, 45)  # its playbook would take 60 s
    assert action.state.value == "cancelled", action.error
    assert action.cancel_requested_by == USER
    assert action.error.startswith(f"start cancelled by {USER} during step playbook")
    assert [s.state.value for s in action.steps][-1] == "cancelled"
    assert cluster.instance(2).status.name == "FAILED"
    assert cluster.instance(2).failure_message == action.error
    # The play was cut (it never ended) and nothing of it is left on this host.
    assert not [r for r in cluster.runs() if r[0] == "end"]
    assert proctree.find_processes_with_env(RUN_GROUP_ENV, running) == []
    assert cluster.row(running)["encrypted_token"] is None
    assert cluster.action(queued).attempts == 0  # its message, when taken, ran nothing


# --- (e): a broker restart loses queued messages; nothing is lost for good ---------------------


def test_redis_restart_mid_run_loses_no_action(make_cluster, tmp_path, postgres_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")}
    redis = PrivateRedis(tmp_path, {**env})
    redis.start()
    try:
        cluster = make_cluster(redis.url, instances=3, delay=3)
        redis.env[TEST_TAG_ENV] = cluster.tag
        worker = cluster.start_worker(concurrency=1)  # one at a time: the others wait queued
        api = cluster.start_api(LAMBDA_HTTP_WORKERS="1")
        first = cluster.accept(api, instance_id(1), "start")
        second = cluster.accept(api, instance_id(2), "start")
        wait_for(lambda: any(r[0] == "begin" and r[2] == first for r in cluster.runs()), 30,
                 "the first playbook to begin")

        # The second action waits on the broker (the only worker thread is busy) ...
        assert redis.client().llen(cluster.queue) >= 1
        redis.stop()  # ... and dies with it: no persistence
        third = cluster.accept(api, instance_id(3), "start")  # 202 with the broker down
        redis.start()

        for action_id in (first, second, third):
            action = cluster.wait_finished(action_id, 90)
            assert action.state.value == "succeeded", (action_id, action.error)
            assert action.attempts == 1
        assert all(cluster.instance(k).status.name == "STARTED" for k in (1, 2, 3))
        assert worker.poll() is None
        assert "sent it again" in worker.log_path.read_text()
        # The worker's own metrics endpoint counts what it ran and resumed; the API's
        # counts the publish the broker refused.
        started = ("lambda_actions_total", (("kind", "start"), ("outcome", "succeeded")))
        metrics = wait_for(lambda: (m := scrape(worker.metrics_url)).get(started) == 3 and m,
                           10, "the worker to count its actions")
        assert metrics[("lambda_sweeper_resumed_total", ())] >= 1
        assert metrics[("lambda_actions_in_flight", (("kind", "start"),))] == 0
        assert metrics[("lambda_step_duration_seconds_count",
                        (("state", "succeeded"), ("step", "playbook")))] == 3
        assert scrape(f"{api}/metrics")[("lambda_dispatch_failures_total", ())] >= 1
    finally:
        redis.stop()
