"""The token cipher: server keys, their rotation, and the generated key file."""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest
from cryptography.fernet import Fernet

from api.adapters.crypto import KEY_FILE, TokenCipher, TokenCipherError, load_or_create_key
from api.settings import Settings

OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()


@contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def cipher(tmp_path, secret_key: str | None) -> TokenCipher:
    return TokenCipher.from_settings(Settings(secret_key=secret_key, state_dir=str(tmp_path)))


def test_rotation_the_first_key_encrypts_and_every_key_decrypts(tmp_path):
    under_old = cipher(tmp_path, OLD).encrypt("token-a")
    rotated = cipher(tmp_path, f"{NEW},{OLD}")
    assert rotated.decrypt(under_old) == "token-a"  # actions accepted before the rotation
    under_new = rotated.encrypt("token-b")
    assert cipher(tmp_path, NEW).decrypt(under_new) == "token-b"  # the old key dropped
    with pytest.raises(TokenCipherError):
        cipher(tmp_path, OLD).decrypt(under_new)


@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_the_generated_key_file_is_the_owners_only_whatever_the_umask(tmp_path, mask):
    state = tmp_path / "state"
    with umask(mask):
        keys = load_or_create_key(state / KEY_FILE)
    assert stat.S_IMODE((state / KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert [p.name for p in state.iterdir()] == [KEY_FILE]  # no temp file left
    assert load_or_create_key(state / KEY_FILE) == keys  # read, not made again


def test_a_key_file_may_list_several_keys_for_rotation(tmp_path):
    (tmp_path / KEY_FILE).write_text(f"{NEW}\n{OLD}\n")
    under_old = cipher(tmp_path, OLD).encrypt("t")
    from_file = cipher(tmp_path, None)
    assert from_file.decrypt(under_old) == "t"
    assert cipher(tmp_path, NEW).decrypt(from_file.encrypt("u")) == "u"
