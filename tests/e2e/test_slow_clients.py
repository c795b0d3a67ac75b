"""Slow clients against the real server (``lambda-service serve``) with the embedded
defaults: connections that trickle their headers or their bodies hold up no ordinary
request, and are cut off once the configured time has passed."""

from __future__ import annotations

import select
import socket
import threading
import time

from api.settings import Settings
from tests.e2e.conftest import DEMO_INSTANCE_ID, DEMO_TOKEN

TRICKLERS = 32  # of each kind
SLACK = 5.0  # seconds beyond the configured bound, for a loaded machine
# The "about a second": the most an ordinary request may take beside the tricklers
# (it takes milliseconds; a server that gave each connection a thread would not keep it).
ORDINARY_REQUEST_BOUND = 1.0


class Trickler:
    """Connections that each send ``head`` at once, then ``drip`` one byte at a time."""

    def __init__(self, address, head: bytes, count: int, interval: float = 0.5):
        self.interval = interval
        self.socks = []
        for _ in range(count):
            sock = socket.create_connection(address, timeout=10)
            sock.sendall(head)
            sock.setblocking(False)
            self.socks.append(sock)
        self.started = time.monotonic()
        self.closed_after: dict[socket.socket, float] = {}
        self.answers: dict[socket.socket, bytes] = {sock: b"" for sock in self.socks}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set() and len(self.closed_after) < len(self.socks):
            open_socks = [s for s in self.socks if s not in self.closed_after]
            readable, _, _ = select.select(open_socks, [], [], self.interval)
            for sock in readable:
                self._read(sock)
            for sock in open_socks:
                # Once answered, a client stops sending: another byte would draw a reset
                # that can drop the rest of the answer from the receive buffer.
                if sock in self.closed_after or self.answers[sock]:
                    continue
                try:
                    sock.send(b"x")
                except OSError:
                    self._closed(sock)

    def _read(self, sock):
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.answers[sock] += data
        else:
            self._closed(sock)

    def _closed(self, sock):
        self.closed_after.setdefault(sock, time.monotonic() - self.started)

    def wait_all_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.closed_after) < len(self.socks) and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for sock in self.socks:
            sock.close()


def test_trickling_clients_neither_starve_the_api_nor_stay_connected(product):
    defaults = Settings()
    host, port = product.base.removeprefix("http://").split(":")
    address = (host, int(port))
    url = f"/api/lambda-instances/{DEMO_INSTANCE_ID}/"
    headers = Trickler(address, f"GET {url} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode(),
                       TRICKLERS)
    bodies = Trickler(address, (
        f"POST {url} HTTP/1.1\r\nHost: x\r\nAuthorization: Token {DEMO_TOKEN}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 4000\r\n\r\n"
        "action=").encode(), TRICKLERS)
    try:
        time.sleep(1.0)  # every trickler connected and dripping
        took = []
        for _ in range(5):
            started = time.monotonic()
            resp = product.session.get(f"{product.base}{url}", timeout=3.0,
                                       headers={"Authorization": f"Token {DEMO_TOKEN}"})
            took.append(time.monotonic() - started)
            assert resp.status_code == 200
        assert max(took) <= ORDINARY_REQUEST_BOUND, took
        # Served beside the tricklers: not one of them had been cut off yet.
        assert not headers.closed_after and not bodies.closed_after
        headers.wait_all_closed(defaults.http_header_timeout + SLACK)
        bodies.wait_all_closed(defaults.http_body_timeout + SLACK)
    finally:
        headers.stop()
        bodies.stop()
    assert len(headers.closed_after) == TRICKLERS, "header tricklers left connected"
    assert len(bodies.closed_after) == TRICKLERS, "body tricklers left connected"
    # A body that never came whole is answered in the contract's shape before the cut.
    answered = [a for a in bodies.answers.values() if a]
    assert answered and all(a.startswith(b"HTTP/1.1 408") for a in answered), answered[:2]
    assert all(b'"status": 408' in a for a in answered)
