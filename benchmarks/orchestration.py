"""Part 3 (orchestration) and part 4 (memory): start and stop instances of 2, 4, 8 hosts.

The product runs as in the scaled-out shape: the API under ``lambda-service serve`` and a
``lambda-service worker`` (Celery over the machine's RabbitMQ; the local dispatcher in the
API process when no broker answers), against the Synnefo emulator in this process. With
``--lab`` (the default where root and ``ip netns`` work) the hosts are SSH lab hosts
(network namespaces running sshd) whose power the emulator drives through
``lambda_testbed.lab.LabPowerHooks``; without it they are loopback addresses reached with
``ansible_connection=local`` (as the demo and tests/e2e do).

Each start and stop is timed from the action resource (its steps: power_on, wait_ssh,
playbook, power_off). Beside it, in the same run, a naive serial baseline runs the same
action through the product's own orchestrator with the VMs powered on (off) and waited
one by one, and SSH waited host by host, as the original service did: same playbook, so
the difference is what parallel power and waits buy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
import yaml
from cryptography.fernet import Fernet

from benchmarks.procs import Proc, RssSampler, free_port, python_cmd
from lambda_testbed.demo_data import DEMO_TOKEN, DEMO_USER_ID, DEMO_USER_NAME

LAB_NAME = "lambdabench"
LAB_SUBNET = "10.213.230.0/24"
DEFAULT_SERVICES = ("hdfs", "yarn", "kafka")
STEP_NAMES = ("power_on", "wait_ssh", "playbook", "power_off")


def instance_id(kind: str, hosts: int) -> str:
    prefix = "c0000000" if kind == "product" else "d0000000"
    return f"{prefix}-0000-4000-8000-{hosts:012x}"


def server_id(kind: str, hosts: int, index: int) -> str:
    return str((1 if kind == "product" else 5) * 1000 + hosts * 100 + index)


def lab_usable() -> str | None:
    """Why the SSH lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "unshare", "ssh"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not Path("/usr/sbin/sshd").exists():
        return "openssh-server is not installed"
    try:
        from lambda_testbed.lab.netns import check_usable
    except ImportError as exc:
        return f"the lab package is not available ({exc})"
    return check_usable()


@dataclass
class Timing:
    kind: str  # product | serial
    action: str  # start | stop
    hosts: int
    total: float  # seconds from the action's creation to its end
    steps: dict[str, float]
    state: str
    error: str | None
    task_durations: list[float] = field(default_factory=list)
    repeat: int = 0  # which of the product's repeated start+stop cycles
    cpu: float | None = None  # busy CPU-s of the whole machine while the action ran
    action_id: str | None = None

    @property
    def power(self) -> float:
        """Seconds of the steps that power the VMs and wait for SSH (not the playbook)."""
        return sum(self.steps.get(s, 0.0) for s in ("power_on", "wait_ssh", "power_off"))


@dataclass
class OrchestrationResult:
    mode: str
    services: tuple[str, ...]
    dispatcher: str
    timings: list[Timing] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    ansible: dict = field(default_factory=dict)
    ssh_costs: dict = field(default_factory=dict)  # strategy -> per task and host
    skeleton: dict = field(default_factory=dict)  # see ansible_share
    ssh_settings: str = ""
    notes: list[str] = field(default_factory=list)

    def totals(self, kind: str, action: str, hosts: int) -> list[float]:
        return [t.total for t in self.timings if (t.kind, t.action, t.hosts) ==
                (kind, action, hosts)]

    def cycle(self, kind: str, hosts: int) -> float | None:
        """Median over the repeats of start + stop (each repeat's pair summed)."""
        pairs = list(self.cycles(kind, hosts).values())
        return statistics.median(pairs) if pairs else None

    def cycles(self, kind: str, hosts: int, actions=("start", "stop"),
               measure: str = "total") -> dict[int, float]:
        """Each repeat's summed ``measure`` (wall ``total``, machine ``cpu`` or the ``power``
        steps' seconds) of ``actions`` (start + stop), by repeat."""
        by_repeat: dict[int, dict[str, float]] = {}
        for t in self.timings:
            value = getattr(t, measure)
            if (t.kind, t.hosts) == (kind, hosts) and t.action in actions and value is not None:
                by_repeat.setdefault(t.repeat, {})[t.action] = value
        return {r: sum(v.values()) for r, v in by_repeat.items() if len(v) == len(actions)}

    def cycle_cpu(self, hosts: int) -> float | None:
        """Median over the rounds of the product's start + stop machine CPU-s."""
        pairs = list(self.cycles("product", hosts, measure="cpu").values())
        return statistics.median(pairs) if pairs else None

    def power_seconds(self, kind: str, hosts: int) -> float:
        """Median over the repeats of a start+stop's power and SSH steps."""
        cycles = self.cycles(kind, hosts, measure="power")
        return statistics.median(cycles.values()) if cycles else 0.0

    def round_ratios(self, lo: int, hi: int, actions=("start", "stop")) -> list[float]:
        """T(hi)/T(lo) of each round (the repeats of both sizes ran in the same round)."""
        t_lo, t_hi = self.cycles("product", lo, actions), self.cycles("product", hi, actions)
        return [t_hi[r] / t_lo[r] for r in sorted(t_lo) if r in t_hi and t_lo[r] > 0]

    def _print_cpu(self, p, counts: list[int], lo: int, hi: int) -> None:
        """Machine CPU per cycle, and the floor it puts under T(hi)/T(lo) on these cores.

        The lab's hosts share the machine's cores with the controller, so the CPU a cycle
        needs bounds its wall time from below: T >= CPU-s / cores.
        """
        cpu = {n: self.cycle_cpu(n) for n in counts}
        if cpu.get(lo) is None or cpu.get(hi) is None:
            return
        cores = os.cpu_count() or 1
        per_host = (cpu[hi] - cpu[lo]) / (hi - lo)
        p(f"machine CPU per start+stop (every process, {cores} cores; medians of the "
          f"rounds): {', '.join(f'{n} hosts {cpu[n]:.1f} CPU-s' for n in counts if cpu[n])}"
          f"; {per_host:.2f} CPU-s per added host")
        floor, t_lo = cpu[hi] / cores, self.cycle("product", lo)
        p(f"CPU floor: {hi} hosts' {cpu[hi]:.1f} CPU-s take at least {floor:.1f} s on "
          f"{cores} cores, so T({hi})/T({lo}) >= {floor / t_lo:.2f} at this T({lo}) of "
          f"{t_lo:.2f} s unless the CPU per host falls")

    def _print_skeleton(self, p) -> None:
        """Ansible's own share of T(hi) - T(lo) (``ansible_share``), and the ratio it leaves."""
        k = self.skeleton
        lo, hi, t_lo = k["lo"], k["hi"], self.cycle("product", k["lo"])
        added = k[hi]["wall"] - k[lo]["wall"]
        power = self.power_seconds("product", hi) - self.power_seconds("product", lo)
        p(f"Ansible's own share: the product's playbooks with each task that ran a /bin/true "
          f"command (the same plays, hosts and tasks per host: {k['host_tasks']['start']} + "
          f"{k['host_tasks']['stop']} task results at {hi} hosts), through the product's "
          f"runner, median of {k['repeats']}: start+stop {lo} hosts {k[lo]['wall']:.2f} s "
          f"({k[lo]['cpu']:.1f} CPU-s), {hi} hosts {k[hi]['wall']:.2f} s "
          f"({k[hi]['cpu']:.1f} CPU-s), +{added:.2f} s")
        if t_lo:
            p(f"  were the roles' own work free per added host, T({hi}) would still be "
              f"T({lo}) {t_lo:.2f} s + {added:.2f} s + {power:.2f} s more in the power steps: "
              f"T({hi})/T({lo}) {(t_lo + added + power) / t_lo:.2f}")

    def print(self, out) -> dict[str, str]:
        def p(text=""):
            print(text, file=out, flush=True)

        p()
        p(f"hosts: {self.mode}; services {', '.join(self.services)}; dispatcher "
          f"{self.dispatcher}")
        p(f"ssh/ansible settings: {self.ssh_settings}")
        p("| run | hosts | action | total s | machine CPU-s | power_on | wait_ssh | playbook "
          "| power_off | state |")
        p("|---|---|---|---|---|---|---|---|---|---|")
        for t in self.timings:
            cells = " | ".join(f"{t.steps[s]:.2f}" if s in t.steps else "-" for s in STEP_NAMES)
            run = t.kind if not t.repeat else f"{t.kind} ({t.repeat + 1})"
            cpu = "-" if t.cpu is None else f"{t.cpu:.1f}"
            p(f"| {run} | {t.hosts} | {t.action} | {t.total:.2f} | {cpu} | {cells} "
              f"| {t.state} |")
        counts = sorted({t.hosts for t in self.timings})
        for n in counts:
            product, serial = self.cycle("product", n), self.cycle("serial", n)
            if product and serial:
                power = [self.power_seconds(kind, n) for kind in ("product", "serial")]
                p(f"{n} hosts: start+stop {product:.2f} s parallel vs {serial:.2f} s serial "
                  f"baseline (serial/parallel {serial / product:.2f}); power and SSH steps "
                  f"alone {power[0]:.2f} s vs {power[1]:.2f} s "
                  f"(serial/parallel {power[1] / max(power[0], 1e-9):.2f})")
        summary = {}
        if counts:
            lo, hi = min(counts), max(counts)
            ratios = self.round_ratios(lo, hi)
            if ratios:
                ratio = statistics.median(ratios)
                starts = statistics.median(self.round_ratios(lo, hi, ("start",)))
                p(f"T({hi})/T({lo}) start+stop {ratio:.2f} (median of the rounds' "
                  f"{', '.join(f'{r:.2f}' for r in ratios)}; start only {starts:.2f})")
                summary[f"T{hi}/T{lo}"] = f"{ratio:.2f}"
                self._print_cpu(p, counts, lo, hi)
                if self.skeleton:
                    self._print_skeleton(p)
        tasks = [d for t in self.timings if t.kind == "product" for d in t.task_durations]
        if tasks:
            p(f"playbook task results: {len(tasks)}, median {statistics.median(tasks):.2f} s "
              f"per task and host (from the action resource)")
        if self.ansible:
            a = self.ansible
            p(f"ansible-playbook start-up (empty play, local): {a['empty']:.2f} s; "
              f"per task ({a['tasks']} command tasks, 1 host): {a['per_task']:.3f} s")
        if self.ssh_costs:
            c = self.ssh_costs
            p(f"per task and host over SSH ({c['hosts']} lab hosts, {c['tasks']} command "
              f"tasks, minus an empty play; median of {c['repeats']}):")
            for name in ("linear", "mitogen_linear"):
                v = c[name]
                p(f"  {name:15s} {v['cpu'] * 1000:6.1f} ms CPU (whole machine), "
                  f"{v['wall'] * 1000:6.1f} ms wall; empty play {v['empty']:.2f} s")
            p(f"  linear/mitogen_linear: CPU {c['linear']['cpu'] / c['mitogen_linear']['cpu']:.2f}"
              f", wall {c['linear']['wall'] / c['mitogen_linear']['wall']:.2f}")
        for name, values in self.memory.items():
            p(f"memory {name}: {values}")
        for note in self.notes:
            p(f"note: {note}")
        return summary


class SerialCompute:
    """Wraps a compute client so that VMs are powered and waited one at a time."""

    _lock = threading.Lock()

    def __init__(self, inner):
        self._inner = inner

    def ensure_active(self, server_id: str, timeout: float):
        with self._lock:
            return self._inner.ensure_active(server_id, timeout)

    def ensure_stopped(self, server_id: str, timeout: float):
        with self._lock:
            return self._inner.ensure_stopped(server_id, timeout)

    def __getattr__(self, name):
        return getattr(self._inner, name)


class SerialSshWaiter:
    """Waits for SSH host by host."""

    def __init__(self, inner):
        self._inner = inner

    def __call__(self, hosts, timeout, cancel):
        for host in hosts:
            self._inner([host], timeout, cancel)


class OrchestrationBench:
    def __init__(self, workdir: Path, host_counts: list[int], use_lab: bool,
                 services: tuple[str, ...], out, broker_url: str):
        self.workdir = workdir / "orchestration"
        self.workdir.mkdir()
        self.counts = host_counts
        self.use_lab = use_lab
        self.services = services
        self.out = out
        self.broker_url = broker_url
        self.lab = None
        self.layout: dict[int, list[tuple[str, str]]] = {}  # set in start()
        self.emulator = None
        self.procs: list[Proc] = []
        self.queue = f"lambda-bench-orch-{os.getpid()}"
        self.dispatcher = "celery"
        self.strategy = "linear"  # set from the settings in start()
        self.ssh_args = ""  # likewise: what the product's runner passes to ssh
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Token {DEMO_TOKEN}"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- set up ---------------------------------------------------------------------------

    def _host_layout(self) -> dict[int, list[tuple[str, str]]]:
        """(name, ip) of each size's hosts: hosts of its own, as each real instance has.

        Instances of one size (the product's and the serial baseline's, which never run at
        once) share them. Sharing across sizes would make every start rewrite the
        configuration of the hosts the sizes have in common (each size's lists the others'
        hosts differently), work a real instance does only on its first start.
        """
        counts = sorted(set(self.counts))
        if self.use_lab:
            from lambda_testbed.lab import Lab
            from lambda_testbed.lab.provision import host_names, install_distributions

            names = {n: host_names(n - 1, instance=k + 1) for k, n in enumerate(counts)}
            self.lab = Lab(LAB_NAME, hosts=[h for n in counts for h in names[n]],
                           subnet=LAB_SUBNET)
            self.say(f"building the SSH lab ({len(self.lab.hosts)} hosts: "
                     f"{', '.join(map(str, counts))} for the instances of each size) and "
                     "installing the stand-ins")
            self.lab.up(power_on=False)
            install_distributions(self.lab)
            return {n: [(h, self.lab.host(h).ip) for h in names[n]] for n in counts}
        layout, address = {}, 0
        for n in counts:
            names = [f"lambda-b{n}-master"] + [f"lambda-b{n}-slave-{i}" for i in range(1, n)]
            layout[n] = [(name, f"127.42.240.{address + i + 1}")
                         for i, name in enumerate(names)]
            address += n
        return layout

    def hosts_of(self, n: int) -> list[str]:
        """The lab host names of the instances of ``n`` hosts."""
        return [name for name, _ in self.layout[n]]

    def _seed(self, layout) -> tuple[dict, dict[str, str]]:
        instances, servers, server_to_host = [], [], {}
        for kind in ("product", "serial"):
            for n in self.counts:
                hosts = []
                for i, (name, ip) in enumerate(layout[n]):
                    sid = server_id(kind, n, i)
                    server_to_host[sid] = name
                    hosts.append({"server_id": sid, "name": name,
                                  "role": "master" if i == 0 else "slave", "ip": ip})
                    servers.append({"id": sid, "name": name, "owner": DEMO_USER_ID,
                                    "status": "STOPPED", "ips": [ip]})
                instances.append({"id": instance_id(kind, n), "owner": DEMO_USER_ID,
                                  "name": f"bench-{kind}-{n}", "status": "STOPPED",
                                  "services": list(self.services), "hosts": hosts})
        seed = {"users": [{"id": DEMO_USER_ID, "name": DEMO_USER_NAME,
                           "tokens": [DEMO_TOKEN]}],
                "instances": instances, "servers": servers,
                "emulator": {"transition_seconds": 1.0}}
        return seed, server_to_host

    def _extravars(self) -> dict:
        if self.use_lab:
            from lambda_testbed.lab.provision import lab_extravars

            return lab_extravars()
        from lambda_testbed import standins

        homes = standins.install(self.workdir / "dist")
        return dict(homes, lambda_host_root=str(self.workdir / "hosts")
                    + "/{{ inventory_hostname }}")

    def start(self) -> None:
        from benchmarks.http_bench import broker_reachable, celery_dispatcher_present
        from lambda_testbed.emulator import Emulator

        self.layout = self._host_layout()
        seed, server_to_host = self._seed(self.layout)
        hooks = None
        if self.lab is not None:
            from lambda_testbed.lab import LabPowerHooks

            hooks = LabPowerHooks(self.lab, server_to_host)
        self.emulator = Emulator.from_seed(seed, power_hooks=hooks)
        self.emulator.start("127.0.0.1", 0)
        state = self.workdir / "state"
        state.mkdir()
        extravars_file = state / "extravars.yml"
        extravars_file.write_text(yaml.safe_dump(self._extravars()))
        seed_file = self.workdir / "seed.yml"
        seed_file.write_text(yaml.safe_dump(seed))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")}
        env.update({
            "LAMBDA_DATABASE_URL": f"sqlite:///{state / 'lambda.db'}",
            "LAMBDA_AUTH_URL": self.emulator.auth_url,
            "LAMBDA_BIND": f"127.0.0.1:{free_port()}",
            "LAMBDA_STATE_DIR": str(state),
            "LAMBDA_SECRET_KEY": Fernet.generate_key().decode(),
            "LAMBDA_EXTRAVARS_FILE": str(extravars_file),
            "LAMBDA_POLL_INTERVAL": "0.2",
            "LAMBDA_SSH_TIMEOUT": "60",
            "LAMBDA_POWER_TIMEOUT": "120",
            "LAMBDA_BROKER_URL": self.broker_url,
            "LAMBDA_QUEUE": self.queue,
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        })
        if self.lab is not None:
            env.update({"LAMBDA_ANSIBLE_CONNECTION": "ssh",
                        "LAMBDA_SSH_USER": self.lab.ssh_user,
                        "LAMBDA_SSH_KEY_FILE": str(self.lab.ssh_key)})
        else:
            env["LAMBDA_ANSIBLE_CONNECTION"] = "local"
        use_celery = celery_dispatcher_present() and broker_reachable(self.broker_url)
        env["LAMBDA_DISPATCHER"] = "celery" if use_celery else "local"
        if not use_celery:
            self.dispatcher = "local (no broker): the API process is the worker"
        self.env = env
        from api.adapters.ansible import resolve_kex, resolve_strategy, ssh_args
        from api.settings import load_settings

        settings = load_settings(env)
        self.strategy = resolve_strategy(settings.ansible_strategy, settings.ansible_connection)
        self.ssh_args = ssh_args(resolve_kex(settings.ssh_kex))
        subprocess.run(python_cmd("-m", "api.cli", "seed", str(seed_file)), env=env,
                       check=True, capture_output=True)
        self.base = f"http://{env['LAMBDA_BIND']}"
        self.api = Proc("api", python_cmd("-m", "api.cli", "serve"), env,
                        self.workdir / "api.log")
        self.procs.append(self.api)
        self.worker = None
        if use_celery:
            self.worker = Proc("worker", python_cmd("-m", "api.cli", "worker",
                                                    "--concurrency", "2"),
                               env, self.workdir / "worker.log")
            self.procs.append(self.worker)
        self.api.wait_http(f"{self.base}/api/openapi.json")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        if self.emulator is not None:
            self.emulator.stop()
        if self.lab is not None:
            self.lab.down()
        else:
            from lambda_testbed.demo import kill_processes_under

            kill_processes_under(self.workdir)
        if self.dispatcher == "celery":
            from benchmarks.http_bench import delete_queue

            delete_queue(self.broker_url, self.queue)

    # --- product actions through the API ----------------------------------------------------

    def _act(self, instance: str, action: str, timeout: float = 600.0) -> dict:
        resp = self.session.post(f"{self.base}/api/lambda-instances/{instance}/",
                                 data={"action": action}, timeout=30)
        if resp.status_code != 202:
            raise RuntimeError(f"{action} of {instance}: {resp.status_code} {resp.text}")
        location = resp.headers["Location"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = self.session.get(f"{self.base}{location}", timeout=30).json()["data"]
            if data["state"] in ("succeeded", "failed"):
                return data
            time.sleep(0.2)
        raise RuntimeError(f"{action} of {instance} did not end within {timeout}s")

    @staticmethod
    def _timing(kind: str, action: str, hosts: int, data: dict, repeat: int = 0,
                cpu: float | None = None) -> Timing:
        created = datetime.fromisoformat(data["created_at"])
        finished = datetime.fromisoformat(data["finished_at"])
        steps = {s["name"]: s["duration"] for s in data["steps"]
                 if s["duration"] is not None and s["state"] != "skipped"}
        tasks = [t["duration"] for t in data["playbook"]["tasks"] if t.get("duration")]
        return Timing(kind, action, hosts, (finished - created).total_seconds(), steps,
                      data["state"], data.get("error"), tasks, repeat, cpu, data.get("id"))

    def run_product(self, n: int, result: OrchestrationResult, repeat: int = 0) -> None:
        """One timed start+stop of ``n`` hosts through the API, nothing else sampling."""
        iid = instance_id("product", n)
        for action in ("start", "stop"):
            cpu = _machine_cpu_seconds()
            data = self._act(iid, action)
            result.timings.append(self._timing("product", action, n, data, repeat,
                                               cpu=_machine_cpu_seconds() - cpu))
            if data["state"] != "succeeded":
                result.notes.append(f"{n}-host {action} failed: {data.get('error')}")

    def measure_memory(self, n: int, result: OrchestrationResult) -> None:
        """An untimed start+stop of ``n`` hosts, the API's and worker's trees sampled.

        Untimed: the samplers read /proc for every process of both trees five times a
        second, and this is the first start of its hosts, which the warm-up of the smaller
        sizes leaves cold (first formats, cold caches); a timed cycle would be charged for
        both.
        """
        iid = instance_id("product", n)
        samplers = [RssSampler(self.api.pid)]
        if self.worker is not None:
            samplers.append(RssSampler(self.worker.pid))
        for s in samplers:
            s.__enter__()
        try:
            start = self._act(iid, "start")
        finally:
            for s in samplers:
                s.__exit__(None, None, None)
        if start["state"] != "succeeded":
            result.notes.append(f"{n}-host start (memory) failed: {start.get('error')}")
        for name, sampler in zip(("api", "worker"), samplers, strict=False):
            main_hwm = sampler.peak_hwm_kb.get(sampler.pid, 0)
            others = sorted((kb for pid, kb in sampler.peak_hwm_kb.items()
                             if pid != sampler.pid), reverse=True)
            result.memory[f"{name} during the {n}-host start"] = (
                f"peak summed RSS of the process tree {sampler.peak_tree_kb / 1024:.0f} MiB;"
                f" VmHWM of the {name} process {main_hwm / 1024:.0f} MiB, of its largest "
                f"descendants {[round(kb / 1024) for kb in others[:4]]} MiB")
        stop = self._act(iid, "stop")
        if stop["state"] != "succeeded":
            result.notes.append(f"{n}-host stop (memory) failed: {stop.get('error')}")

    # --- the serial baseline, in this process ------------------------------------------------

    def run_serial(self, n: int, result: OrchestrationResult) -> None:
        from api.adapters.crypto import TokenCipher
        from api.adapters.db import UnitOfWorkFactory
        from api.adapters.db.engine import create_db_engine
        from api.adapters.ssh import SshWaiter
        from api.bootstrap import build_orchestrator
        from api.domain import services
        from api.domain.ports import Identity
        from api.settings import load_settings

        settings = load_settings(self.env)
        engine = create_db_engine(settings.database_url)
        try:
            uow_factory = UnitOfWorkFactory(engine)
            cipher = TokenCipher.from_settings(settings)
            from api.adapters.compute import compute_factory

            make = compute_factory(settings)
            orchestrator = build_orchestrator(
                settings, uow_factory, cipher,
                compute_factory=lambda url, token: SerialCompute(make(url, token)))
            if orchestrator.deps.wait_for_ssh is not None:
                orchestrator.deps.wait_for_ssh = SerialSshWaiter(SshWaiter(port=settings.ssh_port))
            identity = Identity(user_id=DEMO_USER_ID, user_name=DEMO_USER_NAME,
                                compute_url=self.emulator.compute_url)
            for action in ("start", "stop"):
                accepted = services.request_action(
                    uow_factory, identity, instance_id("serial", n), action,
                    encrypt_token=lambda: cipher.encrypt(DEMO_TOKEN))
                orchestrator.run(accepted.action.id)
                data = self.session.get(
                    f"{self.base}/api/lambda-instances/{instance_id('serial', n)}/actions/"
                    f"{accepted.action.id}", timeout=30).json()["data"]
                timing = self._timing("serial", action, n, data)
                result.timings.append(timing)
                if timing.state != "succeeded":
                    result.notes.append(f"serial {n}-host {action} failed: {timing.error}")
        finally:
            engine.dispose()


def ansible_costs(workdir: Path) -> dict:
    """ansible-playbook's own start-up (an empty play) and the cost of a command task."""
    bin_dir = Path(sys.executable).parent
    playbook = shutil.which("ansible-playbook", path=str(bin_dir)) or "ansible-playbook"
    empty = workdir / "empty.yml"
    empty.write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    five = workdir / "five.yml"
    five.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n" + "".join(
        f"    - name: Task {i}\n      ansible.builtin.command: /bin/true\n"
        "      changed_when: false\n" for i in range(5)))
    env = dict(os.environ, ANSIBLE_PIPELINING="True", ANSIBLE_PYTHON_INTERPRETER=sys.executable)

    def timed(path: Path) -> float:
        started = time.monotonic()
        subprocess.run([playbook, "-i", "localhost,", "-c", "local", str(path)], env=env,
                       check=True, capture_output=True, timeout=120)
        return time.monotonic() - started

    empties = [timed(empty) for _ in range(3)]
    fives = [timed(five) for _ in range(3)]
    e, f = statistics.median(empties), statistics.median(fives)
    return {"empty": e, "tasks": 5, "per_task": (f - e) / 5}


def skeleton_playbook(plays: list[dict], results) -> list[dict]:
    """``plays`` (a parsed playbook) with every task that ran made a ``/bin/true`` command.

    ``results`` are the (play, host, task) of one real run. Each play keeps its name and
    hosts and gets as many tasks as its busiest host ran there, so the skeleton has the
    real run's plays, hosts and tasks per host with the roles' own work (templates,
    daemons, readiness waits) taken out: what running it costs is Ansible's own share.
    A play that ran nothing (its service not listed: ``end_play``) stays, empty. Its
    ``meta`` tasks are left out: they run in the controller and fork nothing, though a
    skipped one reports a result for each host.
    """
    ran: dict[str | None, dict[str, list[str]]] = {}
    for play, host, task in results:
        ran.setdefault(play, {}).setdefault(host, []).append(task)
    skeleton = []
    for play in plays:
        meta = {t.get("name") for t in play.get("tasks") or []
                if "ansible.builtin.meta" in t or "meta" in t}
        # group_by stays as it is: the later plays' hosts are the groups it makes.
        grouping = {t.get("name"): t for t in play.get("tasks") or []
                    if "ansible.builtin.group_by" in t}
        tasks = max(([t for t in names if t not in meta]
                     for names in ran.get(play.get("name"), {}).values()), key=len, default=[])
        skeleton.append({
            "name": play.get("name"), "hosts": play["hosts"], "gather_facts": False,
            "any_errors_fatal": bool(play.get("any_errors_fatal")),
            "tasks": [grouping.get(task) or {
                "name": f"{i + 1}: {task}", "ansible.builtin.command": "/bin/true",
                "changed_when": False} for i, task in enumerate(tasks)]})
    return skeleton


def ansible_share(bench: OrchestrationBench, result: OrchestrationResult, lo: int, hi: int,
                  repeats: int = 3) -> dict:
    """start+stop of the product's playbooks as skeletons (``skeleton_playbook``), at
    ``lo`` and ``hi`` hosts, through the product's own runner, settings and inventories.

    The skeletons come from the last product start and stop of ``hi`` hosts. What they
    take more at ``hi`` than at ``lo`` hosts is what Ansible itself (forks, Mitogen, SSH,
    the hosts' interpreters) adds per host, whatever the roles do.
    """
    from api.adapters.ansible import AnsibleRunner
    from api.adapters.db import UnitOfWorkFactory
    from api.adapters.db.engine import create_db_engine
    from api.adapters.inventory import render_inventory
    from api.domain.ports import PlaybookRun
    from api.settings import load_settings

    settings = load_settings(bench.env)
    skeletons = bench.workdir / "skeleton"
    skeletons.mkdir()
    host_tasks = {}  # (host, task) results of the real hi-host run, by action
    engine = create_db_engine(settings.database_url)
    try:
        uow_factory = UnitOfWorkFactory(engine)
        with uow_factory(readonly=True) as uow:
            for action in ("start", "stop"):
                last = [t for t in result.timings if (t.kind, t.action, t.hosts)
                        == ("product", action, hi) and t.action_id]
                if not last:
                    return {}
                ran = uow.actions.get(last[-1].action_id)
                host_tasks[action] = len(ran.tasks)
                plays = yaml.safe_load(
                    (Path(settings.playbook_dir) / f"lambda-{action}.yml").read_text())
                (skeletons / f"lambda-{action}.yml").write_text(yaml.safe_dump(
                    skeleton_playbook(plays, [(t.play, t.host, t.task) for t in ran.tasks]),
                    sort_keys=False))
            inventories = {n: render_inventory(uow.instances.get(instance_id("product", n)),
                                               settings) for n in (lo, hi)}
    finally:
        engine.dispose()
    runner = AnsibleRunner.from_settings(settings.replace(
        playbook_dir=str(skeletons), state_dir=str(skeletons / "state")))
    samples: dict[int, list[tuple[float, float]]] = {lo: [], hi: []}
    with lab_powered(bench.lab, bench.hosts_of(lo) + bench.hosts_of(hi)):
        for repeat in range(repeats):  # interleaved, as the product's rounds
            for n in (lo, hi):
                cpu, started = _machine_cpu_seconds(), time.monotonic()
                for action in ("start", "stop"):
                    run = runner.run(PlaybookRun(playbook=f"lambda-{action}.yml",
                                                 inventory=inventories[n], timeout=300,
                                                 ident=f"skeleton-{action}-{n}-{repeat}"))
                    if not run.ok:
                        failure = run.failure.message if run.failure else run.status
                        raise RuntimeError(f"skeleton {action} of {n} hosts: {failure}")
                samples[n].append((time.monotonic() - started, _machine_cpu_seconds() - cpu))
    share = {"repeats": repeats, "lo": lo, "hi": hi, "host_tasks": host_tasks}
    for n, values in samples.items():
        share[n] = {"wall": statistics.median(v[0] for v in values),
                    "cpu": statistics.median(v[1] for v in values)}
    return share


@contextlib.contextmanager
def lab_powered(lab, names: list[str]):
    """These lab hosts powered on (their sshd answering) for the block, and off after it."""
    for name in names:
        lab.power_on(name)
    try:
        yield lab
    finally:
        for name in names:
            lab.power_off(name)


def _machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine so far (every core; /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def ssh_task_costs(lab, names: list[str], workdir: Path, ssh_args: str, tasks: int = 10,
                   repeats: int = 3) -> dict:
    """CPU and wall time of one command task on one host, linear vs Mitogen, over SSH.

    The ``names`` lab hosts are powered on and get ``tasks`` command tasks each; the cost is the
    difference to an empty play, divided by tasks x hosts. CPU is the whole machine's (the
    hosts share its cores, so this counts the controller, sshd and the hosts' Pythons).
    """
    from api.adapters.ansible import mitogen_strategy_dir

    inventory = workdir / "ssh-costs.ini"
    inventory.write_text("[lambda]\n" + "".join(
        f"{name} ansible_host={lab.host(name).ip}\n" for name in names) + "[lambda:vars]\n"
        f"ansible_user={lab.ssh_user}\nansible_ssh_private_key_file={lab.ssh_key}\n"
        "ansible_python_interpreter=/usr/bin/python3\nmitogen_ssh_compression=False\n")
    plays = {}
    for count in (0, tasks):
        plays[count] = workdir / f"ssh-costs-{count}.yml"
        plays[count].write_text(
            "- hosts: lambda\n  gather_facts: false\n  tasks:" + ("\n" if count else " []\n")
            + "".join(f"    - name: Task {i}\n      ansible.builtin.command: /bin/true\n"
                      "      changed_when: false\n" for i in range(count)))
    bin_dir = Path(sys.executable).parent
    playbook = shutil.which("ansible-playbook", path=str(bin_dir)) or "ansible-playbook"
    base = dict(os.environ, ANSIBLE_PIPELINING="True", ANSIBLE_HOST_KEY_CHECKING="False",
                ANSIBLE_SSH_ARGS=ssh_args, ANSIBLE_FORKS="20",
                ANSIBLE_STRATEGY_PLUGINS=mitogen_strategy_dir(),
                ANSIBLE_DEPRECATION_WARNINGS="False")

    def timed(strategy: str, count: int) -> tuple[float, float]:
        cpu, started = _machine_cpu_seconds(), time.monotonic()
        subprocess.run([playbook, "-i", str(inventory), str(plays[count])],
                       env=dict(base, ANSIBLE_STRATEGY=strategy), check=True,
                       capture_output=True, timeout=300)
        return time.monotonic() - started, _machine_cpu_seconds() - cpu

    with lab_powered(lab, names):
        samples = {(s, n): [] for s in ("linear", "mitogen_linear") for n in (0, tasks)}
        for _ in range(repeats):  # interleaved, so drifting load hits both alike
            for key in samples:
                samples[key].append(timed(*key))
        result = {"hosts": len(names), "tasks": tasks, "repeats": repeats}
        units = tasks * len(names)
        for strategy in ("linear", "mitogen_linear"):
            empty = [statistics.median(v[i] for v in samples[(strategy, 0)]) for i in (0, 1)]
            full = [statistics.median(v[i] for v in samples[(strategy, tasks)]) for i in (0, 1)]
            result[strategy] = {"wall": (full[0] - empty[0]) / tasks,
                                "cpu": (full[1] - empty[1]) / units, "empty": empty[0]}
        return result


def run_orchestration(workdir: Path, host_counts: list[int], use_lab: bool | None, out,
                      services: tuple[str, ...] = DEFAULT_SERVICES,
                      broker_url: str = "amqp://guest:guest@127.0.0.1:5672//",
                      repeats: int = 3) -> OrchestrationResult:
    reason = lab_usable()
    if use_lab is None:
        use_lab = reason is None
    elif use_lab and reason is not None:
        raise SystemExit(f"--lab: the SSH lab cannot run here: {reason}")
    mode = ("SSH lab (network namespaces with sshd)" if use_lab
            else "local hosts (ansible_connection=local)"
            + (f"; the lab is not usable: {reason}" if reason else ""))
    bench = OrchestrationBench(workdir, host_counts, use_lab, services, out, broker_url)
    result = OrchestrationResult(mode=mode, services=services, dispatcher=bench.dispatcher)
    try:
        bench.start()
        result.dispatcher = bench.dispatcher
        # Pinning off: the worker's environment has no LAMBDA_* variable but the bench's
        # own, so no LAMBDA_MITOGEN_PINNING reaches the strategy plugin.
        result.ssh_settings = (f"strategy {bench.strategy} (Mitogen CPU pinning off), "
                               "ANSIBLE_PIPELINING=True, forks "
                               f"{bench.env.get('LAMBDA_ANSIBLE_FORKS', '20')}, ssh args "
                               f"'{bench.ssh_args}'" if use_lab else
                               "connection local (no SSH); pipelining on, forks 20")
        # Warm-up, untimed: the first playbooks of a run pay for cold caches (SSH
        # masters, Python byte code of the stand-ins, page cache) and each host's first
        # start (formats, configuration written) that later ones do not. Every size has
        # hosts of its own; the largest is warmed by the memory cycle.
        for n in sorted(set(host_counts))[:-1]:
            bench.say(f"  warm-up: an untimed start+stop of {n} hosts")
            bench.run_serial(n, OrchestrationResult(mode, services, ""))
        bench.say(f"  memory: an untimed start+stop of {max(host_counts)} hosts, sampled")
        bench.measure_memory(max(host_counts), result)
        # Rounds of every size, not every round of one size and then the next: load that
        # drifts over the minutes of a run then weighs on each size alike, and each
        # round's T(hi)/T(lo) compares cycles run moments apart.
        sizes = ", ".join(map(str, host_counts))
        for repeat in range(repeats):
            bench.say(f"  round {repeat + 1} of {repeats}: product start+stop of {sizes} hosts")
            for n in host_counts:
                bench.run_product(n, result, repeat)
        bench.say(f"  serial baseline: start+stop of {sizes} hosts")
        for n in host_counts:
            bench.run_serial(n, result)
        if bench.lab is not None:
            lo, hi = min(host_counts), max(host_counts)
            bench.say(f"  Ansible's own share: skeletons of the playbooks on {lo} and {hi} "
                      "hosts")
            result.skeleton = ansible_share(bench, result, lo, hi)
        result.ansible = ansible_costs(bench.workdir)
        if bench.lab is not None:
            result.ssh_costs = ssh_task_costs(bench.lab, bench.hosts_of(max(host_counts)),
                                              bench.workdir, bench.ssh_args)
        return result
    finally:
        bench.stop()
