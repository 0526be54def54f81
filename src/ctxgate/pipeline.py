"""One request end to end: candidate blocks, compress-once decisions, splice, validate.

STUB: the interface is fixed (service and proxy code against it); the conversation
layer issue fills in the body. For now every body passes through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ctxgate import tokens
from ctxgate.settings import Level, Settings
from ctxgate.store.base import DecisionStore, OriginalsStore

WireFormat = Literal["anthropic", "openai_chat", "openai_responses"]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the pipeline needs to know about a request besides its body."""

    fmt: WireFormat
    model: str = "default"
    tenant: str = "default"
    user: str = "anonymous"
    #: session id from a header (x-claude-code-session-id, x-ctxgate-session-id), if any
    session_id: str | None = None
    #: per-request overrides
    level: Level | None = None
    exclude_tools: tuple[str, ...] = ()
    min_tokens: int | None = None


@dataclass(slots=True)
class PipelineResult:
    body: bytes
    tokens_before: int
    tokens_after: int
    estimator: str
    session_id: str
    transforms: list[str] = field(default_factory=list)
    ccr_hashes: list[str] = field(default_factory=list)
    #: set when nothing was changed: "level_off", "no_candidates", "store_unavailable", "error", ...
    skip_reason: str | None = None
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.tokens_after < self.tokens_before


class Pipeline:
    def __init__(self, settings: Settings, decisions: DecisionStore, originals: OriginalsStore) -> None:
        self.settings = settings
        self.decisions = decisions
        self.originals = originals

    async def run(self, raw: bytes, info: RequestInfo) -> PipelineResult:
        n = tokens.count(raw.decode("utf-8", "replace"), info.model)
        return PipelineResult(
            body=raw,
            tokens_before=n.tokens,
            tokens_after=n.tokens,
            estimator=n.estimator,
            session_id=info.session_id or "",
            skip_reason="not_implemented",
        )

    async def aclose(self) -> None:
        await self.decisions.aclose()
        await self.originals.aclose()


class _NullStore:
    """STUB until the conversation layer lands: remembers nothing."""

    async def get_many(self, keys: list[str]) -> dict[str, str | None]:
        return {}

    async def put_many(self, decisions: dict[str, str | None]) -> None:
        return None

    async def put(self, tenant: str, key: str, text: str) -> None:
        return None

    async def get(self, tenant: str, key: str) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


def build_pipeline(settings: Settings) -> Pipeline:
    """Open the configured stores and return the pipeline (the app calls this at start-up)."""
    return Pipeline(settings, _NullStore(), _NullStore())
