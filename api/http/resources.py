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
from dataclasses import dataclass
from urllib.parse import parse_qs

import falcon
from falcon.asgi import SSEvent
from falcon.media import MultipartFormHandler
from falcon.media.multipart import MultipartForm

from api.domain import services
from api.domain.errors import ActionNotFound, InstanceNotFound, InvalidParameter
from api.domain.model import ActionState
from api.domain.ports import NO_METRICS, Metrics
from api.http import STOPPING, views
from api.http.blocking import BlockingCalls, InlineCalls
from api.http.errors import BodyTimeout, StreamsBusy

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
                 body_timeout: float, metrics: Metrics = NO_METRICS):
        self.uow_factory = uow_factory
        self.dispatcher = dispatcher
        self.token_cipher = token_cipher
        self.reads = reads
        self.writes = writes
        self.body_timeout = body_timeout
        self.metrics = metrics

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
        params = action_params(req.content_type, body)
        # The checks only read (a rejected request ends here); the record writes.
        checked = await self.reads(services.check_action, self.uow_factory,
                                   req.context.identity, instance_id, params.action,
                                   params.exclude)
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
            self.metrics.dispatch_failed()
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

    async def on_post_cancel(self, req, resp, instance_id, action_id):
        """Ask to cancel the action: 202 once the request is on its row (the action may
        already be ``cancelled``, or its worker stops it within moments); 409 once it has
        ended. The body, if any, is not read."""
        action = await self.writes(services.cancel_action, self.uow_factory,
                                   req.context.identity, instance_id, action_id)
        if action.state is ActionState.CANCELLED:  # ended here: no worker held it
            self.metrics.action_ended_unclaimed(action.kind.value, action.state.value)
        resp.status = falcon.HTTP_202
        resp.location = views.action_path(action.instance_id, action.id)
        resp.media = {"status": ACCEPTED, "data": {"action": views.action_cancel(action)}}


class ActionEventsResource:
    """An action's events as Server-Sent Events, read from the database.

    The stream polls the action's event rows: whichever process runs the action, every
    API process serves its stream, and one that restarts resumes it. Each poll is one
    short read (on the loop for SQLite, in the domain's pool otherwise): a stream holds
    no thread while it waits. A page holds at most ``services.EVENTS_PAGE`` events, and
    the next is read only once the last is sent: ``send`` waits while the client's socket
    is full, so a slow reader holds back only its own stream, never the worker (which
    writes rows, not to sockets), and nothing piles up in memory.

    Falcon notices a client that went away when it next sends to it, so a stream whose
    client is gone goes on polling until its next event or keep-alive at most.
    """

    RETRY_MS = 2000  # how long an EventSource waits before it reconnects after a drop

    def __init__(self, uow_factory, reads: BlockingCalls | InlineCalls, *,
                 poll_interval: float, keepalive: float, max_streams: int):
        self.uow_factory = uow_factory
        self.reads = reads
        self.poll_interval = poll_interval
        self.keepalive = keepalive
        self.max_streams = max_streams
        self.open_streams = 0  # of this process: one event loop, so a plain count

    async def on_get(self, req, resp, instance_id, action_id):
        if self.open_streams >= self.max_streams:
            raise StreamsBusy()
        # An EventSource that reconnects sends the last id it got in the header, and
        # the URL it first opened, ?after=N included: the header is the newer.
        header, query = req.get_header("Last-Event-ID"), req.get_param("after")
        after = query if header is None else header
        page = await self.reads(services.action_events, self.uow_factory,
                                req.context.identity, instance_id, action_id, after)
        if header is not None and query is not None:
            services.parse_event_id(query)  # unused, but given: it must be valid too (400)
        if page.ended and not page.events:
            # The action ended and the client has it all: 204 tells an EventSource not
            # to reconnect.
            resp.status = falcon.HTTP_204
            return
        resp.set_header("Cache-Control", "no-store")
        resp.set_header("X-Accel-Buffering", "no")  # a proxy passes each event on at once
        stopping = req.scope.get("state", {}).get(STOPPING)
        resp.sse = self._stream(req.context, instance_id, action_id, page,
                                services.parse_event_id(after), stopping)

    async def _stream(self, context, instance_id: str, action_id: str,
                      page: services.EventPage, after: int,
                      stopping: asyncio.Event | None):
        self.open_streams += 1
        loop = asyncio.get_running_loop()
        try:
            yield SSEvent(retry=self.RETRY_MS)
            last_sent = loop.time()
            while True:
                for event in page.events:
                    yield SSEvent(event=event.type.value, event_id=str(event.seq),
                                  json=views.action_event(event))
                    after = event.seq
                    last_sent = loop.time()
                if page.ended:
                    return  # the final state event is out: the stream ends with the action
                if len(page.events) < services.EVENTS_PAGE:  # caught up: wait for more
                    if await _stopped_within(stopping, self.poll_interval):
                        return  # the client resumes from its Last-Event-ID elsewhere
                    if loop.time() - last_sent >= self.keepalive:
                        yield SSEvent(comment="keep-alive")
                        last_sent = loop.time()
                try:
                    page = await self.reads(services.action_events, self.uow_factory,
                                            context.identity, instance_id, action_id, after)
                except (InstanceNotFound, ActionNotFound):
                    return  # the instance was deleted meanwhile, and its actions with it
                except Exception as exc:  # the client resumes from its Last-Event-ID
                    log.warning("request %s: event stream of action %s ends after %d: %s",
                                context.request_id, action_id, after, exc)
                    return
        finally:
            self.open_streams -= 1


async def _stopped_within(stopping: asyncio.Event | None, seconds: float) -> bool:
    """Wait ``seconds``, or less if the server begins to stop; True if it did."""
    if stopping is None:  # an app not under the product's server (tests in-process)
        await asyncio.sleep(seconds)
        return False
    try:
        async with asyncio.timeout(seconds):
            await stopping.wait()
    except TimeoutError:
        return False
    return True


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


@dataclass(frozen=True)
class ActionParams:
    """The action request's parameters as its body held them; the service checks them."""

    action: str | None = None
    # Absent: None. A form's fields: the list of their values. JSON: the value as it is.
    exclude: object = None


def action_params(content_type: str | None, body: bytes | None) -> ActionParams:
    """The ``action`` and ``exclude`` parameters from a multipart, urlencoded or JSON body.

    Never raises: whatever is wrong with the body (an unknown charset, nesting too deep
    for the parser, too many fields or parts) is "no parameters": a 400 the service raises
    only after the 404 check, in the contract's order.
    """
    if not body or not content_type:
        return ActionParams()
    media_type, params = falcon.parse_header(content_type)
    media_type = media_type.lower()
    try:
        if media_type == "application/json":
            value = json.loads(body)
            if not isinstance(value, dict):
                return ActionParams()
            action, exclude = value.get("action"), value.get("exclude")
        elif media_type == "application/x-www-form-urlencoded":
            text = body.decode(params.get("charset") or "utf-8")
            fields = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
            action, exclude = fields.get("action", [None])[0], fields.get("exclude")
        elif media_type == "multipart/form-data":
            action, exclude = _multipart_fields(content_type, body)
        else:
            return ActionParams()
    except (falcon.HTTPError, ValueError, LookupError, RecursionError) as exc:
        # UnicodeDecodeError and JSON's errors are ValueErrors; an unknown charset is
        # a LookupError.
        log.debug("unreadable %s body: %s", media_type, exc)
        return ActionParams()
    return ActionParams(action=action if isinstance(action, str) else None, exclude=exclude)


def _multipart_fields(content_type: str, body: bytes) -> tuple[str | None, list | None]:
    """The first ``action`` part's text and every ``exclude`` part's (the parser refuses
    a form of more than its limit of parts)."""
    form: MultipartForm = _MULTIPART.deserialize(io.BytesIO(body), content_type, len(body))
    action, exclude = None, None
    for part in form:
        if part.name == "action" and action is None:
            action = part.get_text()
        elif part.name == "exclude":
            exclude = (exclude or []) + [part.get_text()]
    return action, exclude


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
