"""Runs the emulator's WSGI app on a threaded ``wsgiref`` server, in-process or from the CLI."""

from __future__ import annotations

import logging
import socketserver
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from lambda_testbed.emulator.app import COMPUTE_PREFIX, IDENTITY_PREFIX, create_app
from lambda_testbed.emulator.state import Cloud, Faults, PowerHooks

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFETIME = 30 * 24 * 3600.0  # Astakos' usual token lifetime


class _QuietHandler(WSGIRequestHandler):
    timeout = 30  # a client that connects and never speaks cannot hold stop() forever

    def log_message(self, format, *args):
        log.debug("%s %s", self.address_string(), format % args)


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread a connection; ``server_close`` joins them (``block_on_close``)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Emulator:
    """A Synnefo (Astakos + Cyclades) emulator served over real HTTP."""

    def __init__(self, cloud: Cloud, token_lifetime: float = DEFAULT_TOKEN_LIFETIME):
        self.cloud = cloud
        self._token_lifetime = token_lifetime
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None

    @classmethod
    def from_seed(cls, seed: dict, power_hooks: PowerHooks | None = None, *,
                  clock=time.monotonic) -> Emulator:
        lifetime = float((seed.get("emulator") or {}).get("token_lifetime_seconds",
                                                          DEFAULT_TOKEN_LIFETIME))
        return cls(Cloud(seed, power_hooks=power_hooks, clock=clock), token_lifetime=lifetime)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Bind, serve on a background thread, and return the base URL."""
        if self._server is not None:
            raise RuntimeError("emulator already started")
        server = ThreadingWSGIServer((host, port), _QuietHandler)
        bound_host, bound_port = server.server_address[:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{url_host}:{bound_port}"
        server.set_app(create_app(self.cloud, self.base_url, self._token_lifetime))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"emulator-{bound_port}", daemon=True)
        self._thread.start()
        log.info("emulator serving at %s (auth URL %s)", self.base_url, self.auth_url)
        return self.base_url

    def stop(self) -> None:
        """Stop serving and wait for the request threads to finish."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        log.info("emulator at %s stopped", self.base_url)

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- URLs ----------------------------------------------------------------------------

    def _require_base(self) -> str:
        if self.base_url is None:
            raise RuntimeError("emulator not started")
        return self.base_url

    @property
    def auth_url(self) -> str:
        return f"{self._require_base()}{IDENTITY_PREFIX}"

    @property
    def compute_url(self) -> str:
        return f"{self._require_base()}{COMPUTE_PREFIX}"

    # --- steering (the admin API does the same over HTTP) ---------------------------------

    def set_faults(self, **faults) -> Faults:
        return self.cloud.set_faults(**faults)

    def set_status(self, server_id: str, status: str) -> dict:
        return self.cloud.set_status(str(server_id), status)

    def server_status(self, server_id: str) -> str:
        return self.cloud.server_status(str(server_id))

    def request_counts(self) -> dict:
        return self.cloud.request_counts()

    def peak_concurrency(self) -> dict:
        return self.cloud.peak_concurrency()

    def reset_counts(self) -> None:
        self.cloud.reset_counts()

    def state(self) -> dict:
        return self.cloud.snapshot()
