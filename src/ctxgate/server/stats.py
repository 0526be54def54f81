"""Read endpoints: ``/stats``, ``/stats/insights``, ``/stats-history``, ``/sessions``, ``/pricing``.

Field names, types and orderings follow headroom-gateway so its dashboard keeps working;
extra fields are added next to them. Every read first flushes this process's queued
ledger rows, so a read right after a call reflects it. Numbers come from the ledger
(shared by all workers and replicas), never from one process's memory.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from ctxgate.errors import RequestRejected, StoreError
from ctxgate.pricing import PriceTable, price_dict
from ctxgate.server.state import AppState
from ctxgate.store.base import LedgerRow
from ctxgate.store.ledger import SqlLedger

router = APIRouter()

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


#: the largest time accepted in a filter (9999-12-31T23:59:59Z): beyond it nothing can be stored
_MAX_TS = 253402300799.0


def parse_time(value: str | None, name: str, now: float) -> float | None:
    """Unix seconds, an ISO 8601 time (UTC unless it says otherwise), or a span back from now (``24h``)."""
    if value is None or value == "":
        return None
    v = value.strip()
    m = _RELATIVE.match(v)
    ts: float | None = None
    if m:
        ts = max(0.0, now - float(m.group(1)) * _UNIT_S[m.group(2)])
    else:
        try:
            ts = float(v)
        except ValueError:
            try:
                dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError as exc:
                raise RequestRejected(
                    f"{name}: expected unix seconds, an ISO 8601 time or a span like 24h, got {value!r}", 400
                ) from exc
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=UTC)
            ts = dt.timestamp()
    if not math.isfinite(ts) or not 0.0 <= ts <= _MAX_TS:
        raise RequestRejected(f"{name}: {value!r} is out of range (0 to {_MAX_TS:.0f} unix seconds)", 400)
    return ts


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def pct(saved: int, before: int) -> float:
    return round(100.0 * saved / before, 1) if before > 0 else 0.0


async def ledger_of(request: Request) -> tuple[AppState, SqlLedger]:
    ctx: AppState = request.app.state.ctx
    if ctx.ledger is None:
        raise RequestRejected("no ledger configured", 503)
    try:
        await ctx.recorder.flush()
    except StoreError as exc:
        raise RequestRejected(f"ledger unavailable: {type(exc).__name__}", 503) from exc
    return ctx, ctx.ledger


def recent_item(r: LedgerRow) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "timestamp": iso(r.timestamp),
        "provider": r.provider,
        "model": r.model,
        "input_tokens_original": r.tokens_before,
        "input_tokens_optimized": r.tokens_after,
        "tokens_saved": r.tokens_saved,
        "savings_percent": pct(r.tokens_saved, r.tokens_before),
        "cost_saved_usd": round(r.dollars_saved, 6),
        "cost_per_mtok": r.cost_per_mtok,
        "tags": {"user-id": r.user},
        "total_latency_ms": r.latency_ms,
        "mode": r.mode,
        "transforms": r.transforms,
        "skip_reason": r.skip_reason,
        "estimator": r.estimator,
    }


def cost_block(usd_with: float, usd_saved: float) -> dict[str, float]:
    """``without - with == saved`` holds exactly on the rounded figures."""
    saved = round(usd_saved, 4)
    with_ = round(usd_with, 4)
    return {"without_headroom_usd": round(with_ + saved, 4), "with_headroom_usd": with_, "total_saved_usd": saved}


async def _guard(coro: Any) -> Any:
    try:
        return await coro
    except StoreError as exc:
        raise RequestRejected(f"ledger unavailable: {type(exc).__name__}", 503) from exc


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Totals, skip reasons, dollars, and the last 100 requests (oldest first)."""
    ctx, ledger = await ledger_of(request)
    t = await _guard(ledger.totals())
    reasons = await _guard(ledger.skip_reasons())
    recent = await _guard(ledger.recent(100))
    best = t.best
    return {
        "summary": {
            "api_requests": t.requests,
            "compression": {
                "requests_compressed": t.compressed,
                "avg_compression_pct": round(t.avg_compression_pct, 1),
                "total_tokens_removed": t.tokens_saved,
                "best_compression_pct": pct(best.tokens_saved, best.tokens_before) if best else 0.0,
                "best_detail": (f"{best.tokens_before} → {best.tokens_after} tokens ({best.model})"
                                if best else ""),
            },
            "uncompressed_requests": reasons,
            "cost": cost_block(t.usd_after, t.usd_saved),
            "tokens": {"before": t.tokens_before, "after": t.tokens_after, "saved": t.tokens_saved},
        },
        "recent_requests": [recent_item(r) for r in reversed(recent)],
        "ledger": {
            "backend": ledger.name,
            "queued_rows": getattr(ctx.recorder, "pending", 0),
            "dropped_rows_this_process": getattr(ctx.recorder, "dropped", 0),
        },
    }


@router.get("/stats/insights")
async def insights(
    request: Request,
    since: str | None = Query(None, description="unix seconds, ISO 8601, or a span back from now like 24h"),
    until: str | None = Query(None, description="unix seconds, ISO 8601, or a span back from now like 1h"),
) -> dict[str, Any]:
    """Breakdowns by engine, transform, model, user and hour, optionally within [since, until)."""
    now = time.time()
    start, end = parse_time(since, "since", now), parse_time(until, "until", now)
    if start is not None and end is not None and start > end:
        raise RequestRejected("since must not be after until", 400)
    ctx, ledger = await ledger_of(request)
    t = await _guard(ledger.totals(start, end))
    return {
        "total_requests": t.requests,
        "engines": await _guard(ledger.transforms(start, end, engines=True)),
        "transforms_detail": await _guard(ledger.transforms(start, end)),
        "by_model": await _guard(ledger.group("model", start, end)),
        "by_user": await _guard(ledger.group("user", start, end)),
        "hourly": await _guard(ledger.hourly(now, 24, end)),
        "window": {"since": iso(start) if start is not None else None,
                   "until": iso(end) if end is not None else None},
        "compressed_requests": t.compressed,
        "tokens_saved": t.tokens_saved,
        "cost": cost_block(t.usd_after, t.usd_saved),
    }


@router.get("/stats-history")
async def stats_history(request: Request) -> dict[str, Any]:
    """Lifetime totals (they survive restarts and retention) and the last 100 compressed calls."""
    ctx, ledger = await ledger_of(request)
    life = await _guard(ledger.lifetime())
    rows = await _guard(ledger.recent(100, compressed_only=True))
    return {
        "lifetime": {
            "requests": life.requests,
            "tokens_saved": life.tokens_saved,
            "compression_savings_usd": round(life.usd_saved, 5),
            "compressed_requests": life.compressed,
            "tokens_before": life.tokens_before,
            "tokens_after": life.tokens_after,
        },
        "history": [
            {
                "timestamp": iso(r.timestamp),
                "model": r.model,
                "total_tokens_saved": r.tokens_saved,
                "compression_savings_usd": round(r.dollars_saved, 5),
                "cost_per_mtok": r.cost_per_mtok,
                "request_id": r.request_id,
                "user": r.user,
            }
            for r in rows
        ],
    }


@router.get("/sessions")
async def sessions(
    request: Request,
    within_s: int = Query(7200, ge=1, le=30 * 86400, description="active within this many seconds"),
) -> dict[str, Any]:
    """Sessions active across all workers and replicas (from the pipeline's session store)."""
    ctx: AppState = request.app.state.ctx
    found: list[dict[str, Any]] = []
    active = getattr(ctx.pipeline, "active_sessions", None)
    if callable(active):
        try:
            found = list(await active(None, within_s))
        except StoreError as exc:
            raise RequestRejected(f"session store unavailable: {type(exc).__name__}", 503) from exc
    now = time.time()
    savings: dict[str, dict[str, Any]] = {}
    if found and ctx.ledger is not None:
        try:
            await ctx.recorder.flush()
            savings = await ctx.ledger.sessions([str(x.get("session_id")) for x in found])
        except StoreError:
            savings = {}
    sessions_out = []
    for x in found:
        item = dict(x)
        item.setdefault("user_id", x.get("user"))
        last = x.get("last_seen")
        if isinstance(last, int | float):
            item.setdefault("last_active_seconds_ago", max(0, round(now - last)))
        item.update(savings.get(str(x.get("session_id")), {"tokens_saved": 0, "cost_saved_usd": 0.0}))
        sessions_out.append(item)
    return {"active_sessions": len(sessions_out), "max_sessions": ctx.settings.decision_max_entries,
            "session_ttl_seconds": within_s, "sessions": sessions_out}


@router.get("/pricing")
async def pricing(
    request: Request,
    model: list[str] = Query(default_factory=list, description="resolve these model names too"),
) -> dict[str, Any]:
    """Input price per model (headroom shape), full prices, and which rule matched each model seen."""
    ctx: AppState = request.app.state.ctx
    book = ctx.prices
    snapshot = book.snapshot()
    seen: list[str] = []
    if ctx.ledger is not None:
        try:
            await ctx.recorder.flush()
            seen = await ctx.ledger.models()
        except StoreError:
            seen = []
    names = list(dict.fromkeys([*model, *seen]))
    fallback = book.fallback_per_mtok if isinstance(book, PriceTable) else book.lookup("\x00").input
    out: dict[str, Any] = {
        "models": {name: p.input for name, p in sorted(snapshot.items())},
        "fallback_cost_per_mtok": fallback,
        "prices": {name: {**price_dict(p), "source": _source(book, name)} for name, p in sorted(snapshot.items())},
        "lookups": {},
    }
    for name in names:
        p = book.lookup(name)
        out["lookups"][name] = {"matched": p.model, "rule": p.rule, **price_dict(p)}
    if isinstance(book, PriceTable):
        out["remote"] = {
            "refreshed_at": iso(book.remote_refreshed_at) if book.remote_refreshed_at else None,
            "error": book.remote_error,
        }
    return out


def _source(book: Any, name: str) -> str:
    return str(book.source_of(name)) if hasattr(book, "source_of") else "builtin"
