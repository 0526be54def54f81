"""A replica for the two-process Redis replay test: one request per stdin line.

    python -m tests.replay_worker REDIS_URL TENANT
    stdin:  {"raw": "<path>", "out": "<path>", "fmt": "anthropic", "model": "..."}
    stdout: {"skip_reason": ..., "error": ...}
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from ctxgate.pipeline import RequestInfo, build_pipeline
from ctxgate.settings import Settings


async def main(url: str, tenant: str) -> None:
    pipeline = build_pipeline(Settings(decision_store="redis", redis_url=url, time_budget_ms=600_000))
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.strip():
            break
        job = json.loads(line)
        raw = Path(job["raw"]).read_bytes()
        r = await pipeline.run(raw, RequestInfo(fmt=job["fmt"], model=job["model"], tenant=tenant))
        Path(job["out"]).write_bytes(r.body)
        print(json.dumps({"skip_reason": r.skip_reason, "error": r.error}), flush=True)
    await pipeline.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
