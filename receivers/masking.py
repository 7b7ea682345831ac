"""One rule for credentials in request headers, used when an event is stored and whenever its
headers are shown (the admin, the API): rows stored under an older rule are masked too."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .models import Event, mask
from .providers import PROVIDERS

MASK = "****"
# Names that say a header may carry a credential, whatever the provider.
SENSITIVE_NAME = re.compile("authorization|cookie|signature|secret|token|key")


def masked_headers(
    headers: Mapping[str, str], credential_headers: Iterable[str] = ()
) -> dict[str, str]:
    """The headers with the value of every credential replaced: the provider's own credential
    headers, and any whose name says it may hold one."""
    named = {name.lower() for name in credential_headers if name}
    masked = {}
    for name, value in headers.items():
        lower = name.lower()
        secret = lower in named or SENSITIVE_NAME.search(lower) is not None
        masked[name] = MASK if secret else value
    return masked


def shown_headers(event: Event) -> dict[str, str]:
    """An event's stored headers as the admin and the API show them."""
    provider = PROVIDERS.get(event.source.provider)
    named = provider.credential_headers(event.source) if provider else ()
    return masked_headers(event.headers, named)


def masked_values(headers: dict) -> dict[str, str]:
    """Static headers of a subscription as the admin and the API show them: often a
    subscriber's credentials, so every value is masked like a secret."""
    return {name: mask(str(value)) for name, value in headers.items()}


def keep_masked_values(new: dict, old: dict) -> dict:
    """A value sent back as it was shown (masked) keeps the stored one."""
    return {
        name: old[name] if name in old and value == mask(str(old[name])) else value
        for name, value in new.items()
    }
