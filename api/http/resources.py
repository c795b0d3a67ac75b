"""Resources: plain classes handed their collaborators; they only translate HTTP."""

from __future__ import annotations

import logging

import falcon
from falcon.media.multipart import MultipartForm

from api.domain import services
from api.domain.errors import InvalidParameter
from api.http import views

log = logging.getLogger(__name__)

ACCEPTED = {"code": 202, "short-description": "Your request has been accepted"}
MAX_FORM_BYTES = 64 * 1024


class AuthenticateResource:
    def on_get(self, req, resp):
        resp.media = {"status": 200, "result": "Success",
                      "data": {"name": req.context.identity.user_name}}


class InstancesResource:
    def __init__(self, uow_factory):
        self.uow_factory = uow_factory

    def on_get(self, req, resp):
        limit = _int_param(req, "limit", None)
        offset = _int_param(req, "offset", 0)
        items, total = services.list_instances(self.uow_factory, req.context.identity,
                                               limit, offset)
        resp.media = {
            "status": {"short_description": "Lambda instances", "code": 200},
            "data": [views.instance_summary(i) for i in items],
            "pagination": _pagination(req.path, limit, offset, total),
        }


class InstanceResource:
    def __init__(self, uow_factory, dispatcher, token_cipher):
        self.uow_factory = uow_factory
        self.dispatcher = dispatcher
        self.token_cipher = token_cipher

    def on_get(self, req, resp, instance_id):
        view = req.get_param("filter")
        instance = services.get_instance(self.uow_factory, req.context.identity, instance_id)
        if view not in (None, "status", "info"):
            raise InvalidParameter("filter can be status or info.")
        resp.media = {"status": {"short_description": "Lambda instance details", "code": 200},
                      "data": [views.instance_details(instance, view)]}

    def on_post(self, req, resp, instance_id):
        token = req.context.token
        accepted = services.request_action(
            self.uow_factory, req.context.identity, instance_id, read_action_param(req),
            encrypt_token=lambda: self.token_cipher.encrypt(token))
        action = accepted.action
        # At debug only: the access log line already names the request and, in its
        # location, the action.
        log.debug("request %s: accepted %s of instance %s as action %s",
                  req.context.request_id, action.kind.value, action.instance_id, action.id)
        try:
            self.dispatcher.dispatch(action.id)
        except Exception:  # the row is committed; the sweeper dispatches it later
            log.exception("request %s: dispatch of action %s failed; left to the sweeper",
                          req.context.request_id, action.id)
        resp.status = falcon.HTTP_202
        resp.location = views.action_path(action.instance_id, action.id)
        resp.media = {"status": ACCEPTED, "data": {"action": views.action_summary(action)}}

    def on_get_action(self, req, resp, instance_id, action_id):
        instance, action = services.get_action(self.uow_factory, req.context.identity,
                                               instance_id, action_id)
        resp.media = {"status": {"short_description": "Lambda instance action", "code": 200},
                      "data": views.action_details(action, instance)}


def read_action_param(req) -> str | None:
    """The ``action`` parameter from a multipart, urlencoded or JSON body.

    Never raises: whatever is wrong with the body is "no action" (a 400 the service
    raises only after the 404 check, in the contract's order).
    """
    length = req.content_length
    if not length or length > MAX_FORM_BYTES:
        return None
    try:
        media = req.get_media()
    except (falcon.HTTPError, ValueError, UnicodeDecodeError):
        return None
    if isinstance(media, dict):
        value = media.get("action")
        return value if isinstance(value, str) else None
    if not isinstance(media, MultipartForm):
        return None
    try:
        for part in media:
            if part.name == "action":
                return part.get_text()
    except (falcon.HTTPError, ValueError, UnicodeDecodeError):
        return None
    return None


def _int_param(req, name: str, default):
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidParameter(f"{name} must be an integer.") from None


def _pagination(path: str, limit, offset: int, total: int) -> dict:
    def link(new_offset):
        return f"{path}?limit={limit}&offset={new_offset}"
    nxt = prev = None
    if limit is not None and limit > 0:
        if offset + limit < total:
            nxt = link(offset + limit)
        if offset > 0:
            prev = link(max(offset - limit, 0))
    return {"count": total, "limit": limit, "offset": offset, "next": nxt, "previous": prev}
