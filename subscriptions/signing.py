"""Standard Webhooks signatures for the hub's outbound requests.

The signing itself is the `standard` provider's (receivers.providers.standard), which verifies
the same scheme on the way in.
"""

from receivers.providers.standard import SECRET_PREFIX, secret_bytes, sign_v1

__all__ = ["SECRET_PREFIX", "secret_bytes", "sign_v1", "signature_headers"]


def signature_headers(
    secrets: list[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """During a rotation every active secret signs, space-separated, as the spec allows."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign_v1(s, msg_id, timestamp, body) for s in secrets),
    }
