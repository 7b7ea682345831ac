"""API tokens: knox keeps only a digest of each (SHA-512), never the token itself."""

from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


class TokenAuthentication(KnoxTokenAuthentication):
    """knox's, refusing a malformed token with a 401 before it reaches the database (knox
    would fail on one that is not UTF-8, and PostgreSQL on a NUL character)."""

    def authenticate_credentials(self, token: bytes):
        if not (token.isascii() and token.replace(b"-", b"").replace(b"_", b"").isalnum()):
            raise AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(token)
