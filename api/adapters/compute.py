"""Synnefo Cyclades compute client: read servers, power them on and off, and wait.

One client is bound to one user's compute URL and token. ``ensure_active``/``ensure_stopped``
converge from any state: they send the action only when it is needed, read Synnefo's
"Cannot perform ... while ..." and "being built" answers as "something is already under way",
and poll until the target status or the deadline. A cloud that does not answer, or answers
5xx, is asked again with a capped exponential backoff until that same deadline: a power
window of minutes outlasts a cloud's bad minute. A set ``cancel`` ends the wait at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

from api.adapters.http_client import JsonHttpClient, JsonResponse, TransportError
from api.domain.errors import ActionCancelled, ComputeError, ComputeTimeout, ComputeUnavailable
from api.domain.ports import PowerOutcome, Server

log = logging.getLogger(__name__)

_FAILED_STATUSES = ("ERROR", "DELETED")
_ACTION_BODIES = {"START": {"start": {}}, "STOP": {"shutdown": {}}}
# SNF:task_state while a server moves toward / away from a target status.
_TOWARD = {"ACTIVE": "STARTING", "STOPPED": "STOPPING"}
_AWAY = {"ACTIVE": "STOPPING", "STOPPED": "STARTING"}
MAX_BACKOFF = 15.0  # seconds; the longest wait between two asks of a failing cloud


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
        raise ComputeError("compute service sent a malformed server document "
                           "(no server id, or not a JSON object)") from exc
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
        max_backoff: float = MAX_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        http: JsonHttpClient | None = None,
    ):
        self.compute_url = compute_url.rstrip("/")
        self._token = token
        self.poll_interval = poll_interval
        self.max_backoff = max(max_backoff, poll_interval)
        self._clock = clock
        self._sleep = sleep  # None: wait on the cancel event (tests pass a fake clock's)
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
            raise ComputeUnavailable(f"compute service unreachable: {exc}") from exc
        if response.status == 401:
            raise ComputeError("compute service rejected the token", status=401)
        if response.status >= 500:
            _, message = response.fault()
            raise ComputeUnavailable(
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

    def ensure_active(self, server_id: str, timeout: float,
                      cancel: threading.Event | None = None) -> PowerOutcome:
        return self._ensure(str(server_id), "ACTIVE", "STOPPED", "START", timeout, cancel)

    def ensure_stopped(self, server_id: str, timeout: float,
                       cancel: threading.Event | None = None) -> PowerOutcome:
        return self._ensure(str(server_id), "STOPPED", "ACTIVE", "STOP", timeout, cancel)

    def _ensure(
        self, server_id: str, target: str, actionable_from: str, action: str, timeout: float,
        cancel: threading.Event | None,
    ) -> PowerOutcome:
        deadline = self._clock() + timeout
        seen: Server | None = None  # the last answer, for the timeout's message
        failing: ComputeUnavailable | None = None  # the cloud's current bad spell
        failures = 0
        already = True  # until a read shows the server away from the target
        while True:
            self._check_cancel(cancel, server_id, target)
            try:
                server, task_state = self._server_document(server_id)
                seen, failing, failures = server, None, 0
                if server.status == target and task_state != _AWAY[target]:
                    return PowerOutcome(server, already)
                already = False
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
                pause = self.poll_interval
            except ComputeUnavailable as exc:
                failing, failures = exc, failures + 1
                pause = min(self.poll_interval * 2 ** (failures - 1), self.max_backoff)
                log.warning("server %s: %s; asking again in %.1fs (failure %d in a row)",
                            server_id, exc, pause, failures)
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise self._timeout(server_id, target, timeout, seen, failing)
            self._pause(min(pause, remaining), cancel)

    @staticmethod
    def _timeout(server_id: str, target: str, timeout: float, seen: Server | None,
                 failing: ComputeUnavailable | None) -> ComputeTimeout:
        name = f"server {server_id}" + (f" ({seen.name})" if seen else "")
        if failing is not None:
            return ComputeTimeout(f"{name} did not become {target} within {timeout:g}s: "
                                  f"{failing}", status=failing.status)
        status = seen.status if seen else "unknown"
        return ComputeTimeout(f"{name} did not become {target} within {timeout:g}s "
                              f"(last status {status})")

    @staticmethod
    def _check_cancel(cancel: threading.Event | None, server_id: str, target: str) -> None:
        if cancel is not None and cancel.is_set():
            reason = getattr(cancel, "reason", None) or "cancelled"
            raise ActionCancelled(f"stopped waiting for server {server_id} to become "
                                  f"{target} ({reason})")

    def _pause(self, seconds: float, cancel: threading.Event | None) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif cancel is not None:
            cancel.wait(seconds)  # a cancel ends the pause at once
        else:
            time.sleep(seconds)


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
