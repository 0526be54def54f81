"""In-process cost of ``Pipeline.run`` for the proxy benchmark's request (no HTTP, no subprocess).

    .venv/bin/python bench/bench_pipeline.py [--corpus ../shared/corpus] [--rounds 60] [--tokens 100000]
                                             [--new-tokens 10000] [--store memory|sqlite] [--profile]

Builds the same ~100K-token Anthropic body as bench/bench_proxy.py (a shared Claude Code
trajectory whose last turn adds a unique ~10K-token tool output), decides the history once
(warm-up, as earlier turns of a live session did), then times ``Pipeline.run`` on fresh
bodies with an in-memory decision store (``--store sqlite``: the server's default store, in a
temporary directory): p50 / p90 / max milliseconds, and a profile of the event loop's thread
with ``--profile``. Reported, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_proxy import MODEL, body, build_turn  # noqa: E402

from ctxgate.pipeline import Pipeline, RequestInfo  # noqa: E402
from ctxgate.settings import Settings  # noqa: E402
from ctxgate.store.decisions import MemoryDecisionStore, SqliteDecisionStore  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def run(bodies: list[bytes], rounds: int, profile: bool, store_kind: str, tmp: Path) -> None:
    store: Any = MemoryDecisionStore(3600)
    if store_kind == "sqlite":
        store = SqliteDecisionStore(tmp / "decisions.sqlite3", 3600)
    pipe = Pipeline(Settings(time_budget_ms=10_000), store, store, store)
    info = RequestInfo(fmt="anthropic", model=MODEL, session_id="bench")
    first = await pipe.run(bodies[0], info)
    print(f"warm-up: {first.counts}, tokens {first.tokens_before} -> {first.tokens_after}")
    for b in bodies[1:5]:
        await pipe.run(b, info)
    times: list[float] = []
    prof = cProfile.Profile() if profile else None
    for b in bodies[5 : 5 + rounds]:
        if prof:
            prof.enable()
        t0 = time.perf_counter()
        r = await pipe.run(b, info)
        times.append((time.perf_counter() - t0) * 1000)
        if prof:
            prof.disable()
    print(f"last: {r.counts}, skip {r.skip_reason}, tokens {r.tokens_before} -> {r.tokens_after}")
    print(f"Pipeline.run ms over {len(times)} requests: p50 {pct(times, 0.5):.2f} p90 {pct(times, 0.9):.2f} "
          f"max {max(times):.2f} mean {statistics.mean(times):.2f}")
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(20)
    await pipe.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--new-tokens", type=int, default=10_000)
    ap.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        history, tool_id, output = build_turn(args.corpus, Path(tmp), args.tokens, args.new_tokens)
        bodies = [body(history, tool_id, output, i) for i in range(args.rounds + 5)]
        print(f"request: {len(bodies[0]) / 1e3:.0f} KB, {len(history) + 1} messages, store {args.store}")
        asyncio.run(run(bodies, args.rounds, args.profile, args.store, Path(tmp)))


if __name__ == "__main__":
    main()
