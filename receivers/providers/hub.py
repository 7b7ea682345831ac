"""The hub itself: the source of the alerts it raises (subscription.failing, source.silent, ...).

Its events are written by the hub (subscriptions/alerts/), never received: the source is
internal, is never offered for a real source, and refuses every HTTP request. Its events are
relayed like any other, signed and retried, to the subscriptions that choose this source.
"""

from datetime import datetime
from typing import Any

from .base import Incoming, ParsedEvent, Provider, SignedRequest, VerificationFailed, read_envelope


class HubEvents(Provider):
    name = "hub"
    label = "The hub's own alerts"
    internal = True

    def verify(
        self, incoming: Incoming, secrets: list[str], source, now: datetime | None = None
    ) -> None:
        raise VerificationFailed("the hub's own source accepts no request")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        return read_envelope(payload, "Hub", ("id",), ("type",), ("time",))

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        return SignedRequest(headers={})
