"""Writes ledger rows off the response path, in batches, from a bounded queue.

``record(row)`` never blocks and never raises: it updates the metrics at once, queues
the row and wakes a background task that writes everything queued, in batches of up to
``batch_size`` rows (rows that arrive while a write runs go in the next batch).
``flush()`` writes whatever is queued now, so a read right after a call sees it. When
the queue is full the row is dropped and counted
(``ctxgate_ledger_dropped_rows_total{reason="queue_full"}``); a failed write keeps the
rows queued for the next try as long as there is room. Old rows are pruned once an hour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from ctxgate.errors import StoreError
from ctxgate.server import metrics
from ctxgate.store.base import LedgerRow
from ctxgate.store.ledger import SqlLedger

log = logging.getLogger(__name__)


class LedgerRecorder:
    """The app's ``Recorder``: metrics now, ledger rows soon."""

    def __init__(self, ledger: SqlLedger, *, max_queue: int = 10_000, batch_size: int = 500,
                 interval_s: float = 0.05, prune_every_s: float = 3600.0) -> None:
        self.ledger = ledger
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.prune_every_s = prune_every_s
        self.dropped = 0
        self.written = 0
        self.last_error: str | None = None
        self._queue: deque[LedgerRow] = deque()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_prune = 0.0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def record(self, row: LedgerRow) -> None:
        try:
            metrics.observe(row)
        except Exception:  # metrics must never break a request
            log.exception("metrics update failed")
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            metrics.LEDGER_DROPPED.labels("queue_full").inc()
            return
        self._queue.append(row)
        # wake the writer now: at low load a row reaches the ledger within milliseconds (other
        # workers' reads see it); under load rows pile up while a write runs and go in one batch
        self._wake.set()

    async def flush(self) -> None:
        """Write every row queued so far (raises ``StoreError`` if the ledger is down)."""
        async with self._lock:
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
                try:
                    written = await self.ledger.append_many(batch)
                except asyncio.CancelledError:
                    # the write may or may not have landed: queue the rows again; ids are unique,
                    # so a row written twice is skipped (and counted), never duplicated
                    self._queue.extendleft(reversed(batch))
                    raise
                except Exception as exc:
                    if not isinstance(exc, StoreError):  # not retryable: these rows cannot be written
                        self.dropped += len(batch)
                        metrics.LEDGER_DROPPED.labels("write_failed").inc(len(batch))
                        raise
                    self.last_error = str(exc)
                    room = self.max_queue - len(self._queue)
                    keep, lost = batch[:max(0, room)], batch[max(0, room):]
                    self._queue.extendleft(reversed(keep))
                    if lost:
                        self.dropped += len(lost)
                        metrics.LEDGER_DROPPED.labels("write_failed").inc(len(lost))
                    raise
                self.written += written
                self.last_error = None
                if written < len(batch):  # ids already recorded: never replaced, counted
                    self.dropped += len(batch) - written
                    metrics.LEDGER_DROPPED.labels("duplicate_id").inc(len(batch) - written)

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
                now = time.time()
                if now - self._last_prune >= self.prune_every_s:
                    self._last_prune = now
                    await self.ledger.prune(now)
            except StoreError as exc:
                log.warning("ledger write failed, will retry: %s", exc)
                await asyncio.sleep(min(5.0, self.interval_s * 20))
            except Exception:  # a bug must not stop the writer: log it and keep going
                log.exception("ledger writer error")
                await asyncio.sleep(min(5.0, self.interval_s * 20))

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and (self._task.done() or self._task.get_loop() is not loop):
            self._stop_foreign_task()
        if self._task is None:
            self._lock = asyncio.Lock()
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._loop(), name="ctxgate-ledger-recorder")

    def _stop_foreign_task(self) -> None:
        """Forget a writer task of another (or finished) event loop, cancelling it there."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(task.cancel)

    async def aclose(self) -> None:
        task = self._task
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            self._stop_foreign_task()
        elif task is not None:
            # stop gracefully: a write in progress finishes (cancelling it could lose its batch)
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), 10.0)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._task = None
            self._stopping = False
        try:
            await self.flush()
        except StoreError as exc:
            log.error("ledger: %d rows not written at shutdown: %s", len(self._queue), exc)
