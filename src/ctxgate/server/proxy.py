"""Proxy mode: Anthropic and OpenAI routes that compress, forward and stream back untouched.

One call: read the raw body, run the pipeline on it (only changed tool-output strings
are spliced; every other byte is the client's), send it upstream with the client's
headers, and relay the upstream's status, headers and body chunk by chunk. A copy of
the body goes through ``UsageTap``; when the response ends, one ledger row records
what the provider billed and what the uncompressed call would have cost.

Routes (see docs/PROXY.md): ``POST /v1/messages``, ``POST /v1/messages/count_tokens``,
``POST /v1/chat/completions`` (also ``/chat/completions``), ``POST /v1/responses``,
and anything else under ``/v1/`` passed through unchanged to the provider the
request's headers point at (``anthropic-version`` or ``x-api-key``: Anthropic).

The one change besides compression: an OpenAI chat stream whose client did not ask
for usage gets ``"stream_options":{"include_usage":true}`` spliced in, and the extra
usage-only chunk this produces is removed from what the client receives.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import JSONResponse, Response

from ctxgate.billing import billed_usd as billed_cost
from ctxgate.billing import counterfactual_usd
from ctxgate.errors import UpstreamError, UpstreamTimeout
from ctxgate.pipeline import PipelineResult, RequestInfo, WireFormat
from ctxgate.server.state import AppState
from ctxgate.server.upstream import RelayResponse, Upstream, forward_headers, join_url, relay_headers
from ctxgate.server.usage_tap import UsageTap
from ctxgate.store.base import LedgerRow

__all__ = ["router", "splice_include_usage", "request_identity", "pick_provider", "provider_error"]

log = logging.getLogger("ctxgate.proxy")

Provider = Literal["anthropic", "openai"]

_SESSION_HEADERS = ("x-claude-code-session-id", "x-ctxgate-session-id")
_USER_HEADERS = ("x-maas-username", "x-headroom-user-id", "x-ctxgate-user")
_LEVELS = ("off", "lossless", "balanced")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    upstream = Upstream(app.state.settings, getattr(app.state, "upstream_transport", None))
    app.state.upstream = upstream
    try:
        yield
    finally:
        await upstream.aclose()


#: not in the OpenAPI schema: bodies are the providers' own, forwarded as raw bytes
router = APIRouter(lifespan=_lifespan, include_in_schema=False)


# --- request identity and body fields --------------------------------------------


def request_identity(headers: Any) -> tuple[str, str | None]:
    """(user, session id) from the client's headers."""
    user = next((v for h in _USER_HEADERS if (v := headers.get(h))), "anonymous")
    session = next((v for h in _SESSION_HEADERS if (v := headers.get(h))), None)
    return user, session


def _body_fields(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


_INCLUDE_USAGE = b'"stream_options":{"include_usage":true}'
_STREAM_OPTIONS_KEY = re.compile(rb'(?<!\\)"stream_options"\s*:\s*')
_INCLUDE_USAGE_KEY = re.compile(rb'(?<!\\)"include_usage"\s*:\s*(?:true|false|null)')


def splice_include_usage(body: bytes, fields: dict[str, Any]) -> bytes | None:
    """Ask an OpenAI chat stream for its usage by a byte splice (never re-serialized).

    ``fields`` is the parsed top level of the body. Returns None when the client asked
    for usage itself, or when the body cannot be spliced with certainty.
    """
    so = fields.get("stream_options")
    if isinstance(so, dict) and so.get("include_usage") is True:
        return None
    if "stream_options" not in fields:
        stripped = body.lstrip()
        if not stripped.startswith(b"{"):
            return None
        i = len(body) - len(stripped) + 1
        return body[:i] + _INCLUDE_USAGE + b"," + body[i:]
    keys = list(_STREAM_OPTIONS_KEY.finditer(body))
    if len(keys) != 1:
        return None
    at = keys[0].end()
    if so is None and body.startswith(b"null", at):
        out = body[:at] + b'{"include_usage":true}' + body[at + 4 :]
    elif isinstance(so, dict) and body.startswith(b"{", at):
        if "include_usage" in so:
            inner = list(_INCLUDE_USAGE_KEY.finditer(body, at))
            if len(inner) != 1:
                return None
            m = inner[0]
            out = body[: m.start()] + b'"include_usage":true' + body[m.end() :]
        else:
            empty = body[at + 1 :].lstrip().startswith(b"}")
            out = body[: at + 1] + b'"include_usage":true' + (b"" if empty else b",") + body[at + 1 :]
    else:
        return None
    try:  # rare path: prove the splice did exactly what it should
        after, before = json.loads(out), json.loads(body)
    except ValueError:
        return None
    want = dict(before.get("stream_options") or {}, include_usage=True)
    if after.get("stream_options") != want:
        return None
    after.pop("stream_options")
    before.pop("stream_options")
    return out if after == before else None


# --- errors in the provider's own shape --------------------------------------------


def provider_error(provider: Provider, status: int, message: str, code: str) -> JSONResponse:
    if provider == "anthropic":
        kind = {401: "authentication_error", 413: "request_too_large"}.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": "upstream_error" if status >= 500 else "invalid_request_error",
                          "param": None, "code": code}}
    return JSONResponse(body, status_code=status)


def _without_own_token(headers: list[tuple[bytes, bytes]], state: AppState) -> list[tuple[bytes, bytes]]:
    """Drop an ``Authorization: Bearer`` that carries ctxgate's own token: it is not the provider's."""
    token = state.settings.auth_token
    if token is None:
        return headers
    own = token.get_secret_value().encode()

    def is_own(k: bytes, v: bytes) -> bool:
        return k.lower() == b"authorization" and v[:7].lower() == b"bearer " and hmac.compare_digest(v[7:].strip(), own)

    return [(k, v) for k, v in headers if not is_own(k, v)]


# --- one proxied call -----------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """Everything the ledger row of one call needs, gathered along the way."""

    state: AppState
    provider: Provider
    model: str
    user: str
    result: PipelineResult | None
    overhead_ms: float
    record: bool = True
    #: the pipeline's deferred token count, made while the upstream reads the body and answers
    counting: asyncio.Future[None] | None = None

    def start_count(self) -> None:
        if self.counting is None and self.result is not None and self.result.pending is not None:
            self.counting = asyncio.ensure_future(self.result.count())

    async def counted(self) -> None:
        """Wait for the token count (the response headers and the ledger row carry it)."""
        self.start_count()
        if self.counting is not None:
            await self.counting

    async def body_then_count(self, body: bytes) -> AsyncIterator[bytes]:
        """``body`` for the upstream request; the count starts once the body is handed to the socket
        (counting in a thread competes with the event loop for the interpreter while it sends)."""
        yield body
        self.start_count()

    def row(self, tap: UsageTap | None, error: str | None) -> LedgerRow:
        price = self.state.prices.lookup(self.model)
        r = self.result
        usage = tap.usage if tap is not None else None
        before, after = (r.tokens_before, r.tokens_after) if r else (0, 0)
        errors = [e for e in (r.error if r else None, error) if e]
        return LedgerRow(
            request_id=uuid.uuid4().hex,
            timestamp=time.time(),
            user=self.user,
            model=self.model,
            provider=self.provider,
            mode="proxy",
            tokens_before=before,
            tokens_after=after,
            estimator=r.estimator if r else "none",
            cost_per_mtok=price.input,
            session=(r.session_id or None) if r else None,
            transforms=list(r.transforms) if r else [],
            skip_reason=r.skip_reason if r else "passthrough",
            error="; ".join(errors) or None,
            latency_ms=round(self.overhead_ms, 3),
            usage_input_tokens=usage.input_tokens if usage else None,
            usage_cache_write_tokens=usage.cache_write_tokens if usage else None,
            usage_cache_write_1h_tokens=usage.cache_write_1h_tokens if usage else None,
            usage_cache_read_tokens=usage.cache_read_tokens if usage else None,
            usage_output_tokens=usage.output_tokens if usage else None,
            billed_usd=billed_cost(usage, price) if usage else None,
            counterfactual_usd=counterfactual_usd(usage, price, before, after) if usage else None,
        )

    def finish(self, tap: UsageTap | None, error: str | None) -> None:
        if not self.record:
            return
        try:
            self.state.recorder.record(self.row(tap, error))
        except Exception:  # the ledger never breaks a response
            log.exception("ledger row of a proxied call could not be recorded")


class _CallRelay:
    """Tees the upstream body into the usage tap; drops the injected usage chunk if asked."""

    def __init__(self, call: _Call, tap: UsageTap | None, status: int, drop_usage_chunk: bool) -> None:
        self.call, self.tap, self.status, self.drop = call, tap, status, drop_usage_chunk

    def feed(self, chunk: bytes) -> bytes:
        if self.tap is None:
            return chunk
        events = self.tap.feed(chunk)
        if not self.drop:
            return chunk
        return b"".join(ev.raw for ev in events if not ev.usage_only)

    def flush(self) -> bytes:
        if self.tap is None:
            return b""
        events = self.tap.flush()
        return b"".join(ev.raw for ev in events if not ev.usage_only) if self.drop else b""

    def finish(self, outcome: str, error: str | None) -> None:
        reasons = []
        if self.status >= 400:
            reasons.append(f"upstream status {self.status}")
        if self.tap is not None and self.tap.error:
            reasons.append(f"upstream error event: {self.tap.error}")
        if outcome != "completed":
            reasons.append(outcome if error is None else f"{outcome}: {error}")
        self.call.finish(self.tap, "; ".join(reasons) or None)


def _token_headers(result: PipelineResult | None, overhead_ms: float) -> list[tuple[bytes, bytes]]:
    out = [(b"x-ctxgate-overhead-ms", f"{overhead_ms:.2f}".encode())]
    if result is not None:
        saved = str(max(0, result.tokens_before - result.tokens_after)).encode()
        before, after = str(result.tokens_before).encode(), str(result.tokens_after).encode()
        for prefix in (b"x-ctxgate-tokens-", b"x-headroom-tokens-"):
            out += [(prefix + b"before", before), (prefix + b"after", after), (prefix + b"saved", saved)]
    return out


#: top-level body fields the proxy reads (from the pipeline's parse: the body is not parsed twice)
_FIELDS = ("model", "stream", "stream_options")


async def _compress(request: Request, state: AppState, raw: bytes, fmt: WireFormat) -> PipelineResult:
    user, session = request_identity(request.headers)
    level = request.headers.get("x-ctxgate-level")
    if request.headers.get("x-ctxgate-bypass", "").lower() in ("1", "true", "yes"):
        level = "off"
    exclude = tuple(t.strip() for t in request.headers.get("x-ctxgate-exclude-tools", "").split(",") if t.strip())
    info = RequestInfo(
        fmt=fmt,
        model="unknown",
        model_from_body=True,
        fields=_FIELDS,
        defer_count=True,
        user=user,
        session_id=session,
        level=level if level in _LEVELS else None,  # type: ignore[arg-type]
        exclude_tools=exclude,
    )
    return await state.pipeline.run(raw, info)


async def _forward(
    request: Request,
    *,
    provider: Provider,
    url: str,
    body: bytes | AsyncIterator[bytes],
    call: _Call,
    fmt: WireFormat | None,
    inject_usage: bool,
    keep_length: bool,
    started: float,
) -> Response:
    upstream: Upstream = request.app.state.upstream
    headers = _without_own_token(forward_headers(request.headers.raw, keep_length=keep_length), call.state)
    # the body is read: from here on the client's receive() only says that it left
    receive = request.receive if isinstance(body, bytes) else None
    if isinstance(body, bytes) and call.result is not None and call.result.pending is not None:
        # the same bytes under the same Content-Length, handed over as one chunk (not chunked encoding)
        headers.append((b"content-length", str(len(body)).encode()))
        body = call.body_then_count(body)
    call.overhead_ms = (time.perf_counter() - started) * 1000
    try:
        resp = await upstream.send(request.method, url, headers, body, receive=receive)
    except UpstreamError as exc:
        await call.counted()
        call.finish(None, f"upstream unreachable: {exc}")
        code = "upstream_timeout" if isinstance(exc, UpstreamTimeout) else "upstream_unreachable"
        return provider_error(provider, 502, f"ctxgate: {exc}", code)
    await call.counted()
    if resp is None:  # the client left before the upstream answered; nobody reads this
        call.finish(None, "client_disconnected before the upstream answered")
        return Response(status_code=499)
    ctype = resp.headers.get("content-type", "")
    encoding = resp.headers.get("content-encoding", "")
    streaming = "text/event-stream" in ctype
    tap = UsageTap(fmt, streaming=streaming, content_encoding=encoding) if fmt is not None else None
    drop = inject_usage and streaming and resp.status_code == 200 and encoding in ("", "identity")
    out_headers = relay_headers(resp.headers.raw, body_changed=drop) + _token_headers(call.result, call.overhead_ms)
    return RelayResponse(resp, out_headers, _CallRelay(call, tap, resp.status_code, drop))


async def _proxy_compressed(request: Request, fmt: WireFormat, provider: Provider, path: str) -> Response:
    state: AppState = request.app.state.ctx
    raw = await request.body()
    started = time.perf_counter()  # ctxgate's own time starts once the client's upload is in
    try:
        result = await _compress(request, state, raw, fmt)
    except Exception as exc:  # the pipeline promises not to raise; if it does, fail open anyway
        log.exception("pipeline raised; forwarding the original body")
        result = PipelineResult(raw, 0, 0, "none", "", skip_reason="error", error=type(exc).__name__)
    # the pipeline parsed the body; only a body it could not parse is read here (rare)
    fields = result.fields if result.fields is not None else _body_fields(raw)
    body = result.body
    inject = False
    if fmt == "openai_chat" and fields.get("stream") is True:
        spliced = splice_include_usage(body, fields)
        if spliced is not None:
            body, inject = spliced, True
    user, _ = request_identity(request.headers)
    model = fields.get("model") if isinstance(fields.get("model"), str) else "unknown"
    # tokens_before is counted (in a worker thread) while the upstream reads the body: it is needed
    # only for the response headers and the ledger row, once the upstream has answered
    call = _Call(state, provider, str(model), user, result, 0.0, record=not path.endswith("count_tokens"))
    base = state.settings.anthropic_upstream if provider == "anthropic" else state.settings.openai_upstream
    url = join_url(base, path, request.url.query)
    return await _forward(
        request, provider=provider, url=url, body=body, call=call, fmt=fmt,
        inject_usage=inject, keep_length=False, started=started,
    )


@router.post("/v1/messages")
async def anthropic_messages(request: Request) -> Response:
    return await _proxy_compressed(request, "anthropic", "anthropic", "/v1/messages")


@router.post("/v1/messages/count_tokens")
async def anthropic_count_tokens(request: Request) -> Response:
    return await _proxy_compressed(request, "anthropic", "anthropic", "/v1/messages/count_tokens")


@router.post("/v1/chat/completions")
@router.post("/chat/completions")
async def openai_chat(request: Request) -> Response:
    return await _proxy_compressed(request, "openai_chat", "openai", "/chat/completions")


@router.post("/v1/responses")
async def openai_responses(request: Request) -> Response:
    return await _proxy_compressed(request, "openai_responses", "openai", "/responses")


def pick_provider(headers: Any) -> Provider:
    """Anthropic clients always send ``anthropic-version`` (or at least ``x-api-key``)."""
    return "anthropic" if headers.get("anthropic-version") or headers.get("x-api-key") else "openai"


@router.api_route("/v1/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
async def passthrough(request: Request, path: str) -> Response:
    """Any other provider endpoint (models, embeddings, files, batches): forwarded unchanged."""
    started = time.perf_counter()
    state: AppState = request.app.state.ctx
    provider = pick_provider(request.headers)
    if provider == "anthropic":
        url = join_url(state.settings.anthropic_upstream, "/v1/" + path, request.url.query)
    else:
        url = join_url(state.settings.openai_upstream, "/" + path, request.url.query)
    user, _ = request_identity(request.headers)
    call = _Call(state, provider, "unknown", user, None, 0.0, record=False)
    has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
    return await _forward(
        request, provider=provider, url=url, body=request.stream() if has_body else b"", call=call,
        fmt=None, inject_usage=False, keep_length=True, started=started,
    )

