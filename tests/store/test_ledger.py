"""The ledger contract, run against every SQL backend (PostgreSQL when a server is available)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ctxgate.errors import StoreError
from ctxgate.store.base import LedgerRow
from ctxgate.store.ledger import MemoryLedger, SqliteLedger, SqlLedger, new_request_id, row_costs
from tests.store.pgdb import fresh_database

NOW = 1_800_000_000.0  # a fixed clock: 2027-01-15T08:00:00Z


def row(**kw: object) -> LedgerRow:
    base: dict[str, object] = dict(
        request_id=new_request_id(), timestamp=NOW - 10, user="alice", model="claude-sonnet-4-5",
        provider="anthropic", mode="service", tokens_before=1000, tokens_after=400,
        estimator="claude-o200k-x1.19", cost_per_mtok=3.0, transforms=["json:minify"],
    )
    base.update(kw)
    return LedgerRow(**base)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "memory", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, object]]:
    if request.param == "postgres":
        with fresh_database() as dsn:
            yield "postgres", dsn
    else:
        yield request.param, tmp_path / "ledger.sqlite3"


def open_backend(kind: str, where: object, retention_days: int = 90) -> SqlLedger:
    if kind == "postgres":
        from ctxgate.store.postgres import PostgresLedger

        return PostgresLedger(str(where), retention_days=retention_days)
    if kind == "memory":
        return MemoryLedger(retention_days=retention_days)
    return SqliteLedger(Path(str(where)), retention_days=retention_days)


@pytest.fixture
async def ledger(backend: tuple[str, object]) -> AsyncIterator[SqlLedger]:
    led = open_backend(*backend)
    yield led
    await led.aclose()


def test_request_ids_are_unique_and_time_ordered() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    first = new_request_id()
    time.sleep(0.002)
    assert new_request_id()[:14] > first[:14]


def test_row_costs_add_up() -> None:
    r = row(tokens_before=123_457, tokens_after=98_765, cost_per_mtok=3.0)
    before, after, saved = row_costs(r)
    assert round(before - after, 8) == saved == round(24_692 * 3.0 / 1e6, 8)
    billed = row(billed_usd=0.5, counterfactual_usd=0.75)
    assert row_costs(billed) == (0.75, 0.5, 0.25)


async def test_append_and_read_back(ledger: SqlLedger) -> None:
    rows = [row(), row(user="bob", tokens_after=1000, transforms=[], skip_reason="no_candidates"),
            row(model="gpt-4o", provider="openai", tokens_before=2000, tokens_after=500,
                transforms=["json:minify", "json:table"], timestamp=NOW - 5)]
    assert await ledger.append_many(rows) == 3
    t = await ledger.totals()
    assert (t.requests, t.compressed, t.tokens_before, t.tokens_after, t.tokens_saved) == (3, 2, 4000, 1900, 2100)
    assert t.usd_saved == pytest.approx(2100 * 3.0 / 1e6)
    assert round(t.usd_before - t.usd_after, 8) == pytest.approx(t.usd_saved)
    assert t.best is not None and t.best.model == "gpt-4o"
    assert t.avg_compression_pct == pytest.approx((60.0 + 75.0) / 2)
    assert await ledger.skip_reasons() == {"no_candidates": 1}
    recent = await ledger.recent(10)
    assert [r.request_id for r in recent] == [rows[2].request_id, rows[1].request_id, rows[0].request_id]
    assert recent[0].transforms == ["json:minify", "json:table"] and recent[0].provider == "openai"
    assert [r.request_id for r in await ledger.recent(10, compressed_only=True)] == [rows[2].request_id,
                                                                                     rows[0].request_id]
    assert await ledger.transforms() == {"json:minify": 2, "json:table": 1}
    by_user = await ledger.group("user")
    assert [u["user"] for u in by_user] == ["alice", "bob"] and by_user[0]["tokens_saved"] == 2100
    assert await ledger.count() == 3
    assert set(await ledger.models()) == {"claude-sonnet-4-5", "gpt-4o"}


async def test_a_row_is_never_replaced(ledger: SqlLedger) -> None:
    r = row()
    await ledger.append_many([r])
    clash = row(request_id=r.request_id, tokens_before=5, tokens_after=5, user="mallory")
    assert await ledger.append_many([clash, row()]) == 1
    recent = await ledger.recent(10)
    assert [x.user for x in recent if x.request_id == r.request_id] == ["alice"]
    assert (await ledger.lifetime()).requests == 2


async def test_windows_and_hourly(ledger: SqlLedger) -> None:
    await ledger.append_many([row(timestamp=NOW - 7200 - 1), row(timestamp=NOW - 60), row(timestamp=NOW - 30)])
    assert (await ledger.totals(since=NOW - 3600)).requests == 2
    assert (await ledger.totals(until=NOW - 3600)).requests == 1
    assert (await ledger.totals(since=NOW - 3600, until=NOW - 45)).requests == 1
    hours = await ledger.hourly(NOW, 24)
    assert len(hours) == 24 and hours[0]["hour"] == time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(NOW))
    counts = [h["requests"] for h in hours]
    assert counts[:4] == [0, 2, 0, 1]  # NOW is on an hour boundary: its own hour is empty


async def test_retention_keeps_lifetime_totals(backend: tuple[str, object]) -> None:
    if backend[0] == "memory":
        pytest.skip("nothing to reopen")
    led = open_backend(*backend, retention_days=1)
    await led.append_many([row(timestamp=NOW - 3 * 86400), row(timestamp=NOW - 10)])
    assert await led.prune(NOW) == 1
    assert await led.count() == 1
    await led.aclose()
    again = open_backend(*backend, retention_days=1)
    life = await again.lifetime()
    assert (life.requests, life.tokens_saved, life.compressed) == (2, 1200, 2)
    assert life.usd_saved == pytest.approx(1200 * 3.0 / 1e6)
    await again.aclose()


async def test_errors_are_store_errors(tmp_path: Path) -> None:
    led = SqliteLedger(tmp_path / "l.sqlite3")
    await led.aclose()
    with pytest.raises(StoreError):
        await led.append_many([row()])
    with pytest.raises(StoreError):
        await led.ping()
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(StoreError):
        SqliteLedger(tmp_path / "dir.sqlite3")


async def test_sqlite_uses_wal(tmp_path: Path) -> None:
    led = SqliteLedger(tmp_path / "l.sqlite3")
    assert (await led._fetch("PRAGMA journal_mode"))[0][0] == "wal"
    await led.aclose()


async def test_savings_per_session(ledger: SqlLedger) -> None:
    await ledger.append_many([row(session="s1"), row(session="s1", tokens_after=1000), row(session="s2"),
                              row(session=None)])
    got = await ledger.sessions(["s1", "s2", "s3", "s1"])
    assert got == {"s1": {"tokens_saved": 600, "cost_saved_usd": 0.0018},
                   "s2": {"tokens_saved": 600, "cost_saved_usd": 0.0018}}
