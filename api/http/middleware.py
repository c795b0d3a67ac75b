"""Request ids and token authentication."""

from __future__ import annotations

import logging
import os
import re

from api.domain.errors import InvalidToken
from api.domain.ports import IdentityPort

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# "Token <t>" (curl sends "Authorization:Token <t>"); Astakos tokens are short ASCII.
_AUTHORIZATION = re.compile(r"^\s*token\s+([A-Za-z0-9._~+/=-]{1,512})\s*$", re.IGNORECASE)


class RequestIdMiddleware:
    """Echoes the caller's X-Request-Id (or makes one) so log lines can be joined up."""

    def process_request(self, req, resp):
        given = req.get_header("X-Request-Id")
        req.context.request_id = given if given and _REQUEST_ID.match(given) else (
            os.urandom(8).hex())

    def process_response(self, req, resp, resource, req_succeeded):
        resp.set_header("X-Request-Id", getattr(req.context, "request_id", ""))


class AuthMiddleware:
    """Puts the caller's identity on ``req.context.identity`` for every /api/ route but
    the public ones. The check comes first of all (the contract: 401 before 404 and 400)."""

    def __init__(self, identity: IdentityPort, public_paths: frozenset[str]):
        self.identity = identity
        self.public_paths = public_paths

    def process_request(self, req, resp):
        path = req.path.rstrip("/") or "/"
        if path in self.public_paths or not path.startswith("/api"):
            return
        req.context.token = token = parse_token(req.get_header("Authorization"))
        req.context.identity = self.identity.authenticate(token)


def parse_token(header: str | None) -> str:
    if not header:
        raise InvalidToken("no Authorization header")
    match = _AUTHORIZATION.match(header)
    if match is None:
        raise InvalidToken("malformed Authorization header")
    return match.group(1)
