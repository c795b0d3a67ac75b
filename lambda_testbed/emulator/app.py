"""The emulator's Falcon app: Astakos identity, Cyclades compute and an admin API.

Bodies follow the shapes real Synnefo sends: successes as
Astakos/Cyclades JSON, failures as ``{"<faultName>": {"code", "message", "details"}}``.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from datetime import datetime, timedelta, timezone

import falcon

from lambda_testbed.emulator.state import ACTION_NAMES, Cloud, CloudFault

log = logging.getLogger(__name__)

IDENTITY_PREFIX = "/identity/v2.0"
COMPUTE_PREFIX = "/compute/v2.0"
ADMIN_PREFIX = "/_emulator"
NETWORK_ID = "1"  # every emulated server sits on one private network

_FAULT_NAMES = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound",
                405: "notAllowed", 409: "conflict", 413: "overLimit", 415: "badMediaType",
                501: "notImplemented", 503: "serviceUnavailable"}


def _fault_body(code: int, message: str, details: str = "") -> dict:
    return {_FAULT_NAMES.get(code, "computeFault"): {"code": code, "message": message,
                                                     "details": details}}


def _json_body(req: falcon.Request):
    """The request's JSON document, or a badRequest fault."""
    raw = req.bounded_stream.read()
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise CloudFault(400, "badRequest", "Invalid JSON data", str(exc)) from exc


def _wire_id(server_id: str):
    """Cyclades sends numeric server ids as JSON numbers."""
    return int(server_id) if server_id.isdigit() else server_id


def _mac(server_id: str) -> str:
    digest = zlib.crc32(server_id.encode())
    return "aa:00:00:" + ":".join(f"{(digest >> shift) & 0xFF:02x}" for shift in (16, 8, 0))


def server_document(view: dict) -> dict:
    """A server as ``GET /servers/{id}`` shows it (Cyclades' detailed representation)."""
    server_id = view["id"]
    addresses = [{"addr": ip, "version": 6 if ":" in ip else 4, "OS-EXT-IPS:type": "fixed"}
                 for ip in view["ips"]]
    ipv4 = next((ip for ip in view["ips"] if ":" not in ip), None)
    ipv6 = next((ip for ip in view["ips"] if ":" in ip), None)
    attachments = [{
        "id": f"nic-{server_id}-0", "network_id": NETWORK_ID, "mac_address": _mac(server_id),
        "ipv4": ipv4, "ipv6": ipv6, "firewallProfile": "DISABLED", "OS-EXT-IPS:type": "fixed",
        "fixed_ips": [{"ip_address": ip, "subnet": NETWORK_ID} for ip in view["ips"]],
    }] if view["ips"] else []
    return {
        "id": _wire_id(server_id),
        "name": view["name"],
        "status": view["status"],
        "user_id": view["owner"],
        "tenant_id": view["owner"],
        "created": view["created"],
        "updated": view["updated"],
        "progress": 0 if view["status"] == "BUILD" else 100,
        "addresses": {NETWORK_ID: addresses} if addresses else {},
        "attachments": attachments,
        "metadata": {"os": "debian", "users": "root"},
        "flavor": {"id": 1},
        "image": {"id": "emulated-debian"},
        "hostId": "",
        "accessIPv4": "",
        "accessIPv6": "",
        "suspended": False,
        "deleted": view["status"] == "DELETED",
        "SNF:task_state": view["task_state"],
        "SNF:fqdn": f"snf-{server_id}.vm.emulator.local",
        "links": [],
    }


class FaultInjection:
    """Counts protocol requests, then adds latency and injected 503s (never to the admin API).

    Token checks are also counted while in progress, so tests can see how many a client
    makes at once (``Cloud.peak_concurrency``)."""

    def __init__(self, cloud: Cloud):
        self._cloud = cloud

    @staticmethod
    def request_kind(req: falcon.Request) -> str | None:
        path = req.path.rstrip("/")
        if path.startswith(IDENTITY_PREFIX):
            return "tokens" if path == f"{IDENTITY_PREFIX}/tokens" else "identity_other"
        if path.startswith(COMPUTE_PREFIX):
            if path.endswith("/action"):
                return "servers_action"
            return "servers_get" if req.method == "GET" else "compute_other"
        return None

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        kind = self.request_kind(req)
        if kind is None:
            return
        self._cloud.count(kind)
        if kind == "tokens":
            self._cloud.enter(kind)
            req.context.in_flight = kind
        faults = self._cloud.faults()
        latency_ms = faults.latency_ms + (faults.identity_latency_ms if kind == "tokens" else 0)
        if latency_ms:
            time.sleep(latency_ms / 1000.0)
        if kind == "tokens" and faults.identity_down:
            self._cloud.count("identity_down")
            resp.status = falcon.HTTP_503
            resp.media = _fault_body(503, "Service Unavailable", "identity down (emulator)")
            resp.complete = True
            return
        if self._cloud.draw_injected_error():
            self._cloud.count("injected_errors")
            resp.status = falcon.HTTP_503
            resp.media = _fault_body(503, "Service Unavailable", "injected by the emulator")
            resp.complete = True

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource,
                         req_succeeded: bool) -> None:
        kind = getattr(req.context, "in_flight", None)
        if kind is not None:
            self._cloud.leave(kind)


class TokensResource:
    """``POST /identity/v2.0/tokens``: Astakos' token validation."""

    def __init__(self, cloud: Cloud, compute_url: str, identity_url: str, ui_url: str,
                 token_lifetime: float):
        self._cloud = cloud
        self._compute_url = compute_url
        self._identity_url = identity_url
        self._ui_url = ui_url
        self._token_lifetime = token_lifetime

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = _json_body(req)
        try:
            token = body["auth"]["token"]["id"]
        except (KeyError, TypeError) as exc:
            raise CloudFault(400, "badRequest", "Malformed request", "auth.token.id missing") \
                from exc
        if not isinstance(token, str):
            raise CloudFault(400, "badRequest", "Malformed request", "token id is not a string")
        user = self._cloud.user_for_token(token)
        if user is None:
            raise CloudFault(401, "unauthorized", "Invalid token")
        expires = datetime.now(timezone.utc) + timedelta(seconds=self._token_lifetime)
        resp.media = {"access": {
            "token": {"id": token, "expires": expires.isoformat(),
                      "tenant": {"id": user.id, "name": user.name}},
            "user": {"id": user.id, "name": user.name, "roles_links": [],
                     "roles": [{"id": 1, "name": "default"}]},
            "serviceCatalog": [
                {"type": "compute", "name": "cyclades_compute", "endpoints_links": [],
                 "endpoints": [{"publicURL": self._compute_url, "versionId": "v2.0",
                                "region": "default", "SNF:uiURL": self._ui_url}]},
                {"type": "identity", "name": "astakos_identity", "endpoints_links": [],
                 "endpoints": [{"publicURL": self._identity_url, "versionId": "v2.0",
                                "region": "default", "SNF:uiURL": self._ui_url}]},
            ],
        }}


class ServersResource:
    """Cyclades' ``/servers`` family, each call authorised by ``X-Auth-Token``."""

    def __init__(self, cloud: Cloud):
        self._cloud = cloud

    def _user_id(self, req: falcon.Request) -> str:
        user = self._cloud.user_for_token(req.get_header("X-Auth-Token"))
        if user is None:
            raise CloudFault(401, "unauthorized", "Invalid token")
        return user.id

    def on_get_collection(self, req: falcon.Request, resp: falcon.Response) -> None:
        views = self._cloud.list_servers(self._user_id(req))
        resp.media = {"servers": [{"id": _wire_id(v["id"]), "name": v["name"], "links": []}
                                  for v in views]}

    def on_get_detail(self, req: falcon.Request, resp: falcon.Response) -> None:
        views = self._cloud.list_servers(self._user_id(req))
        resp.media = {"servers": [server_document(v) for v in views]}

    def on_get(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        user_id = self._user_id(req)
        resp.media = {"server": server_document(self._cloud.get_server(server_id, user_id))}

    def on_post_action(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        user_id = self._user_id(req)
        body = _json_body(req)
        if not isinstance(body, dict) or len(body) != 1:
            raise CloudFault(400, "badRequest", "Malformed request",
                             "the body must name exactly one action")
        (key,) = body
        action = ACTION_NAMES.get(key)
        if action is None:
            # Cyclades knows more actions (reboot, console, ...); the emulator only powers.
            raise CloudFault(400, "badRequest", f"Unknown action '{key}'.")
        self._cloud.act(server_id, action, user_id)
        resp.status = falcon.HTTP_202
        resp.content_type = "application/json"
        resp.text = ""


class AdminResource:
    """``/_emulator/...``: lets tests and benchmarks look at and steer a running emulator."""

    def __init__(self, cloud: Cloud):
        self._cloud = cloud

    def on_get_state(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._cloud.snapshot()

    def on_post_faults(self, req: falcon.Request, resp: falcon.Response) -> None:
        changes = _json_body(req)
        if not isinstance(changes, dict):
            raise CloudFault(400, "badRequest", "faults must be a JSON object")
        try:
            resp.media = self._cloud.set_faults(**changes).as_dict()
        except ValueError as exc:
            raise CloudFault(400, "badRequest", str(exc)) from exc

    def on_post_counts(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._cloud.reset_counts()
        resp.media = {"request_counts": {}}

    def on_post_server(self, req: falcon.Request, resp: falcon.Response, server_id: str) -> None:
        body = _json_body(req)
        if not isinstance(body, dict) or not isinstance(body.get("status"), str):
            raise CloudFault(400, "badRequest", 'body must be {"status": "<STATUS>"}')
        try:
            resp.media = {"server": self._cloud.set_status(server_id, body["status"])}
        except KeyError as exc:
            raise CloudFault(404, "itemNotFound", "Server not found") from exc
        except ValueError as exc:
            raise CloudFault(400, "badRequest", str(exc)) from exc


def _handle_cloud_fault(req, resp, exc: CloudFault, params) -> None:
    resp.status = falcon.code_to_http_status(exc.code)
    resp.media = exc.body()


def _serialize_http_error(req, resp, exc: falcon.HTTPError) -> None:
    """Falcon's own errors (unknown route, wrong method) in Synnefo's fault shape."""
    resp.content_type = "application/json"
    resp.text = json.dumps(_fault_body(exc.status_code, exc.title or "", exc.description or ""))


def create_app(cloud: Cloud, base_url: str, token_lifetime: float = 30 * 24 * 3600.0):
    """Build the WSGI app for a server bound at ``base_url`` (e.g. http://127.0.0.1:4123)."""
    app = falcon.App(middleware=[FaultInjection(cloud)])
    app.req_options.strip_url_path_trailing_slash = True
    base = base_url.rstrip("/")
    tokens = TokensResource(cloud, compute_url=f"{base}{COMPUTE_PREFIX}",
                            identity_url=f"{base}{IDENTITY_PREFIX}", ui_url=f"{base}/ui/",
                            token_lifetime=token_lifetime)
    servers = ServersResource(cloud)
    admin = AdminResource(cloud)
    app.add_route(f"{IDENTITY_PREFIX}/tokens", tokens)
    app.add_route(f"{COMPUTE_PREFIX}/servers", servers, suffix="collection")
    app.add_route(f"{COMPUTE_PREFIX}/servers/detail", servers, suffix="detail")
    app.add_route(f"{COMPUTE_PREFIX}/servers/{{server_id}}", servers)
    app.add_route(f"{COMPUTE_PREFIX}/servers/{{server_id}}/action", servers, suffix="action")
    app.add_route(f"{ADMIN_PREFIX}/state", admin, suffix="state")
    app.add_route(f"{ADMIN_PREFIX}/faults", admin, suffix="faults")
    app.add_route(f"{ADMIN_PREFIX}/counts/reset", admin, suffix="counts")
    app.add_route(f"{ADMIN_PREFIX}/servers/{{server_id}}", admin, suffix="server")
    app.add_error_handler(CloudFault, _handle_cloud_fault)
    app.set_error_serializer(_serialize_http_error)
    return app
