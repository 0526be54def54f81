"""Where the session replay's dollars go: by compress-once decision and by tool.

    .venv/bin/python bench/bench_replay_breakdown.py [--corpus ../shared/corpus] [--shape anthropic]
                                                     [--top N]

Runs the replay of ``bench_replay.py`` (same bodies, same pipeline, memory store, no time budget)
and records every first-time decision the pipeline makes: the block's tool, the decision's reason
(``protected``, ``file_read``, ``compressed``, ``verbatim``, ``echo``, ``repeat``, ``duplicate``,
``small``, ``error_result``, ...) and its tokens before and after. Each new block is priced the way
the cache simulation prices it: written once at 1.25x the input price by the request that brings
it, then read at 0.1x by every later request of its conversation. Shares are of the replay's
cache-simulated dollars without ctxgate (every message, not only tool outputs).

This answers "what is left to save, and where": the rows with the most dollars and the least
saved are the ones a better compressor or policy would have to change.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_replay as replay  # noqa: E402

from ctxgate import tokens  # noqa: E402
from ctxgate.pipeline import Pipeline  # noqa: E402


@dataclass
class Seen:
    conv: str
    k: int  # index of the request that brought the block
    n: int  # requests in the conversation
    tool: str
    reason: str
    before: int
    after: int

    def usd(self, n_tokens: int) -> float:
        later_reads = self.n - self.k - 1
        weight = replay.CACHE_WRITE + replay.CACHE_READ * later_reads
        return n_tokens * weight * replay.INPUT_PER_MTOK / 1e6


class Recorder:
    """Wraps the pipeline's first-time decision and the replay loop to note each decision."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.conv, self.k, self.n = "", -1, 0

    def install(self) -> None:
        new_decision = Pipeline._new_decision
        run = Pipeline.run
        replay_conversation = replay.replay_conversation
        rec = self

        def recording_decision(self: Pipeline, b: Any, conv: Any, info: Any, *args: Any, **kw: Any) -> Any:
            d = new_decision(self, b, conv, info, *args, **kw)
            before = tokens.count(b.text, info.model).tokens
            after = before if d.value is None else tokens.count(d.value, info.model).tokens
            rec.seen.append(Seen(rec.conv, rec.k, rec.n, b.tool_name or "?", d.reason, before, after))
            return d

        async def counting_run(self: Pipeline, raw: bytes, info: Any) -> Any:
            rec.k += 1
            return await run(self, raw, info)

        async def conversation_start(conv: dict[str, Any], shape: str, score: Any, *args: Any) -> Any:
            bodies, _ = replay.requests_for(conv, shape, score)
            rec.conv, rec.k, rec.n = conv["id"], -1, len(bodies)
            return await replay_conversation(conv, shape, score, *args)

        Pipeline._new_decision = recording_decision  # type: ignore[method-assign]
        Pipeline.run = counting_run  # type: ignore[method-assign]
        replay.replay_conversation = conversation_start  # type: ignore[assignment]


def table(rows: dict[str, list[Seen]], total_usd: float, title: str, top: int) -> None:
    print(f"\n| {title} | blocks | tokens | USD share | saved (share of all USD) | saved of its own |")
    print("|---|---|---|---|---|---|")
    ranked = sorted(rows.items(), key=lambda kv: -sum(s.usd(s.before) for s in kv[1]))
    for name, seen in ranked[:top]:
        usd = sum(s.usd(s.before) for s in seen)
        saved = sum(s.usd(s.before - s.after) for s in seen)
        own = 100 * saved / usd if usd else 0.0
        print(
            f"| {name} | {len(seen)} | {sum(s.before for s in seen):,} | {100 * usd / total_usd:.2f}% | "
            f"{100 * saved / total_usd:.2f}% | {own:.0f}% |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    ap.add_argument("--shape", choices=["anthropic", "openai_chat"], default="anthropic")
    ap.add_argument("--top", type=int, default=12, help="rows of the per-tool table")
    args = ap.parse_args()
    rec = Recorder()
    rec.install()
    score = replay.load_score(args.corpus)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        out = asyncio.run(replay.run_shape(args.corpus, args.shape, score, Path(tmp), 600_000, 0, 3700.0))
    total = out["total"]
    usd_all = total["usd_without_cache_sim"]
    print(
        f"{args.shape}: {total['requests']} requests, cache-sim USD without / with ctxgate "
        f"{usd_all:.2f} / {total['usd_with_cache_sim']:.2f} (saved {total['usd_saved_pct']:.2f}%); "
        f"tool outputs {total['usd_share_tool_outputs_pct']:.1f}% of the dollars"
    )
    by_reason: dict[str, list[Seen]] = defaultdict(list)
    by_tool: dict[str, list[Seen]] = defaultdict(list)
    for s in rec.seen:
        by_reason[s.reason].append(s)
        by_tool[f"{s.tool} ({s.reason})"].append(s)
    table(by_reason, usd_all, "decision", len(by_reason))
    table(by_tool, usd_all, "tool (decision)", args.top)


if __name__ == "__main__":
    main()
