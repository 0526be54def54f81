"""Optional bearer-token auth on every endpoint but ``/health`` and ``/readyz``.

With ``settings.auth_token`` set, a request must carry ``Authorization: Bearer <token>``
or, where ``Authorization`` holds the provider's key (proxy mode with OpenAI),
``x-ctxgate-token: <token>``. Tokens are compared in constant time and never logged,
and the matching credential headers are removed before the request reaches a route, so
the proxy never forwards ctxgate's token upstream (a provider key in ``Authorization``
stays).

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


def strip_credentials(headers: list[tuple[bytes, bytes]], token: bytes) -> list[tuple[bytes, bytes]] | None:
    """The headers without ctxgate's credentials when one of them matches ``token``, else None."""
    ok = False
    kept = []
    for name, value in headers:
        if name == TOKEN_HEADER:
            ok = hmac.compare_digest(value.strip(), token) or ok
            continue
        is_bearer = name == b"authorization" and value[:7].lower() == b"bearer "
        if is_bearer and hmac.compare_digest(value[7:].strip(), token):
            ok = True
            continue
        kept.append((name, value))
    return kept if ok else None


class BearerAuth:
    """Pure ASGI middleware (does not buffer or touch streamed bodies)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        kept = strip_credentials(scope["headers"], self._token)
        if kept is not None:
            # the routes (and the upstream, in proxy mode) never see ctxgate's token
            await self.app({**scope, "headers": kept}, receive, send)
            return
        response = error_response(401, "missing or invalid bearer token",
                                  headers={"www-authenticate": 'Bearer realm="ctxgate"'})
        await response(scope, receive, send)
