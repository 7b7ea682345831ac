"""The registry of providers: adding a platform is one module and one line here."""

from .base import Provider
from .gridx import GridX

PROVIDERS: dict[str, Provider] = {
    "gridx": GridX(),
}


def get_provider(name: str) -> Provider:
    return PROVIDERS[name]
