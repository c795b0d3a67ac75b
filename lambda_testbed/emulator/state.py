"""The emulated cloud's state: users and tokens, servers and their power transitions, faults.

Everything here is plain Python behind one lock; ``lambda_testbed.emulator.app`` puts HTTP in front.
Transitions are evaluated lazily from timestamps: a server whose start or shutdown is due
flips the next time anyone looks at it, which is exact and needs no timer threads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

log = logging.getLogger(__name__)

STATUSES = ("BUILD", "ACTIVE", "STOPPED", "ERROR", "DELETED", "REBOOT", "UNKNOWN")

# Synnefo reports a server's Ganeti "operstate" in its fault messages; the API status is a
# projection of it.
_OPERSTATE = {"ACTIVE": "STARTED", "STOPPED": "STOPPED", "BUILD": "BUILD", "ERROR": "ERROR",
              "DELETED": "DESTROYED", "REBOOT": "STARTED", "UNKNOWN": "UNKNOWN"}

# The SNF:task_state Cyclades shows while an action is pending.
_TASK_STATE = {"START": "STARTING", "STOP": "STOPPING", "BUILD": "BUILDING"}

# Request bodies Cyclades accepts, mapped to the Synnefo action name.
ACTION_NAMES = {"start": "START", "shutdown": "STOP", "os-start": "START", "os-stop": "STOP"}


class PowerHooks(Protocol):
    """Lets a lab of real hosts follow the emulated VMs' power state."""

    def power_on(self, server: dict) -> None:
        """Called before the server becomes ACTIVE; raising puts the server in ERROR."""

    def power_off(self, server: dict) -> None:
        """Called when a shutdown completes, before the server becomes STOPPED."""


class CloudFault(Exception):
    """A fault the cloud answers with: ``{name: {"code", "message", "details"}}``."""

    def __init__(self, code: int, name: str, message: str, details: str = ""):
        super().__init__(message)
        self.code = code
        self.name = name
        self.message = message
        self.details = details

    def body(self) -> dict:
        return {self.name: {"code": self.code, "message": self.message, "details": self.details}}


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class User:
    id: str
    name: str
    tokens: tuple[str, ...]


@dataclass
class ServerRecord:
    id: str
    name: str
    owner: str
    ips: tuple[str, ...]
    status: str
    created: datetime
    updated: datetime
    task: str | None = None  # START | STOP | BUILD while something is pending
    target: str | None = None  # the status the pending task ends in
    due: float | None = None  # clock() value at which the task completes
    completing: bool = False  # a thread is running the power hook of the flip
    generation: int = 0  # bumped by every change, so a finishing flip can spot overrides


@dataclass
class Faults:
    latency_ms: float = 0.0
    error_rate: float = 0.0
    error_every: int = 0  # every Nth protocol request fails (0: off); deterministic
    error_seed: int = 0  # seeds the random draws of error_rate
    # Every protocol request fails for this many seconds from when it is set: an outage.
    outage_seconds: float = 0.0
    stuck: dict[str, str] = field(default_factory=dict)
    identity_latency_ms: float = 0.0  # added to every token check, on top of latency_ms
    identity_down: bool = False  # every token check answers 503

    def as_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "error_rate": self.error_rate,
                "error_every": self.error_every, "error_seed": self.error_seed,
                "outage_seconds": self.outage_seconds, "stuck": dict(self.stuck),
                "identity_latency_ms": self.identity_latency_ms,
                "identity_down": self.identity_down}


def _fault_settings(raw: dict, base: Faults) -> Faults:
    """Validate a (partial) faults mapping and merge it over ``base``."""
    known = set(Faults.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
    merged = base.as_dict()
    merged.update(raw)
    try:
        faults = Faults(
            latency_ms=float(merged["latency_ms"] or 0),
            error_rate=float(merged["error_rate"] or 0),
            error_every=int(merged["error_every"] or 0),
            error_seed=int(merged["error_seed"] or 0),
            outage_seconds=float(merged["outage_seconds"] or 0),
            stuck={str(k): str(v).upper() for k, v in (merged["stuck"] or {}).items()},
            identity_latency_ms=float(merged["identity_latency_ms"] or 0),
            identity_down=merged["identity_down"],
        )
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad fault settings: {exc}") from exc
    if not isinstance(faults.identity_down, bool):
        raise ValueError("identity_down must be true or false")
    if not 0.0 <= faults.error_rate <= 1.0:
        raise ValueError("error_rate must be between 0 and 1")
    if (faults.latency_ms < 0 or faults.error_every < 0 or faults.outage_seconds < 0
            or faults.identity_latency_ms < 0):
        raise ValueError("latency_ms, identity_latency_ms, error_every and outage_seconds "
                         "must not be negative")
    for server_id, status in faults.stuck.items():
        if status not in STATUSES:
            raise ValueError(f"stuck server {server_id}: unknown status {status!r}")
    return faults


def servers_from_seed(seed: dict) -> list[dict]:
    """The seed's servers: one per instance host, overridden field by field by ``servers``."""
    by_id: dict[str, dict] = {}
    for instance in seed.get("instances") or []:
        started = str(instance.get("status", "STOPPED")).upper() == "STARTED"
        for host in instance.get("hosts") or []:
            server_id = str(host["server_id"])
            by_id[server_id] = {
                "id": server_id,
                "name": host.get("name") or f"server-{server_id}",
                "owner": instance["owner"],
                "status": "ACTIVE" if started else "STOPPED",
                "ips": [host["ip"]] if host.get("ip") else [],
            }
    for server in seed.get("servers") or []:
        server_id = str(server["id"])
        merged = by_id.get(server_id, {"id": server_id, "name": f"server-{server_id}",
                                       "status": "STOPPED", "ips": []})
        merged.update({k: v for k, v in server.items() if k != "id"})
        merged["id"] = server_id
        if "owner" not in merged:
            raise ValueError(f"seed server {server_id} has no owner")
        by_id[server_id] = merged
    return list(by_id.values())


class Cloud:
    """Users, tokens and servers of one emulated Synnefo deployment. Thread-safe."""

    def __init__(self, seed: dict, power_hooks: PowerHooks | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._hooks = power_hooks
        options = seed.get("emulator") or {}
        self.transition_seconds = float(options.get("transition_seconds", 1.0))
        self.build_seconds = float(options.get("build_seconds", 0.0))
        self._faults = _fault_settings(options.get("faults") or {}, Faults())
        self._random = random.Random(self._faults.error_seed)
        self._outage_until = self._clock() + self._faults.outage_seconds
        self._protocol_requests = 0
        self._counts: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._peaks: dict[str, int] = {}

        self._users: dict[str, User] = {}
        self._token_owner: dict[str, str] = {}
        for raw in seed.get("users") or []:
            user = User(id=str(raw["id"]), name=str(raw.get("name") or raw["id"]),
                        tokens=tuple(str(t) for t in raw.get("tokens") or ()))
            self._users[user.id] = user
            for token in user.tokens:
                self._token_owner[token] = user.id

        self._servers: dict[str, ServerRecord] = {}
        started_at, now = _now(), self._clock()
        for raw in servers_from_seed(seed):
            status = str(raw.get("status", "STOPPED")).upper()
            if status not in STATUSES:
                raise ValueError(f"seed server {raw['id']}: unknown status {status!r}")
            record = ServerRecord(id=raw["id"], name=str(raw["name"]), owner=str(raw["owner"]),
                                  ips=tuple(raw.get("ips") or ()), status=status,
                                  created=started_at, updated=started_at)
            if self.build_seconds > 0 and status in ("ACTIVE", "STOPPED"):
                record.status, record.task, record.target = "BUILD", "BUILD", status
                record.due = now + self.build_seconds
            self._servers[record.id] = record

    # --- identity ------------------------------------------------------------------------

    def user_for_token(self, token: str | None) -> User | None:
        with self._lock:
            owner = self._token_owner.get(token or "")
            return self._users.get(owner) if owner else None

    # --- faults and counters -------------------------------------------------------------

    def count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1

    def request_counts(self) -> dict:
        with self._lock:
            return dict(self._counts)

    def enter(self, kind: str) -> None:
        """A request of ``kind`` is being served (``leave`` when it is answered)."""
        with self._lock:
            now = self._in_flight[kind] = self._in_flight.get(kind, 0) + 1
            self._peaks[kind] = max(self._peaks.get(kind, 0), now)

    def leave(self, kind: str) -> None:
        with self._lock:
            self._in_flight[kind] -= 1

    def peak_concurrency(self) -> dict:
        """The most requests of each kind served at once since the last reset."""
        with self._lock:
            return dict(self._peaks)

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._peaks = {k: n for k, n in self._in_flight.items() if n}

    def faults(self) -> Faults:
        with self._lock:
            return Faults(**{**self._faults.as_dict()})

    def set_faults(self, **changes) -> Faults:
        with self._lock:
            self._faults = _fault_settings(changes, self._faults)
            # Reseed so the same settings give the same sequence of injected errors.
            self._random = random.Random(self._faults.error_seed)
            self._protocol_requests = 0
            if "outage_seconds" in changes:  # an outage starts when it is set
                self._outage_until = self._clock() + self._faults.outage_seconds
            log.info("emulator faults now %s", self._faults.as_dict())
            return self._faults

    def draw_injected_error(self) -> bool:
        """Whether this protocol request is answered with an injected 503."""
        with self._lock:
            self._protocol_requests += 1
            faults = self._faults
            if self._clock() < self._outage_until:
                return True
            if faults.error_every and self._protocol_requests % faults.error_every == 0:
                return True
            return faults.error_rate > 0 and self._random.random() < faults.error_rate

    # --- servers -------------------------------------------------------------------------

    def server_ids(self) -> list[str]:
        with self._lock:
            return list(self._servers)

    def _visible_status(self, record: ServerRecord) -> str:
        return self._faults.stuck.get(record.id, record.status)

    def _view(self, record: ServerRecord) -> dict:
        status = self._visible_status(record)
        stuck = record.id in self._faults.stuck
        task = None if stuck else record.task
        if stuck and status == "BUILD":
            task = "BUILD"
        return {"id": record.id, "name": record.name, "owner": record.owner,
                "status": status, "ips": list(record.ips),
                "task_state": _TASK_STATE.get(task, "") if task else "",
                "created": _iso(record.created), "updated": _iso(record.updated)}

    def _settle(self, server_id: str) -> None:
        """Complete the server's pending task if it is due, running its power hook."""
        with self._lock:
            record = self._servers.get(server_id)
            if (record is None or record.task is None or record.completing
                    or record.id in self._faults.stuck or self._clock() < record.due):
                return
            record.completing = True
            generation, task, target = record.generation, record.task, record.target
            hook_view = self._view(record)
        failure = None
        try:
            if self._hooks is not None and target == "ACTIVE":
                self._hooks.power_on(hook_view)
            elif self._hooks is not None and task == "STOP":
                self._hooks.power_off(hook_view)
        except Exception as exc:  # a hook's failure is the VM's failure, never the API's
            log.warning("power hook for server %s failed: %s", server_id, exc)
            failure = exc
        with self._lock:
            record.completing = False
            if record.generation != generation:
                return  # set_status overrode the transition while the hook ran
            record.status = "ERROR" if failure else target
            record.task = record.target = record.due = None
            record.generation += 1
            record.updated = _now()
            log.info("server %s is now %s", server_id, record.status)

    def get_server(self, server_id: str, user_id: str | None = None) -> dict:
        """The server's current view; ``user_id`` (when given) must own it."""
        self._settle(server_id)
        with self._lock:
            record = self._servers.get(server_id)
            if record is None or (user_id is not None and record.owner != user_id):
                raise CloudFault(404, "itemNotFound", "Server not found")
            return self._view(record)

    def list_servers(self, user_id: str) -> list[dict]:
        views = []
        for server_id in self.server_ids():
            try:
                views.append(self.get_server(server_id, user_id))
            except CloudFault:
                continue
        return views

    def act(self, server_id: str, action: str, user_id: str) -> None:
        """Accept START or STOP on the user's server, or raise the fault Cyclades would."""
        self._settle(server_id)
        with self._lock:
            record = self._servers.get(server_id)
            if record is None or record.owner != user_id:
                raise CloudFault(404, "itemNotFound", "Server not found")
            status = self._visible_status(record)
            if status == "DELETED":
                raise CloudFault(400, "badRequest", f"Server '{server_id}' has been deleted.")
            if status == "BUILD" or record.task == "BUILD":
                raise CloudFault(409, "buildInProgress", "Server is being built.")
            if record.task is not None:
                raise CloudFault(400, "badRequest", f"Cannot perform '{action}' action while"
                                 f" there is a pending '{record.task}'.")
            wanted_from = {"START": "STOPPED", "STOP": "ACTIVE"}[action]
            if status != wanted_from:
                raise CloudFault(400, "badRequest", f"Cannot perform '{action}' action while"
                                 f" server is in '{_OPERSTATE.get(status, status)}' state.")
            record.task = action
            record.target = "ACTIVE" if action == "START" else "STOPPED"
            record.due = self._clock() + self.transition_seconds
            record.generation += 1
            record.updated = _now()
            log.info("server %s: %s accepted", server_id, action)

    def set_status(self, server_id: str, status: str) -> dict:
        """Force a status at once, cancelling any pending task (no power hooks run)."""
        status = status.upper()
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            record = self._servers.get(server_id)
            if record is None:
                raise KeyError(server_id)
            record.status = status
            record.task = record.target = record.due = None
            record.generation += 1
            record.updated = _now()
            return self._view(record)

    def server_status(self, server_id: str) -> str:
        return self.get_server(server_id)["status"]

    def snapshot(self) -> dict:
        """Everything a test or benchmark may want to see (the admin ``state`` endpoint)."""
        servers = [self.get_server(server_id) for server_id in self.server_ids()]
        with self._lock:
            users = [{"id": u.id, "name": u.name, "tokens": len(u.tokens)}
                     for u in self._users.values()]
            return {"users": users, "servers": servers, "faults": self._faults.as_dict(),
                    "transition_seconds": self.transition_seconds,
                    "build_seconds": self.build_seconds, "request_counts": dict(self._counts)}
