"""What a worker does with an accepted action: power, SSH, playbook, power.

The same ``Orchestrator.run(action_id)`` runs under the local pool and under Celery. It
takes a lease on the action first, so two workers never run one action at once, and it
is idempotent, so a resumed or redelivered action converges instead of doubling.

The lease is renewed every quarter of its length. A worker that has not renewed it by
``lease_seconds - lease_safety`` after its last successful renewal (the database cut off,
say) cancels the action itself, "lease lost": its playbook is killed while the lease still
holds, so that no other worker can claim the action, and run a playbook on the same hosts,
before this one's is gone. ``lease_safety`` must cover the runner's kill: it sees the
cancel within a fraction of a second, gives the play its kill grace (``KILL_GRACE`` in
``api.adapters.ansible``) to stop on SIGTERM, then SIGKILLs it. It also absorbs the skew
of the workers' clocks: the renewing worker's clock writes the lease's expiry, and the
claiming worker's clock reads it.

A cancel requested by the action's owner (``services.cancel_action`` writes it on the row)
is seen by a thread beside the lease's, which reads the row every
``cancel_poll_interval``: it cancels the action ("cancel requested"), the step in progress
kills what it runs and ends ``cancelled``, no further step starts, and the action ends
``cancelled`` with its instance FAILED and a message saying who cancelled, at which step,
and what that leaves half way (``model.cancelled_message``). An action claimed with the
request already on its row (its worker died) ends so at once, running nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from api.domain.chains import chain_name
from api.domain.checks import CHECK_TASK, checks_summary
from api.domain.clock import utcnow
from api.domain.errors import ActionCancelled, ComputeError, DomainError, PlaybookFailed
from api.domain.log_context import about_action, carry
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
    cancel_point,
    cancelled_message,
    last_step_point,
)
from api.domain.names import host_aliases
from api.domain.ports import (
    NO_METRICS,
    ActionClaim,
    ComputeFactory,
    HostKeyCheck,
    Metrics,
    PlaybookResult,
    PlaybookRun,
    PlaybookRunnerPort,
    PowerOutcome,
    UnitOfWorkFactory,
)

log = logging.getLogger(__name__)

SHUTDOWN = "shutdown"  # the process is stopping: hand the action back unfinished
LEASE_LOST = "lease lost"  # another worker may own the action now: stop, write nothing
CANCELLED = "cancel requested"  # its owner asked: stop, end it cancelled
# The least time between cancelling on a lost lease and the lease's expiry: the runner's
# kill (its poll, its SIGTERM grace, SIGKILL) with room to spare.
MIN_LEASE_SAFETY = 3.0
INTERNAL_ERROR = "internal error on the worker (its log has the details under this action's id)"


class Cancellation(threading.Event):
    """Set to stop an action; ``reason`` says why (``shutdown`` hands it back unfinished).

    The first reason stays, except that a lost lease overrides any: once another worker
    may hold the action, this one must neither hand it back nor finish it."""

    reason: str | None = None

    def cancel(self, reason: str) -> None:
        if self.reason is None or reason == LEASE_LOST:
            self.reason = reason
        self.set()


class StepFailed(Exception):
    """A step that failed (``began``), or one that was not begun because of a cancel."""

    def __init__(self, step: StepName, message: str, began: bool = True):
        super().__init__(message)
        self.step = step
        self.message = message
        self.began = began


@dataclass
class OrchestratorConfig:
    worker_id: str
    power_timeout: float = 600.0
    ssh_timeout: float = 300.0
    playbook_timeout: float = 1800.0
    lease_seconds: float = 30.0
    # Seconds before the lease's expiry by which a worker that cannot renew has stopped;
    # None: a quarter of the lease, at least MIN_LEASE_SAFETY, at most half the lease.
    lease_safety: float | None = None
    max_attempts: int = 3
    cancel_poll_interval: float = 1.0  # seconds between reads of a running action's row
    extravars: dict = field(default_factory=dict)
    # After a start's playbook: lambda-check.yml. enforce: a failed check fails the start;
    # report: it is recorded and the start succeeds; off: no checks (the step is skipped).
    checks: str = "enforce"
    # A playbook -> the chain playbooks run side by side in its place (api.domain.chains);
    # a playbook not named here runs whole.
    playbook_chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def renew_interval(self) -> float:
        return max(self.lease_seconds / 4, 0.05)

    @property
    def stop_before_expiry(self) -> float:
        if self.lease_safety is not None:
            return self.lease_safety
        return min(max(self.lease_seconds / 4, MIN_LEASE_SAFETY), self.lease_seconds / 2)


@dataclass
class OrchestratorDeps:
    uow_factory: UnitOfWorkFactory
    compute_factory: ComputeFactory
    runner: PlaybookRunnerPort
    render_inventory: Callable[[Instance], str]
    decrypt_token: Callable[[str], str]
    # Waits until every host answers SSH; None when the hosts are local (demo).
    wait_for_ssh: Callable[[list[Host], float, threading.Event], None] | None
    # Checks the hosts' SSH host keys against their pins (instance id, hosts); None when
    # host key checking is off.
    check_host_keys: Callable[[str, list[Host]], HostKeyCheck] | None = None
    metrics: Metrics = NO_METRICS


class Orchestrator:
    def __init__(self, deps: OrchestratorDeps, config: OrchestratorConfig):
        self.deps = deps
        self.config = config
        if config.stop_before_expiry < MIN_LEASE_SAFETY:
            log.warning("a lease of %gs leaves %.1fs to kill a playbook once renewals fail; "
                        "%gs or more is safer", config.lease_seconds,
                        config.stop_before_expiry, 2 * MIN_LEASE_SAFETY)

    # -- entry point ---------------------------------------------------------------------

    def run(self, action_id: str, cancel: Cancellation | None = None) -> ActionState | None:
        """Run the action if this worker can claim it; return its final state, or None when
        another worker holds it, it already ended, or it was handed back on shutdown.

        Every log line of the run, in this thread and the threads it starts, names the
        action (``api.domain.log_context``)."""
        with about_action(action_id):
            return self._run(action_id, cancel or Cancellation())

    def _run(self, action_id: str, cancel: Cancellation) -> ActionState | None:
        claimed_at = time.monotonic()  # no later than the clock reading the lease counts from
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
        metrics = self.deps.metrics
        metrics.action_started(claim.kind)
        state = None
        keeper = _LeaseKeeper(self, action_id, cancel, claimed_at)
        keeper.start()
        try:
            state = self._run_claimed(claim, cancel)
            return state
        finally:
            keeper.stop()
            metrics.action_ended(claim.kind, state.value if state is not None else None,
                                 time.monotonic() - claimed_at)

    def _run_claimed(self, claim: ActionClaim, cancel: Cancellation) -> ActionState | None:
        kind = ActionKind(claim.kind)
        if claim.cancel_requested_by is not None:  # asked while no worker held it
            with self.deps.uow_factory(readonly=True) as uow:
                earlier = uow.actions.get(claim.action_id).steps
            return self._finish(claim, kind, cancelled_message(
                kind, claim.cancel_requested_by, *last_step_point(earlier)),
                ActionState.CANCELLED)
        if claim.attempt > self.config.max_attempts:
            return self._finish(claim, kind, f"{kind.value} was interrupted "
                                f"{claim.attempt - 1} times (worker restarts or crashes); "
                                "gave up")
        power_step = StepName.POWER_ON if kind is ActionKind.START else StepName.POWER_OFF
        try:
            with self.deps.uow_factory(readonly=True) as uow:
                instance = uow.instances.get(claim.instance_id)
            if claim.encrypted_token is None or claim.compute_url is None:
                raise StepFailed(power_step,
                                 "the action carries no credentials for the compute service")
            try:
                token = self.deps.decrypt_token(claim.encrypted_token)
            except Exception as exc:
                log.error("action %s: cannot decrypt its token: %s", claim.action_id, exc)
                raise StepFailed(power_step, "the action's credentials cannot be read on this "
                                 "worker (is its secret key the API's?)") from exc
            compute = self.deps.compute_factory(claim.compute_url, token)
            if kind is ActionKind.START:
                self._start(claim, instance, compute, cancel)
            else:
                self._stop(claim, instance, compute, cancel)
        except Exception as exc:  # a bug or an adapter surprise must still end the action
            if cancel.reason == LEASE_LOST:
                log.warning("action %s: stopped, its lease lost; whoever claims it next "
                            "resumes it", claim.action_id)
                return None
            if cancel.reason == SHUTDOWN:
                return self._hand_back(claim)
            if cancel.reason == CANCELLED:
                return self._finish_cancelled(claim, kind, exc)
            return self._finish(claim, kind, failure_message(claim.action_id, kind, exc))
        # A cancel seen after the last step ended finds nothing left to stop.
        return self._finish(claim, kind, None)

    # -- the two flows -------------------------------------------------------------------

    def _start(self, claim, instance: Instance, compute, cancel: Cancellation) -> None:
        """Power on, reach and start the hosts but those the action leaves out. A host
        already ACTIVE is not powered on, and the roles leave a running daemon as it is, so
        a start after a failed one goes on from what already holds; the steps say which."""
        left_out = claim.excluded_hosts
        hosts = instance.hosts_except(left_out)
        aliases = _aliases(instance)
        with self._step(claim, StepName.POWER_ON, cancel) as step:
            done = self._power_all(claim, hosts, aliases, compute.ensure_active, "ACTIVE",
                                   cancel)
            step.message = power_summary(done, "ACTIVE", "powered on")
            if left_out:
                step.message += "; left out: " + ", ".join(
                    aliases[h] for h in instance.hosts if h.name in left_out)
        known_hosts = None
        if self.deps.wait_for_ssh is None:
            self._skip_step(claim, StepName.WAIT_SSH, "hosts are local (ansible_connection=local)")
        else:
            with self._step(claim, StepName.WAIT_SSH, cancel) as step:
                self.deps.wait_for_ssh(list(hosts), self.config.ssh_timeout, cancel)
                known_hosts = self._check_host_keys(instance, hosts, step)
        # The instance as it will run: the inventory, and so every service's configuration,
        # names none of the hosts left out.
        running = dataclasses.replace(instance, left_out_hosts=tuple(left_out))
        with self._step(claim, StepName.PLAYBOOK, cancel) as step:
            step.message = self._playbook(claim, running, "lambda-start.yml", None, cancel,
                                          known_hosts)
        if self.config.checks == "off":
            self._skip_step(claim, StepName.SERVICE_CHECKS, "service checks are off")
            return
        report_only = self.config.checks == "report"
        with self._step(claim, StepName.SERVICE_CHECKS, cancel) as step:
            step.message = self._playbook(
                claim, running, "lambda-check.yml", None, cancel, known_hosts,
                extravars={"lambda_checks_report_only": report_only},
                summarize=lambda tasks: checks_summary(tasks, report_only), group="-checks")

    def _stop(self, claim, instance: Instance, compute, cancel: Cancellation) -> None:
        """Stop every host that is on, those an earlier start left out included. A host
        left out whose VM is not on (in ERROR, say: why it was left out) is left alone."""
        left_out = instance.left_out_hosts
        instance = dataclasses.replace(instance, left_out_hosts=())
        aliases = _aliases(instance)
        with self._step(claim, StepName.PLAYBOOK, cancel) as step:
            statuses = self._statuses(instance.hosts, compute)
            running = [h for h in instance.hosts if statuses[h.server_id] == "ACTIVE"]
            if not running:
                step.skip("every VM is already off")
            else:
                limit = None
                if len(running) < len(instance.hosts):
                    # The inventory's own aliases: a host's name may not be one.
                    limit = ",".join(aliases[h] for h in instance.hosts if h in running)
                    off = [aliases[h] for h in instance.hosts if h not in running]
                known_hosts = self._check_host_keys(instance, running, None)
                step.message = self._playbook(claim, instance, "lambda-stop.yml", limit, cancel,
                                              known_hosts)
                if limit:
                    step.message += f"; skipped hosts already off: {', '.join(off)}"
        not_on = [h for h in instance.hosts
                  if h.name in left_out and statuses[h.server_id] != "ACTIVE"]
        with self._step(claim, StepName.POWER_OFF, cancel) as step:
            done = self._power_all(claim, [h for h in instance.hosts if h not in not_on],
                                   aliases, compute.ensure_stopped, "STOPPED", cancel)
            step.message = power_summary(done, "STOPPED", "shut down")
            if not_on:
                step.message += "; left out and not on, not shut down: " + ", ".join(
                    f"{aliases[h]} ({statuses[h.server_id]})" for h in not_on)

    # -- pieces --------------------------------------------------------------------------

    def _power_all(self, claim, hosts, aliases: dict[Host, str], ensure, target: str,
                   cancel: Cancellation) -> list[tuple[str, PowerOutcome]]:
        """Every VM at once: a start costs the slowest VM, not the sum of them. A cancel
        ends every wait at once. Returns each host's alias and outcome, in order."""
        if not hosts:
            return []
        with ThreadPoolExecutor(max_workers=min(len(hosts), 32),
                                thread_name_prefix="power") as pool:
            futures = [(h, pool.submit(carry(ensure), h.server_id, self.config.power_timeout,
                                       cancel))
                       for h in hosts]
        if cancel.is_set():
            raise ActionCancelled(f"stopped waiting for the VMs to become {target}"
                                  f"{_because(cancel)}")
        errors = []
        for host, future in futures:
            exc = future.exception()
            if exc is not None:
                errors.append(f"host {aliases[host]} (server {host.server_id}): "
                              f"{what_was_seen(claim.action_id, exc)}")
        if errors:
            raise ComputeError("; ".join(errors))
        return [(aliases[host], future.result()) for host, future in futures]

    def _statuses(self, hosts, compute) -> dict[str, str]:
        if not hosts:
            return {}
        with ThreadPoolExecutor(max_workers=min(len(hosts), 32),
                                thread_name_prefix="status") as pool:
            servers = list(pool.map(carry(lambda h: compute.get_server(h.server_id)), hosts))
        return {h.server_id: s.status for h, s in zip(hosts, servers, strict=True)}

    def _check_host_keys(self, instance: Instance, hosts, step: _StepContext | None
                         ) -> str | None:
        """The known_hosts text of the hosts' pinned keys (None when checking is off)."""
        if self.deps.check_host_keys is None:
            return None
        check = self.deps.check_host_keys(instance.id, list(hosts))
        if step is not None:
            step.message = check.summary
        return check.known_hosts

    def _playbook(self, claim, instance: Instance, playbook: str, limit: str | None,
                  cancel: Cancellation, known_hosts: str | None = None,
                  extravars: dict | None = None, summarize=None, group: str = "") -> str:
        """Run ``playbook``, or its chains side by side (``config.playbook_chains``): one run
        per chain, each with its own artifacts, all recorded in the one action. A chain that
        fails fails the step with its message; the others run to their end (they need
        nothing of it, and what they start a retry finds running). A cancel or the timeout
        kills every run. ``group`` names the runs that must not overlap (the runner kills
        what an earlier run of the same group left behind): the checks are a group of their
        own, so that on local hosts, where the daemons a start launched carry the start's
        group, they do not kill them."""
        recorder = _TaskRecorder(self.deps.uow_factory, claim.action_id, claim.attempt)
        extravars = dict(self.config.extravars, **(extravars or {}))
        extravars.update(lambda_action_id=claim.action_id)
        inventory = self.deps.render_inventory(instance)
        chains = tuple(self.config.playbook_chains.get(playbook, ())) or (playbook,)
        runs = []
        for chain in chains:
            # Every run of the action is of its group (what it starts carries the action's
            # id); a chain's kills only what an earlier run of its own chain left. The
            # artifacts' directory says whose run it was: <action>-<attempt>[-checks][-chain].
            name = None if chain == playbook else chain_name(chain)
            runs.append(PlaybookRun(
                playbook=chain, inventory=inventory,
                ident=f"{claim.action_id}-{claim.attempt}{group}" + (f"-{name}" if name else ""),
                extravars=extravars, limit=limit, timeout=self.config.playbook_timeout,
                group=claim.action_id + group, chain=name, known_hosts=known_hosts))
        if cancel.is_set():  # the last moment not to start it (a lease lost meanwhile)
            raise ActionCancelled(f"{playbook} was not started{_because(cancel)}")
        recorder.start()
        try:
            results = self._run_side_by_side(runs, recorder.add, cancel)
        finally:
            try:
                recorder.close()
            except Exception as exc:  # the database away: the outcome still decides the step
                log.warning("action %s: cannot store the last task results: %s",
                            claim.action_id, exc)
        return self._outcome(playbook, runs, results, cancel, summarize)

    def _run_side_by_side(self, runs: list[PlaybookRun], on_task, cancel: Cancellation
                          ) -> list[PlaybookResult]:
        """Every run at once (one thread each); their results in the runs' order."""
        if len(runs) == 1:
            return [self.deps.runner.run(runs[0], on_task=on_task, cancel=cancel)]
        with ThreadPoolExecutor(max_workers=len(runs), thread_name_prefix="chain") as pool:
            futures = [pool.submit(carry(self.deps.runner.run), run, on_task=on_task,
                                   cancel=cancel) for run in runs]
        return [future.result() for future in futures]

    def _outcome(self, playbook: str, runs: list[PlaybookRun], results: list[PlaybookResult],
                 cancel: Cancellation, summarize=None) -> str:
        """The step's message when every run succeeded; else raise for the first that did
        not, a timeout or a cancel first (they ended every run)."""
        if all(result.ok for result in results):
            tasks = [task for result in results for task in result.tasks]
            rc = next((r.rc for r in results if r.rc), results[0].rc)
            summary = (summarize or playbook_summary)(tasks)
            side = f"; {len(runs)} chains side by side" if len(runs) > 1 else ""
            return (f"{playbook}: {len(tasks)} task results, rc {rc}{side}"
                    + (f"; {summary}" if summary else ""))
        by_status = {}
        for run, result in zip(runs, results, strict=True):
            by_status.setdefault(result.status, (run, result))
        if "timeout" in by_status:
            _run, result = by_status["timeout"]
            raise PlaybookFailed(
                f"{playbook} did not finish within {self.config.playbook_timeout:.0f}s and "
                f"was killed{_where(result.failure)}")
        if "cancelled" in by_status:
            cut = next((r.failure for r in results if r.status == "cancelled"
                        and r.failure and r.failure.host != "-"), None)
            at = f" at task '{cut.task}' on host {cut.host}" if cut else ""
            raise ActionCancelled(f"{playbook} was killed{at}{_because(cancel)}")
        run, result = next((run, result) for run, result in zip(runs, results, strict=True)
                           if not result.ok)
        failure = result.failure
        if failure is None:
            raise PlaybookFailed(f"{run.playbook} failed with rc {result.rc}")
        if failure.host == "-":  # no host got as far as a task: the run itself failed
            raise PlaybookFailed(f"{run.playbook} could not run: "
                                 f"{failure.message or 'no message'}")
        if failure.task.startswith(CHECK_TASK) and failure.message:
            raise PlaybookFailed(f"service check failed: {failure.message}")
        verb = "was unreachable" if failure.status == "unreachable" else "failed"
        raise PlaybookFailed(f"host {failure.host} {verb} at task '{failure.task}' of "
                              f"{run.playbook}: {failure.message or 'no message'}")

    def _step(self, claim, name: StepName, cancel: Cancellation) -> _StepContext:
        return _StepContext(self, claim, name, cancel)

    def _skip_step(self, claim, name: StepName, message: str) -> None:
        with self.deps.uow_factory() as uow:
            uow.actions.add_step(claim.action_id, claim.attempt, name, StepState.SKIPPED,
                                 utcnow(), message)
            uow.commit()
        self.deps.metrics.step_finished(name.value, StepState.SKIPPED.value, 0.0)

    def _finish(self, claim: ActionClaim, kind: ActionKind, error: str | None,
                state: ActionState | None = None) -> ActionState | None:
        """End the action (FAILED with ``error``, else SUCCEEDED, unless ``state`` says) and
        move its instance: to the action's target on success, else to FAILED."""
        rule = ACTION_RULES[kind]
        state = state or (ActionState.FAILED if error else ActionState.SUCCEEDED)
        with self.deps.uow_factory() as uow:
            if not uow.actions.finish(claim.action_id, self.config.worker_id, state, error,
                                      utcnow()):
                log.warning("action %s: lease lost before it could be finished",
                            claim.action_id)
                return None
            uow.instances.compare_and_set_status(
                claim.instance_id, None, InstanceStatus.FAILED if error else rule.target,
                failure_message=error)
            if not error:  # a start leaves its excluded hosts out; a stop brings all back
                uow.instances.set_left_out_hosts(
                    claim.instance_id,
                    claim.excluded_hosts if kind is ActionKind.START else ())
            uow.commit()
        if error:
            log.warning("action %s: %s: %s", claim.action_id, state.value, error)
        else:
            log.info("action %s: succeeded, instance %s is %s", claim.action_id,
                     claim.instance_id, rule.target.name)
        return state

    def _finish_cancelled(self, claim: ActionClaim, kind: ActionKind, exc: BaseException
                          ) -> ActionState | None:
        """End an action its owner cancelled: the message names who, the step it was cut
        at and what that leaves half way."""
        step, ended, detail = None, False, None
        if isinstance(exc, StepFailed):  # else cut before a step (no other code cancels)
            step, ended = cancel_point(kind, exc.step, exc.began)
            detail = exc.message if exc.began else None
        with self.deps.uow_factory(readonly=True) as uow:
            by = uow.actions.cancel_requested(claim.action_id)
            if step is None:  # nothing began in this attempt; an earlier one may have
                step, ended = last_step_point(uow.actions.get(claim.action_id).steps)
        return self._finish(claim, kind, cancelled_message(kind, by, step, ended, detail),
                            ActionState.CANCELLED)

    def cancel_requested(self, action_id: str) -> str | None:
        with self.deps.uow_factory(readonly=True) as uow:
            return uow.actions.cancel_requested(action_id)

    def _hand_back(self, claim: ActionClaim) -> None:
        """Give the lease, and the attempt, back: stopping for a shutdown is no failure."""
        with self.deps.uow_factory() as uow:
            uow.actions.release(claim.action_id, self.config.worker_id, utcnow())
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


def _because(cancel: Cancellation) -> str:
    """Why a step stopped, for its message: a cancel of the owner's says so by the step's
    state (``cancelled``) and the action's error; the others in words."""
    return "" if cancel.reason == CANCELLED else f" ({cancel.reason or 'cancelled'})"


def _aliases(instance: Instance) -> dict[Host, str]:
    """Each host's inventory alias (``host_aliases`` over every host of the instance, as
    the inventory computes them, whichever are left out)."""
    return dict(zip(instance.hosts, host_aliases(h.name for h in instance.hosts), strict=True))


# --- what a step says it found and did ---------------------------------------------------


def hosts_phrase(names: list[str], of: int) -> str:
    """Host names for a message, short for many hosts: "all 20 hosts" when ``names`` are
    every one of ``of`` (over 3), else the names, the first 3 and a count past 5."""
    if len(names) == of and of > 3:
        return f"all {of} hosts"
    if len(names) <= 5:
        return ", ".join(names)
    return f"{', '.join(names[:3])} and {len(names) - 3} more"


def power_summary(done: list[tuple[str, PowerOutcome]], target: str, verb: str) -> str:
    """E.g. "already ACTIVE, not powered on: m, s1; powered on: s2"."""
    already = [alias for alias, outcome in done if outcome.already]
    acted = [alias for alias, outcome in done if not outcome.already]
    parts = []
    if already:
        parts.append(f"already {target}, not {verb}: {hosts_phrase(already, len(done))}")
    if acted:
        parts.append(f"{verb}: {hosts_phrase(acted, len(done))}")
    return "; ".join(parts) or "no hosts"


# Plays named "Start ..." / "Stop ..." start or stop one kind of daemon (the playbooks'
# convention): their task results tell which daemons were already as wanted.
_DAEMON_PLAYS = {"Start ": ("already running, left as they were", "started or reconfigured"),
                 "Stop ": ("already stopped, left as they were", "stopped")}


def playbook_summary(tasks: list[TaskResult]) -> str | None:
    """Per play that starts (or stops) a kind of daemon, the hosts where no task changed
    anything (it was running, or stopped, already) and those where one did. The roles
    report ``changed`` only when they start, stop or rewrite something. E.g. "already
    running, left as they were: HDFS NameNode (m); started or reconfigured: Spark workers
    (s1, s2)". None for a playbook without such plays."""
    plays: dict[str, dict[str, bool]] = {}  # play -> host -> changed
    for task in tasks:
        if task.play and task.play.startswith(tuple(_DAEMON_PLAYS)):
            hosts = plays.setdefault(task.play, {})
            hosts[task.host] = hosts.get(task.host, False) or task.status == "changed"
    if not plays:
        return None
    sections: dict[str, list[str]] = {}  # kept words first, as the dict keeps its order
    for play, hosts in plays.items():
        verb = next(v for v in _DAEMON_PLAYS if play.startswith(v))
        label = play.removeprefix(verb).removeprefix("the ")
        for words, changed in zip(_DAEMON_PLAYS[verb], (False, True), strict=True):
            names = [host for host, was_changed in hosts.items() if was_changed is changed]
            items = sections.setdefault(words, [])
            if names:
                items.append(f"{label} ({hosts_phrase(names, len(hosts))})")
    return "; ".join(f"{words}: {', '.join(items)}" for words, items in sections.items()
                     if items)


# --- instances nothing would move on -----------------------------------------------------


def reconcile_stranded(uow_factory: UnitOfWorkFactory) -> list[tuple[str, InstanceStatus]]:
    """Set FAILED every instance left STARTING or STOPPING with no unfinished action.

    Only an action moves an instance out of those statuses, and none would: a crash
    between the two, a seed file or a manual database edit left it so. FAILED allows both
    start and stop, so the owner can act again. Returns what was moved, and from what.
    """
    with uow_factory(readonly=True) as uow:
        if not uow.instances.find_stranded():
            return []  # the usual case costs one read, not a write transaction
    moved = []
    with uow_factory() as uow:
        for instance_id, status in uow.instances.find_stranded():
            message = (f"found {status.name} with no action in progress (left by a crash, "
                       "a seed file or a database edit); set to FAILED so that start and "
                       "stop are allowed again")
            # The compare-and-set: no action can be accepted while the status is one of
            # these, so one that still holds it still has none.
            if uow.instances.compare_and_set_status(instance_id, {status},
                                                    InstanceStatus.FAILED, message):
                moved.append((instance_id, status))
        uow.commit()
    for instance_id, status in moved:
        log.warning("instance %s: was %s with no action in progress; now FAILED",
                    instance_id, status.name)
    return moved


# --- what an action's error says ----------------------------------------------------------


def failure_message(action_id: str, kind: ActionKind, exc: BaseException) -> str:
    """The action's (and the instance's) failure message: the step, and what was seen.

    The one place an exception becomes words an operator reads. Within the step's words,
    a playbook's failure names the host and task, and a power failure the host and server.
    """
    if isinstance(exc, StepFailed):
        return f"{kind.value} failed at step {exc.step.value}: {exc.message}"
    return f"{kind.value} failed: {what_was_seen(action_id, exc)}"


def what_was_seen(action_id: str, exc: BaseException) -> str:
    """An error in words: the messages this project's code writes as they are, an OS
    error by its plain reason; anything else is a bug, logged whole with its traceback
    and told as an internal error, never as a Python repr or a server's paths."""
    if isinstance(exc, StepFailed):
        return exc.message
    if isinstance(exc, DomainError):
        return str(exc) or "failed (no details)"
    if isinstance(exc, OSError):
        if exc.strerror:  # "[Errno 2] No such file or directory: '/srv/...'" -> the reason
            return exc.strerror
        if isinstance(exc, TimeoutError) and exc.args and isinstance(exc.args[0], str):
            return exc.args[0]  # a waiter's own "no answer within ..."
    log.error("action %s: unexpected error", action_id, exc_info=exc)
    return INTERNAL_ERROR


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
        if self.cancel.is_set():  # no further step starts
            raise StepFailed(self.name, f"not begun{_because(self.cancel)}", began=False)
        with self.orchestrator.deps.uow_factory() as uow:
            self.step_id = uow.actions.start_step(self.claim.action_id, self.claim.attempt,
                                                  self.name, utcnow())
            uow.commit()
        self.started = time.monotonic()
        return self

    def __exit__(self, exc_type, exc, _tb) -> bool:
        if exc is not None:
            # Cut off by its owner's cancel: half done, but nothing in it went wrong.
            self.state = (StepState.CANCELLED if self.cancel.reason == CANCELLED
                          else StepState.FAILED)
            self.message = what_was_seen(self.claim.action_id, exc)
        # With the lease lost the action may be another worker's: its row is not ours to
        # write (the next claim closes this step as interrupted).
        if self.cancel.reason != LEASE_LOST:
            with self.orchestrator.deps.uow_factory() as uow:
                uow.actions.end_step(self.step_id, self.state, utcnow(), self.message)
                uow.commit()
        self.orchestrator.deps.metrics.step_finished(self.name.value, self.state.value,
                                                     time.monotonic() - self.started)
        if exc is not None and not isinstance(exc, StepFailed):
            raise StepFailed(self.name, self.message) from exc
        return False


class _TaskRecorder:
    """Stores the playbook's task results as they come: a few at a time, at once on a
    failure, and none kept back longer than ``delay`` seconds, since each is an event that
    a client of the action's event stream waits for. A thread flushes what a quiet spell
    (a long task) would otherwise hold back."""

    def __init__(self, uow_factory: UnitOfWorkFactory, action_id: str, attempt: int,
                 batch: int = 10, delay: float = 0.5):
        self.uow_factory = uow_factory
        self.action_id = action_id
        self.attempt = attempt
        self.batch = batch
        self.delay = delay
        self.pending: list[TaskResult] = []
        self.lock = threading.Lock()
        # One flush at a time, taking what is pending inside it: results are stored (and
        # numbered) in the order they came, whichever thread flushes.
        self.flushing = threading.Lock()
        self.done = threading.Event()
        self.flusher = threading.Thread(target=self._flush_every_delay, daemon=True,
                                        name=f"tasks-{action_id[:8]}")

    def start(self) -> None:
        self.flusher.start()

    def close(self) -> None:
        """Stop the flusher thread, then store what is left."""
        self.done.set()
        if self.flusher.is_alive():
            self.flusher.join(timeout=5)  # a flush stuck in the database is left to finish
        self.flush()

    def add(self, result: TaskResult) -> None:
        with self.lock:
            self.pending.append(result)
            if len(self.pending) < self.batch and result.status not in ("failed", "unreachable"):
                return
        self.flush()

    def flush(self) -> None:
        with self.flushing:
            with self.lock:
                pending, self.pending = self.pending, []
            if not pending:
                return
            try:
                with self.uow_factory() as uow:
                    uow.actions.add_tasks(self.action_id, self.attempt, pending, utcnow())
                    uow.commit()
            except Exception:
                with self.lock:  # kept, in order, for the next flush
                    self.pending[:0] = pending
                raise

    def _flush_every_delay(self) -> None:
        while not self.done.wait(self.delay):
            try:
                self.flush()
            except Exception as exc:  # the next flush, or the last one, tries again
                log.warning("action %s: cannot store task results yet: %s", self.action_id,
                            exc)


class _LeaseKeeper:
    """Renews the lease while the action runs; stops the action before the lease lapses,
    or when its owner asks.

    Three threads, so that a read or a renewal stuck on a database that does not answer
    cannot hold back the deadline: the renewer renews every ``renew_interval``, and the
    watchdog cancels the action ("lease lost") once ``stop_before_expiry`` seconds are left
    of the lease the last successful renewal wrote. A renewal that finds the lease taken
    (another worker claimed the action) cancels at once. The third reads the row every
    ``cancel_poll_interval`` and cancels ("cancel requested") once its owner has asked.
    """

    def __init__(self, orchestrator: Orchestrator, action_id: str, cancel: Cancellation,
                 claimed_at: float):
        config = orchestrator.config
        self.orchestrator = orchestrator
        self.action_id = action_id
        self.cancel = cancel
        self.lease = config.lease_seconds
        self.early = config.stop_before_expiry
        self.interval = config.renew_interval
        self.cancel_poll = max(config.cancel_poll_interval, 0.05)
        self.deadline = claimed_at + self.lease - self.early  # time.monotonic() seconds
        self.lock = threading.Lock()
        self.done = threading.Event()
        name = action_id[:8]
        self.threads = [
            threading.Thread(target=carry(self._renew), name=f"lease-{name}", daemon=True),
            threading.Thread(target=carry(self._watch), name=f"lease-watch-{name}",
                             daemon=True),
            threading.Thread(target=carry(self._poll_cancel), name=f"cancel-poll-{name}",
                             daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=5)  # a renewer stuck in the database is left to finish

    def _lost(self, why: str) -> None:
        if self.done.is_set() or self.cancel.reason == LEASE_LOST:
            return
        log.warning("action %s: %s; stopping it", self.action_id, why)
        self.cancel.cancel(LEASE_LOST)

    def _renew(self) -> None:
        while not self.done.wait(self.interval):
            if self.cancel.reason == LEASE_LOST:
                return  # renewing now would only hold back whoever resumes it
            started = time.monotonic()  # the renewal writes its clock's now + the lease
            try:
                held = self.orchestrator.renew_lease(self.action_id)
            except Exception as exc:
                with self.lock:
                    left = self.deadline - time.monotonic()
                log.warning("action %s: lease renewal failed (%s); stopping in %.1fs unless "
                            "one succeeds", self.action_id, exc, max(left, 0.0))
                continue
            if not held:
                self._lost("lease lost (another worker claimed the action, or it ended)")
                return
            with self.lock:
                self.deadline = max(self.deadline, started + self.lease - self.early)

    def _watch(self) -> None:
        while True:
            with self.lock:
                left = self.deadline - time.monotonic()
            if left <= 0:
                break
            if self.done.wait(left):
                return
        self._lost(f"no lease renewal succeeded in time ({self.early:.1f}s of the lease "
                   "left)")

    def _poll_cancel(self) -> None:
        while not self.done.wait(self.cancel_poll):
            if self.cancel.is_set():
                return  # stopping already (a shutdown, a lost lease)
            try:
                by = self.orchestrator.cancel_requested(self.action_id)
            except Exception as exc:  # the database away: the lease's threads see to it
                log.debug("action %s: cannot read a cancel request: %s", self.action_id, exc)
                continue
            if by is not None:
                log.info("action %s: cancel requested by %s; stopping it", self.action_id, by)
                self.cancel.cancel(CANCELLED)
                return
