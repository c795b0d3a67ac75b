"""What a worker does with an accepted action: power, SSH, playbook, power.

The same ``Orchestrator.run(action_id)`` runs under the local pool and under Celery. It
takes a lease on the action first, so two workers never run one action at once, and it
is idempotent, so a resumed or redelivered action converges instead of doubling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from api.domain.clock import utcnow
from api.domain.errors import ActionCancelled, ComputeError, PlaybookFailed
from api.domain.model import (
    ACTION_RULES,
    ActionKind,
    ActionState,
    Host,
    Instance,
    InstanceStatus,
    StepName,
    StepState,
    TaskResult,
)
from api.domain.names import host_aliases
from api.domain.ports import (
    ActionClaim,
    ComputeFactory,
    PlaybookRun,
    PlaybookRunnerPort,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)


class Cancellation(threading.Event):
    """Set to stop an action; ``reason`` says why (``shutdown`` hands it back unfinished)."""

    reason: str | None = None

    def cancel(self, reason: str) -> None:
        self.reason = reason
        self.set()


class StepFailed(Exception):
    def __init__(self, step: StepName, message: str):
        super().__init__(message)
        self.step = step
        self.message = message


@dataclass
class OrchestratorConfig:
    worker_id: str
    power_timeout: float = 600.0
    ssh_timeout: float = 300.0
    playbook_timeout: float = 1800.0
    lease_seconds: float = 30.0
    max_attempts: int = 3
    extravars: dict = field(default_factory=dict)


@dataclass
class OrchestratorDeps:
    uow_factory: UnitOfWorkFactory
    compute_factory: ComputeFactory
    runner: PlaybookRunnerPort
    render_inventory: Callable[[Instance], str]
    decrypt_token: Callable[[str], str]
    # Waits until every host answers SSH; None when the hosts are local (demo).
    wait_for_ssh: Callable[[list[Host], float, threading.Event], None] | None


class Orchestrator:
    def __init__(self, deps: OrchestratorDeps, config: OrchestratorConfig):
        self.deps = deps
        self.config = config

    # -- entry point ---------------------------------------------------------------------

    def run(self, action_id: str, cancel: Cancellation | None = None) -> ActionState | None:
        """Run the action if this worker can claim it; return its final state, or None when
        another worker holds it, it already ended, or it was handed back on shutdown."""
        cancel = cancel or Cancellation()
        with self.deps.uow_factory() as uow:
            claim = uow.actions.claim(action_id, self.config.worker_id, utcnow(),
                                      self.config.lease_seconds)
            uow.commit()
        if claim is None:
            log.debug("action %s: not claimable (finished or held by another worker)",
                      action_id)
            return None
        log.info("action %s: %s, attempt %d, on worker %s", action_id, claim.kind,
                 claim.attempt, self.config.worker_id)
        heartbeat = _LeaseHeartbeat(self, action_id, cancel)
        heartbeat.start()
        try:
            return self._run_claimed(claim, cancel)
        finally:
            heartbeat.stop()

    def _run_claimed(self, claim: ActionClaim, cancel: Cancellation) -> ActionState | None:
        kind = ActionKind(claim.kind)
        if claim.attempt > self.config.max_attempts:
            return self._finish(claim, kind, f"{kind.value} was interrupted "
                                f"{claim.attempt - 1} times (worker restarts or crashes); "
                                "gave up")
        try:
            with self.deps.uow_factory(readonly=True) as uow:
                instance = uow.instances.get(claim.instance_id)
            if claim.encrypted_token is None or claim.compute_url is None:
                raise StepFailed(StepName.POWER_ON if kind is ActionKind.START
                                 else StepName.POWER_OFF,
                                 "the action carries no credentials for the compute service")
            token = self.deps.decrypt_token(claim.encrypted_token)
            compute = self.deps.compute_factory(claim.compute_url, token)
            if kind is ActionKind.START:
                self._start(claim, instance, compute, cancel)
            else:
                self._stop(claim, instance, compute, cancel)
        except StepFailed as exc:
            if cancel.reason == "shutdown":
                return self._hand_back(claim)
            return self._finish(claim, kind, f"{kind.value} failed at step {exc.step.value}: "
                                f"{exc.message}")
        except Exception as exc:  # a bug or an adapter surprise must still end the action
            if cancel.reason == "shutdown":
                return self._hand_back(claim)
            log.exception("action %s: unexpected error", claim.action_id)
            return self._finish(claim, kind, f"{kind.value} failed: internal error: {exc}")
        return self._finish(claim, kind, None)

    # -- the two flows -------------------------------------------------------------------

    def _start(self, claim, instance: Instance, compute, cancel: Cancellation) -> None:
        with self._step(claim, StepName.POWER_ON, cancel):
            self._power_all(instance.hosts, compute.ensure_active, "ACTIVE")
        if self.deps.wait_for_ssh is None:
            self._skip_step(claim, StepName.WAIT_SSH, "hosts are local (ansible_connection=local)")
        else:
            with self._step(claim, StepName.WAIT_SSH, cancel):
                self.deps.wait_for_ssh(list(instance.hosts), self.config.ssh_timeout, cancel)
        with self._step(claim, StepName.PLAYBOOK, cancel) as step:
            step.message = self._playbook(claim, instance, "lambda-start.yml", None, cancel)

    def _stop(self, claim, instance: Instance, compute, cancel: Cancellation) -> None:
        with self._step(claim, StepName.PLAYBOOK, cancel) as step:
            statuses = self._statuses(instance.hosts, compute)
            running = [h for h in instance.hosts if statuses[h.server_id] == "ACTIVE"]
            if not running:
                step.skip("every VM is already off")
            else:
                limit = None
                if len(running) < len(instance.hosts):
                    # The inventory's own aliases: a host's name may not be one.
                    aliases = host_aliases(h.name for h in instance.hosts)
                    limit = ",".join(a for h, a in zip(instance.hosts, aliases, strict=True)
                                     if h in running)
                    off = [a for h, a in zip(instance.hosts, aliases, strict=True)
                           if h not in running]
                step.message = self._playbook(claim, instance, "lambda-stop.yml", limit, cancel)
                if limit:
                    step.message += f"; skipped hosts already off: {', '.join(off)}"
        with self._step(claim, StepName.POWER_OFF, cancel):
            self._power_all(instance.hosts, compute.ensure_stopped, "STOPPED")

    # -- pieces --------------------------------------------------------------------------

    def _power_all(self, hosts, ensure, target: str) -> None:
        """Every VM at once: a start costs the slowest VM, not the sum of them."""
        if not hosts:
            return
        with ThreadPoolExecutor(max_workers=min(len(hosts), 32),
                                thread_name_prefix="power") as pool:
            futures = [(h, pool.submit(ensure, h.server_id, self.config.power_timeout))
                       for h in hosts]
        errors = []
        aliases = host_aliases(h.name for h in hosts)
        for (host, future), alias in zip(futures, aliases, strict=True):
            exc = future.exception()
            if exc is not None:
                errors.append(f"host {alias} (server {host.server_id}): {exc}")
        if errors:
            raise ComputeError("; ".join(errors))

    def _statuses(self, hosts, compute) -> dict[str, str]:
        if not hosts:
            return {}
        with ThreadPoolExecutor(max_workers=min(len(hosts), 32),
                                thread_name_prefix="status") as pool:
            servers = list(pool.map(lambda h: compute.get_server(h.server_id), hosts))
        return {h.server_id: s.status for h, s in zip(hosts, servers, strict=True)}

    def _playbook(self, claim, instance: Instance, playbook: str, limit: str | None,
                  cancel: Cancellation) -> str:
        recorder = _TaskRecorder(self.deps.uow_factory, claim.action_id, claim.attempt)
        extravars = dict(self.config.extravars)
        extravars.update(lambda_action_id=claim.action_id)
        run = PlaybookRun(playbook=playbook, inventory=self.deps.render_inventory(instance),
                          ident=f"{claim.action_id}-{claim.attempt}", extravars=extravars,
                          limit=limit, timeout=self.config.playbook_timeout,
                          group=claim.action_id)
        try:
            result = self.deps.runner.run(run, on_task=recorder.add, cancel=cancel)
        finally:
            recorder.flush()
        if result.ok:
            return f"{playbook}: {len(result.tasks)} task results, rc {result.rc}"
        if result.status == "timeout":
            raise PlaybookFailed(
                f"{playbook} did not finish within {self.config.playbook_timeout:.0f}s and "
                f"was killed{_where(result.failure)}")
        if result.status == "cancelled":
            raise ActionCancelled(f"{playbook} was cancelled ({cancel.reason or 'unknown'})")
        failure = result.failure
        if failure is None:
            raise PlaybookFailed(f"{playbook} failed with rc {result.rc}")
        verb = "was unreachable" if failure.status == "unreachable" else "failed"
        raise PlaybookFailed(f"host {failure.host} {verb} at task '{failure.task}' of "
                              f"{playbook}: {failure.message or 'no message'}")

    def _step(self, claim, name: StepName, cancel: Cancellation) -> _StepContext:
        return _StepContext(self, claim, name, cancel)

    def _skip_step(self, claim, name: StepName, message: str) -> None:
        with self.deps.uow_factory() as uow:
            uow.actions.add_step(claim.action_id, claim.attempt, name, StepState.SKIPPED,
                                 utcnow(), message)
            uow.commit()

    def _finish(self, claim: ActionClaim, kind: ActionKind, error: str | None
                ) -> ActionState | None:
        rule = ACTION_RULES[kind]
        state = ActionState.FAILED if error else ActionState.SUCCEEDED
        with self.deps.uow_factory() as uow:
            if not uow.actions.finish(claim.action_id, self.config.worker_id, state, error,
                                      utcnow()):
                log.warning("action %s: lease lost before it could be finished",
                            claim.action_id)
                return None
            uow.instances.compare_and_set_status(
                claim.instance_id, None, InstanceStatus.FAILED if error else rule.target,
                failure_message=error)
            uow.commit()
        if error:
            log.warning("action %s: failed: %s", claim.action_id, error)
        else:
            log.info("action %s: succeeded, instance %s is %s", claim.action_id,
                     claim.instance_id, rule.target.name)
        return state

    def _hand_back(self, claim: ActionClaim) -> None:
        with self.deps.uow_factory() as uow:
            uow.actions.release(claim.action_id, self.config.worker_id)
            uow.commit()
        log.info("action %s: handed back unfinished on shutdown", claim.action_id)
        return None

    def renew_lease(self, action_id: str) -> bool:
        with self.deps.uow_factory() as uow:
            ok = uow.actions.renew(action_id, self.config.worker_id, utcnow(),
                                   self.config.lease_seconds)
            uow.commit()
        return ok


def _where(task: TaskResult | None) -> str:
    return f" (last task '{task.task}' on host {task.host})" if task else ""


class _StepContext:
    """Records one step's start, end and outcome; turns errors into ``StepFailed``."""

    def __init__(self, orchestrator: Orchestrator, claim, name: StepName,
                 cancel: Cancellation):
        self.orchestrator = orchestrator
        self.claim = claim
        self.name = name
        self.cancel = cancel
        self.message: str | None = None
        self.state = StepState.SUCCEEDED

    def skip(self, message: str) -> None:
        self.state = StepState.SKIPPED
        self.message = message

    def __enter__(self) -> _StepContext:
        if self.cancel.is_set():
            raise StepFailed(self.name, f"cancelled ({self.cancel.reason})")
        with self.orchestrator.deps.uow_factory() as uow:
            self.step_id = uow.actions.start_step(self.claim.action_id, self.claim.attempt,
                                                  self.name, utcnow())
            uow.commit()
        return self

    def __exit__(self, exc_type, exc, _tb) -> bool:
        if exc is not None:
            self.state = StepState.FAILED
            self.message = str(exc) or exc_type.__name__
            if not isinstance(exc, (ComputeError, PlaybookFailed, ActionCancelled, StepFailed,
                                    TimeoutError, OSError)):
                log.exception("action %s: step %s raised", self.claim.action_id,
                              self.name.value)
        with self.orchestrator.deps.uow_factory() as uow:
            uow.actions.end_step(self.step_id, self.state, utcnow(), self.message)
            uow.commit()
        if exc is not None and not isinstance(exc, StepFailed):
            raise StepFailed(self.name, self.message) from exc
        return False


class _TaskRecorder:
    """Stores the playbook's task results as they come, a few at a time."""

    def __init__(self, uow_factory: UnitOfWorkFactory, action_id: str, attempt: int,
                 batch: int = 10):
        self.uow_factory = uow_factory
        self.action_id = action_id
        self.attempt = attempt
        self.batch = batch
        self.pending: list[TaskResult] = []
        self.lock = threading.Lock()

    def add(self, result: TaskResult) -> None:
        with self.lock:
            self.pending.append(result)
            if len(self.pending) < self.batch and result.status not in ("failed", "unreachable"):
                return
        self.flush()

    def flush(self) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
        if pending:
            with self.uow_factory() as uow:
                uow.actions.add_tasks(self.action_id, self.attempt, pending)
                uow.commit()


class _LeaseHeartbeat:
    """Renews the lease while the action runs; a lost lease cancels the action."""

    def __init__(self, orchestrator: Orchestrator, action_id: str, cancel: Cancellation):
        self.orchestrator = orchestrator
        self.action_id = action_id
        self.cancel = cancel
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"lease-{action_id[:8]}",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        interval = max(self.orchestrator.config.lease_seconds / 3, 0.2)
        while not self.done.wait(interval):
            try:
                if not self.orchestrator.renew_lease(self.action_id):
                    if not self.done.is_set():
                        log.warning("action %s: lease lost; stopping", self.action_id)
                        self.cancel.cancel("lease lost")
                    return
            except Exception:  # the database may blip; the lease outlives a few misses
                log.exception("action %s: lease renewal failed", self.action_id)
