"""Encrypts the caller's token so that it never rests in the database or crosses a broker
in clear text; only a process holding the server key can read it back.

Several keys may be given for rotation (Fernet's ``MultiFernet``): the first encrypts, every
one decrypts, so a new key can be put first while actions encrypted under the old one are
still in flight, and the old one dropped once they have ended.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)


class TokenCipherError(Exception):
    """A stored token cannot be decrypted (wrong or rotated server key)."""


class TokenCipher:
    def __init__(self, key: str | bytes | list):
        """``key``: one Fernet key, or a list of them, the encrypting one first."""
        keys = key if isinstance(key, (list, tuple)) else [key]
        if not keys:
            raise ValueError("a TokenCipher needs at least one key")
        self._fernet = MultiFernet(
            [Fernet(k.encode() if isinstance(k, str) else k) for k in keys])

    @classmethod
    def from_settings(cls, settings) -> TokenCipher:
        if settings.secret_keys:
            return cls(settings.secret_keys)
        return cls(load_or_create_key(Path(settings.state_dir) / KEY_FILE))

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode("ascii")

    def decrypt(self, cipher: str) -> str:
        try:
            return self._fernet.decrypt(cipher.encode("ascii")).decode()
        except (InvalidToken, ValueError) as exc:
            raise TokenCipherError(
                "the stored token cannot be decrypted with this server key"
            ) from exc


KEY_FILE = "secret.key"


def load_or_create_key(path: Path) -> list[bytes]:
    """The server keys in ``path`` (one a line or comma separated, the encrypting one
    first), the file created with one new key (mode 0600) on first use. Racing processes
    agree: only one link wins and the others read what it wrote."""
    try:
        return _read_keys(path)
    except FileNotFoundError:
        pass
    # The directory may be new: private to the service's user from the start.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Fernet.generate_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    # 0600 whatever the umask (it can only take bits away); O_EXCL|O_NOFOLLOW: never
    # through a file or link someone else put there.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    try:
        os.link(tmp, path)  # atomic, fails if another process got there first
        log.info("created a new server key at %s", path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_keys(path)


def _read_keys(path: Path) -> list[bytes]:
    keys = path.read_bytes().replace(b",", b"\n").split()
    if not keys:
        raise TokenCipherError(f"the server key file {path} holds no key")
    return keys
