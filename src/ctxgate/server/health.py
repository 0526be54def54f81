"""Liveness (``/health``) and readiness (``/readyz``: the stores answer)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ctxgate.errors import StoreError
from ctxgate.server.state import AppState

router = APIRouter()

#: a store that does not answer within this many seconds is not ready
CHECK_TIMEOUT_S = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}


def ledger_description(ctx: AppState) -> str:
    """Where the ledger lives, without credentials."""
    ledger = ctx.ledger
    if ledger is None:
        return "none"
    path = getattr(ledger, "path", None)
    return f"{ledger.name}:{path}" if path and ledger.name == "sqlite" else ledger.name


async def _check(component: str, probe: Any) -> str | None:
    try:
        await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
    except (StoreError, OSError, TimeoutError) as exc:
        return f"{component} unavailable: {type(exc).__name__}"
    return None


@router.get("/readyz", responses={503: {"description": "a store does not answer"}})
async def readyz(request: Request) -> Any:
    """Readiness: the ledger (and the pipeline's stores, when they can be probed) answer."""
    ctx: AppState = request.app.state.ctx
    checks: list[tuple[str, Any]] = []
    if ctx.ledger is not None:
        checks.append(("ledger", ctx.ledger.ping))
    ping = getattr(ctx.pipeline, "ping", None)
    if callable(ping):
        checks.append(("pipeline", ping))
    uptime = round(time.time() - ctx.started_at)
    for component, probe in checks:
        failure = await _check(component, probe)
        if failure:
            return JSONResponse({"status": "not_ready", "error": failure, "component": component,
                                 "uptime_seconds": uptime}, status_code=503)
    return {"status": "ready", "db": ledger_description(ctx), "uptime_seconds": uptime,
            "components": [c for c, _ in checks]}
