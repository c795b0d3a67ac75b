"""Keys and per-host sshd configuration for the lab."""

from __future__ import annotations

import subprocess
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def keygen(path: Path, comment: str) -> Path:
    """Create an ed25519 key pair at `path` (and `path`.pub) unless it exists."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
            capture_output=True,
        )
    path.chmod(0o600)
    return path


def sshd_config(
    *, listen: str, host_key: Path, pid_file: Path, authorized_keys: Path, port: int = 22
) -> str:
    # StrictModes no: the key files live under /tmp, which is world-writable.
    # UsePAM/UseDNS no: no PAM stack or resolver round trips on every login.
    # MaxStartups/MaxSessions: Ansible opens many sessions per host at once.
    return "\n".join(
        [
            f"ListenAddress {listen}",
            f"Port {port}",
            f"HostKey {host_key}",
            f"PidFile {pid_file}",
            f"AuthorizedKeysFile {authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "StrictModes no",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "Subsystem sftp internal-sftp",
            "PrintMotd no",
            "AcceptEnv LANG LC_*",
            "",
        ]
    )


def client_options(key: Path, connect_timeout: int = 5) -> list[str]:
    """`ssh` options for reaching lab hosts: the lab key only, no known_hosts, keepalives.

    The keepalives matter: without them a connection whose link went down hangs for ever.
    """
    return [
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        "-o",
        "ServerAliveInterval=1",
        "-o",
        "ServerAliveCountMax=3",
    ]
