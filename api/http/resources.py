"""Resources: plain classes handed their collaborators; they only translate HTTP.

The responders are coroutines; the domain's calls are synchronous (they read and write
the database): those that may wait run in the app's bounded pool of threads
(``BlockingCalls``), reads that never wait on the loop itself (``InlineCalls``).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from urllib.parse import parse_qs

import falcon
from falcon.media import MultipartFormHandler
from falcon.media.multipart import MultipartForm

from api.domain import services
from api.domain.errors import InvalidParameter
from api.http import views
from api.http.blocking import BlockingCalls, InlineCalls
from api.http.errors import BodyTimeout

log = logging.getLogger(__name__)

ACCEPTED = {"code": 202, "short-description": "Your request has been accepted"}
MAX_FORM_BYTES = 64 * 1024
MAX_DISCARDED_BYTES = 8 * 1024 * 1024
MAX_FORM_FIELDS = 64
# Paging parameters: plain decimal digits, no more than SQL's 64-bit integers hold.
_PAGING_NUMBER = re.compile(r"-?[0-9]{1,18}")
_MULTIPART = MultipartFormHandler()


class AuthenticateResource:
    async def on_get(self, req, resp):
        resp.media = {"status": 200, "result": "Success",
                      "data": {"name": req.context.identity.user_name}}


class InstancesResource:
    def __init__(self, uow_factory, reads: BlockingCalls | InlineCalls):
        self.uow_factory = uow_factory
        self.reads = reads

    async def on_get(self, req, resp):
        limit = _int_param(req, "limit", None)
        offset = _int_param(req, "offset", 0)
        items, total = await self.reads(services.list_instances, self.uow_factory,
                                        req.context.identity, limit, offset)
        resp.media = {
            "status": {"short_description": "Lambda instances", "code": 200},
            "data": [views.instance_summary(i) for i in items],
            "pagination": _pagination(req.path, limit, offset, total),
        }


class InstanceResource:
    def __init__(self, uow_factory, dispatcher, token_cipher,
                 reads: BlockingCalls | InlineCalls, writes: BlockingCalls,
                 body_timeout: float):
        self.uow_factory = uow_factory
        self.dispatcher = dispatcher
        self.token_cipher = token_cipher
        self.reads = reads
        self.writes = writes
        self.body_timeout = body_timeout

    async def on_get(self, req, resp, instance_id):
        view = req.get_param("filter")
        instance = await self.reads(services.get_instance, self.uow_factory,
                                    req.context.identity, instance_id)
        if view not in (None, "status", "info"):
            raise InvalidParameter("filter can be status or info.")
        resp.media = {"status": {"short_description": "Lambda instance details", "code": 200},
                      "data": [views.instance_details(instance, view)]}

    async def on_post(self, req, resp, instance_id):
        body = await read_form_body(req, self.body_timeout)
        # The checks only read (a rejected request ends here); the record writes.
        checked = await self.reads(services.check_action, self.uow_factory,
                                   req.context.identity, instance_id,
                                   action_param(req.content_type, body))
        action = await self.writes(self._record, req.context, checked)
        resp.status = falcon.HTTP_202
        resp.location = views.action_path(action.instance_id, action.id)
        resp.media = {"status": ACCEPTED, "data": {"action": views.action_summary(action)}}

    def _record(self, context, checked: services.CheckedRequest):
        """In a pool thread: record the checked action, hand it to the dispatcher."""
        token = context.token
        accepted = services.record_action(
            self.uow_factory, context.identity, checked,
            encrypt_token=lambda: self.token_cipher.encrypt(token))
        action = accepted.action
        # At debug only: the access log line already names the request and, in its
        # location, the action.
        log.debug("request %s: accepted %s of instance %s as action %s",
                  context.request_id, action.kind.value, action.instance_id, action.id)
        try:
            self.dispatcher.dispatch(action.id)
        except Exception:  # the row is committed; the sweeper dispatches it later
            log.exception("request %s: dispatch of action %s failed; left to the sweeper",
                          context.request_id, action.id)
        return action

    async def on_get_actions(self, req, resp, instance_id):
        limit = _int_param(req, "limit", None)
        offset = _int_param(req, "offset", 0)
        items, total, limit = await self.reads(services.list_actions, self.uow_factory,
                                               req.context.identity, instance_id, limit,
                                               offset)
        resp.media = {
            "status": {"short_description": "Lambda instance actions", "code": 200},
            "data": [views.action_history_item(a) for a in items],
            "pagination": _pagination(req.path, limit, offset, total),
        }

    async def on_get_action(self, req, resp, instance_id, action_id):
        instance, action = await self.reads(services.get_action, self.uow_factory,
                                            req.context.identity, instance_id, action_id)
        resp.media = {"status": {"short_description": "Lambda instance action", "code": 200},
                      "data": views.action_details(action, instance)}


async def read_form_body(req, timeout: float) -> bytes | None:
    """The request body if it is a form's size (None if larger), read within ``timeout``
    seconds in all: a client that trickles its body gets a 408, not a coroutine forever.

    A larger body, up to ``MAX_DISCARDED_BYTES``, is read and dropped all the same: a
    server that answers and closes while the client still sends makes the client's
    kernel see a reset, and the client never reads the answer.
    """
    length = req.content_length
    if length == 0 or (length is not None and length > MAX_DISCARDED_BYTES):
        return None
    try:
        async with asyncio.timeout(timeout):
            if length is not None and length > MAX_FORM_BYTES:
                await req.stream.exhaust()
                return None
            body = await req.stream.read(MAX_FORM_BYTES + 1)
    except TimeoutError:
        raise BodyTimeout() from None
    return body if 0 < len(body) <= MAX_FORM_BYTES else None


def action_param(content_type: str | None, body: bytes | None) -> str | None:
    """The ``action`` parameter from a multipart, urlencoded or JSON body.

    Never raises: whatever is wrong with the body (an unknown charset, nesting too deep
    for the parser, too many parts) is "no action": a 400 the service raises only after
    the 404 check, in the contract's order.
    """
    if not body or not content_type:
        return None
    media_type, params = falcon.parse_header(content_type)
    media_type = media_type.lower()
    try:
        if media_type == "application/json":
            value = json.loads(body)
            value = value.get("action") if isinstance(value, dict) else None
        elif media_type == "application/x-www-form-urlencoded":
            text = body.decode(params.get("charset") or "utf-8")
            value = parse_qs(text, keep_blank_values=True,
                             max_num_fields=MAX_FORM_FIELDS).get("action", [None])[0]
        elif media_type == "multipart/form-data":
            value = _multipart_action(content_type, body)
        else:
            value = None
    except (falcon.HTTPError, ValueError, LookupError, RecursionError) as exc:
        # UnicodeDecodeError and JSON's errors are ValueErrors; an unknown charset is
        # a LookupError.
        log.debug("unreadable %s body: %s", media_type, exc)
        return None
    return value if isinstance(value, str) else None


def _multipart_action(content_type: str, body: bytes) -> str | None:
    form: MultipartForm = _MULTIPART.deserialize(io.BytesIO(body), content_type, len(body))
    for part in form:
        if part.name == "action":
            return part.get_text()
    return None


def _int_param(req, name: str, default):
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    if not _PAGING_NUMBER.fullmatch(raw):
        raise InvalidParameter(f"{name} must be an integer of at most 18 digits.")
    return int(raw)


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
