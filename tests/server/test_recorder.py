from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ctxgate.errors import StoreError
from ctxgate.server.recorder import LedgerRecorder
from ctxgate.store.base import LedgerRow
from ctxgate.store.ledger import MemoryLedger, SqliteLedger, new_request_id


def row(i: int = 0) -> LedgerRow:
    return LedgerRow(request_id=new_request_id(), timestamp=time.time(), user="u", model="gpt-4o",
                     provider="openai", mode="service", tokens_before=100 + i, tokens_after=50,
                     estimator="o200k_base", cost_per_mtok=2.5)


async def test_record_never_blocks_and_flush_writes() -> None:
    ledger = MemoryLedger()
    rec = LedgerRecorder(ledger, batch_size=7)
    for i in range(20):
        rec.record(row(i))
    assert rec.pending == 20 and await ledger.count() == 0
    await rec.flush()
    assert rec.pending == 0 and await ledger.count() == 20 and rec.written == 20
    await ledger.aclose()


async def test_background_writer_batches() -> None:
    ledger = MemoryLedger()
    rec = LedgerRecorder(ledger, interval_s=0.01)
    rec.start()
    for i in range(5):
        rec.record(row(i))
    for _ in range(200):
        if await ledger.count() == 5:
            break
        await asyncio.sleep(0.01)
    assert await ledger.count() == 5
    await rec.aclose()
    await ledger.aclose()


async def test_full_queue_drops_and_counts() -> None:
    ledger = MemoryLedger()
    rec = LedgerRecorder(ledger, max_queue=10)
    for i in range(15):
        rec.record(row(i))
    assert rec.pending == 10 and rec.dropped == 5
    await rec.flush()
    assert await ledger.count() == 10
    await ledger.aclose()


async def test_failed_write_keeps_rows_for_the_next_try(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.sqlite3")
    rec = LedgerRecorder(ledger)
    rows = [row(i) for i in range(3)]
    for r in rows:
        rec.record(r)
    await ledger.aclose()
    with pytest.raises(StoreError):
        await rec.flush()
    assert rec.pending == 3 and rec.dropped == 0 and rec.last_error
    fresh = SqliteLedger(tmp_path / "l.sqlite3")
    rec.ledger = fresh
    await rec.flush()
    assert [r.request_id for r in await fresh.recent(10)] == [r.request_id for r in reversed(rows)]
    await fresh.aclose()


async def test_close_flushes_what_is_left() -> None:
    ledger = MemoryLedger()
    rec = LedgerRecorder(ledger, interval_s=60)
    rec.start()
    rec.record(row())
    await rec.aclose()
    assert await ledger.count() == 1
    await ledger.aclose()


async def test_prunes_old_rows(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "l.sqlite3", retention_days=1)
    old = row()
    old.timestamp = time.time() - 3 * 86400
    await ledger.append_many([old, row()])
    rec = LedgerRecorder(ledger, interval_s=0.01)
    rec.start()
    for _ in range(200):
        if await ledger.count() == 1:
            break
        await asyncio.sleep(0.01)
    await rec.aclose()
    assert await ledger.count() == 1 and (await ledger.lifetime()).requests == 2
    await ledger.aclose()


async def test_a_duplicate_id_is_counted_not_replaced() -> None:
    ledger = MemoryLedger()
    rec = LedgerRecorder(ledger)
    first = row(1)
    clash = row(2)
    clash.request_id = first.request_id
    rec.record(first)
    rec.record(clash)
    await rec.flush()
    assert rec.written == 1 and rec.dropped == 1
    assert [r.tokens_before for r in await ledger.recent(5)] == [101]
    await ledger.aclose()
