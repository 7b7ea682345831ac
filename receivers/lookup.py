"""Finding the source a request is addressed to: one plain query, cached for a few seconds.

Every request needs its source and the source's active secrets. Reading them is a database
round trip per request, so each process keeps what it read for HUB_SOURCE_CACHE_SECONDS. Saving
or deleting a source or a secret clears this process's cache at once; other processes see the
change within that many seconds (README, "Configuration").
"""

from __future__ import annotations

import functools
import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone

from .encryption import SecretUnreadable, decrypt
from .models import Source, SourceSecret

logger = logging.getLogger(__name__)

Found = tuple[Source, list[str]] | None
# Requests to made-up slugs are cached too (as None); this bounds what they can fill.
MAX_ENTRIES = 10_000

_cache: dict[str, tuple[float, Found]] = {}
_lock = threading.Lock()


def cached_source(slug: str) -> Found:
    """find_source(slug), as read at most HUB_SOURCE_CACHE_SECONDS ago."""
    ttl = settings.HUB_SOURCE_CACHE_SECONDS
    now = time.monotonic()
    hit = _cache.get(slug)
    if hit is not None and hit[0] > now:
        return hit[1]
    found = find_source(slug)
    if ttl > 0:
        with _lock:
            if len(_cache) >= MAX_ENTRIES:
                _cache.clear()
            _cache[slug] = (now + ttl, found)
    return found


def forget_sources(**_kwargs) -> None:
    """Signal receiver: a source or a secret changed."""
    with _lock:
        _cache.clear()


def find_source(slug: str) -> tuple[Source, list[str]] | None:
    """The active source and its active secrets, in one plain query.

    It runs for every request: a fixed statement, without the ORM's query building.
    """
    statement, fields = source_statement()
    with connection.cursor() as cursor:
        cursor.execute(statement, [timezone.now(), slug])
        rows = cursor.fetchall()
    if not rows:
        return None
    width = len(fields)
    source = Source.from_db(connection.alias, [f.attname for f in fields], rows[0][:width])
    return source, readable_secrets(slug, [row[width] for row in rows if row[width] is not None])


def readable_secrets(slug: str, stored: list[str]) -> list[str]:
    """Decrypted once per cache fill, never per request. A secret no key in HUB_SECRET_KEYS
    decrypts is left out (so refused), and said loudly."""
    secrets = []
    for value in stored:
        try:
            secrets.append(decrypt(value))
        except SecretUnreadable:
            logger.error("source %s: a secret cannot be decrypted with HUB_SECRET_KEYS", slug)
    return secrets


# The join condition on expires_at is SecretQuerySet.active()'s rule, written out in SQL.
SOURCE_SQL = (
    "SELECT {columns}, k.{value} FROM {sources} s"
    " LEFT JOIN {secrets} k ON k.{source_id} = s.{source_pk}"
    " AND (k.{expires} IS NULL OR k.{expires} > %s)"
    " WHERE s.{slug} = %s AND s.{active} ORDER BY k.{secret_pk}"
)


@functools.cache
def source_statement() -> tuple[str, list]:
    """Identifiers come from the models and are quoted; every value is a parameter."""
    quote = connection.ops.quote_name
    fields = list(Source._meta.concrete_fields)
    secret = SourceSecret._meta
    statement = SOURCE_SQL.format(
        columns=", ".join(f"s.{quote(f.column)}" for f in fields),
        value=quote(secret.get_field("value").column),
        sources=quote(Source._meta.db_table),
        secrets=quote(secret.db_table),
        source_id=quote(secret.get_field("source").column),
        source_pk=quote(Source._meta.pk.column),
        secret_pk=quote(secret.pk.column),
        expires=quote(secret.get_field("expires_at").column),
        slug=quote(Source._meta.get_field("slug").column),
        active=quote(Source._meta.get_field("is_active").column),
    )
    return statement, fields
