"""Gateway API keys: ``Authorization: Bearer KEY`` or ``x-api-key: KEY`` on every route but /health.

Keys are configured in clear or as ``sha256:<hex>``; either way only their SHA-256 digests are
kept, and a presented key is compared against every digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from clinvk_core.errors import AuthenticationFailed
from clinvk_core.openai.errors import error_response as openai_error
from clinvk_core.web.run_response import ErrorResponse

HASH_PREFIX = "sha256:"
CALLER = "caller"  # request state: the digest of the key the request came with
OPEN_PATHS = frozenset({"/health"})
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _configured_digest(key: str) -> bytes:
    """The digest a configured key stands for.

    A malformed hash stops the start instead of quietly becoming a key nobody has (or, read as a
    clear key, a password equal to the hash that may sit in a config file).
    """
    if key[: len(HASH_PREFIX)].lower() != HASH_PREFIX:
        return _digest(key)
    if not _HEX_DIGEST.fullmatch(digest := key[len(HASH_PREFIX) :]):
        raise ValueError("API keys: 'sha256:' must be followed by the 64 hex digits of the key's SHA-256 digest")
    return bytes.fromhex(digest)


class KeyRing:
    """The accepted keys, as digests."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = [_configured_digest(key) for key in keys if key]

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        presented = _digest(key)
        matched = False
        for digest in self._digests:  # no early exit: the time taken says nothing about which key
            matched |= hmac.compare_digest(presented, digest)
        return matched


def presented_key(headers: dict[bytes, bytes]) -> str:
    """The key a request carries (Bearer token first, then x-api-key), or ""."""
    authorization = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get(b"x-api-key", b"").decode("latin-1").strip()


class ApiKeyAuth:
    """401 unless the request carries an accepted key (when any is configured).

    An accepted key's digest is left in the request's state as its caller's identity
    (:func:`caller`): what the caller stores, only the same key reads back.
    """

    def __init__(self, app: ASGIApp, keys: KeyRing, error_response: ErrorResponse = openai_error) -> None:
        self.app = app
        self.keys = keys
        self.error_response = error_response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(dict(scope["headers"]))
        if not key:
            error = AuthenticationFailed(
                "Missing API key: send it as 'Authorization: Bearer KEY' or as an 'x-api-key' header."
            )
        elif not self.keys.accepts(key):
            error = AuthenticationFailed("Incorrect API key provided.")
        else:
            scope.setdefault("state", {})[CALLER] = _digest(key).hex()
            await self.app(scope, receive, send)
            return
        await self.error_response(error)(scope, receive, send)


def caller(scope: Scope) -> str:
    """Who is asking: the digest of the request's accepted API key, or "" when the gateway has no keys."""
    value = scope.get("state", {}).get(CALLER, "")
    return value if isinstance(value, str) else ""
