"""Service mode: POST /v1/compress latency over HTTP, and the savings ledger's write and read costs.

    .venv/bin/python bench/bench_service.py [--calls 200] [--workers 1] [--rows 20000]

1. ``ctxgate serve`` (default SQLite stores, a fresh data dir) runs as a separate process;
   this process calls ``POST /v1/compress`` sequentially over one keep-alive connection with
   (a) a one-message body and (b) an OpenAI Chat body whose tool output is a new 300-line log
   (unique per call, so it is compressed for the first time). p50/p99 in milliseconds.
2. The SQLite ledger alone: rows per second through ``append_many`` in batches of 500, the
   cost of ``LedgerRecorder.record`` (metrics + enqueue, the only part on the response path),
   and the time of the ``/stats`` queries over the rows written.

Reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.server.live import LiveServer  # noqa: E402

from ctxgate.server.recorder import LedgerRecorder  # noqa: E402
from ctxgate.store.base import LedgerRow  # noqa: E402
from ctxgate.store.ledger import SqliteLedger, new_request_id  # noqa: E402

LOG = "\n".join(f"2025-01-01 12:00:{i % 60:02d} INFO worker-{i % 3} processed batch {i} ok" for i in range(300))


def tool_body(i: int) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": [
        {"role": "user", "content": f"run the build {i}"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": f"call_{i}", "content": f"{LOG}\nrun {i}"},
    ]}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def http_bench(calls: int, workers: int) -> None:
    with LiveServer(Path(tempfile.mkdtemp(prefix="ctxgate-bench-")), workers=workers) as srv, \
            httpx.Client(base_url=srv.url, timeout=30) as c:
        for i in range(5):
            c.post("/v1/compress", json=tool_body(10_000 + i))
        cases = (("one message", lambda i: {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
                 ("300-line tool log", tool_body))
        for label, body in cases:
            latencies, skipped, ratio = [], 0, []
            for i in range(calls):
                t = time.perf_counter()
                j = c.post("/v1/compress", json=body(i)).json()
                latencies.append((time.perf_counter() - t) * 1000)
                skipped += j["compression_skipped"]
                ratio.append(j["compression_ratio"])
            print(f"POST /v1/compress, {label} (workers={workers}): p50 {pct(latencies, 0.5):.1f} ms, "
                  f"p99 {pct(latencies, 0.99):.1f} ms, skipped {skipped}/{calls}, "
                  f"mean ratio {sum(ratio) / len(ratio):.3f}")
        t = time.perf_counter()
        n = c.get("/stats").json()["summary"]["api_requests"]
        print(f"GET /stats after {n} calls: {(time.perf_counter() - t) * 1000:.1f} ms")


def row() -> LedgerRow:
    return LedgerRow(request_id=new_request_id(), timestamp=time.time(), user="u", model="gpt-4o",
                     provider="openai", mode="service", tokens_before=1000, tokens_after=400,
                     estimator="o200k_base", cost_per_mtok=2.5, transforms=["json:table"])


async def ledger_bench(n: int) -> None:
    ledger = SqliteLedger(Path(tempfile.mkdtemp(prefix="ctxgate-bench-")) / "ledger.sqlite3")
    rows = [row() for _ in range(n)]
    t = time.perf_counter()
    for i in range(0, n, 500):
        await ledger.append_many(rows[i:i + 500])
    print(f"SqliteLedger.append_many (batches of 500): {n / (time.perf_counter() - t):,.0f} rows/s")
    rec = LedgerRecorder(ledger, max_queue=n)
    rows = [row() for _ in range(n)]
    t = time.perf_counter()
    for r in rows:
        rec.record(r)
    print(f"LedgerRecorder.record (response path): {(time.perf_counter() - t) / n * 1e6:.1f} us per row")
    await rec.flush()
    t = time.perf_counter()
    await ledger.totals()
    await ledger.skip_reasons()
    await ledger.recent(100)
    print(f"/stats queries over {await ledger.count():,} rows: {(time.perf_counter() - t) * 1000:.1f} ms")
    await ledger.aclose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--rows", type=int, default=20_000)
    args = ap.parse_args()
    http_bench(args.calls, args.workers)
    asyncio.run(ledger_bench(args.rows))


if __name__ == "__main__":
    main()
