"""SSH host keys, trust on first use: the first key a server's host offers is pinned per
server id in the database; every later run checks the host against that pin, and ssh then
trusts exactly the pinned keys (``StrictHostKeyChecking=yes`` on a per-run known_hosts).

Synnefo's compute API does not report host keys, so first use is the only source. A pin
lives as long as its server id: a VM created anew has a new id and is pinned afresh; a VM
reinstalled in place keeps its id, and ``lambda-service hostkeys forget`` drops its pin.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable

from api.domain.clock import utcnow
from api.domain.errors import HostKeyError
from api.domain.model import Host
from api.domain.ports import HostKey, HostKeyCheck, PinnedHostKey, UnitOfWorkFactory

log = logging.getLogger(__name__)

# What ssh-keyscan asks each host for; ssh then negotiates one of the pinned types.
KEY_TYPES = "ed25519,ecdsa,rsa"
SCAN_ATTEMPTS = 3
SCAN_RETRY_SECONDS = 1.0

# (hosts' IPs, port, timeout) -> the keys each IP offered
Scanner = Callable[[list[str], int, float], dict[str, list[HostKey]]]


def fingerprint(key: HostKey) -> str:
    """``SHA256:...``, as ``ssh-keygen -l`` and ssh's own warnings show it."""
    try:
        blob = base64.b64decode(key.key, validate=True)
    except ValueError:
        return f"unreadable key {key.key[:16]}..."
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def describe(keys: Iterable[HostKey]) -> str:
    return ", ".join(f"{k.key_type} {fingerprint(k)}" for k in keys) or "none"


def known_hosts_name(ip: str, port: int) -> str:
    return ip if port == 22 else f"[{ip}]:{port}"


def parse_keyscan(output: str, port: int) -> dict[str, list[HostKey]]:
    """ssh-keyscan's lines (``host type base64``) by host IP; comments are skipped."""
    found: dict[str, list[HostKey]] = {}
    suffix = f"]:{port}"
    for line in output.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[0].startswith("#"):
            continue
        name = fields[0]
        if name.startswith("[") and name.endswith(suffix):
            name = name[1 : -len(suffix)]
        key = HostKey(fields[1], fields[2])
        if key not in found.setdefault(name, []):
            found[name].append(key)
    return found


def keyscan(ips: list[str], port: int, timeout: float) -> dict[str, list[HostKey]]:
    """Every host's public keys, from one ``ssh-keyscan`` (it asks the hosts in parallel)."""
    binary = shutil.which("ssh-keyscan")
    if binary is None:
        raise HostKeyError("ssh-keyscan is not installed (package openssh-client): cannot "
                           "check SSH host keys; LAMBDA_SSH_HOST_KEY_CHECKING=off turns the "
                           "check off")
    argv = [binary, "-T", str(max(1, round(timeout))), "-p", str(port), "-t", KEY_TYPES, *ips]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=timeout * 3 + 10, check=False)
    except subprocess.TimeoutExpired:
        return {}
    return parse_keyscan(out.stdout, port)


def by_server(pins: Iterable[PinnedHostKey]) -> dict[str, list[HostKey]]:
    grouped: dict[str, list[HostKey]] = {}
    for pin in pins:
        grouped.setdefault(pin.server_id, []).append(pin.key)
    return grouped


def render_known_hosts(hosts: Iterable[Host], pinned: dict[str, list[HostKey]], port: int
                       ) -> str:
    """known_hosts lines of the hosts' pinned keys, each host under a comment naming it."""
    lines = []
    for host in hosts:
        keys = pinned.get(host.server_id)
        if keys:
            lines.append(f"# {host.name} (server {host.server_id})")
            name = known_hosts_name(host.ip, port)
            lines += [f"{name} {k.key_type} {k.key}" for k in keys]
    return "".join(f"{line}\n" for line in lines)


def matches(pinned: list[HostKey], offered: list[HostKey]) -> bool:
    """The host offers a pinned key and no other key of a pinned type.

    A key of a type never pinned (sshd given a new key type) is not trusted, and ssh,
    which prefers the types it has keys for, does not need it.
    """
    by_type = {k.key_type: k.key for k in pinned}
    if any(k.key_type in by_type and by_type[k.key_type] != k.key for k in offered):
        return False
    return any(k in pinned for k in offered)


class HostKeyPinning:
    """Checks hosts' SSH host keys against their pins, pinning first sightings."""

    def __init__(self, uow_factory: UnitOfWorkFactory, *, port: int = 22,
                 timeout: float = 5.0, scan: Scanner = keyscan):
        self.uow_factory = uow_factory
        self.port = int(port)
        self.timeout = timeout
        self.scan = scan

    def _offered(self, hosts: list[Host]) -> dict[str, list[HostKey]]:
        """Scan, and scan again the hosts that gave no key (sshd's MaxStartups may drop a
        connection of a burst)."""
        offered: dict[str, list[HostKey]] = {}
        missing = sorted({h.ip for h in hosts})
        for attempt in range(SCAN_ATTEMPTS):
            if attempt:
                time.sleep(SCAN_RETRY_SECONDS)
            offered.update(self.scan(missing, self.port, self.timeout))
            missing = [ip for ip in missing if not offered.get(ip)]
            if not missing:
                break
        return offered

    def __call__(self, instance_id: str, hosts: list[Host]) -> HostKeyCheck:
        if not hosts:
            return HostKeyCheck(known_hosts="", summary="no hosts")
        offered = self._offered(hosts)
        new, matched, problems = [], [], []
        with self.uow_factory() as uow:
            pinned = by_server(uow.host_keys.pinned([h.server_id for h in hosts]))
            for host in hosts:
                keys = offered.get(host.ip, [])
                who = f"host {host.name} (server {host.server_id}, {host.ip})"
                if not keys:
                    problems.append(f"{who} offered no SSH host key")
                elif host.server_id not in pinned:
                    uow.host_keys.pin(host.server_id, host.name, keys, utcnow())
                    pinned[host.server_id] = sorted(keys, key=lambda k: k.key_type)
                    new.append(host.name)
                    log.info("pinned the SSH host key of %s: %s", who, describe(keys))
                elif matches(pinned[host.server_id], keys):
                    matched.append(host.name)
                else:
                    problems.append(
                        f"the SSH host key of {who} changed: it offers {describe(keys)}, "
                        f"pinned is {describe(pinned[host.server_id])}; if the VM was "
                        f"reinstalled, accept its new key with: lambda-service hostkeys "
                        f"forget {instance_id} {host.name}")
                    log.warning("SSH host key of %s changed: offers %s, pinned %s", who,
                                describe(keys), describe(pinned[host.server_id]))
            uow.commit()  # first sightings stay pinned even when another host failed
        if problems:
            raise HostKeyError("; ".join(problems))
        parts = []
        if new:
            parts.append(f"pinned on first sight: {', '.join(new)}")
        if matched:
            parts.append(f"matched their pins: {', '.join(matched)}")
        return HostKeyCheck(known_hosts=render_known_hosts(hosts, pinned, self.port),
                            summary="SSH host keys " + "; ".join(parts))
