"""``Metrics`` over prometheus_client, and its exposition in Prometheus' text format.

One process or many. Alone (the Celery worker, a test building the app in-process) the
metrics live in this adapter's own registry. Under the API server, whose parent sets
``PROMETHEUS_MULTIPROC_DIR`` to a private directory before any worker imports
prometheus_client (``api.server``), every worker process writes its values to files
there, and ``exposition`` sums the files of all of them: a scrape, whichever worker
answers it, sees the whole server. The in-flight gauge is ``livesum``: the parent drops a
dead worker's files (``process_gone``), and its actions stop counting as in flight; the
counters and histograms keep a dead worker's counts, as a counter must.

Labels are bounded sets: route templates (never paths), kinds, states, statuses. No id, no
user and no token ever becomes a label.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client import multiprocess as prometheus_multiprocess

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# An action takes seconds (a stop of VMs already off) to tens of minutes (a slow cloud, a
# long playbook); a step from milliseconds (skipped) to the playbook's timeout.
ACTION_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
STEP_BUCKETS = (0.05, 0.25, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def multiprocess_dir() -> str | None:
    """The directory the server's workers share their metrics through, if any."""
    return os.environ.get(MULTIPROC_ENV) or None


class PrometheusMetrics:
    """The ``Metrics`` port on prometheus_client (``lambda_*`` metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "lambda_http_requests", "HTTP requests answered, by route template and status",
            ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram(
            "lambda_http_request_duration_seconds",
            "Time from a request's arrival at the app to its response", ["method", "route"],
            buckets=REQUEST_BUCKETS, registry=r)
        self.outcomes = Counter(
            "lambda_actions", "Actions ended by this service, by kind and outcome (the "
            "action's final state)", ["kind", "outcome"], registry=r)
        self.action_seconds = Histogram(
            "lambda_action_duration_seconds", "Time of the attempt that ended an action, "
            "from its claim to its end", ["kind", "outcome"], buckets=ACTION_BUCKETS,
            registry=r)
        self.unfinished = Counter(
            "lambda_action_attempts_unfinished", "Attempts that left their action "
            "unfinished (handed back on shutdown, lease lost)", ["kind"], registry=r)
        self.in_flight = Gauge(
            "lambda_actions_in_flight", "Actions running now", ["kind"], registry=r,
            multiprocess_mode="livesum")
        self.step_seconds = Histogram(
            "lambda_step_duration_seconds", "Time of an action's step, by step and the "
            "state it ended in", ["step", "state"], buckets=STEP_BUCKETS, registry=r)
        self.resumed = Counter(
            "lambda_sweeper_resumed", "Actions the sweeper found orphaned and resumed",
            registry=r)
        self.dispatch_failures = Counter(
            "lambda_dispatch_failures", "Accepted actions that could not be handed to a "
            "worker at once (the sweeper does later)", registry=r)
        identity = Counter(
            "lambda_identity_cache_lookups", "Token checks answered by the identity cache "
            "(hit) or sent to the identity service (miss)", ["result"], registry=r)
        # Children made once: the token check is on every request's path.
        self._identity_hit = identity.labels("hit")
        self._identity_miss = identity.labels("miss")

    # -- the port ------------------------------------------------------------------------

    def action_started(self, kind: str) -> None:
        self.in_flight.labels(kind).inc()

    def action_ended(self, kind: str, outcome: str | None, seconds: float) -> None:
        self.in_flight.labels(kind).dec()
        if outcome is None:
            self.unfinished.labels(kind).inc()
            return
        self.outcomes.labels(kind, outcome).inc()
        self.action_seconds.labels(kind, outcome).observe(seconds)

    def action_ended_unclaimed(self, kind: str, outcome: str) -> None:
        self.outcomes.labels(kind, outcome).inc()

    def step_finished(self, step: str, state: str, seconds: float) -> None:
        self.step_seconds.labels(step, state).observe(seconds)

    def actions_resumed(self, count: int) -> None:
        if count:
            self.resumed.inc(count)

    def dispatch_failed(self) -> None:
        self.dispatch_failures.inc()

    def identity_cache_lookup(self, hit: bool) -> None:
        (self._identity_hit if hit else self._identity_miss).inc()

    def request_served(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)

    # -- exposition ----------------------------------------------------------------------

    def exposition(self) -> tuple[str, bytes]:
        """(content type, body) of a scrape: every worker's metrics under the server,
        else this registry's."""
        path = multiprocess_dir()
        if path is None:
            return CONTENT_TYPE_LATEST, generate_latest(self.registry)
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry, path=path)
        return CONTENT_TYPE_LATEST, generate_latest(registry)

    def serve(self, bind: str) -> Callable[[], None] | None:
        """Serve ``exposition`` over HTTP on ``bind`` (HOST:PORT) in a thread of its own;
        returns how to stop it, or None (logged) when the address cannot be had: the
        worker runs on without metrics rather than not at all."""
        host, port = split_bind(bind)
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.error("metrics: cannot listen on %s (%s); this process serves no metrics "
                      "(give each worker on a host its own LAMBDA_WORKER_METRICS_BIND)",
                      bind, exc.strerror or exc)
            return None
        log.info("metrics: serving on http://%s/metrics", bind)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        return stop


def split_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); ValueError if it is neither."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{bind!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def process_gone(pid: int) -> None:
    """Drop what a dead process of the server kept in its live gauges."""
    if multiprocess_dir() is not None:
        prometheus_multiprocess.mark_process_dead(pid)
