"""Run playbooks through ansible-runner (``PlaybookRunnerPort``).

Each run gets its own ``private_data_dir`` (``<artifacts_dir>/<ident>-<n>/``) holding
``inventory/hosts``, ``env/extravars`` and the runner's artifacts, and a unique marker
variable (``LAMBDA_RUN_MARKER``) in its environment, and its own ssh control directory.

What a run is given of the service: an allow-listed environment (``PASSED_ENV``), never
the rest of it (``LAMBDA_SECRET_KEY``, database and broker URLs with their passwords):
ansible-playbook hands its environment on to every module and every daemon a play
starts, and ansible-runner records it in the run's artifacts. Extra variables reach
ansible-playbook as a file (``-e @env/extravars``), never on its command line.

Cleanup policy:
- timeout or cancel: kill every process carrying the marker (ansible-playbook runs in its
  own session, so its process group is not enough) and every ssh control master holding a
  socket in the run's control directory (ControlPersist daemonizes them, and they wipe their
  environment block when they retitle themselves). ansible-runner's own ``timeout=`` is
  not used: it returns but leaves the play running.
- a run that ends by itself (success or failure): only the ssh control masters are closed
  (``ssh -O exit``, then killed if they stay). Other marked processes are left alone: on a
  local connection (the demo) they may be daemons the play started on purpose.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import yaml
from ansible_runner.exceptions import AnsibleRunnerException
from ansible_runner.interface import init_runner

from api.adapters import proctree
from api.adapters.ssh import host_key_args
from api.domain.log_context import carry
from api.domain.model import TaskResult
from api.domain.ports import PlaybookResult, PlaybookRun
from api.settings import SSH_HOST_KEY_CHECKING

log = logging.getLogger(__name__)

RUN_MARKER_ENV = "LAMBDA_RUN_MARKER"
RUN_GROUP_ENV = "LAMBDA_RUN_GROUP"
RUN_CHAIN_ENV = "LAMBDA_RUN_CHAIN"  # a chain's runs, of one group at once (PlaybookRun.chain)
# Keepalives turn a dead link under ControlPersist into UNREACHABLE instead of a hang.
SSH_ARGS = (
    "-o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=2 "
    "-o ServerAliveCountMax=3"
)
# The run's pinned host keys (``PlaybookRun.known_hosts``), in its private directory.
KNOWN_HOSTS_FILE = "known_hosts"
# Key exchange the controller prefers, first the client has (auto): OpenSSH 9.0-9.8 negotiate
# sntrup761x25519 by default, whose client CPU is paid for every host of every run and shows
# in a start's time; ML-KEM hybrid (OpenSSH >= 9.9) is post-quantum and as cheap as curve25519.
FAST_KEX = ("mlkem768x25519-sha256", "curve25519-sha256")


@functools.cache
def mitogen_strategy_dir() -> str:
    """Mitogen's own strategy plugins (mitogen_linear, ...), as Mitogen's docs configure them."""
    spec = importlib.util.find_spec("ansible_mitogen.plugins.strategy")
    return str(Path(spec.origin).parent)

# Unix socket paths must stay under 108 bytes. ssh binds a master's socket as
# "<control dir>/<40 hex>.<16 random>" before renaming it, and a run's control dir is
# "<root>/<12 hex>", so the root must stay within this many bytes.
CONTROL_ROOT_MAX = 107 - (1 + 12) - (1 + 40 + 17)
CONTROL_ROOT_PREFIX = "lambda-cp-"

# The service's environment variables a playbook run gets; every other one is withheld.
PASSED_ENV = frozenset({
    "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SSH_AUTH_SOCK",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    # A worker's mark (api.worker.reaper): how the playbooks a killed worker left are found.
    "LAMBDA_WORKER_MARK",
})
PASSED_ENV_PREFIXES = ("LC_", "ANSIBLE_")  # the locale; the operator's Ansible settings
# A URL with a password in it ("scheme://user:password@"): withheld whatever its name.
_URL_WITH_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:[^\s/@]+@")
RUN_DIR_FLAG = ".lambda-run"  # only directories holding it are ever pruned
MESSAGE_MAX = 500
STREAM_TAIL = 300
POLL_SECONDS = 0.2
KILL_GRACE = 2.0
JOIN_AFTER_KILL = 30.0

_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
    "runner_on_async_ok": "ok",
    "runner_on_async_failed": "failed",
}
# Loop items (runner_item_on_*) are not reported one by one: the task's own final event
# follows them and carries every item in ``results``; a failure message is taken from the
# first failed item there.
_OUTPUT_EVENTS = {"verbose", "error", "warning", "deprecated"}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_IDENT_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

# Run directories in use by this process, never pruned (guarded by _dirs_lock).
_active_dirs: set[str] = set()
_dirs_lock = threading.Lock()


def _clip(text: str, limit: int = MESSAGE_MAX) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _tail(text: str, limit: int = STREAM_TAIL) -> str:
    text = _ANSI.sub("", text).strip()
    return text if len(text) <= limit else "..." + text[-(limit - 3) :]


def _result_message(res: object, status: str) -> str | None:
    """The module's msg, and for failures the tail of its stderr (or stdout)."""
    if not isinstance(res, dict):
        return None
    failing = status in ("failed", "unreachable")
    items = res.get("results")
    if failing and isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("failed"):
                label = item.get("_ansible_item_label", item.get("item"))
                inner = _result_message(item, status)
                return _clip(f"item={label}: {inner}" if inner else f"item={label} failed")
    parts = []
    msg = res.get("msg")
    if isinstance(msg, str) and msg.strip():
        parts.append(msg.strip())
    elif msg not in (None, "", [], {}):
        parts.append(json.dumps(msg, default=str))
    if failing or not parts:
        for stream in ("stderr", "module_stderr", "stdout", "module_stdout"):
            text = res.get(stream)
            if isinstance(text, str) and text.strip():
                parts.append(_tail(text))
                break
    return _clip(" | ".join(parts)) if parts else None


def _reason(exc: OSError) -> str:
    """An OS error's reason without the path it names (a server path)."""
    return (exc.strerror or "error").lower()


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _setup_failure(message: str, rc: int | None = None) -> PlaybookResult:
    failure = TaskResult(host="-", task="ansible-playbook", status="failed", message=_clip(message))
    return PlaybookResult(status="failed", rc=rc, tasks=[], failure=failure)


class _Events:
    """Turns ansible-runner events into TaskResults; called from the runner's thread."""

    def __init__(self, on_task: Callable[[TaskResult], None] | None,
                 scrub: Callable[[str], str] = str):
        self._on_task = on_task
        self._scrub = scrub
        self._lock = threading.Lock()
        self.tasks: list[TaskResult] = []
        self._fatal: dict[str, tuple[int, TaskResult]] = {}  # host -> its last failure
        self._in_flight: dict[tuple, TaskResult] = {}
        self._stats_failed: set[str] | None = None
        self._output: deque[str] = deque(maxlen=40)

    def handle(self, event: dict) -> bool:
        name = event.get("event")
        data = event.get("event_data") or {}
        if name == "runner_on_start":
            key = (data.get("host"), data.get("task_uuid"))
            pending = TaskResult(
                host=str(data.get("host")),
                task=str(data.get("task") or "-"),
                status="failed",
                role=data.get("role") or None,
                play=data.get("play") or None,
            )
            with self._lock:
                self._in_flight[key] = pending
        elif name in _RESULT_EVENTS:
            self._record(_RESULT_EVENTS[name], data)
        elif name == "playbook_on_stats":
            failed = set(data.get("failures") or {}) | set(data.get("dark") or {})
            with self._lock:
                self._stats_failed = failed
        elif name in _OUTPUT_EVENTS:
            for line in _ANSI.sub("", event.get("stdout") or "").splitlines():
                if line.strip():
                    self._output.append(line.strip())
        return True  # keep the event in the run's artifacts

    def _record(self, status: str, data: dict) -> None:
        res = data.get("res")
        ignored = status == "failed" and bool(data.get("ignore_errors"))
        if status == "ok" and isinstance(res, dict) and res.get("changed"):
            status = "changed"
        message = _result_message(res, status)
        if message:
            message = self._scrub(message)
        if ignored:
            message = _clip(f"ignored: {message}" if message else "ignored")
        duration = data.get("duration")
        result = TaskResult(
            host=str(data.get("host")),
            task=str(data.get("task") or "-"),
            status=status,
            role=data.get("role") or None,
            play=data.get("play") or None,
            message=message,
            duration=float(duration) if isinstance(duration, (int, float)) else None,
        )
        with self._lock:
            self._in_flight.pop((data.get("host"), data.get("task_uuid")), None)
            if status in ("failed", "unreachable") and not ignored:
                # A host stops at its fatal failure, so its last failure is the one that
                # counts (earlier ones may have been rescued).
                self._fatal[result.host] = (len(self.tasks), result)
            self.tasks.append(result)
        if self._on_task is not None:
            try:
                self._on_task(result)
            except Exception:
                # A broken listener must not abort the play; the result is still returned.
                log.exception("on_task callback failed for task %r", result.task)

    def fatal(self) -> TaskResult | None:
        """The first failure (in event order) of a host that ended failed or unreachable."""
        with self._lock:
            candidates = [
                entry
                for host, entry in self._fatal.items()
                if self._stats_failed is None or host in self._stats_failed
            ]
        return min(candidates, key=lambda entry: entry[0])[1] if candidates else None

    def in_flight(self) -> TaskResult | None:
        with self._lock:
            return next(iter(self._in_flight.values()), None)

    def output_summary(self) -> str | None:
        """Ansible's own error lines (e.g. a syntax error), else the output's tail."""
        lines = list(self._output)
        errors = [line for line in lines if line.startswith("[ERROR]")]
        warnings = [line for line in lines if line.startswith("[WARNING]")]
        if errors or warnings:
            return _clip(self._scrub("; ".join(errors + warnings[-2:])))
        return _clip(self._scrub(" ".join(lines[-5:]))) if lines else None


@functools.cache
def client_kex_algorithms(ssh: str = "ssh") -> frozenset[str]:
    """What this machine's ssh client can negotiate (``ssh -Q kex``); empty if unknown."""
    try:
        out = subprocess.run([ssh, "-Q", "kex"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(out.stdout.split()) if out.returncode == 0 else frozenset()


def resolve_kex(setting: str, supported: frozenset[str] | None = None) -> str | None:
    """The ``-o KexAlgorithms=`` value for ``LAMBDA_SSH_KEX``, or None to keep ssh's own.

    ``auto`` puts the first of ``FAST_KEX`` the client knows at the head of its default list
    (``^``), so a server without it still negotiates one of the others; ``default`` keeps
    OpenSSH's order; anything else is passed through as written.
    """
    if setting == "default":
        return None
    if setting != "auto":
        return setting
    supported = client_kex_algorithms() if supported is None else supported
    return next((f"^{kex}" for kex in FAST_KEX if kex in supported), None)


def ssh_args(kex: str | None) -> str:
    return SSH_ARGS if not kex else f"{SSH_ARGS} -o KexAlgorithms={kex}"


# This process's control root (see ``control_root``), by pid: a forked child makes its own.
_control_roots: dict[int, Path] = {}
_control_lock = threading.Lock()


def control_root() -> Path:
    """The private directory this process's runs keep their ssh control sockets in.

    A fresh ``mkdtemp`` (mode 0700, a random name created with ``O_EXCL`` semantics, so no
    other user can have made it first, as a fixed name in /tmp could be), in
    $XDG_RUNTIME_DIR or else the temp directory, whichever keeps socket paths short
    enough. Made again if it has gone (a /tmp cleaner); removed when the process exits.
    """
    pid = os.getpid()
    with _control_lock:
        root = _control_roots.get(pid)
        if root is not None and _is_private_dir(root):
            return root
        root = Path(tempfile.mkdtemp(prefix=CONTROL_ROOT_PREFIX, dir=_control_base()))
        _control_roots[pid] = root
        return root


def _control_base() -> str:
    name_len = 1 + len(CONTROL_ROOT_PREFIX) + 8  # mkdtemp's random part
    for base in (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp"):
        if base and os.path.isdir(base) and len(base) + name_len <= CONTROL_ROOT_MAX:
            return base
    raise OSError(errno.ENAMETOOLONG, "no temp directory short enough for ssh control "
                  f"sockets (at most {CONTROL_ROOT_MAX - name_len} bytes)")


def _is_private_dir(path: Path) -> bool:
    """A directory (not a link) of this user that no one else may enter."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
            and not info.st_mode & 0o077)


@atexit.register
def remove_control_root() -> None:
    """Remove this process's control root, if it made one. Also at exit; a process that
    ends with ``os._exit`` (a forked server worker) calls it itself."""
    root = _control_roots.pop(os.getpid(), None)  # only the one this process made
    if root is not None:
        with contextlib.suppress(OSError):
            root.rmdir()  # empty once every run has closed its masters


def passed_environment(service_env: Mapping[str, str], names: Iterable[str] = ()) -> dict:
    """The part of the service's environment a playbook run may see."""
    passed = PASSED_ENV | set(names)
    return {k: v for k, v in service_env.items()
            if k in passed or k.startswith(PASSED_ENV_PREFIXES)}


def playbook_environment(prepared: Mapping[str, str], ours: Mapping[str, str],
                         service_env: Mapping[str, str], names: Iterable[str] = (),
                         withheld_values: Iterable[str] = ()) -> dict[str, str]:
    """The environment ansible-playbook runs with.

    ``prepared`` is what ansible-runner prepared: the whole of the service's environment
    (it has no switch to leave that out outside a container) with ours and its own
    variables on top. Kept: the allow-listed part of the service's, what ansible-runner
    set itself (its callback plugin, artifact paths), and ours. Then any variable whose
    value holds a URL with a password, or one of ``withheld_values``, is dropped.
    """
    env = passed_environment(service_env, names)
    env.update({k: v for k, v in prepared.items() if service_env.get(k) != v})
    env.update(ours)
    secrets = [value for value in withheld_values if value]
    for name in sorted(env):
        value = env[name]
        if _URL_WITH_PASSWORD.search(value) or any(secret in value for secret in secrets):
            log.warning("withholding %s from playbook runs: it holds a credential", name)
            del env[name]
    return env


def resolve_strategy(strategy: str, connection: str) -> str:
    """The strategy plugin for a ``LAMBDA_ANSIBLE_STRATEGY`` (see ``api.settings``)."""
    if strategy != "auto":
        return strategy
    return "mitogen_linear" if connection == "ssh" else "linear"


class AnsibleRunner:
    """``PlaybookRunnerPort`` over ansible-runner, with a process-tree kill."""

    def __init__(
        self,
        *,
        playbook_dir: str,
        roles_dir: str,
        artifacts_dir: str,
        forks: int = 20,
        strategy: str = "linear",
        ssh_timeout: int = 10,
        extra_env: dict | None = None,
        keep_artifacts: int = 50,
        default_timeout: float | None = None,
        base_extravars: dict | None = None,
        kill_grace: float = KILL_GRACE,
        ssh_kex: str | None = None,
        host_key_checking: str = "pinned",
        passed_env: Iterable[str] = (),
        withheld_values: Iterable[str] = (),
    ):
        self.playbook_dir = Path(playbook_dir)
        self.roles_dir = str(roles_dir)
        self.artifacts_dir = Path(artifacts_dir)
        self.forks = int(forks)
        self.strategy = strategy
        self.ssh_timeout = int(ssh_timeout)
        self.extra_env = {str(k): str(v) for k, v in (extra_env or {}).items()}
        self.keep_artifacts = int(keep_artifacts)  # <= 0 keeps every run directory
        self.default_timeout = default_timeout  # used when a PlaybookRun sets none
        self.base_extravars = dict(base_extravars or {})  # under each run's own extravars
        self.kill_grace = kill_grace
        self.ssh_args = ssh_args(ssh_kex)
        if host_key_checking not in SSH_HOST_KEY_CHECKING:
            raise ValueError(f"host_key_checking must be one of {SSH_HOST_KEY_CHECKING}")
        # pinned: ssh trusts exactly the keys each run carries (``PlaybookRun.known_hosts``)
        self.host_key_checking = host_key_checking
        # This server's directories as an action's messages name them: what a message
        # says must help the operator, never show where the service lives.
        labels = {self.playbook_dir: "playbooks", Path(self.roles_dir): "roles",
                  self.artifacts_dir: "<run directory>", Path(sys.prefix): "<service venv>"}
        self._private_dirs = sorted(
            {(str(form), label) for path, label in labels.items()
             for form in (path, path.resolve())},
            key=lambda pair: len(pair[0]), reverse=True)  # the longest (innermost) first
        # Further names of the service's environment runs get (LAMBDA_ANSIBLE_ENV).
        self.passed_env = frozenset(passed_env)
        # Values no variable of a run may contain (the server keys).
        self.withheld_values = tuple(v for v in withheld_values if v)

    def scrub(self, text: str) -> str:
        """``text`` with this server's directories replaced by what they are."""
        for path, label in self._private_dirs:
            if len(path) > 1:
                text = text.replace(path, label)
        return text

    @classmethod
    def from_settings(cls, settings) -> AnsibleRunner:
        """Build from ``api.settings.Settings``.

        ``settings.ssh_timeout`` is the wait for hosts to answer SSH at all (minutes), not
        one connection attempt, so ``ANSIBLE_TIMEOUT`` keeps its short default here.
        """
        base_extravars = {}
        if settings.extravars_file:
            try:
                data = yaml.safe_load(Path(settings.extravars_file).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ValueError(
                    f"cannot read extravars file {settings.extravars_file}: {exc}"
                ) from exc
            if not isinstance(data, dict):
                raise ValueError(f"extravars file {settings.extravars_file} must hold a mapping")
            base_extravars = data
        return cls(
            playbook_dir=settings.playbook_dir,
            roles_dir=settings.roles_dir,
            artifacts_dir=str(settings.artifacts_dir),
            forks=settings.ansible_forks,
            strategy=resolve_strategy(settings.ansible_strategy, settings.ansible_connection),
            default_timeout=settings.playbook_timeout,
            base_extravars=base_extravars,
            ssh_kex=resolve_kex(settings.ssh_kex),
            host_key_checking=settings.ssh_host_key_checking,
            passed_env=settings.ansible_env_names,
            withheld_values=settings.secret_keys,
        )

    # --- the port -------------------------------------------------------------------------

    def run(
        self,
        run: PlaybookRun,
        on_task: Callable[[TaskResult], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> PlaybookResult:
        """Run one playbook; see ``PlaybookRunnerPort``.

        ``on_task`` is called from the runner's thread, once per task and host, in event
        order; an exception it raises is logged and the run goes on.
        """
        playbook = self.playbook_dir / run.playbook
        if not playbook.is_file():
            log.error("playbook %s not found", playbook)
            return _setup_failure(f"playbook {run.playbook} not found in the playbooks "
                                  "directory")
        marker = uuid.uuid4().hex
        try:
            control_dir = control_root() / marker[:12]
        except OSError as exc:
            log.error("cannot create a private ssh control directory: %s", exc)
            return _setup_failure(
                f"cannot create a private ssh control directory ({_reason(exc)})")
        try:
            run_dir = self._new_run_dir(run.ident)
        except OSError as exc:
            log.error("cannot create a run directory under %s: %s", self.artifacts_dir, exc)
            return _setup_failure(f"cannot create the run's directory ({_reason(exc)})")
        if run.group:
            # A chain's run leaves the group's other chains, running beside it, alone.
            left = proctree.kill_processes_with_env(
                RUN_GROUP_ENV, run.group, also={RUN_CHAIN_ENV: run.chain} if run.chain else None)
            if left:
                log.warning("run %s: killed %d processes an earlier run of %s left behind",
                            run.ident, len(left), run.group)
        try:
            self._prune()
            return self._execute(run, playbook, run_dir, marker, control_dir, on_task, cancel)
        finally:
            self._close_control_masters(control_dir)
            self._scrub_artifacts(run_dir)
            with _dirs_lock:
                _active_dirs.discard(str(run_dir))

    # --- one run --------------------------------------------------------------------------

    def _execute(self, run, playbook, run_dir, marker, control_dir, on_task, cancel):
        name = run_dir.name
        try:
            inventory = run_dir / "inventory" / "hosts"
            inventory.parent.mkdir(mode=0o700, exist_ok=True)
            inventory.write_text(run.inventory)
            self._write_known_hosts(run_dir, run)
            # By file, which ansible-runner passes as "-e @env/extravars": as a mapping it
            # would put them on ansible-playbook's command line, for any user to read.
            extravars = run_dir / "env" / "extravars"
            extravars.parent.mkdir(mode=0o700, exist_ok=True)
            _write_private(extravars, json.dumps(
                {**self.base_extravars, **(run.extravars or {})}, default=str))
            control_dir.mkdir(mode=0o700)
            env = self._environment(marker, run_dir, control_dir, run.group, run.chain)
        except OSError as exc:
            log.error("run %s: cannot prepare %s: %s", name, run_dir, exc)
            return _setup_failure(f"cannot prepare the run's directory ({_reason(exc)})")
        if shutil.which("ansible-playbook", path=env["PATH"]) is None:
            log.error("run %s: ansible-playbook not found on PATH %s", name, env["PATH"])
            return _setup_failure("ansible-playbook not found on the worker's PATH (is "
                                  "ansible-core installed where the service runs?)", rc=127)

        events = _Events(on_task, self.scrub)
        stop: list[str] = []  # the reason we stopped the run, once we do
        timeout = run.timeout if run.timeout is not None else self.default_timeout
        try:
            runner = init_runner(
                private_data_dir=str(run_dir),
                ident=name,
                project_dir=str(playbook.parent),
                playbook=str(playbook),
                inventory=str(inventory),
                envvars=env,
                limit=run.limit,
                forks=self.forks,
                quiet=True,
                settings={"suppress_ansible_output": True, "pexpect_timeout": 1},
                event_handler=events.handle,
                cancel_callback=lambda: bool(stop),
            )
        except (AnsibleRunnerException, OSError, ValueError) as exc:
            log.error("run %s: ansible-runner refused the run: %s", name, exc)
            return _setup_failure("ansible-runner could not prepare the run: "
                                  f"{self.scrub(str(exc))}")
        # Before the run starts: the child is spawned with this, and the runner's
        # ``command`` artifact records it.
        runner.config.env = playbook_environment(
            runner.config.env, env, os.environ, self.passed_env, self.withheld_values)

        crashed: list[BaseException] = []

        def target() -> None:
            try:
                runner.run()
            except Exception as exc:
                log.exception("run %s: ansible-runner failed", name)
                crashed.append(exc)

        log.info("run %s: playbook %s starting (marker %s)", name, run.playbook, marker)
        started = time.monotonic()
        deadline = started + timeout if timeout else None
        # The run's callbacks log from this thread: with the caller's request or action id.
        thread = threading.Thread(target=carry(target), name=f"ansible-{name}", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(POLL_SECONDS)
            if not thread.is_alive() or stop:
                continue
            if cancel is not None and cancel.is_set():
                stop.append("cancelled")
            elif deadline is not None and time.monotonic() >= deadline:
                stop.append("timeout")
            if stop:
                log.warning("run %s: %s, killing its processes", name, stop[0])
                # Kill now rather than wait for the runner to notice: ansible-playbook's
                # session and daemonized ssh masters are beyond the runner's own kill.
                self._kill_run(marker, control_dir, self.kill_grace)
                thread.join(JOIN_AFTER_KILL)
                if thread.is_alive():
                    log.error("run %s: ansible-runner did not return after the kill", name)
                    break
        if stop:
            left = self._kill_run(marker, control_dir, 0.0)
            if left:
                log.error("run %s: processes left after the kill: %s", name, left)

        result = self._result(runner, events, stop, crashed, timeout)
        log.info(
            "run %s: %s rc=%s after %.1fs",
            name,
            result.status,
            result.rc,
            time.monotonic() - started,
        )
        return result

    def _result(self, runner, events: _Events, stop, crashed, timeout) -> PlaybookResult:
        rc = getattr(runner, "rc", None)
        if stop:
            status = stop[0]
        elif crashed:
            status = "failed"
        else:
            status = runner.status if runner.status in ("successful", "failed") else "failed"
        tasks = list(events.tasks)
        if status == "successful":
            return PlaybookResult(status=status, rc=rc, tasks=tasks)
        if stop:
            why = f"timed out after {timeout:g}s" if status == "timeout" else "cancelled"
            current = events.in_flight()
            if current is not None:
                failure = TaskResult(
                    host=current.host,
                    task=current.task,
                    status="failed",
                    role=current.role,
                    play=current.play,
                    message=f"playbook {why} while this task was running",
                )
            else:
                failure = TaskResult(
                    host="-", task="ansible-playbook", status="failed", message=f"playbook {why}"
                )
            return PlaybookResult(status=status, rc=rc, tasks=tasks, failure=failure)
        failure = events.fatal()
        if failure is None:
            if crashed:
                message = "ansible-runner failed (the worker's log has the traceback)"
            else:
                message = events.output_summary() or f"ansible-playbook exited with rc {rc}"
            failure = TaskResult(
                host="-", task="ansible-playbook", status="failed", message=_clip(message)
            )
        return PlaybookResult(status="failed", rc=rc, tasks=tasks, failure=failure)

    def _environment(self, marker: str, run_dir: Path, control_dir: Path,
                     group: str | None = None, chain: str | None = None) -> dict[str, str]:
        home = run_dir / "ansible-home"
        local_tmp = run_dir / "tmp"
        home.mkdir(mode=0o700, exist_ok=True)
        local_tmp.mkdir(mode=0o700, exist_ok=True)
        # The interpreter's bin first: ansible-playbook lives in the venv (rc 127 otherwise).
        path = os.pathsep.join(
            [os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)]
        )
        env = {
            "PATH": path,
            "ANSIBLE_ROLES_PATH": self.roles_dir,
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_HOST_KEY_CHECKING": str(self.host_key_checking == "pinned"),
            "ANSIBLE_TIMEOUT": str(self.ssh_timeout),
            "ANSIBLE_FORKS": str(self.forks),
            "ANSIBLE_STRATEGY": self.strategy,
            "ANSIBLE_STRATEGY_PLUGINS": mitogen_strategy_dir(),
            # ansible-core deprecates every third-party strategy on each run; the notice
            # would crowd the real warnings out of a failed run's message.
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_SSH_ARGS": f"{self.ssh_args} {self._host_key_args(run_dir)}",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            "ANSIBLE_HOME": str(home),
            "ANSIBLE_LOCAL_TEMP": str(local_tmp),
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            # As ansible.cfg: no play gathers facts, and injecting them costs a scan of
            # every connection plugin for each host of each task.
            "ANSIBLE_INJECT_FACT_VARS": "False",
            "ANSIBLE_NOCOLOR": "1",
            # An inventory no plugin can parse must fail the run, not match no hosts.
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        }
        if self.strategy.startswith("mitogen"):
            # Mitogen's multiplexer makes its socket in the temp directory: there too, so it
            # is removed with the directory after every run, also one that was killed.
            env["TMPDIR"] = str(control_dir)
        env.update(self.extra_env)
        env[RUN_MARKER_ENV] = marker
        if group:
            env[RUN_GROUP_ENV] = group
        if chain:
            env[RUN_CHAIN_ENV] = chain
        return env

    # --- host keys -------------------------------------------------------------------------

    def _write_known_hosts(self, run_dir: Path, run: PlaybookRun) -> None:
        if self.host_key_checking == "pinned":
            # Empty without pins: ssh then trusts no host rather than any.
            (run_dir / KNOWN_HOSTS_FILE).write_text(run.known_hosts or "")

    def _host_key_args(self, run_dir: Path) -> str:
        checked = self.host_key_checking == "pinned"
        return host_key_args(run_dir / KNOWN_HOSTS_FILE if checked else None)

    # --- run directories ------------------------------------------------------------------

    def _new_run_dir(self, ident: str) -> Path:
        """``<artifacts_dir>/<ident>-<n>``, n one past the highest so far (mkdir is atomic)."""
        base = _IDENT_UNSAFE.sub("_", ident).strip("._") or "run"
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        pattern = re.compile(re.escape(base) + r"-(\d+)$")
        while True:
            numbers = [
                int(m.group(1)) for m in map(pattern.match, os.listdir(self.artifacts_dir)) if m
            ]
            run_dir = self.artifacts_dir / f"{base}-{max(numbers, default=0) + 1}"
            try:
                run_dir.mkdir(mode=0o700)
            except FileExistsError:
                continue  # another attempt of the same ident took it: look again
            (run_dir / RUN_DIR_FLAG).write_text(ident + "\n")
            with _dirs_lock:
                _active_dirs.add(str(run_dir))
            return run_dir

    def _prune(self) -> None:
        """Remove the oldest run directories beyond ``keep_artifacts`` (never active ones)."""
        if self.keep_artifacts <= 0:
            return
        runs = []
        try:
            entries = list(os.scandir(self.artifacts_dir))
        except OSError as exc:
            log.warning("cannot list %s to prune it: %s", self.artifacts_dir, exc)
            return
        for entry in entries:
            flag = Path(entry.path) / RUN_DIR_FLAG
            try:
                if entry.is_dir(follow_symlinks=False):
                    runs.append((flag.stat().st_mtime, entry.path))
            except OSError:
                continue  # not one of ours, or removed meanwhile
        runs.sort(reverse=True)
        with _dirs_lock:
            active = set(_active_dirs)
        for _, path in runs[self.keep_artifacts :]:
            if path not in active:
                log.debug("pruning run directory %s", path)
                shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _scrub_artifacts(run_dir: Path) -> None:
        # The runner writes the run's whole environment into ``command``: allow-listed, but
        # the operator's ANSIBLE_* settings are theirs to keep off the disk.
        for command in run_dir.glob("artifacts/*/command"):
            with contextlib.suppress(OSError):
                command.unlink()

    @staticmethod
    def _kill_run(marker: str, control_dir: Path, grace: float) -> list[int]:
        """Kill every process of the run: those with its marker, and its ssh masters."""

        def find() -> list[int]:
            marked = proctree.find_processes_with_env(RUN_MARKER_ENV, marker)
            return sorted(set(marked) | set(proctree.find_unix_socket_holders(str(control_dir))))

        return proctree.kill_until_gone(find, grace)

    @staticmethod
    def _close_control_masters(control_dir: Path) -> None:
        """Ask each ssh control master of the run to exit, kill any that stay, drop the dir.

        After a run that ended by itself this is all the cleanup there is: other processes
        with the marker are not killed then, because on a local connection they may be
        daemons the play started on purpose. The masters are only ever ssh's own.
        """
        if not control_dir.is_dir():
            return
        ssh = shutil.which("ssh")
        if ssh:
            for sock in control_dir.iterdir():
                if sock.name.startswith("mitogen_unix_"):
                    continue  # Mitogen's multiplexer, not an ssh master
                try:
                    subprocess.run(
                        [ssh, "-o", f"ControlPath={sock}", "-O", "exit", "lambda-control-master"],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=5,
                        check=False,
                    )
                except (OSError, subprocess.SubprocessError) as exc:
                    log.warning("cannot stop ssh control master %s: %s", sock, exc)
        left = proctree.kill_until_gone(
            lambda: proctree.find_unix_socket_holders(str(control_dir)), grace=1.0, timeout=5.0
        )
        if left:
            log.error("ssh control masters left in %s: %s", control_dir, left)
        shutil.rmtree(control_dir, ignore_errors=True)
