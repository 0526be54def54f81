"""Compress-once decisions, retrievable originals and session activity: memory and SQLite.

Each backend is one object that is a ``DecisionStore``, an ``OriginalsStore`` and a
``SessionStore`` at once (the pipeline receives it three times; ``aclose`` is
idempotent). Entries expire ``ttl_s`` after their last use and are bounded in count
(the oldest go first) and in size (``MAX_VALUE_CHARS``: a larger value is refused
with ``StoreError``, so the caller keeps that block verbatim).

SQLite is the embedded default: one file shared by every worker process (WAL mode),
driver errors mapped to ``StoreError``. Blocking calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from ctxgate.errors import StoreError
from ctxgate.store.base import SessionActivity

#: largest decision or original (characters) a store accepts
MAX_VALUE_CHARS = 8 * 1024 * 1024
#: refresh an entry's expiry on use only when it is older than this share of the TTL
_REFRESH_SHARE = 0.125
#: at most this many sessions are listed by ``active``
MAX_ACTIVE = 1000

Clock = Callable[[], float]
T = TypeVar("T")


def check_size(value: str | None) -> None:
    if value is not None and len(value) > MAX_VALUE_CHARS:
        raise StoreError(f"value of {len(value)} characters exceeds the store limit of {MAX_VALUE_CHARS}")


class MemoryDecisionStore:
    """In-process store: for tests, the library and single-process deployments without disk."""

    def __init__(self, ttl_s: float = 7 * 24 * 3600, max_entries: int = 100_000, clock: Clock = time.time) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._decisions: OrderedDict[str, tuple[str | None, float]] = OrderedDict()
        self._originals: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._sessions: OrderedDict[tuple[str, str], SessionActivity] = OrderedDict()

    def _bound(self, data: OrderedDict[Any, Any]) -> None:
        while len(data) > self.max_entries:
            data.popitem(last=False)

    async def get_many(self, keys: list[str]) -> dict[str, str | None]:
        now = self.clock()
        out: dict[str, str | None] = {}
        for k in keys:
            entry = self._decisions.get(k)
            if entry is None:
                continue
            if entry[1] <= now:
                del self._decisions[k]
                continue
            out[k] = entry[0]
            self._decisions[k] = (entry[0], now + self.ttl_s)
            self._decisions.move_to_end(k)
        return out

    async def put_many(self, decisions: dict[str, str | None]) -> None:
        for v in decisions.values():
            check_size(v)
        expires = self.clock() + self.ttl_s
        for k, v in decisions.items():
            self._decisions[k] = (v, expires)
            self._decisions.move_to_end(k)
        self._bound(self._decisions)

    async def put(self, tenant: str, key: str, text: str) -> None:
        check_size(text)
        self._originals[(tenant, key)] = (text, self.clock() + self.ttl_s)
        self._originals.move_to_end((tenant, key))
        self._bound(self._originals)

    async def get(self, tenant: str, key: str) -> str | None:
        entry = self._originals.get((tenant, key))
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    async def touch(self, tenant: str, session: str, user: str, model: str, now: float) -> SessionActivity | None:
        prev = self._sessions.get((tenant, session))
        if prev is not None and prev.last_seen + self.ttl_s <= now:
            prev = None
        first, n = (prev.first_seen, prev.requests) if prev else (now, 0)
        self._sessions[(tenant, session)] = SessionActivity(tenant, session, user, model, first, now, n + 1)
        self._sessions.move_to_end((tenant, session))
        self._bound(self._sessions)
        return prev

    async def ping(self) -> None:
        return None

    async def active(self, tenant: str | None, since: float) -> list[SessionActivity]:
        rows = [s for s in self._sessions.values() if s.last_seen >= since and tenant in (None, s.tenant)]
        rows.sort(key=lambda s: s.last_seen, reverse=True)
        return rows[:MAX_ACTIVE]

    async def aclose(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (key TEXT PRIMARY KEY, value TEXT, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_expires ON decisions (expires);
CREATE TABLE IF NOT EXISTS originals (
    tenant TEXT NOT NULL, key TEXT NOT NULL, text TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (tenant, key));
CREATE INDEX IF NOT EXISTS originals_expires ON originals (expires);
CREATE TABLE IF NOT EXISTS sessions (
    tenant TEXT NOT NULL, session TEXT NOT NULL, user TEXT NOT NULL, model TEXT NOT NULL,
    first_seen REAL NOT NULL, last_seen REAL NOT NULL, requests INTEGER NOT NULL,
    PRIMARY KEY (tenant, session));
CREATE INDEX IF NOT EXISTS sessions_last_seen ON sessions (last_seen);
"""
_CHUNK = 500
#: purge expired rows and enforce the count bound after this many writes
_PRUNE_EVERY = 500


def _chunks(items: list[T], n: int = _CHUNK) -> Iterator[list[T]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class SqliteDecisionStore:
    """Embedded SQLite store under ``data_dir`` (the default backend)."""

    def __init__(
        self,
        path: str | Path,
        ttl_s: float = 7 * 24 * 3600,
        max_entries: int = 1_000_000,
        clock: Clock = time.time,
    ) -> None:
        self.path = str(path)
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._writes = 0
        self._closed = False
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"sqlite decision store {self.path}: {exc}") from exc

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._closed:
                raise StoreError("sqlite decision store is closed")
            try:
                return fn(*args)
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.rollback()
                raise StoreError(f"sqlite decision store: {exc}") from exc

    # --- decisions ---------------------------------------------------------

    def _get_many(self, keys: list[str]) -> dict[str, str | None]:
        now = self.clock()
        out: dict[str, str | None] = {}
        stale: list[str] = []
        refresh_before = now + self.ttl_s * (1 - _REFRESH_SHARE)
        for chunk in _chunks(list(dict.fromkeys(keys))):
            marks = ",".join("?" * len(chunk))
            q = f"SELECT key, value, expires FROM decisions WHERE expires > ? AND key IN ({marks})"
            for key, value, expires in self._db.execute(q, [now, *chunk]):
                out[key] = value
                if expires < refresh_before:
                    stale.append(key)
        if stale:
            self._db.execute("BEGIN IMMEDIATE")
            for chunk in _chunks(stale):
                marks = ",".join("?" * len(chunk))
                self._db.execute(f"UPDATE decisions SET expires = ? WHERE key IN ({marks})", [now + self.ttl_s, *chunk])
            self._db.execute("COMMIT")
        return out

    def _put_many(self, decisions: dict[str, str | None]) -> None:
        expires = self.clock() + self.ttl_s
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT INTO decisions (key, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
            [(k, v, expires) for k, v in decisions.items()],
        )
        self._db.execute("COMMIT")
        self._count_writes(len(decisions))

    def _count_writes(self, n: int) -> None:
        self._writes += n
        if self._writes >= _PRUNE_EVERY:
            self._writes = 0
            self._prune()

    def _prune(self) -> None:
        now = self.clock()
        self._db.execute("BEGIN IMMEDIATE")
        for table, order in (("decisions", "expires"), ("originals", "expires"), ("sessions", "last_seen")):
            limit = now if order == "expires" else now - self.ttl_s
            self._db.execute(f"DELETE FROM {table} WHERE {order} <= ?", (limit,))
            (count,) = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
            if count > self.max_entries:
                self._db.execute(
                    f"DELETE FROM {table} WHERE rowid IN "
                    f"(SELECT rowid FROM {table} ORDER BY {order} LIMIT ?)",
                    (count - self.max_entries,),
                )
        self._db.execute("COMMIT")

    async def get_many(self, keys: list[str]) -> dict[str, str | None]:
        if not keys:
            return {}
        return await self._call(self._get_many, keys)

    async def put_many(self, decisions: dict[str, str | None]) -> None:
        for v in decisions.values():
            check_size(v)
        if decisions:
            await self._call(self._put_many, decisions)

    # --- originals ---------------------------------------------------------

    def _put(self, tenant: str, key: str, text: str) -> None:
        self._db.execute(
            "INSERT INTO originals (tenant, key, text, expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tenant, key) DO UPDATE SET text = excluded.text, expires = excluded.expires",
            (tenant, key, text, self.clock() + self.ttl_s),
        )
        self._count_writes(1)

    def _get(self, tenant: str, key: str) -> str | None:
        row = self._db.execute(
            "SELECT text FROM originals WHERE tenant = ? AND key = ? AND expires > ?", (tenant, key, self.clock())
        ).fetchone()
        return row[0] if row else None

    async def put(self, tenant: str, key: str, text: str) -> None:
        check_size(text)
        await self._call(self._put, tenant, key, text)

    async def get(self, tenant: str, key: str) -> str | None:
        return await self._call(self._get, tenant, key)

    # --- one request's reads, one request's writes ---------------------------

    def _put_all(self, tenant: str, originals: dict[str, str], decisions: dict[str, str | None]) -> None:
        expires = self.clock() + self.ttl_s
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany(
            "INSERT INTO originals (tenant, key, text, expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (tenant, key) DO UPDATE SET text = excluded.text, expires = excluded.expires",
            [(tenant, k, t, expires) for k, t in originals.items()],
        )
        self._db.executemany(
            "INSERT INTO decisions (key, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
            [(k, v, expires) for k, v in decisions.items()],
        )
        self._db.execute("COMMIT")
        self._count_writes(len(originals) + len(decisions))

    def _touch_get_many(
        self, tenant: str, session: str, user: str, model: str, now: float, keys: list[str]
    ) -> tuple[SessionActivity | None, dict[str, str | None]]:
        prev = self._touch(tenant, session, user, model, now)
        return prev, (self._get_many(keys) if keys else {})

    def touch_get_many_blocking(
        self, tenant: str, session: str, user: str, model: str, now: float, keys: list[str]
    ) -> tuple[SessionActivity | None, dict[str, str | None]]:
        """``touch_get_many`` for a caller already in a worker thread (no hop of its own)."""
        return self._locked(self._touch_get_many, tenant, session, user, model, now, keys)

    async def touch_get_many(
        self, tenant: str, session: str, user: str, model: str, now: float, keys: list[str]
    ) -> tuple[SessionActivity | None, dict[str, str | None]]:
        """``touch`` then ``get_many``, in one call (one thread hop): the reads of one request."""
        return await self._call(self._touch_get_many, tenant, session, user, model, now, keys)

    async def put_all(self, tenant: str, originals: dict[str, str], decisions: dict[str, str | None]) -> None:
        """``put`` of every original and ``put_many`` of the decisions, in one call and one transaction
        (the writes of one request; all or nothing)."""
        for text in originals.values():
            check_size(text)
        for v in decisions.values():
            check_size(v)
        if originals or decisions:
            await self._call(self._put_all, tenant, originals, decisions)

    # --- sessions ----------------------------------------------------------

    def _touch(self, tenant: str, session: str, user: str, model: str, now: float) -> SessionActivity | None:
        self._db.execute("BEGIN IMMEDIATE")
        row = self._db.execute(
            "SELECT user, model, first_seen, last_seen, requests FROM sessions WHERE tenant = ? AND session = ?",
            (tenant, session),
        ).fetchone()
        prev = SessionActivity(tenant, session, *row) if row else None
        if prev is not None and prev.last_seen + self.ttl_s <= now:
            prev = None
        self._db.execute(
            "INSERT OR REPLACE INTO sessions (tenant, session, user, model, first_seen, last_seen, requests) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (tenant, session, user, model, prev.first_seen if prev else now, now, (prev.requests if prev else 0) + 1),
        )
        self._db.execute("COMMIT")
        if prev is None:
            self._count_writes(1)
        return prev

    def _active(self, tenant: str | None, since: float) -> list[SessionActivity]:
        q = "SELECT tenant, session, user, model, first_seen, last_seen, requests FROM sessions WHERE last_seen >= ?"
        args: list[Any] = [since]
        if tenant is not None:
            q += " AND tenant = ?"
            args.append(tenant)
        q += " ORDER BY last_seen DESC LIMIT ?"
        args.append(MAX_ACTIVE)
        return [SessionActivity(*row) for row in self._db.execute(q, args)]

    async def touch(self, tenant: str, session: str, user: str, model: str, now: float) -> SessionActivity | None:
        return await self._call(self._touch, tenant, session, user, model, now)

    async def active(self, tenant: str | None, since: float) -> list[SessionActivity]:
        return await self._call(self._active, tenant, since)

    async def ping(self) -> None:
        await self._call(lambda: self._db.execute("SELECT 1").fetchone())

    async def aclose(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
