"""The answer when the database cannot be reached: 503 with Retry-After, so senders retry later.

Receiving owns it (a platform's retry depends on it); hub's middleware gives the same answer to
every other URL.
"""

import json
import logging

from django.db import DatabaseError, InterfaceError, OperationalError

logger = logging.getLogger(__name__)

UNAVAILABLE_BODY = json.dumps(
    {"error": "The hub cannot store events right now; retry later."}
).encode()
UNAVAILABLE_HEADERS = [("Retry-After", "30")]


def database_unavailable(exception: BaseException) -> bool:
    """True (and logged) for errors that mean the database is down or unreachable."""
    if isinstance(exception, OperationalError | InterfaceError) or (
        isinstance(exception, DatabaseError) and "connection" in str(exception).lower()
    ):
        logger.error("database unavailable: %s", exception.__class__.__name__)
        return True
    return False
