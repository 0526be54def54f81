"""Small interfaces of the stores. Backends live in sibling modules.

The app receives built instances (see ``store/__init__.py: open_stores``), never
URLs. Every backend maps its driver's errors to ``ctxgate.errors.StoreError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class LedgerRow:
    """One request, compressed or not, as the savings ledger records it."""

    request_id: str
    timestamp: float  # unix seconds
    user: str
    model: str
    provider: str  # "anthropic" | "openai" | "unknown"
    mode: str  # "service" | "proxy"
    tokens_before: int
    tokens_after: int
    estimator: str
    cost_per_mtok: float  # input price used, USD per 1M tokens
    session: str | None = None
    tenant: str = "default"
    transforms: list[str] = field(default_factory=list)
    skip_reason: str | None = None
    error: str | None = None
    latency_ms: float = 0.0
    # proxy mode: what the provider billed, from its own usage (None = unknown)
    usage_input_tokens: int | None = None
    usage_cache_write_tokens: int | None = None
    usage_cache_write_1h_tokens: int | None = None
    usage_cache_read_tokens: int | None = None
    usage_output_tokens: int | None = None
    billed_usd: float | None = None
    counterfactual_usd: float | None = None

    @property
    def tokens_saved(self) -> int:
        return max(0, self.tokens_before - self.tokens_after)

    @property
    def dollars_saved(self) -> float:
        """Input dollars saved at the list input price (service mode and the fallback in proxy mode)."""
        if self.billed_usd is not None and self.counterfactual_usd is not None:
            return round(self.counterfactual_usd - self.billed_usd, 8)
        return round(self.tokens_saved * self.cost_per_mtok / 1_000_000, 8)


class Ledger(Protocol):
    """Append-only savings ledger (rows are never replaced)."""

    async def append(self, row: LedgerRow) -> None: ...

    async def flush(self) -> None: ...

    async def aclose(self) -> None: ...


class DecisionStore(Protocol):
    """Compress-once decisions: key -> exact output text (None: verbatim)."""

    async def get_many(self, keys: list[str]) -> dict[str, str | None]: ...

    async def put_many(self, decisions: dict[str, str | None]) -> None: ...

    async def aclose(self) -> None: ...


class OriginalsStore(Protocol):
    """Content dropped by lossy transforms, retrievable by key within one tenant."""

    async def put(self, tenant: str, key: str, text: str) -> None: ...

    async def get(self, tenant: str, key: str) -> str | None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionActivity:
    """What the session-activity store knows of one session."""

    tenant: str
    session: str
    user: str
    model: str
    first_seen: float  # unix seconds
    last_seen: float
    requests: int

    def as_dict(self) -> dict[str, object]:
        return {
            "session_id": self.session,
            "tenant": self.tenant,
            "user": self.user,
            "model": self.model,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "requests": self.requests,
        }


class SessionStore(Protocol):
    """Session activity, shared by every worker and replica."""

    async def touch(self, tenant: str, session: str, user: str, model: str, now: float) -> SessionActivity | None:
        """Record one request of the session; return what was known before it (None: a new session)."""
        ...

    async def active(self, tenant: str | None, since: float) -> list[SessionActivity]:
        """Sessions seen at or after ``since`` (unix seconds), most recent first; all tenants when None."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Price:
    """List prices of one model, USD per 1M tokens. ``rule`` says how the model name matched."""

    model: str
    input: float
    output: float
    cache_read: float
    cache_write: float  # 5-minute cache write (Anthropic); OpenAI has none (= input)
    cache_write_1h: float | None = None
    rule: str = "exact"  # "exact" | "normalized" | "family" | "fallback"


class PriceBook(Protocol):
    def lookup(self, model: str) -> Price: ...

    def snapshot(self) -> dict[str, Price]: ...
