"""Decisions, originals and session activity on Redis, shared by several replicas.

Same contract as ``store/decisions.py``: one object is the ``DecisionStore``, the
``OriginalsStore`` and the ``SessionStore``. Every key carries a TTL (refreshed on
use), so Redis bounds the count with its ``maxmemory`` policy (``volatile-lru`` is
the right one); values above ``MAX_VALUE_CHARS`` are refused. Redis and socket
errors are mapped to ``StoreError``.

Keys (``prefix`` defaults to ``ctxgate:``): ``d:<decision key>`` holds ``v`` (verbatim)
or ``t`` + the output text; ``o:<tenant length>:<tenant>:<key>`` an original;
``s:<tenant length>:<tenant>:<session>`` a session hash; ``sa`` a sorted set of
sessions by last use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ctxgate.errors import StoreError
from ctxgate.store.base import SessionActivity
from ctxgate.store.decisions import MAX_ACTIVE, check_size

T = TypeVar("T")
_VERBATIM = b"v"


def _scoped(tenant: str, name: str) -> str:
    return f"{len(tenant)}:{tenant}:{name}"


class RedisDecisionStore:
    """Redis backend (``decision_store=redis``)."""

    def __init__(
        self,
        url: str,
        ttl_s: float = 7 * 24 * 3600,
        *,
        prefix: str = "ctxgate:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_s = int(ttl_s)
        self.prefix = prefix
        self.clock = clock
        try:
            self._r: Any = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        except (RedisError, ValueError) as exc:
            raise StoreError(f"redis decision store: {exc}") from exc
        self._closed = False

    async def _call(self, coro: Awaitable[T]) -> T:
        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise StoreError(f"redis decision store: {exc}") from exc

    # --- decisions ---------------------------------------------------------

    async def get_many(self, keys: list[str]) -> dict[str, str | None]:
        if not keys:
            return {}
        keys = list(dict.fromkeys(keys))
        names = [self.prefix + "d:" + k for k in keys]
        values = await self._call(self._r.mget(names))
        out: dict[str, str | None] = {}
        found = []
        for k, name, v in zip(keys, names, values, strict=True):
            if v is None:
                continue
            out[k] = None if v == _VERBATIM else v[1:].decode("utf-8")
            found.append(name)
        if found:
            await self._call(self._refresh(found))
        return out

    async def _refresh(self, names: list[str]) -> None:
        pipe = self._r.pipeline(transaction=False)
        for n in names:
            pipe.expire(n, self.ttl_s)
        await pipe.execute()

    async def put_many(self, decisions: dict[str, str | None]) -> None:
        for v in decisions.values():
            check_size(v)
        if not decisions:
            return
        pipe = self._r.pipeline(transaction=False)
        for k, v in decisions.items():
            value = _VERBATIM if v is None else b"t" + v.encode("utf-8", "surrogatepass")
            pipe.set(self.prefix + "d:" + k, value, ex=self.ttl_s)
        await self._call(pipe.execute())

    # --- originals ---------------------------------------------------------

    async def put(self, tenant: str, key: str, text: str) -> None:
        check_size(text)
        name = self.prefix + "o:" + _scoped(tenant, key)
        await self._call(self._r.set(name, text.encode("utf-8", "surrogatepass"), ex=self.ttl_s))

    async def get(self, tenant: str, key: str) -> str | None:
        v = await self._call(self._r.get(self.prefix + "o:" + _scoped(tenant, key)))
        return None if v is None else bytes(v).decode("utf-8", "surrogatepass")

    # --- sessions ----------------------------------------------------------

    async def touch(self, tenant: str, session: str, user: str, model: str, now: float) -> SessionActivity | None:
        name = self.prefix + "s:" + _scoped(tenant, session)
        raw = await self._call(self._r.hgetall(name))
        prev = _activity(tenant, session, raw)
        if prev is not None and prev.last_seen + self.ttl_s <= now:
            prev = None
        pipe = self._r.pipeline(transaction=True)
        if prev is None:
            pipe.delete(name)
            pipe.hset(name, mapping={"first_seen": repr(now)})
        pipe.hset(name, mapping={"user": user, "model": model, "last_seen": repr(now)})
        pipe.hincrby(name, "requests", 1)
        pipe.expire(name, self.ttl_s)
        pipe.zadd(self.prefix + "sa", {json.dumps([tenant, session]): now})
        pipe.zremrangebyscore(self.prefix + "sa", "-inf", now - self.ttl_s)
        await self._call(pipe.execute())
        return prev

    async def active(self, tenant: str | None, since: float) -> list[SessionActivity]:
        members = await self._call(
            self._r.zrevrangebyscore(self.prefix + "sa", "+inf", since, start=0, num=MAX_ACTIVE * 4)
        )
        pairs = [json.loads(m) for m in members]
        pairs = [(t, s) for t, s in pairs if tenant in (None, t)][:MAX_ACTIVE]
        if not pairs:
            return []
        pipe = self._r.pipeline(transaction=False)
        for t, s in pairs:
            pipe.hgetall(self.prefix + "s:" + _scoped(t, s))
        rows = await self._call(pipe.execute())
        out = [_activity(t, s, raw) for (t, s), raw in zip(pairs, rows, strict=True)]
        return [a for a in out if a is not None and a.last_seen >= since]

    async def ping(self) -> None:
        await self._call(self._r.ping())

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                await self._r.aclose()
            except (RedisError, OSError) as exc:
                raise StoreError(f"redis decision store: {exc}") from exc


def _activity(tenant: str, session: str, raw: dict[bytes, bytes]) -> SessionActivity | None:
    if not raw or b"last_seen" not in raw:
        return None
    first = raw.get(b"first_seen", raw[b"last_seen"])
    return SessionActivity(
        tenant=tenant,
        session=session,
        user=raw.get(b"user", b"").decode(),
        model=raw.get(b"model", b"").decode(),
        first_seen=float(first),
        last_seen=float(raw[b"last_seen"]),
        requests=int(raw.get(b"requests", b"0")),
    )
