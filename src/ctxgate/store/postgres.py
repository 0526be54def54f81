"""PostgreSQL backends (psycopg 3, async): the savings ledger shared by several replicas,
and the reader of the metering service's ``model_pricing`` table.

One connection per process, opened lazily and reopened after a failure; every driver
error becomes ``StoreError``. The DSN is never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from ctxgate.errors import ConfigError, StoreError
from ctxgate.pricing import price_from_mapping
from ctxgate.store.base import LedgerRow, Price
from ctxgate.store.ledger import _BUMP, _INSERT, _LIFETIME_COLS, SqlLedger, lifetime_delta, row_values

log = logging.getLogger(__name__)

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS ctxgate_ledger (
    id TEXT PRIMARY KEY, ts DOUBLE PRECISION NOT NULL, tenant TEXT NOT NULL, user_id TEXT NOT NULL,
    session TEXT, model TEXT NOT NULL, provider TEXT NOT NULL, mode TEXT NOT NULL,
    tokens_before BIGINT NOT NULL, tokens_after BIGINT NOT NULL, tokens_saved BIGINT NOT NULL,
    estimator TEXT NOT NULL, cost_per_mtok DOUBLE PRECISION NOT NULL,
    usd_before DOUBLE PRECISION NOT NULL, usd_after DOUBLE PRECISION NOT NULL, usd_saved DOUBLE PRECISION NOT NULL,
    transforms TEXT NOT NULL DEFAULT '', skip_reason TEXT, error TEXT, latency_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
    usage_input_tokens BIGINT, usage_cache_write_tokens BIGINT, usage_cache_write_1h_tokens BIGINT,
    usage_cache_read_tokens BIGINT, usage_output_tokens BIGINT, billed_usd DOUBLE PRECISION,
    counterfactual_usd DOUBLE PRECISION, seq BIGSERIAL)""",
    "CREATE INDEX IF NOT EXISTS ctxgate_ledger_ts ON ctxgate_ledger(ts)",
    "CREATE INDEX IF NOT EXISTS ctxgate_ledger_user ON ctxgate_ledger(user_id, ts)",
    "CREATE TABLE IF NOT EXISTS ctxgate_lifetime (id INTEGER PRIMARY KEY CHECK (id = 1), "
    + ", ".join(c + (" DOUBLE PRECISION" if c == "usd_saved" else " BIGINT") + " NOT NULL DEFAULT 0"
                for c in _LIFETIME_COLS) + ")",
    "INSERT INTO ctxgate_lifetime (id) VALUES (1) ON CONFLICT DO NOTHING",
]


def _pg(sql: str) -> str:
    """The shared SQLite-flavoured SQL in PostgreSQL's spelling."""
    return (sql.replace("?", "%s").replace("FROM ledger", "FROM ctxgate_ledger")
            .replace("INTO ledger", "INTO ctxgate_ledger").replace("FROM lifetime", "FROM ctxgate_lifetime")
            .replace("UPDATE lifetime", "UPDATE ctxgate_lifetime"))


class _Connection:
    """One lazily opened async connection, serialized by a lock, reopened after errors."""

    def __init__(self, dsn: str) -> None:
        if not dsn:
            raise ConfigError("postgres_dsn (CTXGATE_POSTGRES_DSN) is required for the PostgreSQL stores")
        self._dsn = dsn
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.lock = asyncio.Lock()

    async def get(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, connect_timeout=5)
            except psycopg.Error as exc:
                raise StoreError(f"postgres: cannot connect: {type(exc).__name__}") from exc
        return self._conn

    async def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            await self._conn.close()
        self._conn = None


class PostgresLedger(SqlLedger):
    """The ledger in tables ``ctxgate_ledger`` and ``ctxgate_lifetime``."""

    name = "postgres"
    HOUR_SQL = "FLOOR(ts / 3600)::BIGINT"
    SEQ_SQL = "seq"

    def __init__(self, dsn: str, *, retention_days: int = 90) -> None:
        self._db = _Connection(dsn)
        self.retention_s = retention_days * 86400.0
        self.duplicates = 0
        self._ready = False

    async def _ensure(self) -> psycopg.AsyncConnection[Any]:
        conn = await self._db.get()
        if not self._ready:
            for stmt in _SCHEMA:
                await conn.execute(stmt)
            self._ready = True
        return conn

    async def open(self) -> None:
        async with self._db.lock:
            try:
                await self._ensure()
            except psycopg.Error as exc:
                raise StoreError(f"postgres ledger: {exc.sqlstate or type(exc).__name__}") from exc

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._db.lock:
            try:
                conn = await self._ensure()
                cur = await conn.execute(_pg(sql), list(params))
                return list(await cur.fetchall())
            except psycopg.Error as exc:
                raise StoreError(f"postgres ledger: {exc.sqlstate or type(exc).__name__}") from exc

    async def append_many(self, rows: Sequence[LedgerRow]) -> int:
        if not rows:
            return 0
        async with self._db.lock:
            try:
                conn = await self._ensure()
                written: list[LedgerRow] = []
                async with conn.transaction():
                    for row in rows:
                        cur = await conn.execute(_pg(_INSERT), row_values(row))
                        if cur.rowcount == 1:
                            written.append(row)
                        else:
                            self.duplicates += 1
                            log.warning("ledger: request id %s already recorded; row skipped", row.request_id)
                    if written:
                        await conn.execute(_pg(_BUMP), lifetime_delta(written))
                return len(written)
            except psycopg.Error as exc:
                raise StoreError(f"postgres ledger: {exc.sqlstate or type(exc).__name__}") from exc

    async def prune(self, now: float | None = None) -> int:
        cutoff = (now if now is not None else time.time()) - self.retention_s
        async with self._db.lock:
            try:
                conn = await self._ensure()
                cur = await conn.execute("DELETE FROM ctxgate_ledger WHERE ts < %s", [cutoff])
                return cur.rowcount
            except psycopg.Error as exc:
                raise StoreError(f"postgres ledger: {exc.sqlstate or type(exc).__name__}") from exc

    async def aclose(self) -> None:
        async with self._db.lock:
            await self._db.close()


class PostgresPriceSource:
    """Reads ``model_pricing`` (model, provider, input/output/cache_write/cache_read cost per 1M tokens)."""

    QUERY = ("SELECT model, input_cost_per_mtok, output_cost_per_mtok, cache_write_cost_per_mtok,"
             " cache_read_cost_per_mtok FROM model_pricing")

    def __init__(self, dsn: str) -> None:
        self._db = _Connection(dsn)

    async def fetch(self, base: Mapping[str, Price]) -> dict[str, Price]:
        async with self._db.lock:
            try:
                conn = await self._db.get()
                cur = await conn.execute(self.QUERY)
                recs = await cur.fetchall()
            except psycopg.Error as exc:
                await self._db.close()
                raise StoreError(f"postgres model_pricing: {exc.sqlstate or type(exc).__name__}") from exc
        out: dict[str, Price] = {}
        for model, inp, outp, cw, cr in recs:
            if inp is None:
                continue
            spec = {"input": inp, "output": outp, "cache_write": cw, "cache_read": cr}
            try:
                out[str(model)] = price_from_mapping(str(model), spec, base.get(str(model)), "model_pricing")
            except ConfigError as exc:
                log.warning("model_pricing: row skipped: %s", exc)
        return out

    async def aclose(self) -> None:
        async with self._db.lock:
            await self._db.close()
