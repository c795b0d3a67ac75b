"""Accepted means durable: on SQLite the 202 is sent only once the action's row is on disk.

Two tests, each short of a power cut, which a test cannot make:
- the server is SIGKILLed the moment its 202 arrives, and the row is there on reopen.
  This shows the commit precedes the answer; it does not show the commit reached the
  disk (after a SIGKILL the kernel still writes out what the process wrote, whatever
  the synchronous setting).
- the server runs under strace, and the WAL is synced (fdatasync) after the row's
  write and before the 202 is sent. This is what survives a power cut: SQLite's docs
  (PRAGMA synchronous) say that in WAL mode FULL syncs the WAL at every commit, while
  NORMAL syncs it only at checkpoints, so the last commits may roll back on a power loss.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lambda_testbed.demo import kill_processes_under
from lambda_testbed.demo_data import DEMO_TOKEN, demo_seed
from lambda_testbed.emulator import Emulator
from tests.e2e.conftest import ROOT, Service, free_port

pytestmark = pytest.mark.slow

FIXTURES = ROOT / "tests" / "fixtures" / "secrets"  # a start that waits: nothing else runs


class Durable:
    """Emulator and seeded SQLite database; the server started per round by the test."""

    def __init__(self, tmp_path: Path, instances: int):
        self.tmp = tmp_path
        self.state = tmp_path / "state"
        self.state.mkdir()
        self.seed = demo_seed(instances=instances)
        self.emulator = Emulator.from_seed(self.seed)
        self.emulator.start("127.0.0.1", 0)
        seed_file = tmp_path / "seed.yml"
        seed_file.write_text(yaml.safe_dump(self.seed))
        extravars = tmp_path / "extravars.yml"
        extravars.write_text(yaml.safe_dump({"out_dir": str(tmp_path)}))
        self.db = self.state / "lambda.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")}
        self.env.update({
            "LAMBDA_DATABASE_URL": f"sqlite:///{self.db}",
            "LAMBDA_AUTH_URL": self.emulator.auth_url,
            "LAMBDA_STATE_DIR": str(self.state),
            "LAMBDA_PLAYBOOK_DIR": str(FIXTURES),
            # The fixture playbooks are whole, with no chains to run side by side and no
            # service checks.
            "LAMBDA_PLAYBOOK_CHAINS": "one-after-another",
            "LAMBDA_CHECKS": "off",
            "LAMBDA_ANSIBLE_CONNECTION": "local",
            "LAMBDA_EXTRAVARS_FILE": str(extravars),
            "LAMBDA_HTTP_WORKERS": "1",
            "PATH": f"{Path(sys.executable).parent}:{self.env.get('PATH', '')}",
        })
        subprocess.run([sys.executable, "-m", "api.cli", "seed", str(seed_file)],
                       env=self.env, cwd=ROOT, check=True, capture_output=True)

    def instance_ids(self) -> list[str]:
        return [item["id"] for item in self.seed["instances"]
                if item["owner"] == self.seed["users"][0]["id"]]

    def server(self, name: str) -> Service:
        return Service({**self.env, "LAMBDA_BIND": f"127.0.0.1:{free_port()}"},
                       self.tmp / f"{name}.log")

    def close(self) -> None:
        (self.tmp / "release").touch()
        self.emulator.stop()
        kill_processes_under(self.state)


@pytest.fixture
def durable(tmp_path, request):
    setup = Durable(tmp_path, instances=getattr(request, "param", 3))
    yield setup
    setup.close()


def post_start(base: str, instance_id: str) -> socket.socket:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    body = b"action=start"
    conn = socket.create_connection((host, int(port)), timeout=30)
    conn.sendall(
        f"POST /api/lambda-instances/{instance_id}/ HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Token {DEMO_TOKEN}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    return conn


def read_answer(conn: socket.socket) -> tuple[int, dict, bytes]:
    """Read one response, no more: the caller acts the moment it is complete."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = conn.recv(65536)
        assert chunk, "connection closed in the body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def action_row(db: Path, action_id: str):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT id, instance_id FROM actions WHERE id = ?",
                            (action_id,)).fetchone()
    finally:
        conn.close()


def test_an_action_answered_202_survives_a_sigkill_right_after_the_answer(durable):
    for round_, instance_id in enumerate(durable.instance_ids()):
        service = durable.server(f"serve-{round_}")
        service.start()
        try:
            conn = post_start(service.base, instance_id)
            status, headers, body = read_answer(conn)
            os.killpg(service.proc.pid, signal.SIGKILL)  # the answer is complete: now
            service.proc.wait()
            conn.close()
        finally:
            service.stop(signal.SIGKILL)
        assert status == 202, body
        action_id = headers["location"].rstrip("/").rsplit("/", 1)[1]
        assert action_row(durable.db, action_id) == (action_id, instance_id)


SYSCALL = re.compile(r"^(\d+)\s+(\w+)\((\d+)<([^>]*)>(.*)$")


@pytest.mark.parametrize("durable", [1], indirect=True)
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_the_wal_is_synced_after_the_actions_write_and_before_the_202(durable, tmp_path):
    trace = tmp_path / "trace.txt"
    service = durable.server("serve-strace")
    # Every thread of every process; -y names each descriptor's file or socket.
    service.start_command = ["strace", "-f", "-qq", "-y", "-s", "16", "-o", str(trace),
                             "-e", "trace=pwrite64,write,fdatasync,fsync,sendto,sendmsg",
                             sys.executable, "-m", "api.cli", "serve"]
    with open(service.log_path, "ab") as log:
        service.proc = subprocess.Popen(service.start_command, env=service.env, cwd=ROOT,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
    try:
        service._wait_ready()
        conn = post_start(service.base, durable.instance_ids()[0])
        status, _, body = read_answer(conn)
        conn.close()
    finally:
        service.stop(signal.SIGKILL)
    assert status == 202, body

    wal = f"{durable.db}-wal"
    # The database work runs in a pool thread; the 202 is sent by the event loop's thread
    # once that work has returned. So: the lines before the 202 (strace writes them in
    # the order it sees them), per thread; the accepting thread wrote the WAL and synced
    # it after its last write (a thread of the action runner may write it too, and sync
    # later: it does not count).
    lines = []
    for line in trace.read_text(errors="replace").splitlines():
        match = SYSCALL.match(line)
        if match:
            lines.append(match.groups())
    sends = [n for n, (_tid, call, _fd, target, rest) in enumerate(lines)
             if call in ("sendto", "sendmsg", "write") and target.startswith("socket:")
             and "HTTP/1.1 202" in rest]
    assert len(sends) == 1, "the 202 was not found in the trace"
    by_thread: dict[str, list[tuple[str, str]]] = {}
    for tid, call, _fd, target, _rest in lines[:sends[0]]:
        if target == wal:
            by_thread.setdefault(tid, []).append(call)
    synced = [tid for tid, calls in by_thread.items()
              if "pwrite64" in calls and calls[-1] in ("fdatasync", "fsync")]
    assert synced, "the WAL was not synced between the action's write and the 202"
