"""Synnefo Cyclades compute client: read servers, power them on and off, and wait.

One client is bound to one user's compute URL and token. ``ensure_active``/``ensure_stopped``
converge from any state: they send the action only when it is needed, read Synnefo's
"Cannot perform ... while ..." and "being built" answers as "something is already under way",
and poll until the target status or the deadline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from urllib.parse import quote

from api.adapters.http_client import JsonHttpClient, JsonResponse, TransportError
from api.domain.errors import ComputeError, ComputeTimeout
from api.domain.ports import Server

log = logging.getLogger(__name__)

_FAILED_STATUSES = ("ERROR", "DELETED")
_ACTION_BODIES = {"START": {"start": {}}, "STOP": {"shutdown": {}}}
# SNF:task_state while a server moves toward / away from a target status.
_TOWARD = {"ACTIVE": "STARTING", "STOPPED": "STOPPING"}
_AWAY = {"ACTIVE": "STOPPING", "STOPPED": "STARTING"}


class _ActionRefused(Exception):
    """Cyclades refused an action because the server is busy (pending task or build)."""


def _ips(document: dict) -> tuple[str, ...]:
    """Every address of a server: from ``addresses``, else from ``attachments``."""
    found: list[str] = []
    addresses = document.get("addresses")
    if isinstance(addresses, dict):
        for entries in addresses.values():
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict) and entry.get("addr"):
                    found.append(str(entry["addr"]))
    if not found:
        for nic in document.get("attachments") or []:
            if isinstance(nic, dict):
                found.extend(str(nic[k]) for k in ("ipv4", "ipv6") if nic.get(k))
    return tuple(dict.fromkeys(found))


def server_from_document(document: dict) -> tuple[Server, str]:
    """The Server and its ``SNF:task_state`` from a ``{"server": {...}}`` body."""
    try:
        raw = document["server"]
        server = Server(
            id=str(raw["id"]),
            name=str(raw.get("name") or ""),
            status=str(raw.get("status") or "UNKNOWN").upper(),
            ips=_ips(raw),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ComputeError(f"compute service sent a malformed server: {exc}") from exc
    return server, str(raw.get("SNF:task_state") or "")


class CycladesCompute:
    """``ComputePort`` over Cyclades' ``/servers`` API."""

    def __init__(
        self,
        compute_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        http: JsonHttpClient | None = None,
    ):
        self.compute_url = compute_url.rstrip("/")
        self._token = token
        self.poll_interval = poll_interval
        self._clock = clock
        self._sleep = sleep
        self._http = http or compute_http_client(timeout, retries, backoff)

    def __repr__(self) -> str:  # never show the token
        return f"CycladesCompute({self.compute_url!r})"

    # --- raw calls -------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict | None = None) -> JsonResponse:
        url = f"{self.compute_url}{path}"
        try:
            response = self._http.request(
                method, url, json_body=body, headers={"X-Auth-Token": self._token}
            )
        except TransportError as exc:
            raise ComputeError(f"compute service unreachable: {exc}") from exc
        if response.status == 401:
            raise ComputeError("compute service rejected the token", status=401)
        if response.status >= 500:
            _, message = response.fault()
            raise ComputeError(
                f"compute service unavailable ({response.status}: {message})",
                status=response.status,
            )
        return response

    def _server_document(self, server_id: str) -> tuple[Server, str]:
        response = self._call("GET", f"/servers/{quote(str(server_id), safe='')}")
        if response.status == 404:
            raise ComputeError(
                f"server {server_id} not found (or not owned by this user)", status=404
            )
        if response.status != 200 or not isinstance(response.body, dict):
            _, message = response.fault()
            raise ComputeError(
                f"reading server {server_id} failed ({response.status}: {message})",
                status=response.status,
            )
        return server_from_document(response.body)

    def get_server(self, server_id: str) -> Server:
        return self._server_document(server_id)[0]

    def _action(self, server_id: str, action: str) -> None:
        response = self._call(
            "POST", f"/servers/{quote(str(server_id), safe='')}/action", _ACTION_BODIES[action]
        )
        if response.status in (200, 202, 204):
            log.info("server %s: %s requested", server_id, action)
            return
        name, message = response.fault()
        if response.status == 409 or (
            response.status == 400 and message.startswith("Cannot perform")
        ):
            raise _ActionRefused(message or name or str(response.status))
        if response.status == 404:
            raise ComputeError(
                f"server {server_id} not found (or not owned by this user)", status=404
            )
        raise ComputeError(
            f"{action.lower()} of server {server_id} refused ({response.status}: {message})",
            status=response.status,
        )

    def start_server(self, server_id: str) -> None:
        """Ask for a power-on. ComputeError when refused (including 'already started')."""
        try:
            self._action(server_id, "START")
        except _ActionRefused as exc:
            raise ComputeError(f"start of server {server_id} refused: {exc}", 400) from exc

    def shutdown_server(self, server_id: str) -> None:
        """Ask for a shutdown. ComputeError when refused (including 'already stopped')."""
        try:
            self._action(server_id, "STOP")
        except _ActionRefused as exc:
            raise ComputeError(f"shutdown of server {server_id} refused: {exc}", 400) from exc

    # --- converging ------------------------------------------------------------------------

    def ensure_active(self, server_id: str, timeout: float) -> Server:
        return self._ensure(str(server_id), "ACTIVE", "STOPPED", "START", timeout)

    def ensure_stopped(self, server_id: str, timeout: float) -> Server:
        return self._ensure(str(server_id), "STOPPED", "ACTIVE", "STOP", timeout)

    def _ensure(
        self, server_id: str, target: str, actionable_from: str, action: str, timeout: float
    ) -> Server:
        deadline = self._clock() + timeout
        server, task_state = self._server_document(server_id)
        while True:
            if server.status == target and task_state != _AWAY[target]:
                return server
            if server.status in _FAILED_STATUSES:
                raise ComputeError(
                    f"server {server_id} ({server.name}) is {server.status}; "
                    f"it cannot become {target}"
                )
            # Send the action unless it is already under way; a lost one is sent again.
            if server.status == actionable_from and task_state != _TOWARD[target]:
                try:
                    self._action(server_id, action)
                except _ActionRefused as exc:
                    log.info("server %s: %s already under way (%s)", server_id, action, exc)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ComputeTimeout(
                    f"server {server_id} ({server.name}) did not become "
                    f"{target} within {timeout:g}s (last status "
                    f"{server.status})"
                )
            self._sleep(min(self.poll_interval, remaining))
            server, task_state = self._server_document(server_id)


def compute_http_client(timeout: float, retries: int, backoff: float = 0.5) -> JsonHttpClient:
    """The compute clients' transport: GETs and the action POSTs are retried.

    A repeated start/shutdown is safe: Synnefo answers it 400 "Cannot perform ...",
    which ``_ensure`` reads as "already under way" and then polls the status.
    """
    return JsonHttpClient(timeout=timeout, retries=retries, backoff=backoff,
                          retry_methods=("GET", "POST"))


def compute_factory(settings) -> Callable[[str, str], CycladesCompute]:
    """(compute_url, token) -> client; every client shares one connection pool."""
    http = compute_http_client(settings.http_timeout, settings.http_retries)

    def make(compute_url: str, token: str) -> CycladesCompute:
        return CycladesCompute(compute_url, token, poll_interval=settings.poll_interval, http=http)

    return make
