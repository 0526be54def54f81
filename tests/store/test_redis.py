"""The Redis decision store on a real server (CTXGATE_TEST_REDIS_URL): TTLs, key layout, errors."""

from __future__ import annotations

import pytest
import redis

from ctxgate.errors import StoreError
from ctxgate.store.redis import RedisDecisionStore
from tests.store.redisdb import fresh_prefix, redis_url

pytestmark = pytest.mark.redis


async def test_every_key_has_a_ttl_and_use_refreshes_it() -> None:
    url, prefix = redis_url(), fresh_prefix()
    store = RedisDecisionStore(url, ttl_s=600, prefix=prefix)
    await store.put_many({"k": "v", "verb": None})
    await store.put("acme", "ctx_1", "orig")
    await store.touch("acme", "s1", "u", "m", 1000.0)
    raw = redis.Redis.from_url(url)
    try:
        names = raw.keys(prefix + "*")
        assert {n.decode() for n in names} >= {prefix + "d:k", prefix + "d:verb", prefix + "o:4:acme:ctx_1"}
        for n in names:
            if not n.decode().endswith(":sa"):
                assert 0 < raw.ttl(n) <= 600
        raw.expire(prefix + "d:k", 10)
        assert await store.get_many(["k"]) == {"k": "v"}
        assert raw.ttl(prefix + "d:k") > 10
        assert raw.get(prefix + "d:verb") == b"v"
    finally:
        raw.delete(*raw.keys(prefix + "*"))
        raw.close()
    await store.aclose()


async def test_unreachable_server_raises_store_error() -> None:
    store = RedisDecisionStore("redis://127.0.0.1:1/0", prefix=fresh_prefix())
    with pytest.raises(StoreError):
        await store.get_many(["k"])
    with pytest.raises(StoreError):
        await store.ping()
    await store.aclose()


def test_bad_url_raises_store_error() -> None:
    with pytest.raises(StoreError):
        RedisDecisionStore("nota://url")
