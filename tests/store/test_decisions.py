"""Memory and SQLite decision stores: expiry, bounds, restarts, error mapping."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from ctxgate.errors import StoreError
from ctxgate.store import decisions as dec
from ctxgate.store.decisions import MemoryDecisionStore, SqliteDecisionStore
from tests.store.test_decision_contract import Clock


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_entries_expire_after_their_last_use(kind: str, tmp_path: Path) -> None:
    clock = Clock()
    store = (MemoryDecisionStore(ttl_s=100, clock=clock) if kind == "memory"
             else SqliteDecisionStore(tmp_path / "d.sqlite3", ttl_s=100, clock=clock))
    await store.put_many({"used": "a", "idle": "b"})
    await store.put("t", "o", "orig")
    clock.now += 95
    assert await store.get_many(["used"]) == {"used": "a"}  # a use refreshes the expiry
    clock.now += 10
    assert await store.get_many(["used", "idle"]) == {"used": "a"}
    assert await store.get("t", "o") is None
    assert await store.touch("t", "s", "u", "m", clock.now) is None
    assert await store.touch("t", "s", "u", "m", clock.now + 200) is None  # an expired session is new again
    await store.aclose()


async def test_memory_store_is_bounded_in_count() -> None:
    store = MemoryDecisionStore(max_entries=3)
    await store.put_many({f"k{i}": "v" for i in range(5)})
    assert set(await store.get_many([f"k{i}" for i in range(5)])) == {"k2", "k3", "k4"}
    for i in range(5):
        await store.put("t", f"o{i}", "x")
        await store.touch("t", f"s{i}", "u", "m", float(i))
    assert await store.get("t", "o0") is None and await store.get("t", "o4") == "x"
    assert len(await store.active(None, 0)) == 3


async def test_sqlite_prunes_expired_rows_and_the_oldest_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dec, "_PRUNE_EVERY", 10)
    clock = Clock()
    store = SqliteDecisionStore(tmp_path / "d.sqlite3", ttl_s=100, max_entries=5, clock=clock)
    await store.put_many({f"old{i}": "v" for i in range(3)})
    clock.now += 200  # these have expired
    for i in range(7):  # the 10th write prunes: expired rows first, then the oldest past 5
        clock.now += 1
        await store.put_many({f"k{i}": "v"})
    db = sqlite3.connect(tmp_path / "d.sqlite3")
    rows = db.execute("SELECT key FROM decisions ORDER BY key").fetchall()
    db.close()
    assert [r[0] for r in rows] == ["k2", "k3", "k4", "k5", "k6"]
    assert await store.get_many(["k6"]) == {"k6": "v"}
    await store.aclose()


async def test_sqlite_survives_a_restart_and_shares_one_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "d.sqlite3"
    a = SqliteDecisionStore(path)
    b = SqliteDecisionStore(path)  # a second worker process opens the same file
    await a.put_many({"k": "v"})
    await a.put("t", "o", "orig")
    assert await b.get_many(["k"]) == {"k": "v"}
    await a.aclose()
    c = SqliteDecisionStore(path)
    assert await c.get_many(["k"]) == {"k": "v"} and await c.get("t", "o") == "orig"
    await b.aclose()
    await c.aclose()


async def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    store = SqliteDecisionStore(tmp_path / "d.sqlite3")
    store._db.execute("DROP TABLE decisions")
    with pytest.raises(StoreError, match="no such table"):
        await store.get_many(["k"])
    with pytest.raises(StoreError):
        await store.put_many({"k": "v"})
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.get("t", "k")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        SqliteDecisionStore(tmp_path / "file" / "d.sqlite3")


async def test_sqlite_one_request_reads_and_writes_in_one_call(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteDecisionStore(tmp_path / "d.sqlite3", ttl_s=100, clock=clock)
    await store.put_all("t", {"o1": "orig"}, {"k1": "v", "k2": None})
    assert await store.get("t", "o1") == "orig"
    prev, got = await store.touch_get_many("t", "s", "u", "m", clock.now, ["k1", "k2", "k3"])
    assert prev is None and got == {"k1": "v", "k2": None}
    prev, got = await store.touch_get_many("t", "s", "u", "m", clock.now + 1, [])
    assert prev is not None and prev.requests == 1 and got == {}
    # the same from a worker thread that is already off the event loop
    prev, got = await asyncio.to_thread(store.touch_get_many_blocking, "t", "s", "u", "m", clock.now + 2, ["k1"])
    assert prev is not None and prev.requests == 2 and got == {"k1": "v"}
    # all or nothing: a value over the limit is refused before anything is written
    with pytest.raises(StoreError):
        await store.put_all("t", {"o2": "x"}, {"k4": "y" * (dec.MAX_VALUE_CHARS + 1)})
    assert await store.get("t", "o2") is None
    # a failed transaction writes no original either
    store._db.execute("DROP TABLE decisions")
    with pytest.raises(StoreError, match="no such table"):
        await store.put_all("t", {"o3": "x"}, {"k5": "y"})
    assert await store.get("t", "o3") is None
    with pytest.raises(StoreError, match="no such table"):
        await store.touch_get_many("t", "s", "u", "m", clock.now, ["k1"])
    await store.aclose()
