"""The small interfaces the domain needs from the outside world.

Adapters in ``api.adapters`` implement them; tests may pass small fakes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from api.domain.model import TaskResult

# --- identity (Synnefo Astakos, SPEC 5) -------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who a token belongs to, and where that user's compute service is."""

    user_id: str
    user_name: str
    compute_url: str | None
    expires: datetime | None = None


class IdentityPort(Protocol):
    def authenticate(self, token: str) -> Identity:
        """Return the token's identity.

        Raises ``InvalidToken`` when the service answers 401 (or the token is malformed),
        ``IdentityUnavailable`` on anything else that is not a 200.
        """


# --- compute (Synnefo Cyclades, SPEC 6) ------------------------------------------------


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    status: str  # BUILD | ACTIVE | STOPPED | ERROR | DELETED | REBOOT | UNKNOWN
    ips: tuple[str, ...] = ()


class ComputePort(Protocol):
    """A compute client bound to one user's token and compute URL."""

    def get_server(self, server_id: str) -> Server: ...

    def ensure_active(self, server_id: str, timeout: float) -> Server:
        """Power the server on unless it is ACTIVE, and wait until it is ACTIVE.

        Raises ``ComputeTimeout`` past ``timeout`` seconds and ``ComputeError`` when the
        server is in ERROR/DELETED or the service refuses for good.
        """

    def ensure_stopped(self, server_id: str, timeout: float) -> Server:
        """Shut the server down unless it is STOPPED, and wait until it is STOPPED."""


ComputeFactory = Callable[[str, str], ComputePort]  # (compute_url, token) -> client


# --- playbooks (ansible-runner) -------------------------------------------------------------


@dataclass
class PlaybookRun:
    """What to run: one playbook against one rendered inventory."""

    playbook: str  # file name under the playbooks directory, e.g. "lambda-start.yml"
    inventory: str  # the rendered inventory text (INI)
    ident: str  # names the run's artifacts, e.g. the action id
    extravars: dict = field(default_factory=dict)
    limit: str | None = None
    timeout: float | None = None  # seconds; past it the whole process tree is killed
    # Runs of one group (an action's attempts) never overlap: a run first kills what an
    # earlier run of its group left behind (its worker died mid-playbook).
    group: str | None = None


@dataclass
class PlaybookResult:
    status: str  # successful | failed | timeout | cancelled
    rc: int | None
    tasks: list[TaskResult]
    failure: TaskResult | None = None  # the first failed/unreachable task, if any

    @property
    def ok(self) -> bool:
        return self.status == "successful"


class PlaybookRunnerPort(Protocol):
    def run(
        self,
        run: PlaybookRun,
        on_task: Callable[[TaskResult], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> PlaybookResult:
        """Run the playbook to its end, a timeout, or ``cancel`` being set.

        On timeout or cancel, every process the run started (ansible-playbook, ssh,
        ssh control masters) is killed before this returns.
        """


# --- persistence --------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionClaim:
    """What a worker needs to run an action it has claimed (a lease)."""

    action_id: str
    instance_id: str
    kind: str
    attempt: int
    compute_url: str | None
    encrypted_token: str | None  # the caller's token, as ``encrypt_token`` stored it


class UnitOfWork(Protocol):
    """One transaction: leaving the ``with`` block without ``commit()`` rolls back."""

    instances: InstanceRepository
    actions: ActionRepository

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, *exc) -> None: ...

    def commit(self) -> None: ...


class InstanceRepository(Protocol):
    def get(self, instance_id: str, owner: str | None = None): ...

    def list(self, owner: str, limit: int | None, offset: int): ...

    def count(self, owner: str) -> int: ...

    def add(self, instance) -> None: ...

    def compare_and_set_status(self, instance_id, expected, new, failure_message=None) -> bool: ...


class ActionRepository(Protocol):
    def add(self, action, compute_url: str | None, encrypted_token: str | None) -> None: ...

    def get(self, action_id: str, instance_id: str | None = None, owner: str | None = None): ...

    def claim(self, action_id: str, worker: str, now: datetime, lease_seconds: float
              ) -> ActionClaim | None: ...
