"""The exception tree of ctxgate.

    CtxgateError
     +-- ConfigError          bad setting or config file (start-up)
     +-- StoreError           a store backend failed (driver errors are mapped here)
     +-- UpstreamError        the provider could not be reached
     |    +-- UpstreamTimeout
     |    +-- UpstreamConnectError
     +-- RequestRejected      a client request that gets a 4xx (carries ``status``)

Pure code (``engine/``, ``conversation/``) raises plain ``ValueError``; the one
dispatcher that calls it catches that and fails open. Foreign errors (httpx,
sqlite3, psycopg, redis) are translated once at the boundary that meets them,
always with ``raise ... from exc``.
"""

from __future__ import annotations


class CtxgateError(Exception):
    """Base class of every error ctxgate raises on purpose."""


class ConfigError(CtxgateError):
    """A setting or the config file is invalid; the message names the key."""


class StoreError(CtxgateError):
    """A store backend is unreachable or failed."""


class UpstreamError(CtxgateError):
    """The upstream provider could not be reached."""


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamConnectError(UpstreamError):
    pass


class RequestRejected(CtxgateError):
    """A client request that is answered with a 4xx status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
