"""The registry of providers: adding a platform is one module and one line here.

The rest of the hub reads each platform's facts from its class (label, what it signs, its
options): the Source model's choices, the admin, the API, the receive service and the shared
provider tests. No migration is needed for a new provider.
"""

from .base import Provider
from .edrv import Edrv
from .generic_hmac import GenericHmac
from .gridx import GridX
from .hub import HubEvents
from .ideavate import Ideavate
from .jedlix import Jedlix
from .openvolt import Openvolt
from .standard import StandardWebhooks

PROVIDERS: dict[str, Provider] = {
    "gridx": GridX(),
    "jedlix": Jedlix(),
    "openvolt": Openvolt(),
    "ideavate": Ideavate(),
    "edrv": Edrv(),
    "standard": StandardWebhooks(),
    "hmac": GenericHmac(),
}

# Providers no real source may choose: not in the choices, the admin or the shared tests.
INTERNAL: dict[str, Provider] = {"hub": HubEvents()}


def get_provider(name: str) -> Provider:
    return PROVIDERS[name] if name in PROVIDERS else INTERNAL[name]


def register(provider: Provider) -> Provider:
    """Add a provider defined elsewhere (a test's, a deployment's own), as one more entry."""
    PROVIDERS[provider.name] = provider
    return provider


def provider_choices() -> list[tuple[str, str]]:
    """Source.provider's choices, read when they are used."""
    return [(name, provider.label) for name, provider in PROVIDERS.items()]
