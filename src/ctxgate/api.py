"""The library API: ``ctxgate.compress(messages, model=...)``.

It accepts an OpenAI Chat or Anthropic Messages list, runs the conversation layer
(``pipeline.py``) on it with the configured decision store (embedded SQLite under
``data_dir`` by default) and returns a ``CompressResult``. Calls that name the same
``session`` (or, without one, share tenant, model and first user message) are one
session: every later call re-sends exactly the bytes decided the first time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ctxgate import conversation, tokens
from ctxgate.pipeline import PipelineResult, RequestInfo, WireFormat, build_pipeline
from ctxgate.settings import Settings, load_settings

T = TypeVar("T")
_OPTIONS = {"level", "exclude_tools", "min_tokens", "user", "settings", "fmt"}


@dataclass(slots=True)
class CompressResult:
    messages: list[dict[str, Any]]
    tokens_before: int
    tokens_after: int
    transforms_applied: list[str] = field(default_factory=list)
    ccr_hashes: list[str] = field(default_factory=list)
    estimator: str = "o200k_base"
    skip_reason: str | None = None
    session_id: str = ""
    #: what happened to the tool outputs (see ``PipelineResult.counts``)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def tokens_saved(self) -> int:
        return max(0, self.tokens_before - self.tokens_after)

    @property
    def compression_ratio(self) -> float:
        """after / before; 1.0 when nothing was saved (or nothing was sent)."""
        if self.tokens_before <= 0:
            return 1.0
        return min(1.0, max(0.0, self.tokens_after / self.tokens_before))


def detect_format(messages: list[dict[str, Any]]) -> WireFormat:
    """``anthropic`` when a message holds ``tool_use``/``tool_result`` blocks, else ``openai_chat``."""
    for m in messages:
        if not isinstance(m, dict):
            continue
        if m.get("role") == "tool" or m.get("tool_calls"):
            return "openai_chat"
        content = m.get("content")
        if isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") in ("tool_result", "tool_use") for b in content
        ):
            return "anthropic"
    return "openai_chat"


def _dumps(body: dict[str, Any]) -> bytes:
    text = json.dumps(body, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them
        return json.dumps(body).encode("utf-8")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:  # called from inside an event loop: run beside it
        return pool.submit(asyncio.run, coro).result()


async def _compress(raw: bytes, info: RequestInfo, settings: Settings) -> PipelineResult:
    pipeline = build_pipeline(settings)
    try:
        return await pipeline.run(raw, info)
    finally:
        await pipeline.aclose()


def compress(
    messages: list[dict[str, Any]],
    model: str = "default",
    session: str | None = None,
    tenant: str = "default",
    **options: Any,
) -> CompressResult:
    """Compress the tool outputs of a message list (OpenAI Chat or Anthropic Messages).

    Options: ``level`` (off | lossless | balanced), ``exclude_tools`` (tool names kept
    byte-exact), ``min_tokens``, ``user``, ``fmt`` (force the wire format), ``settings``
    (a ``Settings``; default: ``load_settings()``, i.e. ``CTXGATE_*`` and the config file).
    Never raises for content: on any failure the messages come back unchanged with a
    ``skip_reason``.
    """
    if not isinstance(messages, list):
        raise TypeError("messages must be a list of message objects")
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"unknown options: {', '.join(sorted(unknown))}")
    settings = options.get("settings") or load_settings()
    fmt: WireFormat = options.get("fmt") or detect_format(messages)
    raw = _dumps({"model": model, "messages": messages})
    info = RequestInfo(
        fmt=fmt,
        model=model,
        tenant=tenant,
        user=options.get("user", "anonymous"),
        session_id=session,
        level=options.get("level"),
        exclude_tools=tuple(options.get("exclude_tools", ())),
        min_tokens=options.get("min_tokens"),
    )
    try:
        has_blocks = bool(conversation.parse(raw, fmt).blocks)
    except ValueError:
        has_blocks = False
    if not has_blocks:  # nothing to decide: no store needed
        n = tokens.count(json.dumps(messages, ensure_ascii=False), model) if messages else None
        before = n.tokens if n else 0
        return CompressResult(
            messages=messages,
            tokens_before=before,
            tokens_after=before,
            estimator=n.estimator if n else tokens.counter_for(model).name,
            skip_reason="no_candidates",
            session_id=session or "",
        )
    result = _run(_compress(raw, info, settings))
    out = messages
    if result.body != raw:
        out = json.loads(result.body)["messages"]
    return CompressResult(
        messages=out,
        tokens_before=result.tokens_before,
        tokens_after=result.tokens_after,
        transforms_applied=list(result.transforms),
        ccr_hashes=list(result.ccr_hashes),
        estimator=result.estimator,
        skip_reason=result.skip_reason,
        session_id=result.session_id,
        counts=dict(result.counts),
    )


__all__ = ["CompressResult", "compress", "detect_format"]
