"""Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.

The signed content is `<id>.<timestamp>.<raw body>`. `v1` entries are HMAC-SHA256 keyed with
a `whsec_<base64>` secret, computed by the same code that signs the hub's own deliveries
(subscriptions.signing imports sign_v1 from here);
`v1a` entries are ed25519 signatures, checked against secrets stored as `whpk_<base64 public
key>`. The header may hold several space-separated entries (the sender is rotating).
"""

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .base import (
    Incoming,
    ParsedEvent,
    Provider,
    SignedRequest,
    StaleTimestamp,
    VerificationFailed,
    decode_base64,
    matches_any,
    parse_time,
    string_field,
    unix_time,
    within_tolerance,
)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"
PUBLIC_KEY_PREFIX = "whpk_"
PRIVATE_KEY_PREFIX = "whsk_"
MAX_SIGNATURES = 10
TYPE_FIELDS = ("type", "event", "eventType")


class StandardWebhooks(Provider):
    name = "standard"
    label = "Standard Webhooks"
    signs_timestamp = True
    secret_headers = (SIGNATURE_HEADER,)

    def verify(
        self, incoming: Incoming, secrets: list[str], source, now: datetime | None = None
    ) -> None:
        msg_id = incoming.headers.get(ID_HEADER)
        timestamp = incoming.headers.get(TIMESTAMP_HEADER) or ""
        signatures = incoming.headers.get(SIGNATURE_HEADER)
        if not (msg_id and timestamp and signatures):
            raise VerificationFailed("missing webhook-id, webhook-timestamp or webhook-signature")
        seconds = unix_time(timestamp)
        if seconds is None:
            raise VerificationFailed("webhook-timestamp is not Unix seconds")
        if not within_tolerance(seconds, now, source.tolerance_seconds):
            raise StaleTimestamp("webhook-timestamp is outside the tolerance")

        hmacs, ed25519s = [], []
        for entry in signatures.split()[:MAX_SIGNATURES]:
            version, _, value = entry.partition(",")
            decoded = decode_base64(value)
            if decoded and version == "v1":
                hmacs.append(decoded)
            elif decoded and version == "v1a":
                ed25519s.append(decoded)
        public_keys = [s for s in secrets if s.startswith(PUBLIC_KEY_PREFIX)]
        hmac_secrets = [s for s in secrets if not s.startswith(PUBLIC_KEY_PREFIX)]

        expected = [
            decode_base64(sign_v1(secret, msg_id, seconds, incoming.body).partition(",")[2])
            for secret in hmac_secrets
        ]
        content = f"{msg_id}.{seconds}.".encode() + incoming.body
        signed_by_key = any(
            ed25519_valid(key, signature, content) for key in public_keys for signature in ed25519s
        )
        if not (matches_any(hmacs, expected) or signed_by_key):
            raise VerificationFailed("no signature matches an active secret")

    def parse(self, payload: Any, incoming: Incoming) -> ParsedEvent:
        # Generic senders: any JSON is stored; an object may name its type and time.
        body = payload if isinstance(payload, dict) else {}
        event_type = next(filter(None, (string_field(body, f) for f in TYPE_FIELDS)), None)
        occurred_at = parse_time(body.get("timestamp"))
        if occurred_at is None:
            occurred_at = parse_time(incoming.headers.get(TIMESTAMP_HEADER, "").strip() or None)
        return ParsedEvent(
            external_id=(incoming.headers.get(ID_HEADER) or "").strip() or None,
            type=event_type or "unknown",
            occurred_at=occurred_at,
        )

    def sign(self, body: bytes, secret: str, source, now: datetime) -> SignedRequest:
        # The same body gets the same id, as a sender's retry would.
        msg_id = "msg_" + hashlib.sha256(body).hexdigest()[:24]
        timestamp = int(now.timestamp())
        if secret.startswith(PRIVATE_KEY_PREFIX):
            signature = sign_v1a(secret, msg_id, timestamp, body)
        else:
            signature = sign_v1(secret, msg_id, timestamp, body)
        return SignedRequest(
            headers={
                ID_HEADER: msg_id,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: signature,
            }
        )


def secret_bytes(secret: str) -> bytes:
    """`whsec_<base64>` secrets sign with the decoded bytes; anything else with its UTF-8."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign_v1(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def ed25519_valid(public_key: str, signature: bytes, content: bytes) -> bool:
    raw = decode_base64(public_key.removeprefix(PUBLIC_KEY_PREFIX))
    try:
        Ed25519PublicKey.from_public_bytes(raw or b"").verify(signature, content)
    except (InvalidSignature, ValueError):
        return False
    return True


def sign_v1a(private_key: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`whsk_<base64>` holds the 32-byte seed, or libsodium's 64 bytes (seed + public key)."""
    raw = decode_base64(private_key.removeprefix(PRIVATE_KEY_PREFIX))
    if raw is None or len(raw) not in (32, 64):
        raise ValueError("a whsk_ key is the base64 of a 32 or 64 byte ed25519 key")
    key = Ed25519PrivateKey.from_private_bytes(raw[:32])
    signature = key.sign(f"{msg_id}.{timestamp}.".encode() + body)
    return "v1a," + base64.b64encode(signature).decode()
