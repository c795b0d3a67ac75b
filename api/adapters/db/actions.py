"""The action repository: actions, their leases, steps, task results and events.

Every write that changes what a client can see of an action appends the event that tells
it, in the same transaction: nothing can change an action without its event, and no
event is seen before its change.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from api.adapters.db.tables import action_events, actions, steps, tasks
from api.domain.model import (
    Action,
    ActionEvent,
    ActionEventType,
    ActionKind,
    ActionState,
    Step,
    StepName,
    StepState,
    TaskResult,
)
from api.domain.ports import ActionClaim

# accepted, running; every other state (succeeded, failed, cancelled) is final.
UNFINISHED = tuple(state.value for state in ActionState if not state.finished)
TASK_MESSAGE_LIMIT = 2000  # characters of a task's message kept
_INSERT_ACTION = insert(actions)  # built once: the accept path's inserts (see instances.py)
_INSERT_EVENT = insert(action_events)
STATE, STEP, TASK = ActionEventType.STATE, ActionEventType.STEP, ActionEventType.TASK


class SqlActionRepository:
    def __init__(self, conn: Connection):
        self._conn = conn

    def add(self, action: Action, compute_url: str | None, encrypted_token: str | None) -> None:
        """Insert the action with its first event, "accepted" (seq 1: a new row is nobody
        else's yet, so it takes no UPDATE to number it)."""
        self._conn.execute(_INSERT_ACTION, {
            "id": action.id,
            "instance_id": action.instance_id,
            "owner": action.owner,
            "kind": action.kind.value,
            "state": action.state.value,
            "created_at": action.created_at,
            "attempts": 0,
            "compute_url": compute_url,
            "encrypted_token": encrypted_token,
            "last_event": 1,
            "excluded_hosts": list(action.excluded_hosts),
        })
        self._conn.execute(_INSERT_EVENT, {
            "action_id": action.id, "seq": 1, "at": action.created_at, "type": STATE.value,
            "attempt": None, "data": {"state": action.state.value, "kind": action.kind.value,
                                      "requested_by": action.owner},
        })

    def get(
        self, action_id: str, instance_id: str | None = None, owner: str | None = None
    ) -> Action | None:
        """The action with its steps and task results, if it matches the filters given.

        In a read-only unit the three reads are of one snapshot (see ``SqlUnitOfWork``):
        ``last_event`` is the event that the steps and tasks read here have seen last.
        """
        row = self._row(action_id, instance_id, owner)
        if row is None:
            return None
        step_rows = self._conn.execute(
            select(steps).where(steps.c.action_id == action_id).order_by(steps.c.id)
        ).mappings()
        task_rows = self._conn.execute(
            select(tasks).where(tasks.c.action_id == action_id).order_by(tasks.c.id)
        ).mappings()
        return _action(
            row,
            steps=[
                Step(name=StepName(s["name"]), state=StepState(s["state"]),
                     started_at=s["started_at"], finished_at=s["finished_at"],
                     message=s["message"])
                for s in step_rows
            ],
            tasks=[
                TaskResult(host=t["host"], task=t["task"], status=t["status"], role=t["role"],
                           play=t["play"], message=t["message"], duration=t["duration"])
                for t in task_rows
            ],
        )

    def summary(self, action_id: str, instance_id: str | None = None,
                owner: str | None = None) -> Action | None:
        """The action without its steps and task results, if it matches the filters."""
        row = self._row(action_id, instance_id, owner)
        return None if row is None else _action(row)

    def _row(self, action_id: str, instance_id: str | None, owner: str | None):
        query = select(actions).where(actions.c.id == action_id)
        if instance_id is not None:
            query = query.where(actions.c.instance_id == instance_id)
        if owner is not None:
            query = query.where(actions.c.owner == owner)
        return self._conn.execute(query).mappings().first()

    def history(self, instance_id: str, limit: int, offset: int) -> list[Action]:
        """The instance's actions, newest first, without their steps and task results."""
        rows = self._conn.execute(
            select(actions)
            .where(actions.c.instance_id == instance_id)
            .order_by(actions.c.created_at.desc(), actions.c.id.desc())
            .limit(limit).offset(offset)
        ).mappings()
        return [_action(row) for row in rows]

    def count(self, instance_id: str) -> int:
        return self._conn.execute(
            select(func.count()).select_from(actions)
            .where(actions.c.instance_id == instance_id)
        ).scalar_one()

    # -- leases ------------------------------------------------------------------------

    def claim(
        self, action_id: str, worker: str, now: datetime, lease_seconds: float
    ) -> ActionClaim | None:
        """Take the lease on an unfinished action nobody holds (or whose holder died).

        One conditional UPDATE: of workers racing for one action, exactly one gets it.
        """
        result = self._conn.execute(
            update(actions)
            .where(
                actions.c.id == action_id,
                actions.c.state.in_(UNFINISHED),
                or_(actions.c.lease_owner.is_(None), actions.c.lease_expires_at < now),
            )
            .values(
                lease_owner=worker,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                attempts=actions.c.attempts + 1,
                state=ActionState.RUNNING.value,
                started_at=func.coalesce(actions.c.started_at, now),
            )
        )
        if result.rowcount != 1:
            return None
        row = self._conn.execute(select(actions).where(actions.c.id == action_id)).mappings().one()
        attempt = row["attempts"]
        # Steps an earlier attempt left running were cut off (its worker stopped or died).
        message = f"interrupted; resumed as attempt {attempt}"
        cut_off = self._conn.execute(
            update(steps)
            .where(steps.c.action_id == action_id, steps.c.state == StepState.RUNNING.value)
            .values(state=StepState.FAILED.value, finished_at=now, message=message)
            .returning(steps.c.id, steps.c.attempt, steps.c.name, steps.c.started_at)
        ).all()
        self._append(action_id, now, [
            *[(STEP, s.attempt, _step_ended(s.name, StepState.FAILED, message, s.started_at,
                                            now, interrupted=True))
              for s in sorted(cut_off)],
            (STATE, attempt, {"state": ActionState.RUNNING.value}),
        ])
        return ActionClaim(
            action_id=row["id"],
            instance_id=row["instance_id"],
            kind=row["kind"],
            attempt=row["attempts"],
            compute_url=row["compute_url"],
            encrypted_token=row["encrypted_token"],
            cancel_requested_by=row["cancel_requested_by"],
            excluded_hosts=tuple(row["excluded_hosts"] or ()),
        )

    def renew(self, action_id: str, worker: str, now: datetime, lease_seconds: float) -> bool:
        """Extend the lease ``worker`` holds; False if it holds it no longer."""
        result = self._conn.execute(
            update(actions)
            .where(
                actions.c.id == action_id,
                actions.c.lease_owner == worker,
                actions.c.state.in_(UNFINISHED),
            )
            .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        )
        return result.rowcount == 1

    def release(self, action_id: str, worker: str, now: datetime) -> None:
        """Give the lease back without finishing, so another worker resumes at once; the
        attempt the claim counted is given back too (a hand-back is not a failure)."""
        released = self._conn.execute(
            update(actions)
            .where(actions.c.id == action_id, actions.c.lease_owner == worker,
                   actions.c.state.in_(UNFINISHED))
            .values(lease_owner=None, lease_expires_at=None,
                    attempts=actions.c.attempts - 1)  # a holder's claim counted one
            .returning(actions.c.attempts)
        ).first()
        if released is not None:
            # The row stays "running" (nothing is undone), so its event says so: the next
            # claim runs the same attempt number again and says "running" once more.
            self._append(action_id, now, [(STATE, released.attempts + 1, {
                "state": ActionState.RUNNING.value, "handed_back": True,
                "message": "handed back unfinished: its worker is stopping; the next "
                           "worker resumes it as the same attempt"})])

    def finish(
        self,
        action_id: str,
        worker: str | None,
        state: ActionState,
        error: str | None,
        now: datetime,
    ) -> bool:
        """End the action (under ``worker``'s lease unless None); erase the token it carried."""
        query = update(actions).where(actions.c.id == action_id, actions.c.state.in_(UNFINISHED))
        if worker is not None:
            query = query.where(actions.c.lease_owner == worker)
        return self._end(action_id, query, state, error, now)

    # -- cancel --------------------------------------------------------------------------

    def request_cancel(self, action_id: str, by: str, now: datetime) -> bool:
        """Record the request on the unfinished action, with its event; a first request's
        author and time stay (a repeated one changes nothing). False if it has ended."""
        first = self._conn.execute(
            update(actions)
            .where(actions.c.id == action_id, actions.c.state.in_(UNFINISHED),
                   actions.c.cancel_requested_at.is_(None))
            .values(cancel_requested_by=by, cancel_requested_at=now)
            .returning(actions.c.state, actions.c.attempts)
        ).first()
        if first is not None:
            self._append(action_id, now, [(STATE, first.attempts or None, {
                "state": first.state, "cancel_requested_by": by})])
            return True
        state = self._conn.execute(
            select(actions.c.state).where(actions.c.id == action_id)).scalar()
        return state in UNFINISHED

    def cancel_requested(self, action_id: str) -> str | None:
        """Who asked to cancel the action (None: nobody); the worker's poll, by primary key."""
        return self._conn.execute(
            select(actions.c.cancel_requested_by).where(actions.c.id == action_id)
        ).scalar()

    def finish_unclaimed(self, action_id: str, state: ActionState, error: str | None,
                         now: datetime) -> bool:
        """End the action if it is unfinished and no worker holds it (never claimed, or
        handed back), with its final state event: one conditional UPDATE, so a worker's
        claim and this never both win."""
        return self._end(action_id, update(actions).where(
            actions.c.id == action_id, actions.c.state.in_(UNFINISHED),
            actions.c.lease_owner.is_(None)), state, error, now)

    def _end(self, action_id: str, query, state: ActionState, error: str | None,
             now: datetime) -> bool:
        """End the action if ``query`` (an UPDATE of its row) matches it: the final state,
        the token erased, no lease; with its final state event. False if it did not match."""
        finished = self._conn.execute(
            query.values(state=state.value, error=error, finished_at=now,
                         encrypted_token=None, lease_owner=None, lease_expires_at=None)
            .returning(actions.c.attempts)
        ).first()
        if finished is None:
            return False
        self._append(action_id, now, [(STATE, finished.attempts or None,
                                       {"state": state.value, "error": error})])
        return True

    def find_resumable(self, now: datetime, accepted_grace: float, limit: int = 100) -> list[str]:
        """Unfinished actions nobody holds: orphans of a crash or of a lost dispatch.

        An action accepted less than ``accepted_grace`` seconds ago is left to the
        dispatch that is on its way.
        """
        grace_edge = now - timedelta(seconds=accepted_grace)
        rows = self._conn.execute(
            select(actions.c.id)
            .where(
                actions.c.state.in_(UNFINISHED),
                or_(
                    and_(actions.c.lease_owner.is_(None), actions.c.created_at < grace_edge),
                    actions.c.lease_expires_at < now,
                ),
            )
            .order_by(actions.c.created_at)
            .limit(limit)
        )
        return [r[0] for r in rows]

    # -- steps and task results --------------------------------------------------------

    def start_step(self, action_id: str, attempt: int, name: StepName, now: datetime) -> int:
        """Record a step as running; return its id for ``end_step``."""
        result = self._conn.execute(
            insert(steps).values(action_id=action_id, attempt=attempt, name=name.value,
                                 state=StepState.RUNNING.value, started_at=now)
        )
        self._append(action_id, now, [
            (STEP, attempt, {"name": name.value, "state": StepState.RUNNING.value})])
        return result.inserted_primary_key[0]

    def add_step(
        self,
        action_id: str,
        attempt: int,
        name: StepName,
        state: StepState,
        now: datetime,
        message: str | None,
    ) -> None:
        """Record a step that started and ended at once (e.g. skipped)."""
        self._conn.execute(
            insert(steps).values(action_id=action_id, attempt=attempt, name=name.value,
                                 state=state.value, started_at=now, finished_at=now,
                                 message=message)
        )
        self._append(action_id, now, [
            (STEP, attempt, _step_ended(name.value, state, message, now, now))])

    def end_step(self, step_id: int, state: StepState, now: datetime, message: str | None) -> None:
        step = self._conn.execute(
            update(steps)
            .where(steps.c.id == step_id)
            .values(state=state.value, finished_at=now, message=message)
            .returning(steps.c.action_id, steps.c.attempt, steps.c.name, steps.c.started_at)
        ).first()
        if step is not None:
            self._append(step.action_id, now, [
                (STEP, step.attempt, _step_ended(step.name, state, message, step.started_at,
                                                 now))])

    def add_tasks(self, action_id: str, attempt: int, results: list[TaskResult],
                  now: datetime) -> None:
        if not results:
            return
        rows = [
            {
                "host": r.host,
                "task": r.task,
                "role": r.role,
                "play": r.play,
                "status": r.status,
                "message": (r.message or None) and r.message[:TASK_MESSAGE_LIMIT],
                "duration": r.duration,
            }
            for r in results
        ]
        self._conn.execute(insert(tasks),
                           [{"action_id": action_id, "attempt": attempt, **r} for r in rows])
        self._append(action_id, now, [(TASK, attempt, r) for r in rows])

    # -- events ------------------------------------------------------------------------

    def append_event(self, action_id: str, type: ActionEventType, data: dict,
                     now: datetime, attempt: int | None = None) -> int | None:
        """Append one event to the action; its seq, or None if there is no such action."""
        return self._append(action_id, now, [(type, attempt, data)])

    def events(self, action_id: str, after: int, limit: int) -> list[ActionEvent]:
        """The action's events numbered above ``after``, in order, at most ``limit``."""
        rows = self._conn.execute(
            select(action_events.c.seq, action_events.c.type, action_events.c.at,
                   action_events.c.attempt, action_events.c.data)
            .where(action_events.c.action_id == action_id, action_events.c.seq > after)
            .order_by(action_events.c.seq)
            .limit(limit)
        )
        return [ActionEvent(seq=r.seq, type=ActionEventType(r.type), at=r.at,
                            attempt=r.attempt, data=r.data) for r in rows]

    def _append(self, action_id: str, now: datetime,
                events: list[tuple[ActionEventType, int | None, dict]]) -> int | None:
        """Number ``events`` after the action's last and insert them; the last seq taken.

        The seqs are taken by raising ``actions.last_event`` in this transaction: the
        UPDATE locks the action's row until the commit (PostgreSQL; SQLite has one writer
        at a time anyway), so two appenders to one action take turns and commit in seq
        order. A reader never sees seq n+1 without n, and a client that resumes after
        seq n misses nothing. (A sequence or MAX(seq)+1 would let a later seq commit
        first, or two appenders take the same one.)
        """
        if not events:
            return None
        last = self._conn.execute(
            update(actions)
            .where(actions.c.id == action_id)
            .values(last_event=actions.c.last_event + len(events))
            .returning(actions.c.last_event)
        ).scalar_one_or_none()
        if last is None:
            return None
        first = last - len(events) + 1
        self._conn.execute(_INSERT_EVENT, [
            {"action_id": action_id, "seq": first + n, "at": now, "type": kind.value,
             "attempt": attempt, "data": data}
            for n, (kind, attempt, data) in enumerate(events)])
        return last


def _step_ended(name: str, state: StepState, message: str | None,
                started_at: datetime | None, finished_at: datetime,
                interrupted: bool = False) -> dict:
    duration = (None if started_at is None
                else round((finished_at - started_at).total_seconds(), 3))
    data = {"name": name, "state": state.value, "message": message, "duration": duration}
    if interrupted:  # closed by the next attempt's claim, not by the step's own worker
        data["interrupted"] = True
    return data


def _action(row, steps: list[Step] | None = None, tasks: list[TaskResult] | None = None
            ) -> Action:
    return Action(
        id=row["id"],
        instance_id=row["instance_id"],
        owner=row["owner"],
        kind=ActionKind(row["kind"]),
        state=ActionState(row["state"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        attempts=row["attempts"],
        last_event=row["last_event"],
        cancel_requested_by=row["cancel_requested_by"],
        cancel_requested_at=row["cancel_requested_at"],
        excluded_hosts=tuple(row["excluded_hosts"] or ()),
        steps=steps or [],
        tasks=tasks or [],
    )
