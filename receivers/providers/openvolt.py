"""Openvolt: no signature scheme is documented, so the hub authenticates the URL instead.

A request is accepted when the query parameter `token` or the password of standard HTTP Basic
credentials equals an active secret (constant time). Neither covers the body: the IP allow
list is the extra check worth adding for this source.
"""

from datetime import datetime
from typing import Any

from .base import (
    Incoming,
    ParsedEvent,
    Provider,
    SignedRequest,
    VerificationFailed,
    basic_credentials,
    read_envelope,
    token_matches,
)

TOKEN_PARAM = "token"
HEADER = "Authorization"


class Openvolt(Provider):
    name = "openvolt"
    label = "Openvolt"
    # Nothing is signed: a token of ours in the URL (or a Basic password) is checked.
    signs_body = False
    url_token = True
    checks_token = True
    secret_headers = (HEADER,)

    def verify(
        self, incoming: Incoming, secrets: list[str], source, now: datetime | None = None
    ) -> None:
        given = []
        token = incoming.query.get(TOKEN_PARAM)
        if token:
            given.append(token)
        credentials = basic_credentials(incoming.headers.get(HEADER))
        if credentials and credentials[1]:
            given.append(credentials[1])
        if not given:
            raise VerificationFailed(f"no ?{TOKEN_PARAM}= and no Basic credentials")
        # Every credential is compared, so the time taken does not tell which one matched.
        results = [token_matches(value, secrets) for value in given]
        if not any(results):
            raise VerificationFailed("no credential matches an active secret")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        # `event_id` is the event TYPE; `delivery_id` is the unique id.
        return read_envelope(
            payload, "Openvolt", ("delivery_id",), ("event_id",), ("event_timestamp",)
        )

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        return SignedRequest(headers={}, query={TOKEN_PARAM: secret})
