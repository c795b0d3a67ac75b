"""Request metrics, request ids and token authentication."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time

import falcon

from api.domain import log_context
from api.domain.errors import IdentityUnavailable, InvalidToken
from api.domain.ports import IdentityPort, Metrics
from api.http.blocking import BlockingCalls, CallsFull

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# "Token <t>" (curl sends "Authorization:Token <t>"); Astakos tokens are short ASCII.
_AUTHORIZATION = re.compile(r"^\s*token\s+([A-Za-z0-9._~+/=-]{1,512})\s*$", re.IGNORECASE)


# The label of a request that reached no route: one label, whatever its path.
UNMATCHED_ROUTE = "unmatched"
_METHODS = frozenset(falcon.COMBINED_METHODS)


class RequestMetricsMiddleware:
    """Counts and times every answer of the app by method, route template and status.

    The route is the template the router matched (``/api/lambda-instances/{instance_id}``),
    never the path, and a method outside HTTP's known ones is ``OTHER``: no request can
    add a label value. First in the chain, so the time covers the other middleware."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    async def process_request(self, req, resp):
        req.context.started = time.monotonic()

    async def process_response(self, req, resp, resource, req_succeeded):
        started = getattr(req.context, "started", None)
        if started is None:
            return
        self.metrics.request_served(
            req.method if req.method in _METHODS else "OTHER",
            req.uri_template or UNMATCHED_ROUTE, resp.status_code,
            time.monotonic() - started)


class RequestIdMiddleware:
    """Echoes the caller's X-Request-Id (or makes one) so log lines can be joined up: the
    app's lines, through the context (``api.domain.log_context``), and the access line,
    through the response header."""

    async def process_request(self, req, resp):
        given = req.get_header("X-Request-Id")
        req.context.request_id = given if given and _REQUEST_ID.match(given) else (
            os.urandom(8).hex())
        # The request's own task: the value goes no further than this request.
        log_context.request_id.set(req.context.request_id)

    async def process_response(self, req, resp, resource, req_succeeded):
        resp.set_header("X-Request-Id", getattr(req.context, "request_id", ""))


class AuthMiddleware:
    """Puts the caller's identity on ``req.context.identity`` before any resource but the
    public ones runs (the contract: 401 before 404 and 400).

    The check is keyed to the resource the router found, not to the spelling of the path:
    whatever a path looks like (repeated slashes, dot segments, percent-encoding), if it
    reaches a resource, that resource's check runs first. A new resource is private unless
    it is named public.

    A token the identity adapter has cached is checked on the event loop; only an
    uncached one goes to the identity service, in a small pool of its own, so a slow
    identity service holds neither the loop nor the domain's threads. Requests with a
    token already being checked await that check on the loop: a burst of one user's
    requests takes one place in the pool, not one each. When the pool's waiting line is
    full, a token not being checked yet is answered 503 at once.
    """

    def __init__(self, identity: IdentityPort, public_resources, calls: BlockingCalls):
        self.identity = identity
        self.public = frozenset(public_resources)  # compared by identity
        self.calls = calls
        self._checking: dict[str, asyncio.Future] = {}  # token -> its check under way

    async def process_resource(self, req, resp, resource, params):
        if resource in self.public:
            return
        req.context.token = token = parse_token(req.get_header("Authorization"))
        identity = self.identity.cached(token)
        if identity is None:
            identity = await self._check(token)
        req.context.identity = identity

    async def _check(self, token: str):
        check = self._checking.get(token)
        if check is None:
            check = asyncio.ensure_future(self._check_upstream(token))
            self._checking[token] = check
            check.add_done_callback(lambda done: self._forget(token, done))
        # A request that goes away (its client hung up) leaves the check to the others.
        return await asyncio.shield(check)

    def _forget(self, token: str, done: asyncio.Future) -> None:
        self._checking.pop(token, None)
        if not done.cancelled():
            done.exception()  # retrieved: no "never retrieved" warning if all went away

    async def _check_upstream(self, token: str):
        try:
            return await self.calls(self.identity.authenticate, token)
        except CallsFull:
            raise IdentityUnavailable("too many token checks under way; try again",
                                      retry_after=1) from None


def parse_token(header: str | None) -> str:
    if not header:
        raise InvalidToken("no Authorization header")
    match = _AUTHORIZATION.match(header)
    if match is None:
        raise InvalidToken("malformed Authorization header")
    return match.group(1)
