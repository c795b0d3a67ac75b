"""Waits until hosts answer SSH: a TCP connect that reads the server's ``SSH-`` banner,
so a port that accepts but belongs to nothing ready does not count. And the ssh options
that check (or do not check) the hosts' keys."""

from __future__ import annotations

import shlex
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from api.domain.model import Host


class SshWaitTimeout(TimeoutError):
    pass


def ssh_banner(ip: str, port: int = 22, timeout: float = 2.0) -> str | None:
    try:
        with socket.create_connection((ip, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            banner = sock.recv(256)
    except OSError:
        return None
    return banner.decode("ascii", "replace").strip() if banner.startswith(b"SSH-") else None


class SshWaiter:
    def __init__(self, port: int = 22, interval: float = 0.5):
        self.port = port
        self.interval = interval

    def __call__(self, hosts: list[Host], timeout: float, cancel: threading.Event) -> None:
        """Wait for every host at once; raise naming the hosts that never answered."""
        deadline = time.monotonic() + timeout

        def wait_one(host: Host) -> bool:
            while not cancel.is_set():
                if ssh_banner(host.ip, self.port) is not None:
                    return True
                if time.monotonic() >= deadline:
                    return False
                cancel.wait(self.interval)
            return False

        if not hosts:
            return
        with ThreadPoolExecutor(
            max_workers=min(len(hosts), 32), thread_name_prefix="ssh-wait"
        ) as pool:
            answered = list(pool.map(wait_one, hosts))
        silent = [f"{h.name} ({h.ip})" for h, ok in zip(hosts, answered, strict=True) if not ok]
        if cancel.is_set():
            reason = getattr(cancel, "reason", "")
            raise SshWaitTimeout(f"cancelled while waiting for SSH ({reason})")
        if silent:
            raise SshWaitTimeout(f"no SSH answer within {timeout:.0f}s from {', '.join(silent)}")


def host_key_args(known_hosts_file: Path | None) -> str:
    """ssh options checking host keys against exactly ``known_hosts_file``, or (None) not
    checking them at all.

    The same as Mitogen's own for ``host_key_checking`` on/off, which come first on its
    command line (ssh keeps an option's first value): ``yes`` there, then our file; or
    ``no`` and ``/dev/null`` twice.
    """
    if known_hosts_file is None:
        return "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    # Quoted for ssh (a path may hold spaces; % starts an ssh token), then for Ansible's split.
    path = str(known_hosts_file).replace("%", "%%")
    user_file = shlex.quote('UserKnownHostsFile="' + path + '"')
    return f"-o StrictHostKeyChecking=yes -o {user_file} -o GlobalKnownHostsFile=/dev/null"
