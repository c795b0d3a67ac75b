"""Use cases the HTTP layer calls: plain values in, domain objects or domain errors out."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from api.domain.clock import utcnow
from api.domain.errors import (
    ActionConflict,
    ActionNotFound,
    InstanceNotFound,
    InvalidAction,
    InvalidParameter,
)
from api.domain.model import (
    ACTION_RULES,
    Action,
    ActionEvent,
    ActionKind,
    ActionState,
    HostRole,
    Instance,
    InstanceStatus,
    cancelled_message,
    last_step_point,
)
from api.domain.names import one_line
from api.domain.ports import Identity, UnitOfWorkFactory


def parse_instance_id(raw: str) -> str:
    """The canonical form of an instance id; anything not a UUID cannot exist (404)."""
    try:
        return str(uuid.UUID(raw))
    except (ValueError, TypeError, AttributeError) as exc:
        raise InstanceNotFound(raw) from exc


def parse_action(raw) -> ActionKind:
    if isinstance(raw, str):
        try:
            return ActionKind(raw.strip().lower())
        except ValueError:
            pass
    raise InvalidAction(raw)


EXCLUDE_SHAPE = ("exclude must name hosts: host names, repeated or comma-separated (JSON: a "
                 "list of host names or a comma-separated string).")


def parse_exclude(raw, instance: Instance, kind: ActionKind) -> tuple[str, ...]:
    """The slaves a start is to leave out, named as the instance's info lists its hosts,
    in the instance's order.

    ``raw`` is what the request held: None (not given), a string of comma-separated names,
    or a list of such strings (a form's repeated field, a JSON list). Anything else, a name
    that is no host of the instance, the master, or any name with a stop is a 400
    (``InvalidParameter``). An empty value names no host.
    """
    if raw is None:
        return ()
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidParameter(EXCLUDE_SHAPE)
    wanted = {name.strip() for item in items for name in item.split(",")} - {""}
    if not wanted:
        return ()
    if kind is not ActionKind.START:
        raise InvalidParameter("exclude applies to start only.")
    hosts = {h.name: h for h in instance.hosts}
    unknown = sorted(wanted - hosts.keys())
    if unknown:
        shown = one_line(unknown[0][:80])
        raise InvalidParameter(f"exclude: '{shown}' is not a host of this lambda instance.")
    master = next((name for name in wanted if hosts[name].role is HostRole.MASTER), None)
    if master is not None:
        raise InvalidParameter(f"exclude: {one_line(master)} is the master; a lambda instance "
                               "cannot start without it (only slaves can be left out).")
    return tuple(h.name for h in instance.hosts if h.name in wanted)


def conflict_detail(kind: ActionKind, status: InstanceStatus) -> str:
    rule = ACTION_RULES[kind]
    if status is rule.already:
        return f"The specified lambda instance is already {rule.target.name.lower()}."
    return (f"Can't {kind.value} a lambda instance while lambda instance status is "
            f"{status.name}.")


@dataclass(frozen=True)
class CheckedRequest:
    """An action request that passed the contract's checks, as the instance then stood."""

    instance: Instance
    kind: ActionKind
    excluded_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class AcceptedAction:
    action: Action
    instance: Instance


def check_action(
    uow_factory: UnitOfWorkFactory,
    identity: Identity,
    raw_instance_id: str,
    raw_action,
    raw_exclude=None,
) -> CheckedRequest:
    """Check an action request in the contract's order, reading only.

    404 (not the caller's instance) comes before 400 (bad action, then bad ``exclude``)
    before 409 (state). The read-only unit never waits for the database's write lock, so
    a rejected request costs one read.

    A start is allowed from STARTED while the instance has hosts left out, to bring them
    back (``ActionRule.allows``): it may leave out again only hosts that are left out now,
    and must bring back at least one, else it is "already started".
    """
    instance_id = parse_instance_id(raw_instance_id)
    with uow_factory(readonly=True) as uow:
        instance = uow.instances.get(instance_id, owner=identity.user_id)
    if instance is None:
        raise InstanceNotFound(instance_id)
    kind = parse_action(raw_action)
    excluded = parse_exclude(raw_exclude, instance, kind)
    rule = ACTION_RULES[kind]
    if not rule.allows(instance):
        raise ActionConflict(conflict_detail(kind, instance.status))
    if instance.status is rule.already:  # a start that brings left-out hosts back
        running = [name for name in excluded if name not in instance.left_out_hosts]
        if running:
            raise ActionConflict(
                f"Can't leave out {one_line(running[0])}: it runs in the started lambda "
                "instance (stop the instance first).")
        if set(instance.left_out_hosts) <= set(excluded):
            raise ActionConflict(conflict_detail(kind, instance.status))
    return CheckedRequest(instance=instance, kind=kind, excluded_hosts=excluded)


def record_action(
    uow_factory: UnitOfWorkFactory,
    identity: Identity,
    checked: CheckedRequest,
    encrypt_token: Callable[[], str | None],
) -> AcceptedAction:
    """Record a checked request durably: the status moves with one compare-and-set from
    what the check read, so of racing requests exactly one wins (the others get the 409
    of what they lost to). ``encrypt_token`` (the caller's token, encrypted for the
    worker) is called only here, once the request has passed the checks."""
    instance, kind = checked.instance, checked.kind
    rule = ACTION_RULES[kind]
    action = Action(id=str(uuid.uuid4()), instance_id=instance.id,
                    owner=identity.user_id, kind=kind, state=ActionState.ACCEPTED,
                    created_at=utcnow(), excluded_hosts=checked.excluded_hosts)
    encrypted_token = encrypt_token()
    with uow_factory() as uow:
        if not uow.instances.compare_and_set_status(
            instance.id, {instance.status}, rule.transitional,
            failure_message=None,
        ):
            # Lost a race: someone moved the instance between our read and our write.
            current = uow.instances.get(instance.id)
            raise ActionConflict(conflict_detail(kind, current.status))
        uow.actions.add(action, compute_url=identity.compute_url,
                        encrypted_token=encrypted_token)
        uow.commit()
    return AcceptedAction(action=action, instance=instance)


def request_action(
    uow_factory: UnitOfWorkFactory,
    identity: Identity,
    raw_instance_id: str,
    raw_action,
    encrypt_token: Callable[[], str | None],
    raw_exclude=None,
) -> AcceptedAction:
    """``check_action`` then ``record_action``: the whole request in one call."""
    checked = check_action(uow_factory, identity, raw_instance_id, raw_action, raw_exclude)
    return record_action(uow_factory, identity, checked, encrypt_token)


def get_instance(uow_factory: UnitOfWorkFactory, identity: Identity,
                 raw_instance_id: str) -> Instance:
    instance_id = parse_instance_id(raw_instance_id)
    with uow_factory(readonly=True) as uow:
        instance = uow.instances.get(instance_id, owner=identity.user_id)
    if instance is None:
        raise InstanceNotFound(instance_id)
    return instance


def list_instances(uow_factory: UnitOfWorkFactory, identity: Identity, limit: int | None,
                   offset: int) -> tuple[list[Instance], int]:
    if limit is not None and limit < 0:
        raise InvalidParameter("limit must not be negative")
    if offset < 0:
        raise InvalidParameter("offset must not be negative")
    with uow_factory(readonly=True) as uow:
        return uow.instances.list(identity.user_id, limit, offset), uow.instances.count(
            identity.user_id)


HISTORY_PAGE = 20  # actions in a page of an instance's history unless asked otherwise
HISTORY_MAX_PAGE = 100


def list_actions(uow_factory: UnitOfWorkFactory, identity: Identity, raw_instance_id: str,
                 limit: int | None, offset: int) -> tuple[list[Action], int, int]:
    """A page of the caller's instance's actions, newest first: (actions, total, limit)."""
    instance = get_instance(uow_factory, identity, raw_instance_id)  # 404 before 400
    limit = HISTORY_PAGE if limit is None else limit
    if not 0 <= limit <= HISTORY_MAX_PAGE:
        raise InvalidParameter(f"limit must be between 0 and {HISTORY_MAX_PAGE}.")
    if offset < 0:
        raise InvalidParameter("offset must not be negative")
    with uow_factory(readonly=True) as uow:
        return (uow.actions.history(instance.id, limit, offset),
                uow.actions.count(instance.id), limit)


def get_action(uow_factory: UnitOfWorkFactory, identity: Identity, raw_instance_id: str,
               action_id: str) -> tuple[Instance, Action]:
    instance = get_instance(uow_factory, identity, raw_instance_id)
    with uow_factory(readonly=True) as uow:
        action = uow.actions.get(action_id, instance_id=instance.id, owner=identity.user_id)
    if action is None:
        raise ActionNotFound(action_id)
    return instance, action


EVENTS_PAGE = 100  # events in one read of an action's events: bounds what a stream holds
_EVENT_ID = re.compile(r"[0-9]{1,18}")  # a seq as a client sends it back


@dataclass(frozen=True)
class EventPage:
    events: list[ActionEvent]
    # The action has ended and no event follows this page: a stream that sent it is done.
    ended: bool


def parse_event_id(raw: int | str | None) -> int:
    """The last event a client has (0: none), as a number or as the text it sent."""
    if raw is None or raw == "":
        return 0
    if isinstance(raw, int) and raw >= 0:
        return raw
    if isinstance(raw, str) and _EVENT_ID.fullmatch(raw):
        return int(raw)
    raise InvalidParameter("The last event id (Last-Event-ID, or after) must be a "
                           "non-negative integer of at most 18 digits.")


def action_events(uow_factory: UnitOfWorkFactory, identity: Identity, raw_instance_id: str,
                  action_id: str, after: int | str | None, limit: int = EVENTS_PAGE
                  ) -> EventPage:
    """The caller's action's events after ``after``, at most ``limit``, in order.

    404s as ``get_action`` gives them, before a bad ``after`` (400). One read-only unit
    of two small reads, since a stream calls this every poll: an action is recorded only
    on its requester's own instance (``record_action``), so finding it by instance and
    owner is the instance's check too; the instance is read only to tell which 404.
    The action's row and its events are of one snapshot, so ``ended`` cannot miss an
    event committed between the two reads.
    """
    instance_id = parse_instance_id(raw_instance_id)
    with uow_factory(readonly=True) as uow:
        action = uow.actions.summary(action_id, instance_id=instance_id,
                                     owner=identity.user_id)
        if action is None:
            if uow.instances.get(instance_id, owner=identity.user_id) is None:
                raise InstanceNotFound(instance_id)
            raise ActionNotFound(action_id)
        after = parse_event_id(after)
        events = uow.actions.events(action.id, after, limit)
    newest = events[-1].seq if events else after
    return EventPage(events=events,
                     ended=action.state.finished and newest >= action.last_event)


def ended_detail(state: ActionState) -> str:
    return f"The action has already ended ({state.value})."


def cancel_action(uow_factory: UnitOfWorkFactory, identity: Identity, raw_instance_id: str,
                  action_id: str) -> Action:
    """Ask to cancel the caller's action; return the action as it then stands.

    The request is written on the action's row, which every process reads, in one
    conditional UPDATE on an unfinished action (the first request's author and time stay).
    Then:

    - no worker holds the action (accepted and not claimed yet, or handed back on a
      shutdown): it is ended here, in the same transaction, ``cancelled``, and its instance
      set FAILED (the rule in ``model.cancelled_message``). A worker's claim is a
      conditional UPDATE on the same row, so exactly one of the two wins.
    - a worker holds it: the worker polls the row every ``LAMBDA_CANCEL_POLL_INTERVAL``,
      kills what runs (the playbook's whole process tree, the power waits), starts no
      further step and ends the action ``cancelled`` itself.
    - its lease expired (its worker died or stalled): left to the sweeper, whose claim
      sees the request and ends the action without running a step. An expired lease does
      not prove its worker stopped (a stalled one renews and goes on), and a claimed
      action's end is written by whoever holds its lease, never beside it.

    An action that ends by itself before its worker sees the request ends as it would
    have. 404 as the action resource (``InstanceNotFound``, ``ActionNotFound``); once the
    action has ended, ``ActionConflict`` (409).
    """
    instance = get_instance(uow_factory, identity, raw_instance_id)
    now = utcnow()
    with uow_factory() as uow:
        action = uow.actions.get(action_id, instance_id=instance.id, owner=identity.user_id)
        if action is None:
            raise ActionNotFound(action_id)
        if action.state.finished or not uow.actions.request_cancel(
                action.id, identity.user_id, now):
            current = uow.actions.get(action.id)  # it may have ended since we read it
            raise ActionConflict(ended_detail(current.state))
        by = action.cancel_requested_by or identity.user_id
        message = cancelled_message(action.kind, by, *last_step_point(action.steps))
        if uow.actions.finish_unclaimed(action.id, ActionState.CANCELLED, message, now):
            uow.instances.compare_and_set_status(
                instance.id, {ACTION_RULES[action.kind].transitional}, InstanceStatus.FAILED,
                failure_message=message)
        action = uow.actions.get(action.id)
        uow.commit()
    return action
