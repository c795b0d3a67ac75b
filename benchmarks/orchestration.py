"""Part 3 (orchestration) and part 4 (memory): the controller CPU of start+stop, per host.

The product runs as in the scaled-out shape: the API under ``lambda-service serve`` and a
``lambda-service worker`` (Celery over the machine's RabbitMQ; the local dispatcher in the
API process when no broker answers), against the Synnefo emulator in this process. With
``--lab`` (the default where root and ``ip netns`` work) the hosts are SSH lab hosts (network
namespaces running sshd) whose power the emulator drives through
``lambda_testbed.lab.LabPowerHooks``, and only the controller's side of each task is counted;
with ``--no-lab`` they are loopback addresses reached with ``ansible_connection=local``, as in
the demo, and the hosts' module runs count as controller CPU too.

Each round runs, for every size, a start+stop through the product's API and the same two
playbooks with plain ``ansible-playbook`` as an operator would (the inventory from
``lambda-service inventory``, the extravars file with ``-e @``, the repository's
``ansible.cfg``). Both go through ``benchmarks.ctrlcpu``'s wrapper, which counts the CPU of
each ansible-playbook's whole process tree; the slope of those CPU-seconds over the host
count is the controller CPU one more host costs.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml
from cryptography.fernet import Fernet

from benchmarks import ctrlcpu
from benchmarks.procs import ROOT, Proc, RssSampler, cpu_seconds, free_port, python_cmd, tree
from lambda_testbed.demo_data import DEMO_TOKEN, DEMO_USER_ID, DEMO_USER_NAME

LAB_NAME = "lambdabench"
LAB_SUBNET = "10.213.230.0/24"
DEFAULT_SERVICES = ("hdfs", "yarn", "kafka")
# What the README has operators add against local hosts: Mitogen gives them all one
# interpreter, which runs their tasks one after another.
LOCAL_STRATEGY = "linear"


def instance_id(hosts: int) -> str:
    return f"c0000000-0000-4000-8000-{hosts:012x}"


def server_id(hosts: int, index: int) -> str:
    return str(1000 + hosts * 100 + index)


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


def configured_strategy() -> str:
    """The strategy the repository's ansible.cfg gives plain ansible-playbook."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "ansible.cfg")
    return os.environ.get("ANSIBLE_STRATEGY") or cfg.get("defaults", "strategy",
                                                         fallback="linear")


@dataclass
class Cycle:
    """One start+stop of ``hosts`` hosts."""

    kind: str  # product (through the API) | plain (ansible-playbook by hand)
    hosts: int
    repeat: int
    wall: float  # seconds, start + stop
    cpu: float  # CPU-s of the ansible-playbook process trees (the controller's Ansible)
    service_cpu: float | None = None  # CPU-s of the API and worker processes themselves
    ok: bool = True


@dataclass
class OrchestrationResult:
    mode: str
    services: tuple[str, ...]
    dispatcher: str
    strategies: str = ""
    cycles: list[Cycle] = field(default_factory=list)
    memory: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def median(self, kind: str, hosts: int, attr: str = "cpu") -> float | None:
        """Median over the rounds of a succeeded cycle's ``attr``."""
        values = [getattr(c, attr) for c in self.cycles
                  if (c.kind, c.hosts) == (kind, hosts) and c.ok and getattr(c, attr) is not None]
        return statistics.median(values) if values else None

    def sizes(self) -> list[int]:
        return sorted({c.hosts for c in self.cycles})

    def cpu_per_host(self, kind: str) -> float | None:
        """CPU-s one more host adds to a start+stop: the slope over the sizes' medians."""
        return ctrlcpu.per_host_slope({n: self.median(kind, n) for n in self.sizes()})

    def print(self, out) -> dict[str, str]:
        def p(text=""):
            print(text, file=out, flush=True)

        def cell(value, fmt=".2f"):
            return "-" if value is None else format(value, fmt)

        p()
        p(f"hosts: {self.mode}; services {', '.join(self.services)}; dispatcher "
          f"{self.dispatcher}")
        if self.strategies:
            p(f"ansible: {self.strategies}")
        rounds = max((c.repeat + 1 for c in self.cycles), default=0)
        p(f"start+stop, medians of {rounds} rounds; CPU-s of the ansible-playbook process "
          "trees (ssh included), and of the API and worker processes themselves:")
        p("| hosts | product s | product ansible CPU-s | product service CPU-s "
          "| plain s | plain ansible CPU-s |")
        p("|---|---|---|---|---|---|")
        for n in self.sizes():
            p(f"| {n} | {cell(self.median('product', n, 'wall'))} "
              f"| {cell(self.median('product', n))} "
              f"| {cell(self.median('product', n, 'service_cpu'))} "
              f"| {cell(self.median('plain', n, 'wall'))} | {cell(self.median('plain', n))} |")
        failed = [c for c in self.cycles if not c.ok]
        if failed:
            p(f"failed cycles (left out): {len(failed)}")
        for name, values in self.memory.items():
            p(f"memory {name}: {values}")
        for note in self.notes:
            p(f"note: {note}")
        summary = {}
        for kind, key in (("product", "CTRL_CPU_PER_HOST"), ("plain", "CTRL_CPU_PER_HOST_PLAIN")):
            slope = self.cpu_per_host(kind)
            if slope is not None:
                summary[key] = f"{slope:.2f}"
        return summary


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
        self.cpu_log = self.workdir / "ansible-cpu.jsonl"
        self.cpu_offset = 0
        self.product_strategies: set[str] = set()  # ANSIBLE_STRATEGY the runner set
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Token {DEMO_TOKEN}"

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- set up ---------------------------------------------------------------------------

    def _host_layout(self) -> dict[int, list[tuple[str, str]]]:
        """(name, ip) of each size's hosts: hosts of its own, as each real instance has.

        Sharing across sizes would make every start rewrite the
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
        for n in self.counts:
            hosts = []
            for i, (name, ip) in enumerate(layout[n]):
                sid = server_id(n, i)
                server_to_host[sid] = name
                hosts.append({"server_id": sid, "name": name,
                              "role": "master" if i == 0 else "slave", "ip": ip})
                servers.append({"id": sid, "name": name, "owner": DEMO_USER_ID,
                                "status": "STOPPED", "ips": [ip]})
            instances.append({"id": instance_id(n), "owner": DEMO_USER_ID,
                              "name": f"bench-{n}", "status": "STOPPED",
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
        self.extravars_file = state / "extravars.yml"
        self.extravars_file.write_text(yaml.safe_dump(self._extravars()))
        seed_file = self.workdir / "seed.yml"
        seed_file.write_text(yaml.safe_dump(seed))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMBDA_")}
        env.update({
            "LAMBDA_DATABASE_URL": f"sqlite:///{state / 'lambda.db'}",
            "LAMBDA_AUTH_URL": self.emulator.auth_url,
            "LAMBDA_BIND": f"127.0.0.1:{free_port()}",
            "LAMBDA_STATE_DIR": str(state),
            "LAMBDA_SECRET_KEY": Fernet.generate_key().decode(),
            "LAMBDA_EXTRAVARS_FILE": str(self.extravars_file),
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
        subprocess.run(python_cmd("-m", "api.cli", "seed", str(seed_file)), env=env,
                       check=True, capture_output=True)
        # The runner puts its interpreter's directory first on a run's PATH: started with
        # this one, the API and worker run every playbook through the counting wrapper.
        python = str(ctrlcpu.controller_python(self.workdir / "controller", self.cpu_log))
        self.wrapper = str(Path(python).parent / "ansible-playbook")
        self.base = f"http://{env['LAMBDA_BIND']}"
        self.api = Proc("api", [python, "-m", "api.cli", "serve"], env,
                        self.workdir / "api.log")
        self.procs.append(self.api)
        self.worker = None
        if use_celery:
            self.worker = Proc("worker", [python, "-m", "api.cli", "worker",
                                          "--concurrency", "2"],
                               env, self.workdir / "worker.log")
            self.procs.append(self.worker)
        self.api.wait_http(f"{self.base}/api/openapi.json")
        self.inventories = self._write_inventories()

    def _write_inventories(self) -> dict[int, Path]:
        """Each size's inventory, written by ``lambda-service inventory`` as an operator would."""
        paths = {}
        for n in self.counts:
            paths[n] = self.workdir / f"hosts-{n}.ini"
            subprocess.run(python_cmd("-m", "api.cli", "inventory", instance_id(n), "-o",
                                      str(paths[n])),
                           env=self.env, check=True, capture_output=True)
        return paths

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
            if data["state"] in ("succeeded", "failed", "cancelled"):
                return data
            time.sleep(0.2)
        raise RuntimeError(f"{action} of {instance} did not end within {timeout}s")

    def _ansible_runs(self) -> list[ctrlcpu.Run]:
        runs, self.cpu_offset = ctrlcpu.read_runs(self.cpu_log, self.cpu_offset)
        return runs

    def _service_cpu(self) -> dict[int, float]:
        """CPU-s so far of each process of the API's and the worker's trees."""
        return {pid: cpu_seconds(pid) for proc in self.procs for pid in tree(proc.pid)}

    def run_product(self, n: int, repeat: int) -> Cycle:
        """One start+stop of ``n`` hosts through the API."""
        self._ansible_runs()  # skip anything logged before
        before, wall, ok = self._service_cpu(), 0.0, True
        for action in ("start", "stop"):
            started = time.monotonic()
            data = self._act(instance_id(n), action)
            wall += time.monotonic() - started
            if data["state"] != "succeeded":
                ok = False
                self.say(f"  {n}-host {action} failed: {data.get('error')}")
        after = self._service_cpu()
        # Processes that lived through the cycle: the playbooks' own are counted apart.
        service = sum(after[pid] - before[pid] for pid in after if pid in before)
        runs = self._ansible_runs()
        self.product_strategies.update(r.strategy or "ansible.cfg's" for r in runs)
        return Cycle("product", n, repeat, wall, sum(r.cpu for r in runs), service,
                     ok and len(runs) == 2)

    def run_plain(self, n: int, repeat: int) -> Cycle:
        """One start+stop of ``n`` hosts with plain ansible-playbook, from the checkout."""
        self._ansible_runs()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LAMBDA_", "ANSIBLE_"))}
        env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"
        if self.lab is None:
            env["ANSIBLE_STRATEGY"] = LOCAL_STRATEGY
        powered = (lab_powered(self.lab, self.hosts_of(n)) if self.lab is not None
                   else contextlib.nullcontext())
        ok = True
        with powered:
            for action in ("start", "stop"):
                done = subprocess.run(
                    [self.wrapper, "-i", str(self.inventories[n]), "-e",
                     f"@{self.extravars_file}", f"playbooks/lambda-{action}.yml"],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
                if done.returncode != 0:
                    ok = False
                    self.say(f"  plain {n}-host {action} failed (rc {done.returncode}): "
                             f"{done.stdout[-1500:]}{done.stderr[-500:]}")
        runs = self._ansible_runs()
        return Cycle("plain", n, repeat, sum(r.wall for r in runs), sum(r.cpu for r in runs),
                     None, ok and len(runs) == 2)

    def strategies(self) -> str:
        product = sorted(self.product_strategies)
        plain = (f"{configured_strategy()} (ansible.cfg)" if self.lab is not None
                 else f"{LOCAL_STRATEGY} (ANSIBLE_STRATEGY, as the README has it for local hosts)")
        return (f"product strategy {', '.join(product) or 'n/a'}; plain ansible-playbook "
                f"strategy {plain}")

    def measure_memory(self, n: int, result: OrchestrationResult) -> None:
        """An untimed start+stop of ``n`` hosts, the API's and worker's trees sampled.

        Untimed: the samplers read /proc for every process of both trees five times a
        second, and this is the first start of its hosts (first formats, cold caches).
        """
        iid = instance_id(n)
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
            else "local hosts (ansible_connection=local): the hosts' module runs count as "
            "controller CPU" + (f"; the lab is not usable: {reason}" if reason else ""))
    bench = OrchestrationBench(workdir, host_counts, bool(use_lab), services, out, broker_url)
    result = OrchestrationResult(mode=mode, services=services, dispatcher=bench.dispatcher)
    try:
        bench.start()
        result.dispatcher = bench.dispatcher
        # Untimed first cycles: a host's first start formats and writes its configuration,
        # and the first playbooks pay for cold caches; later ones do not.
        for n in sorted(set(host_counts))[:-1]:
            bench.say(f"  warm-up: an untimed start+stop of {n} hosts")
            bench.run_product(n, -1)
        bench.say(f"  memory: an untimed start+stop of {max(host_counts)} hosts, sampled")
        bench.measure_memory(max(host_counts), result)
        # Rounds of every size and both kinds, so load that drifts over the minutes of a
        # run weighs on each alike.
        sizes = ", ".join(map(str, host_counts))
        for repeat in range(repeats):
            bench.say(f"  round {repeat + 1} of {repeats}: start+stop of {sizes} hosts, "
                      "through the product and with plain ansible-playbook")
            for n in host_counts:
                result.cycles.append(bench.run_product(n, repeat))
                result.cycles.append(bench.run_plain(n, repeat))
        result.strategies = bench.strategies()
        return result
    finally:
        bench.stop()
