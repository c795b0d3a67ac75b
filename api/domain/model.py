"""Instances, actions, steps and the transitions between their states."""

from __future__ import annotations

import enum
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

    @property
    def finished(self) -> bool:
        return self in (ActionState.SUCCEEDED, ActionState.FAILED)


class StepName(str, enum.Enum):
    POWER_ON = "power_on"
    WAIT_SSH = "wait_ssh"
    PLAYBOOK = "playbook"
    POWER_OFF = "power_off"


class StepState(str, enum.Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


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


ACTION_RULES: dict[ActionKind, ActionRule] = {
    ActionKind.START: ActionRule(
        allowed_from=frozenset({InstanceStatus.STOPPED, InstanceStatus.FAILED}),
        already=InstanceStatus.STARTED,
        transitional=InstanceStatus.STARTING,
        target=InstanceStatus.STARTED,
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

    @property
    def master(self) -> Host | None:
        return next((h for h in self.hosts if h.role is HostRole.MASTER), None)

    @property
    def slaves(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.role is HostRole.SLAVE)


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

    STATE = "state"  # data: state (accepted | running | succeeded | failed) and its details
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
    steps: list[Step] = field(default_factory=list)
    tasks: list[TaskResult] = field(default_factory=list)
