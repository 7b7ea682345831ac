"""Secrets at rest: what must be recovered (HMAC keys, signing secrets) is encrypted with the
keys in HUB_SECRET_KEYS, with cryptography's MultiFernet (AES-128-CBC and HMAC-SHA256).

The first key encrypts and every key decrypts: to rotate, put a new key first, deploy, run
`manage.py reencrypt_secrets`, then drop the old key. Credentials that only need an equality
check (API tokens, Jedlix and Openvolt keys) are kept as digests instead, never encrypted.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models


class SecretUnreadable(Exception):
    """Stored with a key that is not in HUB_SECRET_KEYS (or not a Fernet token at all)."""


@functools.cache
def fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def fernet() -> MultiFernet:
    # Keyed by the setting's value, so that a test overriding it gets its own.
    return fernet_for(tuple(settings.HUB_SECRET_KEYS))


def encrypt(text: str) -> str:
    return fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no key in HUB_SECRET_KEYS decrypts this secret") from None


def on_first_key(token: str) -> bool:
    """Already encrypted with the key that encrypts now."""
    try:
        Fernet(settings.HUB_SECRET_KEYS[0]).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def reencrypted(token: str) -> str:
    """The same secret, encrypted with the first key (raises SecretUnreadable)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("no key in HUB_SECRET_KEYS decrypts this secret") from None


class EncryptedTextField(models.TextField):
    """Text encrypted in the database and plain in Python. Every save encrypts anew, so the
    column can be neither searched nor compared in SQL; "" stays "" (no secret)."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value) if value else value

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        return encrypt(value) if value else value
