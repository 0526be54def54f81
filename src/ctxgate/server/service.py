"""``POST /v1/compress``: the service-mode endpoint gateway plugins call for every LLM request.

A drop-in for headroom-gateway's endpoint. The messages (OpenAI Chat, Anthropic or
OpenAI Responses items, detected) are serialized into a provider-shaped body, handed to
the pipeline, and parsed back out of its result; ``system`` and ``tools`` are returned
unchanged. Every call writes one ledger row, compressed or not.

Fail-open: a failure or time-budget overrun inside compression answers 200 with the
original messages, ``compression_skipped: true``, ``skip_reason`` and ``error``. Only a
body that is not JSON (400) or has no usable ``messages`` (422) is rejected.

``protect_recent`` is satisfied by construction and keeps the compress-once guarantee:
ctxgate never changes the text of any user or assistant message, recent or not; tool
outputs are decided once, the first time they are seen, and that decision is replayed
byte for byte on every later turn. Re-deciding a block once it leaves the "recent"
window would change a prefix the provider has cached, so the value is accepted and
echoed but never makes an old block change.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from ctxgate import tokens
from ctxgate.errors import RequestRejected
from ctxgate.pipeline import PipelineResult, RequestInfo, WireFormat
from ctxgate.server.state import AppState
from ctxgate.store.base import LedgerRow
from ctxgate.store.ledger import new_request_id

router = APIRouter()
T = TypeVar("T")

USER_HEADERS = ("x-maas-username", "x-headroom-user-id", "x-ctxgate-user")
SESSION_HEADERS = ("x-ctxgate-session-id", "x-claude-code-session-id", "x-headroom-session-id")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")
MAX_IDENTITY_CHARS = 128


class CompressConfig(BaseModel):
    """Per-request options (``config``); unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    level: Literal["off", "lossless", "balanced"] | None = None
    exclude_tools: list[str] = Field(default_factory=list)
    compress_user_messages: bool = False


class CompressRequest(BaseModel):
    """Body of ``POST /v1/compress``; unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    messages: list[dict[str, Any]]
    model: str = "default"
    protect_recent: int | None = Field(None, ge=0)
    min_tokens_to_compress: int | None = Field(None, ge=0)
    config: CompressConfig | None = None
    token_budget: int | None = Field(None, ge=0, validation_alias=AliasChoices("token_budget", "tokenBudget"))
    fallback: Any = None
    system: Any = None
    tools: Any = None


_OPENAI_ROLES = {"system", "developer", "tool", "function"}
_ANTHROPIC_BLOCKS = {"tool_use", "tool_result", "thinking", "redacted_thinking", "server_tool_use",
                     "web_search_tool_result", "document"}
_RESPONSES_ITEMS = {"function_call", "function_call_output", "reasoning", "custom_tool_call",
                    "custom_tool_call_output", "local_shell_call", "local_shell_call_output"}


def detect_format(messages: list[dict[str, Any]], *, has_system: bool = False) -> WireFormat:
    """OpenAI Chat, Anthropic Messages or OpenAI Responses items, from the messages' shape."""
    for m in messages:
        if m.get("type") in _RESPONSES_ITEMS:
            return "openai_responses"
        if m.get("role") in _OPENAI_ROLES or "tool_calls" in m or "function_call" in m:
            return "openai_chat"
        content = m.get("content")
        if isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                kind = block.get("type")
                if kind in _ANTHROPIC_BLOCKS or (kind == "image" and "source" in block):
                    return "anthropic"
                if kind in ("image_url", "input_audio", "refusal"):
                    return "openai_chat"
                if kind in ("input_text", "output_text", "input_image"):
                    return "openai_responses"
    return "anthropic" if has_system else "openai_chat"


def identity(request: Request, names: tuple[str, ...], default: str | None) -> str | None:
    for name in names:
        value = request.headers.get(name)
        if value and value.strip():
            return _UNSAFE.sub("", value.strip())[:MAX_IDENTITY_CHARS]
    return default


def bypassed(request: Request) -> bool:
    return (request.headers.get("x-ctxgate-bypass", "").strip().lower() in ("1", "true", "yes")
            or request.headers.get("x-headroom-bypass", "").strip().lower() in ("1", "true", "yes"))


def build_body(fmt: WireFormat, req: CompressRequest) -> bytes:
    body: dict[str, Any] = {"model": req.model}
    if fmt == "anthropic" and req.system is not None:
        body["system"] = req.system
    if req.tools is not None:
        body["tools"] = req.tools
    body["input" if fmt == "openai_responses" else "messages"] = req.messages
    return json_bytes(body)


def json_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON; ASCII escapes when the data holds lone surrogates (valid JSON, not UTF-8)."""
    try:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":")).encode("ascii")


def messages_from(fmt: WireFormat, body: bytes, expected: int) -> list[dict[str, Any]]:
    data = json.loads(body)
    messages = data.get("input" if fmt == "openai_responses" else "messages")
    if not isinstance(messages, list) or len(messages) != expected:
        raise ValueError("pipeline returned a body without the same number of messages")
    return messages


def _ratio(before: int, after: int) -> float:
    if before <= 0 or after >= before:
        return 1.0
    return round(max(0.0, after / before), 4)


def _count(messages: list[dict[str, Any]], model: str) -> tuple[int, str]:
    if not messages:
        return 0, tokens.counter_for(model).name
    n = tokens.count(json.dumps(messages, ensure_ascii=False), model)
    return n.tokens, n.estimator


#: bodies above this many bytes are parsed, counted and serialized in a worker thread
OFF_LOOP_BYTES = 256 * 1024


async def off_loop(big: bool, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn`` in a worker thread when the body is big (the event loop keeps serving others)."""
    return await asyncio.to_thread(fn, *args) if big else fn(*args)


async def _parse(request: Request, ctx: AppState) -> tuple[CompressRequest, int]:
    raw = await request.body()
    big = len(raw) > OFF_LOOP_BYTES
    try:
        data = await off_loop(big, json.loads, raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRejected(f"body is not valid JSON: {exc}", 400) from exc
    if not isinstance(data, dict):
        raise RequestRejected("body must be a JSON object with a 'messages' list", 422)
    try:
        req = await off_loop(big, CompressRequest.model_validate, data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise RequestRejected(f"{loc}: {first['msg']}", 422) from exc
    if req.config is not None and req.config.compress_user_messages:
        raise RequestRejected(
            "config.compress_user_messages=true is not supported: ctxgate never changes user text "
            "(only tool outputs); send false or leave it out", 400)
    return req, len(raw)


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` inlined (the OpenAPI document has no room for them)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return dict(resolve(schema))


@router.post(
    "/v1/compress",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": inline_schema(CompressRequest)}
    }}},
    responses={400: {"description": "body is not JSON or an option is not supported"},
               422: {"description": "no usable messages"}},
)
async def compress(request: Request) -> Response:
    """Compress the tool outputs in ``messages``; see docs/API.md for every field."""
    ctx: AppState = request.app.state.ctx
    settings = ctx.settings
    started = time.perf_counter()
    req, size = await _parse(request, ctx)
    user = identity(request, USER_HEADERS, "anonymous") or "anonymous"
    session = identity(request, SESSION_HEADERS, None)
    fmt = detect_format(req.messages, has_system=req.system is not None)
    messages = req.messages
    result: PipelineResult | None = None
    error: str | None = None
    skip: str | None = None

    if not messages:
        skip, before, after, estimator = "empty", 0, 0, tokens.counter_for(req.model).name
    elif size > settings.max_body_bytes:
        # too large to count within the budget: the usual 4-characters-per-token estimate
        skip, before, estimator = "too_large", size // 4, "chars/4"
        after = before
    elif bypassed(request):
        skip = "bypass"
        before, estimator = await off_loop(size > OFF_LOOP_BYTES, _count, messages, req.model)
        after = before
    else:
        info = RequestInfo(
            fmt=fmt, model=req.model, user=user, session_id=session,
            level=req.config.level if req.config else None,
            exclude_tools=tuple(req.config.exclude_tools) if req.config else (),
            min_tokens=req.min_tokens_to_compress,
        )
        # the pipeline enforces the budget itself; this is the backstop
        budget_s = settings.time_budget_ms / 1000.0
        try:
            big = size > OFF_LOOP_BYTES
            body = await off_loop(big, build_body, fmt, req)
            result = await asyncio.wait_for(ctx.pipeline.run(body, info), budget_s * 2 + 0.1)
            if result.error:
                error, skip = result.error, result.skip_reason or "error"
            elif result.tokens_after < result.tokens_before:
                messages = await off_loop(big, messages_from, fmt, result.body, len(req.messages))
            else:
                skip = result.skip_reason or "no_savings"
                if skip == "time_budget":
                    error = f"compression exceeded {settings.time_budget_ms} ms"
        except TimeoutError:
            skip, error, result = "time_budget", f"compression exceeded {settings.time_budget_ms} ms", None
        except Exception as exc:  # fail open: the caller always gets its messages back
            skip, error, result = "error", f"{type(exc).__name__}: {exc}"[:200], None
        if result is not None and skip is None:
            before, after, estimator = result.tokens_before, result.tokens_after, result.estimator
        else:
            messages = req.messages
            if result is not None:
                before, estimator = result.tokens_before, result.estimator
            else:
                before, estimator = await off_loop(size > OFF_LOOP_BYTES, _count, messages, req.model)
            after = before

    transforms = list(result.transforms) if result is not None and skip is None else []
    ccr = list(result.ccr_hashes) if result is not None and skip is None else []
    price = ctx.prices.lookup(req.model)
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    request_id = new_request_id()
    row = LedgerRow(
        request_id=request_id, timestamp=time.time(), user=user, model=req.model,
        provider="anthropic" if fmt == "anthropic" else "openai", mode="service",
        tokens_before=before, tokens_after=after, estimator=estimator, cost_per_mtok=price.input,
        session=(result.session_id if result is not None and result.session_id else session),
        transforms=transforms, skip_reason=skip, error=error, latency_ms=latency_ms,
    )
    ctx.recorder.record(row)

    out: dict[str, Any] = {
        "messages": messages,
        "tokens_before": before,
        "tokens_after": after,
        "tokens_saved": row.tokens_saved,
        "compression_ratio": _ratio(before, after),
        "transforms_applied": transforms,
        "ccr_hashes": ccr,
        "compression_skipped": skip is not None,
        "skip_reason": skip,
        "request_id": request_id,
        "model": req.model,
        "estimator": estimator,
        "cost_per_mtok": price.input,
        "cost_saved_usd": row.dollars_saved,
    }
    if error:
        out["error"] = error
    if req.system is not None:
        out["system"] = req.system
    if req.tools is not None:
        out["tools"] = req.tools
    if req.token_budget is not None:
        out["within_token_budget"] = after <= req.token_budget
    return Response(await off_loop(size > OFF_LOOP_BYTES, json_bytes, out), media_type="application/json")


@router.api_route("/v1/compress", methods=["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False)
async def compress_wrong_method() -> None:
    """``/v1/compress`` is ours for every method: never forwarded upstream by the proxy's catch-all."""
    raise RequestRejected("method not allowed: use POST /v1/compress", 405)
