"""The Falcon (ASGI) application factory: routes wired to the collaborators it is handed.

Nothing is built at import time; ``api.bootstrap.create_http_app`` hands it the pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from ipaddress import IPv4Network, IPv6Network

import falcon.asgi

from api.domain.ports import NO_METRICS, Metrics
from api.http.blocking import BlockingCalls, InlineCalls
from api.http.errors import register_error_handlers
from api.http.metrics import AddressAllowList, MetricsResource
from api.http.middleware import AuthMiddleware, RequestIdMiddleware, RequestMetricsMiddleware
from api.http.openapi import OpenApiResource
from api.http.resources import (
    ActionEventsResource,
    AuthenticateResource,
    InstanceResource,
    InstancesResource,
)
from api.http.webpage import RootResource, WebPageResource, load_web_files


def create_app(*, identity, uow_factory, dispatcher, token_cipher, domain_threads: int = 1,
               identity_threads: int = 2, identity_waiting: int | None = 16,
               body_timeout: float = 10.0,
               events_poll_interval: float = 0.5, events_keepalive: float = 15.0,
               event_streams: int = 100, metrics: Metrics = NO_METRICS,
               exposition: Callable[[], tuple[str, bytes]] | None = None,
               metrics_allow: Iterable[IPv4Network | IPv6Network] = ()
               ) -> falcon.asgi.App:
    """``domain_threads``: how many domain calls that may wait (database writes, reads of
    a database server) run at once; the
    identity service's checks of uncached tokens get ``identity_threads`` of their own,
    and at most ``identity_waiting`` more wait for them (the rest: 503 at once).
    ``body_timeout``: seconds a request body may take to arrive, in all. The pools'
    threads are started on demand and end with the process. An action's event stream
    reads the database every ``events_poll_interval`` seconds, sends a keep-alive after
    ``events_keepalive`` quiet ones; at most ``event_streams`` are open at once.

    ``metrics`` counts the requests; ``exposition`` (content type, body), if given, is
    served at ``/metrics`` to the addresses in ``metrics_allow``."""
    calls = BlockingCalls(domain_threads, "http-domain")
    # Reads that never wait run on the loop; writes (they may queue for the database's
    # lock) and reads of a database server run in the pool.
    reads = InlineCalls() if uow_factory.reads_never_wait else calls
    identity_calls = BlockingCalls(identity_threads, "http-identity", identity_waiting)
    openapi = OpenApiResource()
    # The web page's files hold no data (the page reads it through the API, with the
    # operator's token): public, like the document.
    root, page = RootResource(), WebPageResource(load_web_files())
    public = [openapi, root, page]
    scrape = None
    if exposition is not None:
        scrape = MetricsResource(exposition, AddressAllowList(metrics_allow))
        public.append(scrape)
    app = falcon.asgi.App(middleware=[
        RequestMetricsMiddleware(metrics), RequestIdMiddleware(),
        AuthMiddleware(identity, public, identity_calls)])
    app.req_options.strip_url_path_trailing_slash = True
    register_error_handlers(app)
    instance = InstanceResource(uow_factory, dispatcher, token_cipher, reads, calls,
                                body_timeout, metrics)
    app.add_route("/api/openapi.json", openapi)
    app.add_route("/", root)
    app.add_route("/ui", page)
    app.add_route("/ui/{name}", page, suffix="file")
    if scrape is not None:
        app.add_route("/metrics", scrape)
    app.add_route("/api/authenticate", AuthenticateResource())
    app.add_route("/api/lambda-instances", InstancesResource(uow_factory, reads))
    app.add_route("/api/lambda-instances/{instance_id}", instance)
    app.add_route("/api/lambda-instances/{instance_id}/actions", instance, suffix="actions")
    app.add_route("/api/lambda-instances/{instance_id}/actions/{action_id}", instance,
                  suffix="action")
    app.add_route("/api/lambda-instances/{instance_id}/actions/{action_id}/events",
                  ActionEventsResource(uow_factory, reads, poll_interval=events_poll_interval,
                                       keepalive=events_keepalive,
                                       max_streams=event_streams))
    app.add_route("/api/lambda-instances/{instance_id}/actions/{action_id}/cancel", instance,
                  suffix="cancel")
    return app
