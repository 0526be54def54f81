"""The upstream side of proxy mode: one pooled HTTP client, header rules, and the relay.

- ``Upstream`` owns a keep-alive pooled ``httpx.AsyncClient`` (injected transport in
  tests), with connect and between-chunk read timeouts and no total timeout. It sends
  exactly the headers it is given: httpx's own defaults (``User-Agent``,
  ``Accept-Encoding`` ...) are removed so the client's reach upstream unchanged.
  httpx errors are mapped here, once, to ``UpstreamTimeout`` / ``UpstreamConnectError``.
- ``forward_headers`` / ``relay_headers`` drop hop-by-hop headers both ways, and
  ctxgate's own ``x-ctxgate-*`` on the way up. Credentials pass through, and are
  never logged or stored.
- ``RelayResponse`` is an ASGI response that sends the upstream's status, headers
  and raw (still encoded) body chunk by chunk as they arrive, watches for the client
  leaving meanwhile, and closes the upstream response at once when it does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Protocol

import anyio
import httpx
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ctxgate.errors import UpstreamConnectError, UpstreamError, UpstreamTimeout
from ctxgate.settings import Settings

__all__ = [
    "Upstream",
    "RelayResponse",
    "Relay",
    "forward_headers",
    "relay_headers",
    "join_url",
    "map_errors",
]

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: never forwarded upstream: set by the HTTP client for the new connection and body
_REQUEST_DROP = HOP_BY_HOP | {b"host", b"content-length"}
_OWN_PREFIX = b"x-ctxgate-"


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    listed: set[bytes] = set()
    for k, v in headers:
        if k.lower() == b"connection":
            listed.update(t.strip().lower() for t in v.split(b",") if t.strip())
    return listed


def forward_headers(headers: Iterable[tuple[bytes, bytes]], *, keep_length: bool = False) -> RawHeaders:
    """The client's headers as they go upstream: all but hop-by-hop ones and ``x-ctxgate-*``.

    ``keep_length`` keeps ``content-length`` (a body forwarded unchanged, streamed).
    """
    headers = list(headers)
    drop = _REQUEST_DROP | _connection_listed(headers)
    if keep_length:
        drop = drop - {b"content-length"}
    return [(k, v) for k, v in headers if (lk := k.lower()) not in drop and not lk.startswith(_OWN_PREFIX)]


def relay_headers(headers: Iterable[tuple[bytes, bytes]], *, body_changed: bool = False) -> RawHeaders:
    """The upstream's response headers as they go to the client (hop-by-hop removed)."""
    headers = list(headers)
    drop = HOP_BY_HOP | _connection_listed(headers)
    if body_changed:
        drop = drop | {b"content-length"}
    return [(k, v) for k, v in headers if k.lower() not in drop]


def join_url(base: str, path: str, query: bytes | str = b"") -> str:
    """``base`` (which may carry a path prefix) + ``path`` (starting with ``/``) + the query."""
    q = query.decode("latin-1") if isinstance(query, bytes) else query
    return base.rstrip("/") + path + (f"?{q}" if q else "")


@contextlib.contextmanager
def map_errors() -> Iterator[None]:
    """Translate httpx's transport errors into ctxgate's, once, here."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"upstream timed out: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        raise UpstreamConnectError(f"upstream unreachable: {type(exc).__name__}: {exc}") from exc


class Upstream:
    """Pooled client for every upstream provider (one per app)."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        timeout = httpx.Timeout(
            connect=settings.connect_timeout_s,
            read=settings.read_timeout_s,
            write=settings.read_timeout_s,
            pool=settings.connect_timeout_s,
        )
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=60.0)
        self.client = httpx.AsyncClient(
            transport=transport, timeout=timeout, limits=limits, follow_redirects=False
        )
        for name in list(self.client.headers.keys()):
            del self.client.headers[name]  # send the client's headers, not httpx's defaults

    async def send(
        self,
        method: str,
        url: str,
        headers: RawHeaders,
        content: bytes | AsyncIterator[bytes],
        *,
        receive: Receive | None = None,
    ) -> httpx.Response | None:
        """Send one request; the response is open for streaming (close it with ``aclose``).

        With ``receive`` (the client's, its body already read), waiting for the upstream's
        headers is abandoned as soon as the client disconnects: the result is then None.
        """
        request = self.client.build_request(method, url, headers=headers, content=content)
        if receive is None:
            with map_errors():
                return await self.client.send(request, stream=True)
        got: list[httpx.Response] = []
        failed: list[BaseException] = []
        async with anyio.create_task_group() as tg:

            async def do() -> None:
                try:
                    with map_errors():
                        got.append(await self.client.send(request, stream=True))
                except UpstreamError as exc:
                    failed.append(exc)
                tg.cancel_scope.cancel()

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(do)
            tg.start_soon(watch)
        if failed:
            raise failed[0]
        return got[0] if got else None

    async def aclose(self) -> None:
        await self.client.aclose()


class Relay(Protocol):
    """What the proxy does with the bytes on their way to the client."""

    def feed(self, chunk: bytes) -> bytes:
        """Look at one raw upstream chunk; return what the client gets now."""
        ...

    def flush(self) -> bytes:
        """End of the upstream body: whatever is left for the client."""
        ...

    def finish(self, outcome: str, error: str | None) -> None:
        """Called once: ``completed``, ``client_disconnected``, ``upstream_error`` or ``cancelled``."""
        ...


class RelayResponse(Response):
    """ASGI response relaying an open upstream response; see the module docstring."""

    def __init__(self, upstream: httpx.Response, headers: RawHeaders, relay: Relay) -> None:
        # Response.__init__ is not called: there is no body to render, only one to relay
        self.background = None
        self.upstream = upstream
        self.status_code = upstream.status_code
        self.raw_headers = headers
        self.relay = relay
        #: how the relay ended (for tests and the ledger): set before ``finish`` is called
        self.outcome = "pending"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.outcome, error = "pending", None
        failure: UpstreamError | None = None
        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    while True:
                        message: Message = await receive()
                        if message["type"] == "http.disconnect":
                            if self.outcome == "pending":  # not once the last byte is on its way
                                self.outcome = "client_disconnected"
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch)
                await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
                try:
                    with map_errors():
                        async for chunk in self.upstream.aiter_raw():
                            out = self.relay.feed(chunk)
                            if out:
                                await send({"type": "http.response.body", "body": out, "more_body": True})
                except UpstreamError as exc:
                    self.outcome, error, failure = "upstream_error", str(exc), exc
                else:
                    tail = self.relay.flush()
                    if self.outcome == "pending":
                        self.outcome = "completed"
                    await send({"type": "http.response.body", "body": tail, "more_body": False})
                tg.cancel_scope.cancel()
        except OSError:
            self.outcome = "client_disconnected"
        finally:
            with anyio.CancelScope(shield=True):
                await self.upstream.aclose()
            if self.outcome == "pending":
                self.outcome = "cancelled"
            self.relay.finish(self.outcome, error)
        if self.background is not None:
            await self.background()
        if failure is not None:
            # after the first byte no status can change: abort the connection so the client
            # sees a truncated response, never one that looks complete
            raise failure
