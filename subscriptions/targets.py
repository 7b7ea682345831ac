"""Refusing outbound targets inside the hub's own network unless explicitly allowed.

A subscription URL pointing at 127.0.0.1, 10.0.0.0/8 or 169.254.169.254 (cloud metadata) would
let anyone who can create subscriptions probe internal services. Addresses are checked after
DNS resolution. A resolver that answers differently between this check and the connection
(DNS rebinding) is not covered; run the hub behind an egress proxy for that.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class TargetRefused(Exception):
    pass


def check_target(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise TargetRefused("the target must be an http or https URL")
    if settings.HUB_ALLOW_PRIVATE_TARGETS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetRefused(f"cannot resolve {parts.hostname}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if getattr(address, "ipv4_mapped", None):
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            raise TargetRefused(
                f"{parts.hostname} resolves to a non-public address ({address}); "
                "set HUB_ALLOW_PRIVATE_TARGETS=1 to allow it"
            )
