"""Optional bearer-token auth on every endpoint but ``/health`` and ``/readyz``.

With ``settings.auth_token`` set, a request must carry ``Authorization: Bearer <token>``
or, where ``Authorization`` holds the provider's key (proxy mode with OpenAI),
``x-ctxgate-token: <token>``. Tokens are compared in constant time and never logged.

Without a token, the server refuses to start on a non-loopback host unless
``settings.allow_unauthenticated`` says so explicitly (``check_config``).
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from ctxgate.errors import ConfigError
from ctxgate.server.errors import error_response
from ctxgate.settings import Settings

OPEN_PATHS = frozenset({"/health", "/readyz"})
TOKEN_HEADER = b"x-ctxgate-token"


def check_config(settings: Settings) -> None:
    """Refuse an unauthenticated server reachable from other hosts."""
    if settings.auth_token is None and not settings.is_loopback() and not settings.allow_unauthenticated:
        raise ConfigError(
            f"host {settings.host!r} is not a loopback address and no auth token is set: set "
            "CTXGATE_AUTH_TOKEN, or CTXGATE_ALLOW_UNAUTHENTICATED=true to serve without auth"
        )


def presented_tokens(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    out = []
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            out.append(value[7:].strip())
        elif name == TOKEN_HEADER:
            out.append(value.strip())
    return out


class BearerAuth:
    """Pure ASGI middleware (does not buffer or touch streamed bodies)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if any(hmac.compare_digest(t, self._token) for t in presented_tokens(scope["headers"])):
            await self.app(scope, receive, send)
            return
        response = error_response(401, "missing or invalid bearer token",
                                  headers={"www-authenticate": 'Bearer realm="ctxgate"'})
        await response(scope, receive, send)
