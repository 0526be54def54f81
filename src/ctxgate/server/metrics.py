"""Prometheus metrics: ``ctxgate_*`` counters and the seven legacy ``headroom_*`` series.

Correct with several worker processes: when ``PROMETHEUS_MULTIPROC_DIR`` is set (``server/run.py``
sets it under the data dir before the workers start), every process writes its values to
files there and ``GET /metrics`` sums them, so a call adds exactly 1 to the request counters
whichever worker served it. Labels never carry user ids: only mode, provider and a bounded
skip reason.

The legacy series keep headroom-gateway's shape (unlabeled samples, ``counter`` types,
``headroom_uptime_seconds`` a gauge) so its dashboard keeps working.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator

import prometheus_client
from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from ctxgate.store.base import LedgerRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STARTED_AT_ENV = "CTXGATE_STARTED_AT"

prometheus_client.disable_created_metrics()

#: the registry of this process's metrics (single-process mode reads it directly)
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter("ctxgate_requests", "Requests seen, compressed or not.", ["mode", "provider"], registry=REGISTRY)
COMPRESSED = Counter("ctxgate_compressed_requests", "Requests that saved tokens.", ["mode"], registry=REGISTRY)
TOKENS_BEFORE = Counter("ctxgate_tokens_before", "Input tokens before compression.", ["mode"], registry=REGISTRY)
TOKENS_AFTER = Counter("ctxgate_tokens_after", "Input tokens after compression.", ["mode"], registry=REGISTRY)
TOKENS_SAVED = Counter("ctxgate_tokens_saved", "Input tokens removed by compression.", ["mode"], registry=REGISTRY)
DOLLARS_SAVED = Counter("ctxgate_saved_dollars", "USD saved (list input price or billed usage).", ["mode"],
                        registry=REGISTRY)
SKIPPED = Counter("ctxgate_skipped_requests", "Requests left unchanged, by reason.", ["mode", "reason"],
                  registry=REGISTRY)
ERRORS = Counter("ctxgate_errors", "Compression failures that failed open.", ["mode"], registry=REGISTRY)
LEDGER_DROPPED = Counter("ctxgate_ledger_dropped_rows", "Ledger rows dropped (queue full or write failed).",
                         ["reason"], registry=REGISTRY)
LATENCY = Histogram(
    "ctxgate_compression_duration_seconds", "Time spent compressing one request.", ["mode"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)

# legacy headroom-gateway series: unlabeled
H_REQUESTS = Counter("headroom_requests", "Total compression requests", registry=REGISTRY)
H_COMPRESSED = Counter("headroom_compressed", "Requests with savings > 0", registry=REGISTRY)
H_BEFORE = Counter("headroom_tokens_before", "Total input tokens before compression", registry=REGISTRY)
H_AFTER = Counter("headroom_tokens_after", "Total input tokens after compression", registry=REGISTRY)
H_SAVED = Counter("headroom_tokens_saved", "Total tokens removed by compression", registry=REGISTRY)
H_ERRORS = Counter("headroom_errors", "Compression errors", registry=REGISTRY)

_REASON = re.compile(r"[^a-z0-9_]+")


def reason_label(reason: str | None) -> str:
    """A bounded label value for a skip reason ("no_savings" when none was given)."""
    return (_REASON.sub("_", (reason or "no_savings").lower()).strip("_") or "unknown")[:40]


def observe(row: LedgerRow) -> None:
    """Count one request (called once per ledger row, by the recorder)."""
    mode = row.mode
    saved = row.tokens_saved
    REQUESTS.labels(mode, row.provider).inc()
    TOKENS_BEFORE.labels(mode).inc(row.tokens_before)
    TOKENS_AFTER.labels(mode).inc(row.tokens_after)
    TOKENS_SAVED.labels(mode).inc(saved)
    if row.dollars_saved > 0:
        DOLLARS_SAVED.labels(mode).inc(row.dollars_saved)
    if saved > 0:
        COMPRESSED.labels(mode).inc()
    else:
        SKIPPED.labels(mode, reason_label(row.skip_reason)).inc()
    if row.error:
        ERRORS.labels(mode).inc()
        H_ERRORS.inc()
    LATENCY.labels(mode).observe(max(0.0, row.latency_ms) / 1000.0)
    H_REQUESTS.inc()
    H_BEFORE.inc(row.tokens_before)
    H_AFTER.inc(row.tokens_after)
    H_SAVED.inc(saved)
    if saved > 0:
        H_COMPRESSED.inc()


def started_at() -> float:
    """When the server started (set once by ``server/run.py`` for all workers)."""
    try:
        return float(os.environ[STARTED_AT_ENV])
    except (KeyError, ValueError):
        return _IMPORTED_AT


_IMPORTED_AT = time.time()


class _Uptime(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("headroom_uptime_seconds", "Seconds since the service started",
                                value=round(time.time() - started_at(), 3))


def exposition() -> bytes:
    """The Prometheus text of every process (multiprocess mode) or of this one."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward())
    registry.register(_Uptime())
    return prometheus_client.generate_latest(registry)


class _Forward(Collector):
    def collect(self) -> Iterator[prometheus_client.Metric]:
        yield from REGISTRY.collect()


router = APIRouter()


@router.get("/metrics", include_in_schema=True, response_class=Response,
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}})
async def metrics() -> Response:
    return Response(exposition(), media_type=CONTENT_TYPE)
