"""The small interfaces the domain needs from the outside world.

Adapters in ``api.adapters`` implement them; tests may pass small fakes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from api.domain.model import (
    Action,
    ActionEvent,
    ActionEventType,
    ActionState,
    Instance,
    InstanceStatus,
    StepName,
    StepState,
    TaskResult,
)

# --- identity (Synnefo Astakos) --------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Who a token belongs to, and where that user's compute service is."""

    user_id: str
    user_name: str
    compute_url: str | None
    expires: datetime | None = None


class IdentityPort(Protocol):
    def cached(self, token: str) -> Identity | None:
        """The token's identity if it is known without asking the service, else None.

        Never blocks on the service (an event loop may call it). Raises ``InvalidToken``
        for a malformed token or one the service recently refused.
        """

    def authenticate(self, token: str) -> Identity:
        """Return the token's identity, asking the service unless it is cached (blocks).

        Raises ``InvalidToken`` when the service answers 401 (or the token is malformed),
        ``IdentityUnavailable`` on anything else that is not a 200, and without asking
        while the service is known to be down or too many checks are in flight.
        """


# --- compute (Synnefo Cyclades) -------------------------------------------------------


@dataclass(frozen=True)
class Server:
    id: str
    name: str
    status: str  # BUILD | ACTIVE | STOPPED | ERROR | DELETED | REBOOT | UNKNOWN
    ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class PowerOutcome:
    """What ``ensure_active``/``ensure_stopped`` found and did."""

    server: Server  # as last read: in the target status
    already: bool  # it was in the target status when first read: no power action was sent


class ComputePort(Protocol):
    """A compute client bound to one user's token and compute URL."""

    def get_server(self, server_id: str) -> Server: ...

    def ensure_active(self, server_id: str, timeout: float,
                      cancel: threading.Event | None = None) -> PowerOutcome:
        """Power the server on unless it is ACTIVE, and wait until it is ACTIVE.

        A service that fails for a while (5xx, no answer) is asked again, with backoff,
        within ``timeout``. Raises ``ComputeTimeout`` past ``timeout`` seconds,
        ``ComputeError`` when the server is in ERROR/DELETED or the service refuses for
        good, and ``ActionCancelled`` as soon as ``cancel`` is set.
        """

    def ensure_stopped(self, server_id: str, timeout: float,
                       cancel: threading.Event | None = None) -> PowerOutcome:
        """Shut the server down unless it is STOPPED, and wait until it is STOPPED (as
        ``ensure_active`` waits)."""


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
    # A chain of a playbook run side by side with its group's other chains (e.g.
    # "hdfs-yarn"): it kills only what an earlier run of its own chain left.
    chain: str | None = None
    # known_hosts lines of the pinned SSH host keys: with host key checking on, ssh trusts
    # exactly these (none when this is None); ignored when checking is off.
    known_hosts: str | None = None


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
    cancel_requested_by: str | None = None  # set: finish it as cancelled, run nothing
    excluded_hosts: tuple[str, ...] = ()  # a start's slaves to leave out, by host name


class InstanceRepository(Protocol):
    def get(self, instance_id: str, owner: str | None = None) -> Instance | None:
        """The instance with its hosts; None if there is none (owned by ``owner``)."""

    def list(self, owner: str, limit: int | None, offset: int) -> list[Instance]: ...

    def count(self, owner: str) -> int: ...

    def add(self, instance: Instance) -> None: ...

    def delete(self, instance_id: str) -> None: ...

    def compare_and_set_status(
        self,
        instance_id: str,
        expected: Collection[InstanceStatus] | None,
        new: InstanceStatus,
        failure_message: str | None = None,
    ) -> bool:
        """Move the instance to ``new`` only if its status is in ``expected`` (any when
        None), atomically; True if it moved."""

    def set_left_out_hosts(self, instance_id: str, host_names: Collection[str]) -> None:
        """Record the hosts the instance runs without (none: every host runs)."""

    def find_stranded(self, limit: int = 100) -> list[tuple[str, InstanceStatus]]:
        """(id, status) of instances STARTING or STOPPING with no unfinished action, which
        nothing would ever move on (left by a crash, a seed file or a database edit)."""


class ActionRepository(Protocol):
    def add(self, action: Action, compute_url: str | None, encrypted_token: str | None
            ) -> None: ...

    def get(self, action_id: str, instance_id: str | None = None, owner: str | None = None
            ) -> Action | None:
        """The action with its steps and task results; None unless it matches."""

    def summary(self, action_id: str, instance_id: str | None = None,
                owner: str | None = None) -> Action | None:
        """The action without its steps and task results; None unless it matches."""

    def history(self, instance_id: str, limit: int, offset: int) -> list[Action]:
        """The instance's actions, newest first, without their steps and task results."""

    def count(self, instance_id: str) -> int:
        """How many actions the instance has had."""

    def claim(self, action_id: str, worker: str, now: datetime, lease_seconds: float
              ) -> ActionClaim | None:
        """Take the lease of an unfinished action nobody holds or whose lease expired;
        count an attempt and fail the steps an earlier attempt left running (each with
        its event, then the "running" one)."""

    def renew(self, action_id: str, worker: str, now: datetime, lease_seconds: float
              ) -> bool:
        """Extend ``worker``'s lease; False if it no longer holds it."""

    def release(self, action_id: str, worker: str, now: datetime) -> None:
        """Give ``worker``'s lease back without finishing the action, and without counting
        the attempt: a graceful hand-back is not a failed attempt. Its event says so."""

    def finish(self, action_id: str, worker: str | None, state: ActionState,
               error: str | None, now: datetime) -> bool:
        """End an unfinished action (under ``worker``'s lease unless None), erase its
        token, append its final state event; False if it had ended or the lease was lost."""

    def request_cancel(self, action_id: str, by: str, now: datetime) -> bool:
        """Record that ``by`` asked to cancel the unfinished action, with a state event (a
        first request's author and time stay); False if the action has ended."""

    def cancel_requested(self, action_id: str) -> str | None:
        """Who asked to cancel the action; None if nobody has."""

    def finish_unclaimed(self, action_id: str, state: ActionState, error: str | None,
                         now: datetime) -> bool:
        """End an unfinished action no worker holds (never claimed, or handed back), erase
        its token, append its final state event; False if it had ended or a worker holds
        it."""

    def find_resumable(self, now: datetime, accepted_grace: float, limit: int = 100
                       ) -> list[str]:
        """Ids of unfinished actions nobody holds, oldest first: expired leases, and
        actions accepted over ``accepted_grace`` seconds ago and never claimed."""

    def start_step(self, action_id: str, attempt: int, name: StepName, now: datetime
                   ) -> int:
        """Record a running step; return its id for ``end_step``."""

    def add_step(self, action_id: str, attempt: int, name: StepName, state: StepState,
                 now: datetime, message: str | None) -> None:
        """Record a step that started and ended at once (e.g. skipped)."""

    def end_step(self, step_id: int, state: StepState, now: datetime, message: str | None
                 ) -> None: ...

    def add_tasks(self, action_id: str, attempt: int, results: list[TaskResult],
                  now: datetime) -> None:
        """Record task results, with one event each."""

    # Every write above appends the events that tell it, in its own transaction, numbered
    # 1, 2, 3... per action with no gap: a reader that has seen seq n and reads again
    # after n misses nothing. Steps: "running" at start, then the ended state.

    def append_event(self, action_id: str, type: ActionEventType, data: dict,
                     now: datetime, attempt: int | None = None) -> int | None:
        """Append one event to the action; its seq, or None if there is no such action."""

    def events(self, action_id: str, after: int, limit: int) -> list[ActionEvent]:
        """The action's events numbered above ``after``, in order, at most ``limit``."""


@dataclass(frozen=True)
class HostKey:
    """One SSH host public key, as a known_hosts line carries it."""

    key_type: str  # ssh-ed25519, ecdsa-sha2-nistp256, ssh-rsa, ...
    key: str  # the base64 blob


@dataclass(frozen=True)
class PinnedHostKey:
    server_id: str
    host_name: str  # the host's name when it was pinned, for the operator
    key: HostKey
    pinned_at: datetime


@dataclass(frozen=True)
class HostKeyCheck:
    """The outcome of checking hosts' SSH host keys against their pins."""

    known_hosts: str  # known_hosts lines of the hosts' pinned keys, for their playbook run
    summary: str  # what was pinned and what matched, for the step's message


class HostKeyRepository(Protocol):
    """SSH host keys pinned per server (trust on first use)."""

    def pinned(self, server_ids: Collection[str]) -> list[PinnedHostKey]:
        """The pinned keys of these servers, by server id then key type."""

    def pin(self, server_id: str, host_name: str, keys: Collection[HostKey], now: datetime
            ) -> None:
        """Pin ``keys`` as the server's host keys (the server has none pinned yet)."""

    def forget(self, server_ids: Collection[str]) -> int:
        """Drop the pins of these servers; return how many keys were dropped."""


class UnitOfWork(Protocol):
    """One transaction: leaving the ``with`` block without ``commit()`` rolls back."""

    instances: InstanceRepository
    actions: ActionRepository
    host_keys: HostKeyRepository

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, *exc) -> None: ...

    def commit(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    """Makes units of work; a ``readonly`` one promises not to write.

    ``reads_never_wait``: a read-only unit never waits for another connection (a local
    database whose readers take no lock), so a caller may run it where waiting is not
    allowed, such as an event loop."""

    reads_never_wait: bool

    def __call__(self, readonly: bool = False) -> UnitOfWork: ...


# --- metrics ------------------------------------------------------------------------------


class Metrics(Protocol):
    """What the service counts and times, in plain values; an adapter exports them.

    Kinds, outcomes, steps and states are the plain values of the domain's enums
    (``start``, ``succeeded``, ``playbook``...): a new value needs no change here. Every
    call is cheap and never raises (it runs on request and action paths)."""

    def action_started(self, kind: str) -> None:
        """This process began an attempt at an action (one more in flight)."""

    def action_ended(self, kind: str, outcome: str | None, seconds: float) -> None:
        """The attempt ended after ``seconds`` (one fewer in flight). ``outcome`` is the
        action's final state, or None when the attempt left it unfinished (handed back
        on shutdown, lease lost)."""

    def action_ended_unclaimed(self, kind: str, outcome: str) -> None:
        """An action no worker held was ended outside any attempt (a cancel before its
        claim): one more of ``outcome``, never in flight, no attempt to time."""

    def step_finished(self, step: str, state: str, seconds: float) -> None:
        """A step of an action ended in ``state`` after ``seconds``."""

    def actions_resumed(self, count: int) -> None:
        """The sweeper resumed ``count`` actions nobody held."""

    def dispatch_failed(self) -> None:
        """An accepted action could not be handed to a worker (the sweeper will)."""

    def identity_cache_lookup(self, hit: bool) -> None:
        """A token's check was answered by the cache (valid or known invalid), or not."""

    def request_served(self, method: str, route: str, status: int, seconds: float) -> None:
        """An HTTP request was answered; ``route`` is its route's template, never the
        path (the label set stays bounded whatever paths clients send)."""


class NoMetrics:
    """``Metrics`` that keeps nothing: the default wherever none is wired."""

    def action_started(self, kind: str) -> None:
        pass

    def action_ended(self, kind: str, outcome: str | None, seconds: float) -> None:
        pass

    def action_ended_unclaimed(self, kind: str, outcome: str) -> None:
        pass

    def step_finished(self, step: str, state: str, seconds: float) -> None:
        pass

    def actions_resumed(self, count: int) -> None:
        pass

    def dispatch_failed(self) -> None:
        pass

    def identity_cache_lookup(self, hit: bool) -> None:
        pass

    def request_served(self, method: str, route: str, status: int, seconds: float) -> None:
        pass


NO_METRICS = NoMetrics()
