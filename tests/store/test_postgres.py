"""PostgreSQL ledger and the model_pricing reader against a real server."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from ctxgate.errors import ConfigError, StoreError
from ctxgate.pricing import PriceTable
from ctxgate.settings import Settings
from ctxgate.store.base import LedgerRow
from ctxgate.store.ledger import new_request_id
from ctxgate.store.postgres import PostgresLedger, PostgresPriceSource, _pg
from tests.store.pgdb import fresh_database

pytestmark = pytest.mark.postgres

MODEL_PRICING = """CREATE TABLE model_pricing (
    model TEXT PRIMARY KEY, provider TEXT,
    input_cost_per_mtok NUMERIC, output_cost_per_mtok NUMERIC,
    cache_write_cost_per_mtok NUMERIC, cache_read_cost_per_mtok NUMERIC)"""


def _row(i: int) -> LedgerRow:
    return LedgerRow(request_id=new_request_id(), timestamp=time.time(), user=f"u{i % 3}", model="gpt-4o",
                     provider="openai", mode="service", tokens_before=1000, tokens_after=600,
                     estimator="o200k_base", cost_per_mtok=2.5)


def test_sql_is_translated() -> None:
    assert _pg("SELECT a FROM ledger WHERE ts >= ? AND b = ?") == "SELECT a FROM ctxgate_ledger WHERE ts >= %s AND b = %s"


def test_dsn_is_required() -> None:
    with pytest.raises(ConfigError, match="CTXGATE_POSTGRES_DSN"):
        PostgresLedger("")


async def test_concurrent_ledgers_lose_no_row() -> None:
    """Two replicas (two connections) append at the same time; every row lands once."""
    with fresh_database() as dsn:
        a, b = PostgresLedger(dsn), PostgresLedger(dsn)
        await a.open()
        await b.open()
        rows = [_row(i) for i in range(200)]
        await asyncio.gather(*(led.append_many(rows[i::10]) for i, led in zip(range(10), [a, b] * 5, strict=True)))
        assert await a.count() == 200
        life = await b.lifetime()
        assert (life.requests, life.tokens_saved) == (200, 200 * 400)
        await a.aclose()
        await b.aclose()


async def test_reconnects_after_the_connection_dies() -> None:
    with fresh_database() as dsn:
        led = PostgresLedger(dsn)
        await led.append_many([_row(0)])
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(StoreError):
            await led.count()  # the dead connection fails once ...
        assert await led.count() == 1  # ... and is reopened on the next call
        await led.aclose()


async def test_unreachable_server_is_a_store_error() -> None:
    led = PostgresLedger("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(StoreError) as err:
        await led.ping()
    assert "nobody" not in str(err.value)  # the DSN never appears in errors
    await led.aclose()


async def test_model_pricing_is_read_and_layered() -> None:
    with fresh_database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(MODEL_PRICING)
            conn.execute("INSERT INTO model_pricing VALUES "
                         "('claude-sonnet-4-5', 'anthropic', 2.75, 14, NULL, 0.275),"
                         "('acme-large', 'acme', 4.2, 8.4, 5.25, 0.42),"
                         "('no-input', 'acme', NULL, 1, 1, 1)")
        table = PriceTable(3.0)
        source = PostgresPriceSource(dsn)
        table.update_remote(await source.fetch(table.snapshot()), time.time())
        await source.aclose()
        sonnet = table.lookup("anthropic/claude-sonnet-4-5-20250929")
        assert (sonnet.input, sonnet.output, sonnet.cache_read, sonnet.rule) == (2.75, 14.0, 0.275, "normalized")
        assert sonnet.cache_write == 3.75  # NULL keeps the built-in value
        acme = table.lookup("acme-large")
        assert (acme.input, acme.cache_write, acme.cache_read) == (4.2, 5.25, 0.42)
        assert table.lookup("no-input").rule == "fallback"
        assert table.source_of("acme-large") == "postgres"


async def test_missing_table_is_a_store_error() -> None:
    with fresh_database() as dsn:
        source = PostgresPriceSource(dsn)
        with pytest.raises(StoreError, match="model_pricing"):
            await source.fetch({})
        await source.aclose()


async def test_app_refreshes_prices_in_the_background() -> None:
    from ctxgate.server.app import refresh_prices

    with fresh_database() as dsn:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(MODEL_PRICING)
            conn.execute("INSERT INTO model_pricing VALUES ('acme-1', 'acme', 1.5, 3, 1.5, 0.15)")
        settings = Settings(postgres_dsn=dsn, pricing_source="postgres", pricing_refresh_s=5)
        table = PriceTable(3.0)
        task = asyncio.create_task(refresh_prices(settings, table))
        for _ in range(100):
            if table.remote_refreshed_at:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert table.lookup("acme-1").input == 1.5 and table.remote_error is None
