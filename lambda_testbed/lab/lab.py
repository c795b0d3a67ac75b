"""A lab of SSH hosts on one machine: each host is a network namespace running its own sshd.

Layout of one lab (root namespace side)::

    bridge <name>-br (x.x.x.1/24)  --  veth <name>-vN  <->  eth0 in netns <name>-<host>

Inside a host, sshd runs as PID 1 of its own pid, mount and uts namespaces, so:
- `hostname` is the host's name and the lab's hosts file is `/etc/hosts`;
- `/opt/lambda` is the host's private directory (its "disk") and `/tmp` is private too;
- `/root` is the host's own, empty home, as on a fresh VM: the machine's root dotfiles
  (here a .bashrc that runs `pyenv init`, ~0.1 CPU-s) would otherwise run in every SSH
  session Ansible opens, once per task and host;
- killing that PID 1 powers the host off with every daemon it started.

Everything else (/usr, the project's venv) is the machine's own file system, shared by
all hosts: install software there, keep per-host state under /opt/lambda. Paths under /tmp on
the machine are *not* visible inside a host (its /tmp is private).

State is written to `<base_dir>/lab.json` so another process can `down()` the lab, and every
name starts with the lab's name so `purge_stale()` can clean up after a crashed run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import shlex
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lambda_testbed.lab import netns, sshd
from lambda_testbed.lab.netns import IFNAMSIZ

log = logging.getLogger(__name__)

LAB_ROOT = Path("/tmp/lambda-lab")
MOUNT_POINT = "/opt/lambda"
DEFAULT_NAME = "lambdalab"
STATE_FILE = "lab.json"
SSH_PORT = 22
# A lab name is a prefix of every interface name ("<name>-br", "<name>-v99"): at most
# 11 characters keeps those within the kernel's 15, and no "-" keeps prefixes unambiguous.
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,10}$")
_HOST_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MAX_HOSTS = 99


class LabError(RuntimeError):
    """The lab could not be built or driven."""


@dataclass
class LabHost:
    name: str
    ip: str
    netns: str
    veth: str
    root: Path  # the host's private directory, mounted at /opt/lambda inside
    role: str = "slave"

    @property
    def state_dir(self) -> Path:
        return self.root.parent

    @property
    def sshd_dir(self) -> Path:
        return self.state_dir / "sshd"

    @property
    def tmp_dir(self) -> Path:
        return self.state_dir / "tmp"

    @property
    def home_dir(self) -> Path:
        return self.state_dir / "home"

    def outside(self, inside_path: str) -> Path:
        """The machine's path of `inside_path` (which must be under /opt/lambda)."""
        rel = os.path.relpath(inside_path, MOUNT_POINT)
        if rel.startswith(".."):
            raise ValueError(f"{inside_path} is not under {MOUNT_POINT}")
        return self.root / rel


class Lab:
    """A set of SSH hosts; the first is the master, the others slaves."""

    def __init__(
        self,
        name: str = DEFAULT_NAME,
        hosts: list[str] | int = 3,
        subnet: str = "10.213.0.0/24",
        base_dir: Path | None = None,
    ) -> None:
        if not _NAME_RE.match(name):
            raise ValueError(f"lab name {name!r}: 1-11 characters of [a-z0-9], letter first")
        self.name = name
        self.subnet = str(ipaddress.ip_network(subnet))
        self.base_dir = Path(base_dir) if base_dir else LAB_ROOT / name
        self.ssh_user = "root"
        self._procs = {}
        self._locks = {}
        names = _host_names(hosts)
        network = ipaddress.ip_network(self.subnet)
        addresses = list(network.hosts())
        if len(addresses) < len(names) + 1:
            raise ValueError(f"subnet {subnet} too small for {len(names)} hosts")
        self.gateway = str(addresses[0])
        self.hosts = []
        for index, host in enumerate(names):
            root = self.base_dir / "hosts" / host / "opt"
            self.hosts.append(
                LabHost(
                    name=host,
                    ip=str(addresses[index + 1]),
                    netns=f"{name}-{host}",
                    veth=f"{name}-v{index}",
                    root=root,
                    role="master" if index == 0 else "slave",
                )
            )
            self._locks[host] = threading.Lock()
        self.bridge = f"{name}-br"
        assert all(len(n) <= IFNAMSIZ for n in [self.bridge, *(h.veth for h in self.hosts)])

    # ------------------------------------------------------------------ paths and lookups
    @property
    def ssh_key(self) -> Path:
        return self.base_dir / "id_ed25519"

    @property
    def hosts_file(self) -> Path:
        return self.base_dir / "etc-hosts"

    @property
    def state_file(self) -> Path:
        return self.base_dir / STATE_FILE

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if host.name == name or host.ip == name:
                return host
        raise KeyError(f"no host {name!r} in lab {self.name}")

    # ------------------------------------------------------------------ lifecycle
    def up(self, power_on: bool = True) -> Lab:
        """Build the lab from scratch (after purging stale state of this name)."""
        removed = _purge_lab(self.name, self.base_dir)
        if removed:
            log.info("lab %s: purged stale state: %s", self.name, ", ".join(removed))
        if netns.route_exists(self.subnet):
            raise LabError(f"subnet {self.subnet} is already routed on this machine")
        try:
            self._write_files()
            self._build_network()
            if power_on:
                for host in self.hosts:
                    self.power_on(host.name)
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Remove every trace of the lab: processes, namespaces, links, files. Idempotent."""
        for host in self.hosts:
            netns.delete_netns(host.netns)
            self._reap(host.name)
        _purge_lab(self.name, self.base_dir)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def _write_files(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        _register_base_dir(self.name, self.base_dir)
        self._save_state()  # first, so a crash from here on leaves a recognisable dir
        sshd.keygen(self.ssh_key, f"lambda-lab-{self.name}")
        public_key = self.ssh_key.with_suffix(".pub").read_text()
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{h.ip}\t{h.name}" for h in self.hosts]
        self.hosts_file.write_text("\n".join(lines) + "\n")
        for host in self.hosts:
            host.root.mkdir(parents=True, exist_ok=True)
            host.sshd_dir.mkdir(parents=True, exist_ok=True)
            host.tmp_dir.mkdir(parents=True, exist_ok=True)
            host.tmp_dir.chmod(0o1777)
            host.home_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            sshd.keygen(host.sshd_dir / "host_ed25519", f"host-{host.name}")
            (host.sshd_dir / "authorized_keys").write_text(public_key)
            (host.sshd_dir / "sshd_config").write_text(
                sshd.sshd_config(
                    listen=host.ip,
                    port=SSH_PORT,
                    host_key=host.sshd_dir / "host_ed25519",
                    pid_file=host.sshd_dir / "sshd.pid",
                    authorized_keys=host.sshd_dir / "authorized_keys",
                )
            )
            inner = _tmp_relative(host.sshd_dir)
            if inner is not None:  # mount point for sshd's dir inside the private /tmp
                (host.tmp_dir / inner).mkdir(parents=True, exist_ok=True)
        Path(MOUNT_POINT).mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)

    def _build_network(self) -> None:
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        batch = [
            f"link add {self.bridge} type bridge",
            f"addr add {self.gateway}/{prefix} dev {self.bridge}",
            f"link set {self.bridge} up",
        ]
        for host in self.hosts:
            batch += [
                f"netns add {host.netns}",
                f"link add {host.veth} type veth peer name eth0 netns {host.netns}",
                f"link set {host.veth} master {self.bridge}",
                f"link set {host.veth} up",
            ]
        netns.ip_batch(batch)
        for host in self.hosts:
            # No default route: nothing leaves the subnet.
            netns.ip_batch(
                [
                    f"addr add {host.ip}/{prefix} dev eth0",
                    "link set eth0 up",
                    "link set lo up",
                ],
                netns=host.netns,
            )

    def _save_state(self) -> None:
        state = {
            "name": self.name,
            "subnet": self.subnet,
            "base_dir": str(self.base_dir),
            "bridge": self.bridge,
            "gateway": self.gateway,
            "ssh_key": str(self.ssh_key),
            "ssh_user": self.ssh_user,
            "creator_pid": os.getpid(),
            "hosts": [{**asdict(h), "root": str(h.root)} for h in self.hosts],
        }
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def load(cls, name: str = DEFAULT_NAME, base_dir: Path | None = None) -> Lab:
        """The lab recorded by another process (for `down`, `status`, power hooks)."""
        base = Path(base_dir) if base_dir else _registered_base_dir(name)
        try:
            state = json.loads((base / STATE_FILE).read_text())
        except FileNotFoundError:
            raise LabError(f"no lab {name!r} recorded under {base}") from None
        lab = cls(
            state["name"],
            [h["name"] for h in state["hosts"]],
            state["subnet"],
            Path(state["base_dir"]),
        )
        return lab

    # ------------------------------------------------------------------ power
    def power_on(self, host: str, timeout: float = 10.0) -> None:
        """Start the host's sshd as PID 1 of its own world; return once port 22 answers."""
        h = self.host(host)
        with self._locks[h.name]:
            if self.is_on(h.name):
                return
            self._reap(h.name)
            if h.netns not in netns.list_netns():
                raise LabError(f"lab {self.name} is not up (no netns {h.netns})")
            console = open(h.state_dir / "console.log", "ab")  # noqa: SIM115 - child owns it
            try:
                proc = subprocess.Popen(
                    self._boot_command(h),
                    stdin=subprocess.DEVNULL,
                    stdout=console,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # survives the caller (`lab up` from the CLI)
                )
            finally:
                console.close()
            self._procs[h.name] = proc
            started = time.monotonic()
            while not _ssh_banner(h.ip, SSH_PORT):
                if proc.poll() is not None:
                    raise LabError(f"host {h.name} failed to boot:\n{self._console_tail(h)}")
                if time.monotonic() - started > timeout:
                    raise LabError(f"sshd of {h.name} not answering after {timeout}s")
                time.sleep(0.01)
            log.info(
                "lab %s: %s powered on in %.3fs", self.name, h.name, time.monotonic() - started
            )

    def _boot_command(self, h: LabHost) -> list[str]:
        q = shlex.quote
        script = [
            "set -e",
            f"hostname {q(h.name)}",
            f"mount --bind {q(str(h.root))} {MOUNT_POINT}",
            f"mount --bind {q(str(self.hosts_file))} /etc/hosts",
            f"mount --bind {q(str(h.home_dir))} /root",
        ]
        inner = _tmp_relative(h.sshd_dir)
        if inner is not None:
            # The private /tmp hides the lab's files; bring back just this host's sshd dir.
            script.append(f"mount --bind {q(str(h.sshd_dir))} {q(str(h.tmp_dir / inner))}")
        script += [
            f"mount --rbind {q(str(h.tmp_dir))} /tmp",
            "cd /",
            f"exec {sshd.SSHD} -D -f {q(str(h.sshd_dir / 'sshd_config'))}"
            f" -E {q(str(h.sshd_dir / 'sshd.log'))}",
        ]
        return [
            "ip", "netns", "exec", h.netns,
            "unshare", "--mount", "--uts", "--pid", "--fork", "--mount-proc",
            "--propagation", "private",
            "sh", "-c", "\n".join(script),
        ]  # fmt: skip

    def power_off(self, host: str, grace: float = 0.0) -> None:
        """Cut the host's power: kill every process in it (SIGTERM first if `grace`)."""
        h = self.host(host)
        with self._locks[h.name]:
            netns.kill_netns_processes(h.netns, grace=grace)
            self._reap(h.name)

    def is_on(self, host: str) -> bool:
        return bool(netns.netns_pids(self.host(host).netns))

    def _reap(self, host: str) -> None:
        proc = self._procs.pop(host, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)

    def _console_tail(self, h: LabHost) -> str:
        text = ""
        for name in ("console.log", "sshd/sshd.log"):
            path = h.state_dir / name
            if path.exists():
                text += path.read_text(errors="replace")[-2000:]
        return text

    # ------------------------------------------------------------------ network faults
    def link_down(self, host: str) -> None:
        """Cut the host's cable: packets vanish, connections time out (like a dead VM)."""
        netns.ip("link", "set", self.host(host).veth, "down")

    def link_up(self, host: str) -> None:
        netns.ip("link", "set", self.host(host).veth, "up")

    def is_link_up(self, host: str) -> bool:
        out = netns.ip("-o", "link", "show", self.host(host).veth, check=False)
        return ",UP" in out or "<UP" in out

    # ------------------------------------------------------------------ access
    def ssh_options(self, connect_timeout: int = 5) -> list[str]:
        return sshd.client_options(self.ssh_key, connect_timeout)

    def ssh_command(self, host: str, command: str | None = None) -> list[str]:
        argv = ["ssh", *self.ssh_options(), f"{self.ssh_user}@{self.host(host).ip}"]
        return [*argv, command] if command is not None else argv

    def ssh(self, host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.ssh_command(host, command),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def inventory_hosts(self) -> list[dict]:
        return [{"name": h.name, "ip": h.ip, "role": h.role} for h in self.hosts]

    def status(self) -> dict:
        existing = set(netns.list_netns())
        hosts = []
        for h in self.hosts:
            present = h.netns in existing
            hosts.append(
                {
                    "name": h.name,
                    "ip": h.ip,
                    "role": h.role,
                    "netns": h.netns,
                    "veth": h.veth,
                    "root": str(h.root),
                    "present": present,
                    "on": present and self.is_on(h.name),
                    "link_up": present and self.is_link_up(h.name),
                    "pids": netns.netns_pids(h.netns) if present else [],
                }
            )
        return {
            "name": self.name,
            "subnet": self.subnet,
            "base_dir": str(self.base_dir),
            "bridge": self.bridge,
            "up": self.bridge in netns.list_links(),
            "ssh_key": str(self.ssh_key),
            "ssh_user": self.ssh_user,
            "hosts": hosts,
        }


# ---------------------------------------------------------------------- helpers


def _host_names(hosts: list[str] | int) -> list[str]:
    if isinstance(hosts, int):
        if hosts < 1:
            raise ValueError("a lab needs at least one host")
        names = ["master"] + [f"slave-{i}" for i in range(1, hosts)]
    else:
        names = list(hosts)
    if not names or len(names) > MAX_HOSTS:
        raise ValueError(f"a lab has 1-{MAX_HOSTS} hosts")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate host names: {names}")
    for host in names:
        if not _HOST_RE.match(host):
            raise ValueError(f"host name {host!r} is not a valid hostname label")
    return names


def _tmp_relative(path: Path) -> Path | None:
    """`path` relative to /tmp, or None if it is not under /tmp."""
    try:
        return path.resolve().relative_to("/tmp")
    except ValueError:
        return None


def _ssh_banner(ip: str, port: int) -> bool:
    """True once something at ip:port speaks SSH (reads the server's version banner)."""
    try:
        with socket.create_connection((ip, port), timeout=0.5) as conn:
            conn.settimeout(0.5)
            return conn.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def _pointer(name: str) -> Path:
    return LAB_ROOT / f".{name}.base_dir"


def _register_base_dir(name: str, base_dir: Path) -> None:
    """Remember a non-default base dir, so purge and `Lab.load` find it after a crash."""
    if base_dir != LAB_ROOT / name:
        LAB_ROOT.mkdir(parents=True, exist_ok=True)
        _pointer(name).write_text(str(base_dir))


def _registered_base_dir(name: str) -> Path:
    pointer = _pointer(name)
    if pointer.exists():
        return Path(pointer.read_text().strip())
    return LAB_ROOT / name


def _remove_base_dir(base_dir: Path, name: str) -> bool:
    """Delete a lab's base dir, but only if it is recognisably that lab's (or empty)."""
    if not base_dir.exists():
        return False
    state = base_dir / STATE_FILE
    owned = not any(base_dir.iterdir())
    if state.exists():
        try:
            owned = json.loads(state.read_text()).get("name") == name
        except ValueError:
            owned = True  # a half-written state file: a crash while creating it
    if not owned:
        raise LabError(f"{base_dir} exists and is not lab {name}'s; not deleting it")
    shutil.rmtree(base_dir)
    return True


def _purge_lab(name: str, base_dir: Path | None = None) -> list[str]:
    """Remove everything of the lab called exactly `name`."""
    removed = _purge_links_and_netns(f"{name}-")
    for base in {base_dir or LAB_ROOT / name, _registered_base_dir(name)}:
        if _remove_base_dir(base, name):
            removed.append(str(base))
    _pointer(name).unlink(missing_ok=True)
    return removed


def _purge_links_and_netns(prefix: str) -> list[str]:
    removed = []
    for ns in netns.list_netns():
        if ns.startswith(prefix):
            netns.delete_netns(ns)  # kills its processes first
            removed.append(f"netns {ns}")
    for link in netns.list_links():
        if link.startswith(prefix):
            netns.delete_link(link)
            removed.append(f"link {link}")
    return removed


def purge_stale(prefix: str = DEFAULT_NAME) -> list[str]:
    """Remove leftovers of every lab whose name starts with `prefix`.

    Kills the processes of their namespaces (found with `ip netns pids`), deletes the
    namespaces, bridges and veths, and the labs' base dirs. Returns what was removed.
    """
    removed = _purge_links_and_netns(prefix)
    if LAB_ROOT.exists():
        for pointer in LAB_ROOT.glob(f".{prefix}*.base_dir"):
            name = pointer.name[1 : -len(".base_dir")]
            base = Path(pointer.read_text().strip())
            if _remove_base_dir(base, name):
                removed.append(str(base))
            pointer.unlink(missing_ok=True)
        for base in LAB_ROOT.iterdir():
            if base.is_dir() and base.name.startswith(prefix) and _remove_base_dir(base, base.name):
                removed.append(str(base))
    if removed:
        log.info("purged stale lab state: %s", ", ".join(removed))
    return removed
