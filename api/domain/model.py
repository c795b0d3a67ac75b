"""Instances, actions, steps and the transitions between their states."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime


class InstanceStatus(enum.Enum):
    """Status codes and details kept from the original service."""

    STARTED = ("0", "Lambda instance has been started")
    STOPPED = ("1", "Lambda instance has been stopped")
    PENDING = ("2", "Lambda instance installation is pending")
    STARTING = ("3", "Lambda instance is starting")
    STOPPING = ("4", "Lambda instance is stopping")
    DESTROYING = ("5", "Lambda instance is being destroyed")
    DESTROYED = ("6", "Lambda instance has been destroyed")
    SCALING_UP = ("7", "Lambda instance is scaling up")
    SCALING_DOWN = ("8", "Lambda instance is scaling down")
    FAILED = ("9", "Lambda instance has failed")

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def detail(self) -> str:
        return self.value[1]

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.name, "detail": self.detail}


class ActionKind(str, enum.Enum):
    START = "start"
    STOP = "stop"


class ActionState(str, enum.Enum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped on its owner's request (see ``cancelled_message``)

    @property
    def finished(self) -> bool:
        return self in (ActionState.SUCCEEDED, ActionState.FAILED, ActionState.CANCELLED)


class StepName(str, enum.Enum):
    POWER_ON = "power_on"
    WAIT_SSH = "wait_ssh"
    PLAYBOOK = "playbook"
    SERVICE_CHECKS = "service_checks"
    POWER_OFF = "power_off"


class StepState(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    # Cut off by a cancel: what it did may be half done, but nothing in it went wrong.
    CANCELLED = "cancelled"


class HostRole(str, enum.Enum):
    MASTER = "master"
    SLAVE = "slave"


# The services a lambda instance may run, in start order.
SERVICES = ("hdfs", "yarn", "zookeeper", "kafka", "spark")


@dataclass(frozen=True)
class ActionRule:
    """What an action needs and does to the instance status."""

    allowed_from: frozenset[InstanceStatus]
    already: InstanceStatus
    transitional: InstanceStatus
    target: InstanceStatus
    # Also allowed from ``already`` while the instance has hosts left out: a start that
    # left a broken slave out is followed by a start that brings it back.
    brings_back_left_out: bool = False

    def allows(self, instance: Instance) -> bool:
        return instance.status in self.allowed_from or (
            self.brings_back_left_out and instance.status is self.already
            and bool(instance.left_out_hosts))


ACTION_RULES: dict[ActionKind, ActionRule] = {
    ActionKind.START: ActionRule(
        allowed_from=frozenset({InstanceStatus.STOPPED, InstanceStatus.FAILED}),
        already=InstanceStatus.STARTED,
        transitional=InstanceStatus.STARTING,
        target=InstanceStatus.STARTED,
        brings_back_left_out=True,
    ),
    ActionKind.STOP: ActionRule(
        allowed_from=frozenset({InstanceStatus.STARTED, InstanceStatus.FAILED}),
        already=InstanceStatus.STOPPED,
        transitional=InstanceStatus.STOPPING,
        target=InstanceStatus.STOPPED,
    ),
}


@dataclass(frozen=True)
class Host:
    """One VM of a lambda instance."""

    server_id: str
    name: str
    role: HostRole
    ip: str


@dataclass(frozen=True)
class Instance:
    id: str
    owner: str
    name: str
    status: InstanceStatus
    services: tuple[str, ...]
    hosts: tuple[Host, ...]
    failure_message: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    # Names of the slaves the last successful start left out (none once a start without
    # them, or a stop, succeeds): their VMs are not powered on and no service names them.
    left_out_hosts: tuple[str, ...] = ()

    @property
    def master(self) -> Host | None:
        return next((h for h in self.hosts if h.role is HostRole.MASTER), None)

    @property
    def slaves(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.role is HostRole.SLAVE)

    def hosts_except(self, names: Collection[str]) -> tuple[Host, ...]:
        """The hosts, in order, but those named in ``names``."""
        return tuple(h for h in self.hosts if h.name not in names)


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome on one host, summarised from the playbook's events."""

    host: str
    task: str
    status: str  # ok | changed | failed | unreachable | skipped
    role: str | None = None
    play: str | None = None
    message: str | None = None
    duration: float | None = None


@dataclass
class Step:
    name: StepName
    state: StepState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: str | None = None


class ActionEventType(str, enum.Enum):
    """What an action event tells: the action's state, a step's, or a task's result."""

    STATE = "state"  # data: state (accepted | running | succeeded | failed | cancelled), details
    STEP = "step"  # data: name, state; once ended, message and duration
    TASK = "task"  # data: host, task, role, play, status, message, duration


@dataclass(frozen=True)
class ActionEvent:
    """One numbered event of an action: ``seq`` counts 1, 2, 3... per action, no gaps."""

    seq: int
    type: ActionEventType
    at: datetime
    attempt: int | None
    data: dict


@dataclass
class Action:
    id: str
    instance_id: str
    owner: str
    kind: ActionKind
    state: ActionState
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    attempts: int = 0
    last_event: int = 0  # the seq of its newest event (0: none)
    # Who asked to cancel the action, and when (the first request; None if nobody has).
    cancel_requested_by: str | None = None
    cancel_requested_at: datetime | None = None
    # A start's slaves to leave out, by host name, as the request named them.
    excluded_hosts: tuple[str, ...] = ()
    steps: list[Step] = field(default_factory=list)
    tasks: list[TaskResult] = field(default_factory=list)


# The steps of each kind of action, in the order they run.
STEP_ORDER: dict[ActionKind, tuple[StepName, ...]] = {
    ActionKind.START: (StepName.POWER_ON, StepName.WAIT_SSH, StepName.PLAYBOOK),
    ActionKind.STOP: (StepName.PLAYBOOK, StepName.POWER_OFF),
}

# What is known of an instance whose action was cancelled during a step (False) or right
# after it ended (True): what its failure_message says besides who cancelled, and when.
CANCEL_KNOWN: dict[tuple[ActionKind, StepName, bool], str] = {
    (ActionKind.START, StepName.POWER_ON, False):
        "some VMs may be on and others still off; no service was touched",
    (ActionKind.START, StepName.POWER_ON, True): "the VMs are on; no service was touched",
    (ActionKind.START, StepName.WAIT_SSH, False): "the VMs are on; no service was touched",
    (ActionKind.START, StepName.WAIT_SSH, True): "the VMs are on; no service was touched",
    (ActionKind.START, StepName.PLAYBOOK, False):
        "the VMs are on; services may be partly started",
    (ActionKind.START, StepName.PLAYBOOK, True): "the VMs are on and the services started",
    (ActionKind.STOP, StepName.PLAYBOOK, False):
        "services may be partly stopped; no VM was shut down",
    (ActionKind.STOP, StepName.PLAYBOOK, True):
        "the services are stopped; no VM was shut down",
    (ActionKind.STOP, StepName.POWER_OFF, False):
        "the services are stopped; some VMs may be off and others still on",
    (ActionKind.STOP, StepName.POWER_OFF, True): "the services are stopped and the VMs off",
}


def cancelled_message(kind: ActionKind, by: str | None, step: StepName | None,
                      ended: bool = False, detail: str | None = None) -> str:
    """The error of a cancelled action, and its instance's failure_message.

    The rule: a cancelled action always leaves its instance FAILED (the status before the
    request is not recorded, and STOPPED, STARTED and FAILED each allow one of start and
    stop only, FAILED both), and the message says what is known: who cancelled, the step
    it was cut at (``ended``: right after that step ended; None: before any step began)
    and so which VMs and services may be half way. Starting or stopping it converges from
    there, as the actions are idempotent.
    """
    who = f"{kind.value} cancelled by {by or 'its owner'}"
    if step is None:
        return f"{who} before any step began: nothing was changed"
    known = CANCEL_KNOWN.get((kind, step, ended), "the instance may be partly changed")
    if ended:
        where = f"after step {step.value}"
    else:
        where = f"during step {step.value}" + (f" ({detail})" if detail else "")
    return f"{who} {where}: {known}; start or stop it to converge"


def cancel_point(kind: ActionKind, step: StepName, began: bool
                 ) -> tuple[StepName | None, bool]:
    """(step, ended) for ``cancelled_message`` of a cancel seen at ``step``: during it if it
    ``began``, else right after the step before it (None: the first step, nothing began)."""
    if began:
        return step, False
    order = STEP_ORDER[kind]
    index = order.index(step) if step in order else 0
    return (order[index - 1], True) if index > 0 else (None, False)


def last_step_point(steps: list[Step]) -> tuple[StepName | None, bool]:
    """(step, ended) for ``cancelled_message`` from the steps earlier attempts recorded (an
    action cancelled before a worker resumed it): the last one, and whether it ended well."""
    if not steps:
        return None, False
    last = steps[-1]
    return last.name, last.state in (StepState.SUCCEEDED, StepState.SKIPPED)
