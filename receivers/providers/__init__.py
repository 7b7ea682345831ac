"""The registry of providers: adding a platform is one module and one line here."""

from .base import Provider
from .edrv import Edrv
from .generic_hmac import GenericHmac
from .gridx import GridX
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


def get_provider(name: str) -> Provider:
    return PROVIDERS[name]
