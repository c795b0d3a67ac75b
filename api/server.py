"""Serves the API: the Falcon ASGI app under hypercorn, in several worker processes.

The parent process migrates the database, binds the listening socket and forks
``http_workers`` workers that share it; it restarts a worker that dies, and on SIGTERM or
SIGINT passes the signal on and waits for them. Each worker runs one asyncio event loop:
a connection costs a coroutine, not a thread, so clients that trickle their requests
hold no thread, and the timeouts cut them off:

- ``http_header_timeout``: from a connection's start (or its previous response) to a
  request's complete headers (hypercorn's ``keep_alive_timeout``, which hypercorn stops
  only once the headers are in);
- ``http_body_timeout``: a request body's whole arrival, bounded by the app itself (408).

The domain's blocking calls run in a bounded pool of threads per worker (``http_threads``).

Metrics: the parent gives the workers a private directory to share their metrics through
(``PROMETHEUS_MULTIPROC_DIR``, see ``api.adapters.metrics``) before any of them imports
prometheus_client, which reads it once, at import. A ``mkdtemp`` (mode 0700, a random
name: never a fixed name in /tmp that another user could create first), fresh at every
start and removed at exit; a worker's live gauges are dropped when it dies. Logging is
configured here for the parent, and again by each worker's container (``api.logs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config
from hypercorn.logging import Logger

from api.http import STOPPING
from api.logs import ACCESS_LOGGER, configure_logging
from api.settings import Settings

log = logging.getLogger(__name__)

# The "combined" access-log line plus the request id (joins it to the app's log lines) and the
# Location of a 202 (the action it created).
ACCESS_LOG_FORMAT = ('%(h)s - - %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" '
                     'request_id=%(request_id)s location=%(location)s')
# Room for a long Authorization header: the app answers it with the contract's 401.
MAX_HEADER_BYTES = 64 * 1024
GRACEFUL_TIMEOUT = 30.0  # open requests may finish this long after a SIGTERM
# A worker that dies sooner than this after its start failed to boot: the server stops
# instead of starting it again and again.
BOOT_SECONDS = 5.0

# The app a worker serves, built in that worker: (ASGI app, close).
Builder = Callable[[Settings], "tuple[Callable, Callable[[], None]]"]


def build_product(settings: Settings):
    """The product's app on a container of this process's own; ``close`` stops the
    dispatcher (a local pool hands its unfinished actions back) and the database."""
    from api.bootstrap import bootstrap, create_http_app

    container = bootstrap(settings, run_migrations=False)
    return create_http_app(container), container.close


class LifespanApp:
    """The ASGI app a worker serves: built at the server's lifespan startup, in the
    worker (after the fork: no thread, pool or connection crosses it), closed at its
    shutdown, once the open requests are done."""

    def __init__(self, settings: Settings, build: Builder = build_product):
        self.settings = settings
        self.build = build
        self.app = None
        self.close: Callable[[], None] | None = None
        self.drains: set[asyncio.Task] = set()  # the loop keeps only weak references
        # Set when the worker begins its graceful shutdown. Requests see it in their
        # scope's lifespan state (``STOPPING``): an event stream, which would otherwise
        # hold the shutdown for its whole grace time, ends at once and its client resumes
        # from its Last-Event-ID on another worker.
        self.stopping = asyncio.Event()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _has_body(scope):
            await self.app(scope, receive, _draining(receive, send, self.drains))
        elif scope["type"] == "lifespan":
            # The lifespan state is copied into every request's scope.
            scope.setdefault("state", {})[STOPPING] = self.stopping
            await self.lifespan(receive, send)
        else:
            await self.app(scope, receive, send)

    async def lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.app, self.close = self.build(self.settings)
                except Exception as exc:
                    log.exception("worker %s: cannot build the app", os.getpid())
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.close is not None:
                    await asyncio.to_thread(self.close)
                await send({"type": "lifespan.shutdown.complete"})
                return


def _has_body(scope) -> bool:
    return any(name in (b"content-length", b"transfer-encoding") and value != b"0"
               for name, value in scope["headers"])


def _draining(receive, send, tasks: set):
    """``send`` that, once the response is complete, reads and drops whatever is left of
    the request body until the server's disconnect event.

    hypercorn queues the body's events for the app (a few at most) and, once the response
    is sent, queues one more to tell the app the stream is closed: with the queue full of
    a body the app did not want (too large, or refused before it was read), that put, and
    with it the closing of the connection, would wait forever.
    """
    async def drain():
        while (await receive())["type"] != "http.disconnect":
            pass

    async def send_then_drain(message):
        if message["type"] == "http.response.body" and not message.get("more_body"):
            task = asyncio.ensure_future(drain())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await send(message)
    return send_then_drain


class AccessLogger(Logger):
    """hypercorn's logger with just the access line's fields (its default builds one
    from every header and environment variable, for every request). No header but the
    referer and the user agent reaches the line: never the Authorization header.

    The line is logged after the response, outside the app's context, so it carries the
    request id it read from the response's header (a field of its own in JSON)."""

    async def access(self, request, response, request_time) -> None:
        if self.access_logger is not None:
            atoms = self.atoms(request, response, request_time)
            request_id = atoms["request_id"]
            self.access_logger.info(self.access_log_format, atoms, extra={
                "request_id": request_id if request_id != "-" else None})

    def atoms(self, request, response, request_time):
        out = dict(response.get("headers") or ()) if response else {}
        into = dict(request.get("headers") or ())
        client = request.get("client")
        query = request.get("query_string") or b""
        target = request.get("raw_path") or request["path"].encode()
        if query:
            target += b"?" + query
        return {
            "h": client[0] if client else "-",
            "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]"),
            "r": f"{request.get('method', 'GET')} {target.decode('latin1')} "
                 f"HTTP/{request.get('http_version', '1.1')}",
            "s": response["status"] if response else "-",
            "b": out.get(b"content-length", b"-").decode("latin1"),
            "f": into.get(b"referer", b"-").decode("latin1"),
            "a": into.get(b"user-agent", b"-").decode("latin1"),
            "request_id": out.get(b"x-request-id", b"-").decode("latin1"),
            "location": out.get(b"location", b"-").decode("latin1"),
        }


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [settings.bind]
    config.keep_alive_timeout = settings.http_header_timeout
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    config.graceful_timeout = GRACEFUL_TIMEOUT
    config.accesslog = logging.getLogger(ACCESS_LOGGER)  # as api.logs configured it
    config.errorlog = logging.getLogger("hypercorn.error")  # the app's log format
    config.access_log_format = ACCESS_LOG_FORMAT
    config.logger_class = AccessLogger
    config.include_server_header = False
    return config


def serve(settings: Settings, build: Builder = build_product) -> None:
    """Migrate once in the parent, then fork the workers; each builds its own app."""
    metrics_dir = share_metrics()  # first: before anything imports prometheus_client
    configure_logging(settings)
    try:
        from api.adapters.db.engine import create_db_engine, migrate

        engine = create_db_engine(settings.database_url)
        migrate(engine)
        engine.dispose()
        status = run_workers(settings, build)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(status)


def share_metrics() -> str:
    """Make the private directory the workers share their metrics through, and name it
    in the environment they inherit (replacing any inherited name: another process's
    directory is not ours to add to)."""
    if "prometheus_client" in sys.modules:
        # It chose its storage at import, without the directory: the workers' values
        # would stay each in its own process, and every scrape would show one worker.
        raise RuntimeError("prometheus_client was imported before the server set up its "
                           "metrics directory")
    path = tempfile.mkdtemp(prefix="lambda-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def _worker_gone(pid: int) -> None:
    from api.adapters.metrics import process_gone

    try:
        process_gone(pid)
    except OSError as exc:
        log.warning("worker %s: cannot drop its live metrics: %s", pid, exc)


def run_workers(settings: Settings, build: Builder) -> int:
    """The parent: bind, fork the workers, keep them running until SIGTERM or SIGINT."""
    config = hypercorn_config(settings)
    sockets = config.create_sockets()
    listening = [*sockets.secure_sockets, *sockets.insecure_sockets]
    for sock in listening:
        sock.listen(config.backlog)
    config.bind = [f"fd://{sock.fileno()}" for sock in listening]
    started: dict[int, float] = {}
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        for pid in started:
            _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for _ in range(max(1, settings.http_workers)):
        started[_fork_worker(settings, build, config)] = time.monotonic()
    status = 0
    while started:
        try:
            pid, wait_status = os.wait()
        except ChildProcessError:
            break
        born = started.pop(pid, None)
        if born is None:
            continue
        _worker_gone(pid)
        if stopping:
            continue
        code = os.waitstatus_to_exitcode(wait_status)
        if time.monotonic() - born < BOOT_SECONDS:
            log.error("worker %s exited with %s while starting: stopping the server", pid,
                      code)
            status = 1
            stop(signal.SIGTERM, None)
            continue
        log.warning("worker %s exited with %s: starting another", pid, code)
        started[_fork_worker(settings, build, config)] = time.monotonic()
    for sock in listening:
        sock.close()
    return status


def _fork_worker(settings: Settings, build: Builder, config: Config) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        asyncio.run(_serve_worker(LifespanApp(settings, build), config))
        code = 0
    except BaseException:
        log.exception("worker %s failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(code)


async def _serve_worker(app: LifespanApp, config: Config) -> None:
    """hypercorn's serve, its graceful shutdown started by SIGTERM or SIGINT through the
    app's ``stopping`` event, which open event streams also wait on."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, app.stopping.set)
    await hypercorn_serve(app, config, shutdown_trigger=app.stopping.wait)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
