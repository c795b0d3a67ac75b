"""JsonHttpClient's retry policy against a real HTTP server: which methods a lost answer
is repeated for, and that 5xx answers are retried and the last one returned."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api.adapters.http_client import JsonHttpClient, TransportError


class Script:
    """What the server does with each request, in order: "slow" (answers after the
    client's timeout), a status code, or (past the end) 200."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def next(self, method: str):
        with self.lock:
            self.seen.append(method)
            return self.steps.pop(0) if self.steps else 200


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            step = script.next(self.command)
            if step == "slow":
                time.sleep(0.5)
                step = 200
            body = b'{"ok": true}'
            self.send_response(step)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/thing"
    yield url, script
    httpd.shutdown()
    httpd.server_close()


def _client(**options) -> JsonHttpClient:
    return JsonHttpClient(timeout=0.2, retries=2, backoff=0, **options)


def test_a_get_whose_answer_was_lost_is_repeated(server):
    url, script = server
    script.steps = ["slow"]
    response = _client().request("GET", url)
    assert response.status == 200 and response.body == {"ok": True}
    assert script.seen == ["GET", "GET"]


def test_a_post_whose_answer_was_lost_is_not_repeated_by_default(server):
    url, script = server
    script.steps = ["slow"]
    with pytest.raises(TransportError):
        _client().request("POST", url, json_body={"start": {}})
    assert script.seen == ["POST"]


def test_a_post_the_caller_names_safe_is_repeated(server):
    url, script = server
    script.steps = ["slow", 503]
    response = _client(retry_methods=("GET", "POST")).request("POST", url, json_body={})
    assert response.status == 200
    assert script.seen == ["POST"] * 3


def test_5xx_answers_are_retried_and_the_last_one_returned(server):
    url, script = server
    script.steps = [502, 503, 504, 503]
    response = _client().request("GET", url)
    assert response.status == 504  # the third answer: two retries spent
    assert script.seen == ["GET"] * 3


def test_a_4xx_answer_is_the_callers_to_read(server):
    url, script = server
    script.steps = [404]
    assert _client().request("GET", url).status == 404
    assert script.seen == ["GET"]
