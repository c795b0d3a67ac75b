"""Domain objects as the JSON the API returns."""

from __future__ import annotations

from api.domain.checks import service_checks
from api.domain.clock import isoformat
from api.domain.model import Action, ActionEvent, Instance


def instance_path(instance_id: str) -> str:
    return f"/api/lambda-instances/{instance_id}/"


def action_path(instance_id: str, action_id: str) -> str:
    return f"/api/lambda-instances/{instance_id}/actions/{action_id}"


def action_events_path(instance_id: str, action_id: str) -> str:
    return f"{action_path(instance_id, action_id)}/events"


def instance_summary(instance: Instance) -> dict:
    return {"id": instance.id, "name": instance.name, "status": instance.status.as_dict(),
            "href": instance_path(instance.id)}


def instance_info(instance: Instance) -> dict:
    master = instance.master
    return {
        "services": list(instance.services),
        "master_name": master.name if master else None,
        "slaves": len(instance.slaves),
        "hosts": [{"name": h.name, "role": h.role.value, "ip": h.ip, "server_id": h.server_id}
                  for h in instance.hosts],
        "left_out_hosts": list(instance.left_out_hosts),
        "failure_message": instance.failure_message,
        "created_at": isoformat(instance.created_at),
        "updated_at": isoformat(instance.updated_at),
    }


def instance_details(instance: Instance, view: str | None) -> dict:
    item = {"id": instance.id, "name": instance.name}
    if view in (None, "status"):
        item["status"] = instance.status.as_dict()
        if instance.failure_message:
            item["status"]["failure_message"] = instance.failure_message
    if view in (None, "info"):
        item["info"] = instance_info(instance)
    return item


def action_summary(action: Action) -> dict:
    return {"id": action.id, "action": action.kind.value, "state": action.state.value,
            "excluded_hosts": list(action.excluded_hosts),
            "href": action_path(action.instance_id, action.id)}


def action_cancel(action: Action) -> dict:
    """An action as a cancel request leaves it: its state, and who asked to cancel it, when."""
    return {
        **action_summary(action),
        "cancel_requested_by": action.cancel_requested_by,
        "cancel_requested_at": isoformat(action.cancel_requested_at),
    }


def action_history_item(action: Action) -> dict:
    """One action of an instance's history: what was asked, by whom, when, and how it ended."""
    return {
        **action_cancel(action),
        "requested_by": action.owner,
        "created_at": isoformat(action.created_at),
        "started_at": isoformat(action.started_at),
        "finished_at": isoformat(action.finished_at),
        "attempts": action.attempts,
        "error": action.error,
    }


def action_details(action: Action, instance: Instance) -> dict:
    hosts: dict[str, dict] = {}
    for task in action.tasks:
        counts = hosts.setdefault(task.host, {"ok": 0, "changed": 0, "failed": 0,
                                              "unreachable": 0, "skipped": 0})
        counts[task.status] = counts.get(task.status, 0) + 1
    return {
        **action_cancel(action),
        "requested_by": action.owner,
        "instance": {"id": instance.id, "status": instance.status.as_dict()},
        "created_at": isoformat(action.created_at),
        "started_at": isoformat(action.started_at),
        "finished_at": isoformat(action.finished_at),
        "attempts": action.attempts,
        "error": action.error,
        # The stream of what comes after this read: Last-Event-ID: last_id.
        "events": {"last_id": action.last_event,
                   "href": action_events_path(action.instance_id, action.id)},
        "steps": [{"name": s.name.value, "state": s.state.value,
                   "started_at": isoformat(s.started_at),
                   "finished_at": isoformat(s.finished_at),
                   "duration": _duration(s.started_at, s.finished_at),
                   "message": s.message} for s in action.steps],
        # The service checks of a start (lambda-check.yml), read from their task results.
        "checks": service_checks(action.tasks),
        "playbook": {
            "hosts": hosts,
            "tasks": [{"host": t.host, "task": t.task, "role": t.role, "play": t.play,
                       "status": t.status, "duration": t.duration, "message": t.message}
                      for t in action.tasks],
        },
    }


def action_event(event: ActionEvent) -> dict:
    """One event as its stream's ``data:`` line carries it."""
    return {"seq": event.seq, "type": event.type.value, "at": isoformat(event.at),
            "attempt": event.attempt, **event.data}


def _duration(start, end) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)
