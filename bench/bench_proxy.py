"""Proxy overhead: time to first byte and total time through ctxgate vs the same fake upstream directly.

    .venv/bin/python bench/bench_proxy.py [--corpus ../shared/corpus] [--rounds 30] [--concurrency 1 32]
                                          [--workers N] [--level off]

The fake upstream (tests/server/fake_upstream.py, streaming an Anthropic SSE answer at
once) and ctxgate (``ctxgate serve`` with its default SQLite stores) run as separate
processes under uvicorn on loopback; this process is the client. Every request is a
~100K-token Anthropic Messages body built from a shared Claude Code trajectory whose
last turn adds a new tool output of ~10K tokens (unique per request, so it is
compressed for the first time, while the earlier turns hit their compress-once
decisions, as in a live session). p50 and p99 are reported as milliseconds and as
ratios to the direct path; the goal is p50 added time under 5 ms (reported, not asserted).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODEL = "claude-sonnet-4-6"
FAKE = (
    "import sys, uvicorn; sys.path.insert(0, sys.argv[2]);"
    "from tests.server.fake_upstream import FakeUpstream;"
    "uvicorn.run(FakeUpstream(), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def o200k(text: str) -> int:
    from ctxgate import tokens

    return tokens.count(text, "gpt-4o").tokens


def build_turn(corpus: Path, tmp: Path, target_tokens: int, new_tokens: int) -> tuple[list[Any], str, str]:
    """(history ending in one tool_use, its id, a ~new_tokens tool output) from a shared trajectory."""
    subprocess.run([sys.executable, str(corpus / "score.py"), "export-anthropic", "--out", str(tmp)],
                   check=True, capture_output=True)
    convs = [json.loads(line)["messages"] for line in
             (tmp / "claude-code_spotter.anthropic.jsonl").read_text().splitlines()]
    conv = max(convs, key=lambda c: len(json.dumps(c)))
    history: list[Any] = []
    best: tuple[list[Any], str] | None = None
    size = 0
    for msg in conv:
        history.append(msg)
        size += o200k(json.dumps(msg))
        uses = [b for b in msg["content"] if isinstance(b, dict) and b.get("type") == "tool_use"] \
            if msg["role"] == "assistant" and isinstance(msg["content"], list) else []
        if len(uses) == 1:
            best = (list(history), uses[0]["id"])
        if size >= target_tokens - new_tokens and best is not None:
            break
    assert best is not None
    logs = sorted((corpus / "outputs" / "logs").glob("*.log"), key=lambda p: p.stat().st_size)
    new, parts = "", iter(logs)
    while o200k(new) < new_tokens:
        new += next(parts).read_text(errors="replace")
    lines = new.splitlines()
    while o200k("\n".join(lines)) > new_tokens:
        lines = lines[: int(len(lines) * 0.95)]
    return best[0], best[1], "\n".join(lines)


def body(history: list[Any], tool_id: str, output: str, i: int) -> bytes:
    new = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id,
                                        "content": f"run {i}\n{output}"}]}
    return json.dumps({"model": MODEL, "max_tokens": 1024, "stream": True, "messages": [*history, new]}).encode()


async def one(client: httpx.AsyncClient, url: str, raw: bytes) -> tuple[float, float, dict[str, str]]:
    headers = {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01", "content-type": "application/json",
               "x-claude-code-session-id": "bench"}
    t0 = time.perf_counter()
    async with client.stream("POST", url, content=raw, headers=headers) as r:
        ttfb = None
        async for _ in r.aiter_raw():
            if ttfb is None:
                ttfb = time.perf_counter() - t0
        total = time.perf_counter() - t0
        assert r.status_code == 200, r.status_code
    return (ttfb or total) * 1000, total * 1000, dict(r.headers)


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


async def measure(url: str, bodies: list[bytes], concurrency: int, rounds: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        ttfb: list[float] = []
        total: list[float] = []
        overhead: list[float] = []
        k = 0
        for _ in range(rounds):
            batch = bodies[k : k + concurrency]
            k += concurrency
            results = await asyncio.gather(*(one(client, url, b) for b in batch))
            for a, b, h in results:
                ttfb.append(a)
                total.append(b)
                if "x-ctxgate-overhead-ms" in h:
                    overhead.append(float(h["x-ctxgate-overhead-ms"]))
    return {"ttfb": ttfb, "total": total, "overhead": overhead}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--rounds", type=int, default=30, help="rounds per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--tokens", type=int, default=100_000)
    ap.add_argument("--new-tokens", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=1, help="ctxgate worker processes")
    ap.add_argument("--level", default=None, help="CTXGATE_LEVEL for ctxgate (off: the proxy's own cost only)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        history, tool_id, output = build_turn(args.corpus, tmp, args.tokens, args.new_tokens)
        need = sum(c * args.rounds for c in args.concurrency) + 3
        bodies = [body(history, tool_id, output, i) for i in range(need * 2)]
        size_tokens = o200k(bodies[0].decode())
        print(f"request: {len(bodies[0]) / 1e3:.0f} KB, {size_tokens} o200k tokens, "
              f"{len(history) + 1} messages, new tool output {o200k(output)} tokens")

        fport, gport = free_port(), free_port()
        env = dict(os.environ, CTXGATE_ANTHROPIC_UPSTREAM=f"http://127.0.0.1:{fport}", CTXGATE_LOG_LEVEL="warning")
        if args.level:
            env["CTXGATE_LEVEL"] = args.level
        procs = [
            subprocess.Popen([sys.executable, "-c", FAKE, str(fport), str(ROOT)]),
            subprocess.Popen([str(Path(sys.executable).parent / "ctxgate"), "serve", "--port", str(gport),
                              "--data-dir", str(tmp / "data"), "--workers", str(args.workers)], env=env),
        ]
        try:
            wait_port(fport)
            wait_port(gport)
            direct_url = f"http://127.0.0.1:{fport}/v1/messages"
            proxy_url = f"http://127.0.0.1:{gport}/v1/messages"
            # warm-up: the first request decides the history's blocks (cold), like an earlier turn did
            warm = asyncio.run(measure(proxy_url, bodies[-3:], 1, 3))
            print(f"warm-up (first sight of the history) total ms: {[round(x, 1) for x in warm['total']]}")
            offset = 0
            report: list[dict[str, Any]] = []
            for c in args.concurrency:
                n = c * args.rounds
                chunk = bodies[offset : offset + n]
                offset += n
                d = asyncio.run(measure(direct_url, chunk, c, args.rounds))
                p = asyncio.run(measure(proxy_url, chunk, c, args.rounds))
                for metric in ("ttfb", "total"):
                    dp50, dp99 = pct(d[metric], 0.5), pct(d[metric], 0.99)
                    pp50, pp99 = pct(p[metric], 0.5), pct(p[metric], 0.99)
                    report.append({"concurrency": c, "metric": metric, "direct_p50": dp50, "direct_p99": dp99,
                                   "proxy_p50": pp50, "proxy_p99": pp99, "ratio_p50": pp50 / dp50,
                                   "ratio_p99": pp99 / dp99, "added_p50_ms": pp50 - dp50,
                                   "added_p99_ms": pp99 - dp99})
                ov = p["overhead"]
                print(f"c={c}: x-ctxgate-overhead-ms (pipeline + forwarding, inside ctxgate) "
                      f"p50 {pct(ov, 0.5):.2f} p99 {pct(ov, 0.99):.2f} mean {statistics.mean(ov):.2f}")
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(10)

    print(f"\n{'conc':>4} {'metric':>6} | {'direct p50':>10} {'p99':>8} | {'proxy p50':>10} {'p99':>8} | "
          f"{'ratio p50':>9} {'p99':>6} | {'added p50 ms':>12} {'p99':>8}")
    for r in report:
        print(f"{r['concurrency']:>4} {r['metric']:>6} | {r['direct_p50']:>10.2f} {r['direct_p99']:>8.2f} | "
              f"{r['proxy_p50']:>10.2f} {r['proxy_p99']:>8.2f} | {r['ratio_p50']:>9.2f} {r['ratio_p99']:>6.2f} | "
              f"{r['added_p50_ms']:>12.2f} {r['added_p99_ms']:>8.2f}")
    first = next(r for r in report if r["metric"] == "ttfb")
    print(f"\ngoal: p50 added time < 5 ms for a turn whose new tool output is {args.new_tokens} tokens: "
          f"measured {first['added_p50_ms']:.2f} ms (ttfb, concurrency {first['concurrency']})")


if __name__ == "__main__":
    main()
