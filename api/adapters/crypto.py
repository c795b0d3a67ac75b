"""Encrypts the caller's token so that it never rests in the database or crosses a broker
in clear text; only a process holding the server key can read it back."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger(__name__)


class TokenCipherError(Exception):
    """A stored token cannot be decrypted (wrong or rotated server key)."""


class TokenCipher:
    def __init__(self, key: str | bytes):
        self._fernet = Fernet(key.encode() if isinstance(key, str) else key)

    @classmethod
    def from_settings(cls, settings) -> TokenCipher:
        if settings.secret_key:
            return cls(settings.secret_key)
        return cls(load_or_create_key(Path(settings.state_dir) / "secret.key"))

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode("ascii")

    def decrypt(self, cipher: str) -> str:
        try:
            return self._fernet.decrypt(cipher.encode("ascii")).decode()
        except (InvalidToken, ValueError) as exc:
            raise TokenCipherError(
                "the stored token cannot be decrypted with this server key"
            ) from exc


def load_or_create_key(path: Path) -> bytes:
    """Read the server key, creating it (mode 0600) on first use. Racing processes agree:
    only one ``O_EXCL`` create wins and the others read what it wrote."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    try:
        os.link(tmp, path)  # atomic, fails if another process got there first
        log.info("created a new server key at %s", path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    return path.read_bytes().strip()
