"""One contract for every decision-store backend: memory, SQLite and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from ctxgate.errors import StoreError
from ctxgate.store.decisions import MAX_VALUE_CHARS, MemoryDecisionStore, SqliteDecisionStore
from tests.store.redisdb import fresh_prefix, redis_url


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _memory(tmp: Path, clock: Callable[[], float]) -> Any:
    return MemoryDecisionStore(ttl_s=3600, clock=clock)


def _sqlite(tmp: Path, clock: Callable[[], float]) -> Any:
    return SqliteDecisionStore(tmp / "d.sqlite3", ttl_s=3600, clock=clock)


def _redis(tmp: Path, clock: Callable[[], float]) -> Any:
    from ctxgate.store.redis import RedisDecisionStore

    return RedisDecisionStore(redis_url(), ttl_s=3600, prefix=fresh_prefix(), clock=clock)


BACKENDS = [
    pytest.param(_memory, id="memory"),
    pytest.param(_sqlite, id="sqlite"),
    pytest.param(_redis, id="redis", marks=pytest.mark.redis),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    s = request.param(tmp_path, Clock())
    yield s
    await s.aclose()
    await s.aclose()  # idempotent


async def test_decisions_round_trip_with_verbatim(store: Any) -> None:
    assert await store.get_many([]) == {}
    await store.put_many({"k1": "short text é", "k2": None})
    assert await store.get_many(["k1", "k2", "k3"]) == {"k1": "short text é", "k2": None}
    await store.put_many({"k1": "replaced"})
    assert await store.get_many(["k1"]) == {"k1": "replaced"}
    await store.ping()


async def test_many_keys_in_one_call(store: Any) -> None:
    values = {f"key{i}": (None if i % 3 == 0 else f"v{i}") for i in range(1200)}
    await store.put_many(values)
    assert await store.get_many(list(values) + ["missing"]) == values


async def test_oversized_values_are_refused(store: Any) -> None:
    with pytest.raises(StoreError):
        await store.put_many({"big": "x" * (MAX_VALUE_CHARS + 1)})
    with pytest.raises(StoreError):
        await store.put("t", "big", "x" * (MAX_VALUE_CHARS + 1))
    assert await store.get_many(["big"]) == {}


async def test_originals_are_tenant_scoped(store: Any) -> None:
    await store.put("acme", "ctx_1", "the original")
    assert await store.get("acme", "ctx_1") == "the original"
    assert await store.get("other", "ctx_1") is None
    assert await store.get("acme", "ctx_2") is None
    await store.put("a:b", "c", "x")  # separators in tenant names cannot collide
    assert await store.get("a", "b:c") is None


async def test_session_activity(store: Any) -> None:
    assert await store.touch("t1", "s1", "alice", "m", 1000.0) is None
    prev = await store.touch("t1", "s1", "bob", "m2", 1010.0)
    assert prev is not None and (prev.first_seen, prev.last_seen, prev.requests, prev.user) == (1000.0, 1000.0, 1, "alice")
    await store.touch("t2", "s2", "carol", "m", 1020.0)
    rows = await store.active(None, 1005.0)
    assert [(r.tenant, r.session, r.requests) for r in rows] == [("t2", "s2", 1), ("t1", "s1", 2)]
    (only,) = await store.active("t1", 0.0)
    assert only.as_dict() == {"session_id": "s1", "tenant": "t1", "user": "bob", "model": "m2",
                              "first_seen": 1000.0, "last_seen": 1010.0, "requests": 2}
    assert await store.active("t1", 1011.0) == []
