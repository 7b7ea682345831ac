"""Refusing outbound targets inside the hub's own network unless explicitly allowed.

A subscription URL pointing at 127.0.0.1, 10.0.0.0/8 or 169.254.169.254 (cloud metadata) would
let anyone who can create subscriptions probe internal services. A target's name is resolved
once per connection, every address it resolves to is checked, and the connection goes to a
checked address (open_connection), so a resolver that answers differently the second time
(DNS rebinding) gains nothing. IPv6 spellings of an IPv4 address (IPv4-mapped and -compatible,
NAT64, 6to4, Teredo) are judged by the IPv4 address inside them.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Prefixes that carry an IPv4 address in their last 32 bits (RFC 4291 IPv4-compatible, RFC 6052
# NAT64 well-known and local-use).
IPV4_IN_LOW_BITS = (
    ipaddress.IPv6Network("::/96"),
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
ALLOW_HINT = "set HUB_ALLOW_PRIVATE_TARGETS=1 to allow it"


class TargetRefused(Exception):
    pass


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (empty for plain IPv6 and for IPv4)."""
    if address.version == 4:
        return []
    found = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    if any(address in network for network in IPV4_IN_LOW_BITS):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ip for ip in found if ip is not None]


def internal(address: Address) -> bool:
    """Not a public unicast address, or one that stands for an internal IPv4 address."""
    if not address.is_global or address.is_multicast:
        return True
    return any(internal(ip) for ip in embedded_ipv4(address))


def host_and_port(url: str) -> tuple[str, int]:
    """The name and port to connect to; refuses what is not a plain http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TargetRefused("the target is not a valid URL") from None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise TargetRefused("the target must be an http or https URL")
    if "@" in parts.netloc:
        # Never sent (the sender reads host and port only), and `good@127.0.0.1` misleads.
        raise TargetRefused("credentials in the URL are not sent: use the static headers")
    return parts.hostname, port or (443 if parts.scheme.lower() == "https" else 80)


def resolve(host: str, port: int) -> list[str]:
    """Every address the name resolves to, each one checked unless private targets are allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise TargetRefused(f"cannot resolve {host}: {exc}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not settings.HUB_ALLOW_PRIVATE_TARGETS:
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if internal(address):
                raise TargetRefused(
                    f"{host} resolves to a non-public address ({address}); {ALLOW_HINT}"
                )
    return addresses


def check_target(url: str) -> None:
    host, port = host_and_port(url)
    if not settings.HUB_ALLOW_PRIVATE_TARGETS:
        resolve(host, port)


def validate_target(url: str) -> None:
    """Subscription.url's validator: the admin and the API refuse the same targets."""
    try:
        check_target(url)
    except TargetRefused as exc:
        raise ValidationError(str(exc), code="target") from None


def open_connection(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to one of the checked addresses of `host`, tried in the resolver's
    order; the caller keeps `host` for the Host header and TLS."""
    error: OSError | None = None
    for address in resolve(host, port):
        try:
            return socket.create_connection((address, port), timeout)
        except OSError as exc:
            error = exc
    raise error or OSError(f"no address for {host}")
