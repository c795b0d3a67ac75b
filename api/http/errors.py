"""Every error body of the contract, in one place."""

from __future__ import annotations

import logging

import falcon
import falcon.asgi

from api.domain import errors

log = logging.getLogger(__name__)

INVALID_TOKEN = {"errors": [{
    "message": "Invalid token", "code": 401, "details": "unauthorized", "status": 401,
    "detail": "Unauthorized. Request failed because user provided an invalid token.",
}]}
INSTANCE_NOT_FOUND = {"errors": [{
    "status": 404, "detail": "The specified lambda instance doesn't exist."}]}
ACTION_NOT_FOUND = {"errors": [{"status": 404, "detail": "The specified action doesn't exist."}]}
INVALID_ACTION = {"errors": [{
    "status": 400, "detail": "action POST parameter can be used with start or stop value."}]}
IDENTITY_UNAVAILABLE = {"errors": [{
    "status": 503,
    "detail": "The identity service could not be reached to validate the token; "
              "try again later."}]}


DEFAULT_RETRY_AFTER = 5  # seconds


def error_body(status: int, detail: str) -> dict:
    return {"errors": [{"status": status, "detail": detail}]}


def _respond(resp: falcon.Response, status: int, body: dict) -> None:
    resp.status = status
    resp.media = body


class BodyTimeout(Exception):
    """The request's body did not arrive within the configured time."""


BODY_TIMEOUT = {"errors": [{
    "status": 408, "detail": "The request body did not arrive in time."}]}


class StreamsBusy(Exception):
    """This process already serves as many event streams as it may."""


STREAMS_BUSY = {"errors": [{
    "status": 503,
    "detail": "Too many event streams are open on this server; try again later."}]}


def _fixed(status: int, body: dict):
    async def handler(req, resp, exc, params, **_):
        _respond(resp, status, body)
    return handler


def register_error_handlers(app: falcon.asgi.App) -> None:
    async def invalid_token(req, resp, exc, params, **_):
        _respond(resp, 401, INVALID_TOKEN)
        resp.set_header("WWW-Authenticate", "Token")

    async def identity_unavailable(req, resp, exc, params, **_):
        log.warning("request %s: identity service unavailable: %s",
                    getattr(req.context, "request_id", "-"), exc)
        _respond(resp, 503, IDENTITY_UNAVAILABLE)
        # When the adapter knows (a full upstream queue, an outage it is waiting out);
        # else a few seconds.
        resp.set_header("Retry-After", str(exc.retry_after or DEFAULT_RETRY_AFTER))

    async def http_error(req, resp, exc: falcon.HTTPError, params, **_):
        # Falcon's own errors (unknown route, wrong method...) in the contract's shape.
        status = exc.status_code
        detail = exc.description or exc.title or falcon.HTTP_STATUS_CODES.get(status, "")
        _respond(resp, status, error_body(status, detail))
        for name, value in (exc.headers or {}).items():
            resp.set_header(name, value)

    async def body_timeout(req, resp, exc, params, **_):
        _respond(resp, 408, BODY_TIMEOUT)
        resp.set_header("Connection", "close")  # the rest of the body is not read

    async def streams_busy(req, resp, exc, params, **_):
        _respond(resp, 503, STREAMS_BUSY)
        resp.set_header("Retry-After", str(DEFAULT_RETRY_AFTER))

    async def invalid_parameter(req, resp, exc, params, **_):
        _respond(resp, 400, error_body(400, str(exc)))

    async def action_conflict(req, resp, exc, params, **_):
        _respond(resp, 409, error_body(409, exc.detail))

    async def unexpected(req, resp, exc, params, **_):
        log.error("request %s: unexpected error", getattr(req.context, "request_id", "-"),
                  exc_info=exc)
        _respond(resp, 500, error_body(500, "Internal server error."))

    # Falcon picks the most specific handler registered for an exception's class.
    app.add_error_handler(Exception, unexpected)
    app.add_error_handler(falcon.HTTPError, http_error)
    app.add_error_handler(BodyTimeout, body_timeout)
    app.add_error_handler(StreamsBusy, streams_busy)
    app.add_error_handler(errors.InvalidToken, invalid_token)
    app.add_error_handler(errors.IdentityUnavailable, identity_unavailable)
    app.add_error_handler(errors.InstanceNotFound, _fixed(404, INSTANCE_NOT_FOUND))
    app.add_error_handler(errors.ActionNotFound, _fixed(404, ACTION_NOT_FOUND))
    app.add_error_handler(errors.InvalidAction, _fixed(400, INVALID_ACTION))
    app.add_error_handler(errors.InvalidParameter, invalid_parameter)
    app.add_error_handler(errors.ActionConflict, action_conflict)
