"""The action repository: actions, their leases, steps and task results."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from api.adapters.db.tables import actions, steps, tasks
from api.domain.model import (
    Action,
    ActionKind,
    ActionState,
    Step,
    StepName,
    StepState,
    TaskResult,
)
from api.domain.ports import ActionClaim

UNFINISHED = (ActionState.ACCEPTED.value, ActionState.RUNNING.value)
TASK_MESSAGE_LIMIT = 2000  # characters of a task's message kept
_INSERT_ACTION = insert(actions)  # built once: the accept path's insert (see instances.py)


class SqlActionRepository:
    def __init__(self, conn: Connection):
        self._conn = conn

    def add(self, action: Action, compute_url: str | None, encrypted_token: str | None) -> None:
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
        })

    def get(
        self, action_id: str, instance_id: str | None = None, owner: str | None = None
    ) -> Action | None:
        """The action with its steps and task results, if it matches the filters given."""
        query = select(actions).where(actions.c.id == action_id)
        if instance_id is not None:
            query = query.where(actions.c.instance_id == instance_id)
        if owner is not None:
            query = query.where(actions.c.owner == owner)
        row = self._conn.execute(query).mappings().first()
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
        # Steps an earlier attempt left running were cut off (its worker stopped or died).
        self._conn.execute(
            update(steps)
            .where(steps.c.action_id == action_id, steps.c.state == StepState.RUNNING.value)
            .values(state=StepState.FAILED.value, finished_at=now,
                    message=f"interrupted; resumed as attempt {row['attempts']}")
        )
        return ActionClaim(
            action_id=row["id"],
            instance_id=row["instance_id"],
            kind=row["kind"],
            attempt=row["attempts"],
            compute_url=row["compute_url"],
            encrypted_token=row["encrypted_token"],
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

    def release(self, action_id: str, worker: str) -> None:
        """Give the lease back without finishing, so another worker resumes at once; the
        attempt the claim counted is given back too (a hand-back is not a failure)."""
        self._conn.execute(
            update(actions)
            .where(actions.c.id == action_id, actions.c.lease_owner == worker,
                   actions.c.state.in_(UNFINISHED))
            .values(lease_owner=None, lease_expires_at=None,
                    attempts=actions.c.attempts - 1)  # a holder's claim counted one
        )

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
        result = self._conn.execute(
            query.values(
                state=state.value,
                error=error,
                finished_at=now,
                encrypted_token=None,
                lease_owner=None,
                lease_expires_at=None,
            )
        )
        return result.rowcount == 1

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

    def end_step(self, step_id: int, state: StepState, now: datetime, message: str | None) -> None:
        self._conn.execute(
            update(steps)
            .where(steps.c.id == step_id)
            .values(state=state.value, finished_at=now, message=message)
        )

    def add_tasks(self, action_id: str, attempt: int, results: list[TaskResult]) -> None:
        if not results:
            return
        self._conn.execute(
            insert(tasks),
            [
                {
                    "action_id": action_id,
                    "attempt": attempt,
                    "host": r.host,
                    "task": r.task,
                    "role": r.role,
                    "play": r.play,
                    "status": r.status,
                    "message": (r.message or None) and r.message[:TASK_MESSAGE_LIMIT],
                    "duration": r.duration,
                }
                for r in results
            ],
        )


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
        steps=steps or [],
        tasks=tasks or [],
    )
