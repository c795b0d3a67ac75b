"""Waits until hosts answer SSH: a TCP connect that reads the server's ``SSH-`` banner,
so a port that accepts but belongs to nothing ready does not count."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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
