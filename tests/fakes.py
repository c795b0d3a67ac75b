"""In-memory fakes of the ports, written against ``api.domain.ports`` alone.

The identity fake knows tokens from a dict and caches answers as the real client does.
The unit of work and repositories, for the domain's unit tests, behave as the SQL adapter
does (compare-and-set, leases, steps, task results), in dicts. One unit of work at a time
holds the database, as a SQLite writer holds its lock; leaving one without ``commit()``
restores the state.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from api.domain.clock import utcnow
from api.domain.errors import IdentityUnavailable, InvalidToken
from api.domain.model import (
    ACTION_RULES,
    Action,
    ActionEvent,
    ActionEventType,
    ActionState,
    Instance,
    InstanceStatus,
    Step,
    StepName,
    StepState,
    TaskResult,
)
from api.domain.names import validate_instance
from api.domain.ports import ActionClaim, HostKey, Identity, PinnedHostKey

UNFINISHED = tuple(state for state in ActionState if not state.finished)


class FakeIdentity:
    """The identity port over ``users`` (token -> Identity). Answers are cached, as the real
    client caches them: a token asked once is then known to ``cached`` (valid or not), and
    keeps working while ``unavailable`` is set. ``calls`` counts the "upstream" checks."""

    def __init__(self, users: dict[str, Identity] | None = None):
        self.users = dict(users or {})
        self.unavailable = False
        self.calls = 0
        self._answers: dict[str, Identity | None] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Identity | None:
        if not isinstance(token, str) or not token:
            raise InvalidToken("malformed token")
        with self._lock:
            if token not in self._answers:
                return None
            identity = self._answers[token]
        if identity is None:
            raise InvalidToken("unknown token (cached)")
        return identity

    def authenticate(self, token: str) -> Identity:
        identity = self.cached(token)
        if identity is not None:
            return identity
        with self._lock:
            self.calls += 1
        if self.unavailable:
            raise IdentityUnavailable("the fake identity service is down", retry_after=5)
        identity = self.users.get(token)
        with self._lock:
            self._answers[token] = identity
        if identity is None:
            raise InvalidToken("unknown token")
        return identity


@dataclass
class _ActionRow:
    action: Action
    compute_url: str | None
    encrypted_token: str | None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    steps: dict[int, tuple[int, Step]] = field(default_factory=dict)  # id -> (attempt, step)
    tasks: list[tuple[int, TaskResult]] = field(default_factory=list)
    events: list[ActionEvent] = field(default_factory=list)


@dataclass
class _State:
    instances: dict[str, Instance] = field(default_factory=dict)
    actions: dict[str, _ActionRow] = field(default_factory=dict)
    host_keys: dict[tuple[str, str], PinnedHostKey] = field(default_factory=dict)


class InMemoryDatabase:
    def __init__(self):
        self.state = _State()
        self.lock = threading.RLock()
        self.step_ids = itertools.count(1)


class InMemoryInstanceRepository:
    def __init__(self, state: _State):
        self._state = state

    def get(self, instance_id: str, owner: str | None = None) -> Instance | None:
        instance = self._state.instances.get(instance_id)
        if instance is None or (owner is not None and instance.owner != owner):
            return None
        return instance

    def list(self, owner: str, limit: int | None, offset: int) -> list[Instance]:
        mine = sorted((i for i in self._state.instances.values() if i.owner == owner),
                      key=lambda i: (i.created_at, i.id))
        return mine[offset:None if limit is None else offset + limit]

    def count(self, owner: str) -> int:
        return sum(i.owner == owner for i in self._state.instances.values())

    def add(self, instance: Instance) -> None:
        instance = validate_instance(instance)
        if instance.id in self._state.instances:
            raise KeyError(f"instance {instance.id} exists")
        now = utcnow()
        self._state.instances[instance.id] = dataclasses.replace(
            instance, created_at=instance.created_at or now, updated_at=now)

    def delete(self, instance_id: str) -> None:
        self._state.instances.pop(instance_id, None)
        for action_id in [a for a, row in self._state.actions.items()
                          if row.action.instance_id == instance_id]:
            del self._state.actions[action_id]

    def compare_and_set_status(
        self,
        instance_id: str,
        expected: Collection[InstanceStatus] | None,
        new: InstanceStatus,
        failure_message: str | None = None,
    ) -> bool:
        instance = self._state.instances.get(instance_id)
        if instance is None or (expected is not None and instance.status not in expected):
            return False
        self._state.instances[instance_id] = dataclasses.replace(
            instance, status=new, failure_message=failure_message, updated_at=utcnow())
        return True

    def set_left_out_hosts(self, instance_id: str, host_names: Collection[str]) -> None:
        instance = self._state.instances.get(instance_id)
        if instance is not None:
            self._state.instances[instance_id] = dataclasses.replace(
                instance, left_out_hosts=tuple(host_names))

    def find_stranded(self, limit: int = 100) -> list[tuple[str, InstanceStatus]]:
        transitional = {rule.transitional for rule in ACTION_RULES.values()}
        live = {row.action.instance_id for row in self._state.actions.values()
                if row.action.state in UNFINISHED}
        found = sorted((i for i in self._state.instances.values()
                        if i.status in transitional and i.id not in live),
                       key=lambda i: i.updated_at)
        return [(i.id, i.status) for i in found][:limit]


class InMemoryActionRepository:
    def __init__(self, state: _State, step_ids):
        self._state = state
        self._step_ids = step_ids

    def add(self, action: Action, compute_url: str | None, encrypted_token: str | None) -> None:
        if action.id in self._state.actions:
            raise KeyError(f"action {action.id} exists")
        if action.instance_id not in self._state.instances:
            raise KeyError(f"no instance {action.instance_id}")
        stored = dataclasses.replace(action, attempts=0, last_event=0, steps=[], tasks=[])
        self._state.actions[action.id] = _ActionRow(stored, compute_url, encrypted_token)
        self._append(action.id, action.created_at, [(STATE, None, {
            "state": action.state.value, "kind": action.kind.value,
            "requested_by": action.owner})])

    def get(self, action_id: str, instance_id: str | None = None, owner: str | None = None
            ) -> Action | None:
        row = self._state.actions.get(action_id)
        if row is None:
            return None
        action = row.action
        if (instance_id is not None and action.instance_id != instance_id) or (
                owner is not None and action.owner != owner):
            return None
        return dataclasses.replace(
            action,
            steps=[copy.copy(step) for _, (_, step) in sorted(row.steps.items())],
            tasks=[task for _, task in row.tasks],
        )

    def summary(self, action_id: str, instance_id: str | None = None,
                owner: str | None = None) -> Action | None:
        action = self.get(action_id, instance_id, owner)
        return None if action is None else dataclasses.replace(action, steps=[], tasks=[])

    def history(self, instance_id: str, limit: int, offset: int) -> list[Action]:
        mine = [row.action for row in self._state.actions.values()
                if row.action.instance_id == instance_id]
        mine.sort(key=lambda a: (a.created_at, a.id), reverse=True)
        return [dataclasses.replace(a, steps=[], tasks=[]) for a in mine[offset:offset + limit]]

    def count(self, instance_id: str) -> int:
        return sum(1 for row in self._state.actions.values()
                   if row.action.instance_id == instance_id)

    def claim(self, action_id: str, worker: str, now: datetime, lease_seconds: float
              ) -> ActionClaim | None:
        row = self._state.actions.get(action_id)
        if row is None or row.action.state not in UNFINISHED:
            return None
        if row.lease_owner is not None and not row.lease_expires_at < now:
            return None
        row.lease_owner = worker
        row.lease_expires_at = now + timedelta(seconds=lease_seconds)
        action = row.action
        action.attempts += 1
        action.state = ActionState.RUNNING
        action.started_at = action.started_at or now
        events = []
        for _step_id, (attempt, step) in sorted(row.steps.items()):
            if step.state is StepState.RUNNING:
                step.state, step.finished_at = StepState.FAILED, now
                step.message = f"interrupted; resumed as attempt {action.attempts}"
                events.append((STEP, attempt, {**_step_ended(step), "interrupted": True}))
        events.append((STATE, action.attempts, {"state": ActionState.RUNNING.value}))
        self._append(action_id, now, events)
        return ActionClaim(action_id=action.id, instance_id=action.instance_id,
                           kind=action.kind.value, attempt=action.attempts,
                           compute_url=row.compute_url, encrypted_token=row.encrypted_token,
                           cancel_requested_by=action.cancel_requested_by,
                           excluded_hosts=action.excluded_hosts)

    def renew(self, action_id: str, worker: str, now: datetime, lease_seconds: float) -> bool:
        row = self._state.actions.get(action_id)
        if row is None or row.lease_owner != worker or row.action.state not in UNFINISHED:
            return False
        row.lease_expires_at = now + timedelta(seconds=lease_seconds)
        return True

    def release(self, action_id: str, worker: str, now: datetime) -> None:
        row = self._state.actions.get(action_id)
        if row is not None and row.lease_owner == worker and row.action.state in UNFINISHED:
            row.lease_owner = row.lease_expires_at = None
            row.action.attempts -= 1
            self._append(action_id, now, [(STATE, row.action.attempts + 1, {
                "state": ActionState.RUNNING.value, "handed_back": True,
                "message": "handed back unfinished"})])

    def finish(self, action_id: str, worker: str | None, state: ActionState,
               error: str | None, now: datetime) -> bool:
        row = self._state.actions.get(action_id)
        if row is None or row.action.state not in UNFINISHED:
            return False
        if worker is not None and row.lease_owner != worker:
            return False
        row.action.state, row.action.error, row.action.finished_at = state, error, now
        row.encrypted_token = row.lease_owner = row.lease_expires_at = None
        self._append(action_id, now, [(STATE, row.action.attempts or None,
                                       {"state": state.value, "error": error})])
        return True

    def request_cancel(self, action_id: str, by: str, now: datetime) -> bool:
        row = self._state.actions.get(action_id)
        if row is None or row.action.state not in UNFINISHED:
            return False
        if row.action.cancel_requested_at is None:
            row.action.cancel_requested_by, row.action.cancel_requested_at = by, now
            self._append(action_id, now, [(STATE, row.action.attempts or None, {
                "state": row.action.state.value, "cancel_requested_by": by})])
        return True

    def cancel_requested(self, action_id: str) -> str | None:
        row = self._state.actions.get(action_id)
        return None if row is None else row.action.cancel_requested_by

    def finish_unclaimed(self, action_id: str, state: ActionState, error: str | None,
                         now: datetime) -> bool:
        row = self._state.actions.get(action_id)
        if row is None or row.lease_owner is not None:
            return False
        return self.finish(action_id, None, state, error, now)

    def find_resumable(self, now: datetime, accepted_grace: float, limit: int = 100
                       ) -> list[str]:
        grace_edge = now - timedelta(seconds=accepted_grace)
        found = [
            row.action for row in self._state.actions.values()
            if row.action.state in UNFINISHED and (
                (row.lease_owner is None and row.action.created_at < grace_edge)
                or (row.lease_expires_at is not None and row.lease_expires_at < now))
        ]
        return [a.id for a in sorted(found, key=lambda a: a.created_at)][:limit]

    def start_step(self, action_id: str, attempt: int, name: StepName, now: datetime) -> int:
        step_id = next(self._step_ids)
        self._state.actions[action_id].steps[step_id] = (
            attempt, Step(name=name, state=StepState.RUNNING, started_at=now))
        self._append(action_id, now, [
            (STEP, attempt, {"name": name.value, "state": StepState.RUNNING.value})])
        return step_id

    def add_step(self, action_id: str, attempt: int, name: StepName, state: StepState,
                 now: datetime, message: str | None) -> None:
        step = Step(name=name, state=state, started_at=now, finished_at=now, message=message)
        self._state.actions[action_id].steps[next(self._step_ids)] = (attempt, step)
        self._append(action_id, now, [(STEP, attempt, _step_ended(step))])

    def end_step(self, step_id: int, state: StepState, now: datetime, message: str | None
                 ) -> None:
        for action_id, row in self._state.actions.items():
            if step_id in row.steps:
                attempt, step = row.steps[step_id]
                step.state, step.finished_at, step.message = state, now, message
                self._append(action_id, now, [(STEP, attempt, _step_ended(step))])

    def add_tasks(self, action_id: str, attempt: int, results: list[TaskResult],
                  now: datetime) -> None:
        self._state.actions[action_id].tasks.extend((attempt, r) for r in results)
        self._append(action_id, now, [
            (TASK, attempt, {"host": r.host, "task": r.task, "role": r.role, "play": r.play,
                             "status": r.status, "message": r.message or None,
                             "duration": r.duration})
            for r in results])

    def append_event(self, action_id: str, type: ActionEventType, data: dict,
                     now: datetime, attempt: int | None = None) -> int | None:
        return self._append(action_id, now, [(type, attempt, data)])

    def events(self, action_id: str, after: int, limit: int) -> list[ActionEvent]:
        row = self._state.actions.get(action_id)
        if row is None:
            return []
        return [e for e in row.events if e.seq > after][:limit]

    def _append(self, action_id: str, now: datetime, events) -> int | None:
        row = self._state.actions.get(action_id)
        if row is None or not events:
            return None
        for kind, attempt, data in events:
            row.action.last_event += 1
            row.events.append(ActionEvent(seq=row.action.last_event, type=kind, at=now,
                                          attempt=attempt, data=data))
        return row.action.last_event


def _step_ended(step: Step) -> dict:
    duration = (None if step.started_at is None
                else round((step.finished_at - step.started_at).total_seconds(), 3))
    return {"name": step.name.value, "state": step.state.value, "message": step.message,
            "duration": duration}


STATE, STEP, TASK = ActionEventType.STATE, ActionEventType.STEP, ActionEventType.TASK


class InMemoryHostKeyRepository:
    def __init__(self, state: _State):
        self._state = state

    def pinned(self, server_ids: Collection[str]) -> list[PinnedHostKey]:
        wanted = set(server_ids)
        return [pin for key, pin in sorted(self._state.host_keys.items()) if key[0] in wanted]

    def pin(self, server_id: str, host_name: str, keys: Collection[HostKey], now: datetime
            ) -> None:
        for key in keys:
            if (server_id, key.key_type) in self._state.host_keys:
                raise KeyError(f"server {server_id} has a {key.key_type} key pinned")
            self._state.host_keys[(server_id, key.key_type)] = PinnedHostKey(
                server_id=server_id, host_name=host_name, key=key, pinned_at=now)

    def forget(self, server_ids: Collection[str]) -> int:
        doomed = [key for key in self._state.host_keys if key[0] in set(server_ids)]
        for key in doomed:
            del self._state.host_keys[key]
        return len(doomed)


class InMemoryUnitOfWork:
    instances: InMemoryInstanceRepository
    actions: InMemoryActionRepository
    host_keys: InMemoryHostKeyRepository

    def __init__(self, database: InMemoryDatabase, readonly: bool = False):
        self._database = database
        self.readonly = readonly

    def __enter__(self) -> InMemoryUnitOfWork:
        self._database.lock.acquire()
        self._committed = copy.deepcopy(self._database.state)
        state = self._database.state
        self.instances = InMemoryInstanceRepository(state)
        self.actions = InMemoryActionRepository(state, self._database.step_ids)
        self.host_keys = InMemoryHostKeyRepository(state)
        return self

    def __exit__(self, *exc) -> None:
        try:
            # Roll back: put back what was there at the last commit, in place, so the
            # repositories of every unit keep seeing the one state.
            vars(self._database.state).update(vars(self._committed))
        finally:
            self._database.lock.release()

    def commit(self) -> None:
        self._committed = copy.deepcopy(self._database.state)


class InMemoryUnitOfWorkFactory:
    reads_never_wait: bool = False  # every unit holds the database's one lock

    def __init__(self):
        self.database = InMemoryDatabase()

    def __call__(self, readonly: bool = False) -> InMemoryUnitOfWork:
        return InMemoryUnitOfWork(self.database, readonly=readonly)


class RecordingMetrics:
    """The metrics port as a list of the calls it got: (method name, *arguments), the
    seconds left out (no test may assert a duration)."""

    def __init__(self):
        self.calls: list[tuple] = []
        self._lock = threading.Lock()

    def _record(self, *call) -> None:
        with self._lock:
            self.calls.append(call)

    def action_started(self, kind: str) -> None:
        self._record("action_started", kind)

    def action_ended(self, kind: str, outcome: str | None, seconds: float) -> None:
        assert seconds >= 0
        self._record("action_ended", kind, outcome)

    def action_ended_unclaimed(self, kind: str, outcome: str) -> None:
        self._record("action_ended_unclaimed", kind, outcome)

    def step_finished(self, step: str, state: str, seconds: float) -> None:
        assert seconds >= 0
        self._record("step_finished", step, state)

    def actions_resumed(self, count: int) -> None:
        self._record("actions_resumed", count)

    def dispatch_failed(self) -> None:
        self._record("dispatch_failed")

    def identity_cache_lookup(self, hit: bool) -> None:
        self._record("identity_cache_lookup", hit)

    def request_served(self, method: str, route: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self._record("request_served", method, route, status)
