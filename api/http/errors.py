"""Every error body of the contract, in one place."""

from __future__ import annotations

import logging

import falcon

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


def error_body(status: int, detail: str) -> dict:
    return {"errors": [{"status": status, "detail": detail}]}


def _respond(resp: falcon.Response, status: int, body: dict) -> None:
    resp.status = status
    resp.media = body


def register_error_handlers(app: falcon.App) -> None:
    def invalid_token(req, resp, exc, params):
        _respond(resp, 401, INVALID_TOKEN)
        resp.set_header("WWW-Authenticate", "Token")

    def identity_unavailable(req, resp, exc, params):
        log.warning("request %s: identity service unavailable: %s",
                    getattr(req.context, "request_id", "-"), exc)
        _respond(resp, 503, IDENTITY_UNAVAILABLE)
        resp.set_header("Retry-After", "5")

    def http_error(req, resp, exc: falcon.HTTPError, params):
        # Falcon's own errors (unknown route, wrong method...) in the contract's shape.
        status = exc.status_code
        detail = exc.description or exc.title or falcon.HTTP_STATUS_CODES.get(status, "")
        _respond(resp, status, error_body(status, detail))
        for name, value in (exc.headers or {}).items():
            resp.set_header(name, value)

    def unexpected(req, resp, exc, params):
        log.exception("request %s: unexpected error", getattr(req.context, "request_id", "-"))
        _respond(resp, 500, error_body(500, "Internal server error."))

    # Falcon picks the most specific handler registered for an exception's class.
    app.add_error_handler(Exception, unexpected)
    app.add_error_handler(falcon.HTTPError, http_error)
    app.add_error_handler(errors.InvalidToken, invalid_token)
    app.add_error_handler(errors.IdentityUnavailable, identity_unavailable)
    app.add_error_handler(errors.InstanceNotFound,
                          lambda req, resp, exc, params: _respond(resp, 404, INSTANCE_NOT_FOUND))
    app.add_error_handler(errors.ActionNotFound,
                          lambda req, resp, exc, params: _respond(resp, 404, ACTION_NOT_FOUND))
    app.add_error_handler(errors.InvalidAction,
                          lambda req, resp, exc, params: _respond(resp, 400, INVALID_ACTION))
    app.add_error_handler(errors.InvalidParameter,
                          lambda req, resp, exc, params: _respond(resp, 400,
                                                                  error_body(400, str(exc))))
    app.add_error_handler(errors.ActionConflict,
                          lambda req, resp, exc, params: _respond(resp, 409,
                                                                  error_body(409, exc.detail)))
