"""The app factory: wires settings, stores and routers. Keep it thin.

``create_app(settings)`` opens the ledger, builds the pipeline and the price book, and
puts them in ``app.state.ctx`` (an ``AppState``); the lifespan starts the batched ledger
writer and the background price refresh, and closes everything on shutdown.
``create_app_from_env()`` is the uvicorn factory each worker process calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI

from ctxgate import __version__, tokens
from ctxgate.errors import StoreError
from ctxgate.pipeline import Pipeline, build_pipeline
from ctxgate.pricing import PriceTable
from ctxgate.server import errors, health, metrics, proxy, service, stats
from ctxgate.server.auth import BearerAuth, check_config
from ctxgate.server.recorder import LedgerRecorder
from ctxgate.server.state import AppState
from ctxgate.settings import Settings, load_settings
from ctxgate.store.ledger import MemoryLedger, SqliteLedger, SqlLedger

log = logging.getLogger(__name__)

#: ``server/run.py`` passes the effective settings to worker processes in this variable
SETTINGS_ENV = "_CTXGATE_SETTINGS_JSON"
LEDGER_FILE = "ledger.sqlite3"


def open_ledger(settings: Settings) -> SqlLedger:
    days = settings.ledger_retention_days
    if settings.ledger_store == "memory":
        return MemoryLedger(retention_days=days)
    if settings.ledger_store == "postgres":
        from ctxgate.store.postgres import PostgresLedger

        dsn = settings.postgres_dsn.get_secret_value() if settings.postgres_dsn else ""
        return PostgresLedger(dsn, retention_days=days)
    return SqliteLedger(settings.data_dir / LEDGER_FILE, retention_days=days)


async def refresh_prices(settings: Settings, table: PriceTable) -> None:
    """Re-read ``model_pricing`` every ``pricing_refresh_s`` (never in the request path)."""
    from ctxgate.store.postgres import PostgresPriceSource

    dsn = settings.postgres_dsn.get_secret_value() if settings.postgres_dsn else ""
    source = PostgresPriceSource(dsn)
    try:
        while True:
            try:
                table.update_remote(await asyncio.wait_for(source.fetch(table.snapshot()), 10), time.time())
                log.info("model_pricing refreshed: %d models", len(table.snapshot()))
            except (StoreError, TimeoutError) as exc:
                table.remote_error = f"{type(exc).__name__}: {exc}"
                log.warning("model_pricing refresh failed: %s", table.remote_error)
            await asyncio.sleep(settings.pricing_refresh_s)
    finally:
        await source.aclose()


def warm_up() -> None:
    """Load the BPE vocabularies the token counters use (local files, no network)."""
    for model in ("gpt-4o", "gpt-4"):
        tokens.count("warm up", model)


def _build_pipeline(settings: Settings, prices: PriceTable) -> Pipeline:
    def price_of(model: str) -> float | None:
        p = prices.lookup(model)
        return None if p.rule == "fallback" else p.input

    if "price_of" in inspect.signature(build_pipeline).parameters:
        return build_pipeline(settings, price_of=price_of)
    return build_pipeline(settings)


def create_app(
    settings: Settings,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    pipeline: Pipeline | None = None,
    ledger: SqlLedger | None = None,
) -> FastAPI:
    """Build the app. ``pipeline`` and ``ledger`` replace the configured ones (tests, embedding)."""
    check_config(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    the_ledger = ledger if ledger is not None else open_ledger(settings)
    recorder = LedgerRecorder(the_ledger, max_queue=settings.ledger_queue_size)
    prices = PriceTable(settings.fallback_cost_per_mtok, file=settings.pricing_file)
    ctx = AppState(
        settings=settings,
        pipeline=pipeline if pipeline is not None else _build_pipeline(settings, prices),
        recorder=recorder,
        prices=prices,
        ledger=the_ledger,
        started_at=metrics.started_at(),
    )

    runs = 0

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nonlocal runs
        if runs:  # started again after a shutdown closed the stores: reopen the ones we own
            if ledger is None:
                ctx.ledger = recorder.ledger = open_ledger(settings)
            if pipeline is None:
                ctx.pipeline = _build_pipeline(settings, prices)
        runs += 1
        # load the token vocabularies now, not on the first request (it would blow its time budget)
        await asyncio.to_thread(warm_up)
        recorder.start()
        refresher = None
        if settings.pricing_source == "postgres":
            refresher = asyncio.get_running_loop().create_task(refresh_prices(settings, prices))
        try:
            yield
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            await recorder.aclose()
            await recorder.ledger.aclose()
            await ctx.pipeline.aclose()

    app = FastAPI(title="ctxgate", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.upstream_transport = upstream_transport
    app.state.ctx = ctx
    errors.install(app)
    for module in (health, service, stats, metrics, proxy):  # proxy last: its /v1/{path} catch-all
        app.include_router(module.router)
    if settings.auth_token is not None:
        app.add_middleware(BearerAuth, token=settings.auth_token.get_secret_value())
    return app


def settings_to_env(settings: Settings) -> str:
    """The effective settings as JSON for worker processes (secrets included: env of our own children)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for name in ("auth_token", "redis_url", "postgres_dsn"):
        secret = getattr(settings, name)
        data[name] = secret.get_secret_value() if secret is not None else None
    return json.dumps(data)


def create_app_from_env() -> FastAPI:
    """uvicorn factory (``ctxgate.server.app:create_app_from_env``) for multi-worker serving."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings(**json.loads(raw)) if raw else load_settings()
    return create_app(settings)
