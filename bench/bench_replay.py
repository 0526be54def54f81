"""Session replay: every shared trajectory, turn by turn, through the conversation layer.

    .venv/bin/python bench/bench_replay.py [--corpus ../shared/corpus] [--shape anthropic|openai_chat|both]
                                           [--json out.json] [--mirror DIR]

Request k holds the first k turns (Anthropic shape: up to the k-th user message of
``score.py export-anthropic``'s body; OpenAI shape: up to the k-th assistant message).
Bodies are built so that request k+1 starts with the bytes of request k's messages, as
a real client sends them. Each request goes through ``Pipeline.run`` (memory store; no time
budget by default, so the numbers do not depend on the machine's load: ``--time-budget-ms 100``
runs it under the server's default budget).

Reported, with and without ctxgate:
- tokens sent over the whole replay (Claude estimate for the Anthropic shape, o200k for OpenAI);
- dollars under a simulated provider prompt cache: each request reads from the cache the
  longest message prefix it shares with the previous request (system and tools included)
  at 0.1x the input price, and writes the rest at 1.25x; Sonnet prices, $3 per 1M input;
- prefix breaks: requests whose messages do not start with every message of the previous
  request, byte for byte (must be 0); with ``--idle-every N`` a pause longer than the cache
  lifetime comes before every Nth request of a conversation: those requests read nothing from
  the cache (with or without ctxgate) and may change old blocks (cold cache), which is no break;
- needle recall of the compressed tool outputs (``score.py score``, all and novel needles);
- the ceiling: the share of the cache-simulated dollars (without ctxgate) spent on tool outputs
  that the protection policy lets change at all (not a protected tool, not a file read). No
  compressor can save more than this under the policy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxgate import conversation, tokens
from ctxgate.conversation import policy as pol
from ctxgate.pipeline import Pipeline, RequestInfo, WireFormat
from ctxgate.settings import Settings
from ctxgate.store.decisions import MemoryDecisionStore

INPUT_PER_MTOK = 3.0  # Claude Sonnet input price, USD per 1M tokens
CACHE_READ, CACHE_WRITE = 0.1, 1.25
HEADROOM_SAVED = 0.132  # headroom-ai 0.42 on the same replay (by rewriting cached messages)
MODELS = {"anthropic": "claude-sonnet-4-5", "openai_chat": "gpt-4o"}


def load_score(corpus: Path) -> Any:
    sys.path.insert(0, str(corpus))
    import score  # type: ignore[import-not-found]

    return score


def requests_for(conv: dict[str, Any], shape: str, score: Any) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The request bodies of one conversation, and the messages of the longest one."""
    model = MODELS[shape]
    if shape == "anthropic":
        body = score.to_anthropic(conv)
        msgs = body["messages"]
        head = json.dumps({"model": model, "max_tokens": 4096, "system": body.get("system", "")}, ensure_ascii=False)
        cuts = [i + 1 for i, m in enumerate(msgs) if m["role"] == "user"]
    else:
        msgs = conv["messages"]
        head = json.dumps({"model": model, "max_tokens": 4096}, ensure_ascii=False)
        cuts = [i for i, m in enumerate(msgs) if m["role"] == "assistant" and i > 0]
        if msgs and msgs[-1]["role"] != "assistant":
            cuts.append(len(msgs))
    prefix = head[:-1] + ', "messages": ['
    parts = [json.dumps(m, ensure_ascii=False) for m in msgs]
    return [(prefix + ", ".join(parts[:k]) + "]}").encode() for k in cuts], msgs


@dataclass
class Tally:
    requests: int = 0
    tokens_before: int = 0
    tokens_after: int = 0
    usd_before: float = 0.0
    usd_after: float = 0.0
    prefix_breaks: int = 0
    usd_eligible: float = 0.0
    usd_tool_outputs: float = 0.0
    cold_requests: int = 0
    skips: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, other: Tally) -> None:
        for name in ("requests", "tokens_before", "tokens_after", "usd_before", "usd_after", "prefix_breaks",
                     "usd_eligible", "usd_tool_outputs", "cold_requests", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.skips, other.skips), (self.counts, other.counts)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v

    def report(self) -> dict[str, Any]:
        saved_t = 1 - self.tokens_after / self.tokens_before if self.tokens_before else 0.0
        saved_usd = 1 - self.usd_after / self.usd_before if self.usd_before else 0.0
        return {
            "requests": self.requests,
            "tokens_without": self.tokens_before,
            "tokens_with": self.tokens_after,
            "tokens_saved_pct": round(100 * saved_t, 2),
            "usd_without_cache_sim": round(self.usd_before, 4),
            "usd_with_cache_sim": round(self.usd_after, 4),
            "usd_saved_pct": round(100 * saved_usd, 2),
            "prefix_breaks": self.prefix_breaks,
            "requests_after_idle": self.cold_requests,
            "usd_share_tool_outputs_pct": round(100 * self.usd_tool_outputs / self.usd_before, 2) if self.usd_before else 0,
            "usd_share_eligible_pct": round(100 * self.usd_eligible / self.usd_before, 2) if self.usd_before else 0,
            "skips": dict(sorted(self.skips.items())),
            "blocks": dict(sorted(self.counts.items())),
            "ms_per_request": round(1000 * self.seconds / max(1, self.requests), 2),
        }


def _message_texts(conv: conversation.Conversation) -> tuple[str, list[str]]:
    """The body outside its messages (system, tools, options) and each message's JSON text."""
    text = conv.text
    msgs = [text[m.start : m.end] for m in conv.messages]
    rest = text[: conv.messages[0].start] + text[conv.messages[-1].end :] if conv.messages else text
    return rest, msgs


_POLICY = pol.Policy.from_settings(Settings())


def _tool_output_usd(conv: conversation.Conversation, shared: int, model: str) -> tuple[float, float]:
    """Dollars of this request spent on tool outputs: all of them, and those the policy lets change."""
    every = eligible = 0.0
    for b in conv.blocks:
        n = tokens.count(b.text, model).tokens
        usd = n * (CACHE_READ if b.message < shared else CACHE_WRITE) * INPUT_PER_MTOK / 1e6
        every += usd
        if _POLICY.protection(b, conv.calls.get(b.tool_id), 10**9) not in ("protected", "file_read"):
            eligible += usd
    return every, eligible


class CacheSim:
    """Prompt-cache dollars of a sequence of requests: shared message prefix read, the rest written."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.prev: list[str] | None = None
        self.prev_rest: str | None = None

    def cost(self, rest: str, msgs: list[str], cold: bool = False) -> tuple[int, float, bool, int]:
        """(tokens, dollars, prefix broken, messages read from the cache) of one request.

        ``cold``: the request comes after an idle pause longer than the cache lifetime, so nothing
        is read from the cache and a changed prefix is no break.
        """
        count = lambda t: tokens.count(t, self.model).tokens  # noqa: E731
        per = [count(m) for m in msgs]
        total = count(rest) + sum(per)
        shared, broken, n = 0, False, 0
        if cold:
            pass
        elif self.prev is not None and rest == self.prev_rest:
            while n < min(len(self.prev), len(msgs)) and self.prev[n] == msgs[n]:
                n += 1
            broken = n < len(self.prev)
            shared = count(rest) + sum(per[:n])
        elif self.prev is not None:
            broken = True
        self.prev, self.prev_rest = msgs, rest
        usd = (CACHE_READ * shared + CACHE_WRITE * (total - shared)) * INPUT_PER_MTOK / 1e6
        return total, usd, broken, n


class Clock:
    """Simulated wall clock: a few seconds per request, and an idle pause every ``idle_every`` requests."""

    def __init__(self, idle_every: int, idle_s: float) -> None:
        self.now = 1_700_000_000.0
        self.idle_every, self.idle_s = idle_every, idle_s

    def __call__(self) -> float:
        return self.now

    def step(self, k: int) -> bool:
        """Advance to request ``k`` of a conversation; True when an idle pause came before it."""
        idle = self.idle_every > 0 and k > 0 and k % self.idle_every == 0
        self.now += self.idle_s if idle else 5.0
        return idle


async def replay_conversation(
    conv: dict[str, Any], shape: str, score: Any, pipeline: Pipeline, clock: Clock
) -> tuple[Tally, bytes | None]:
    fmt: WireFormat = "anthropic" if shape == "anthropic" else "openai_chat"
    model = MODELS[shape]
    bodies, _ = requests_for(conv, shape, score)
    tally = Tally()
    before_sim, after_sim = CacheSim(model), CacheSim(model)
    last = None
    for k, raw in enumerate(bodies):
        cold = clock.step(k)
        tally.cold_requests += cold
        t0 = time.perf_counter()
        r = await pipeline.run(raw, RequestInfo(fmt=fmt, model=model, tenant="bench", session_id=conv["id"]))
        tally.seconds += time.perf_counter() - t0
        tally.requests += 1
        if r.skip_reason:
            tally.skips[r.skip_reason] = tally.skips.get(r.skip_reason, 0) + 1
        for k, v in r.counts.items():
            tally.counts[k] = tally.counts.get(k, 0) + v
        parsed = conversation.parse(raw, fmt)
        n0, usd0, _, shared = before_sim.cost(*_message_texts(parsed), cold=cold)
        n1, usd1, broken, _ = after_sim.cost(*_message_texts(conversation.parse(r.body, fmt)), cold=cold)
        every, eligible = _tool_output_usd(parsed, shared, model)
        tally.usd_tool_outputs += every
        tally.usd_eligible += eligible
        tally.tokens_before += n0
        tally.tokens_after += n1
        tally.usd_before += usd0
        tally.usd_after += usd1
        tally.prefix_breaks += broken
        last = r.body
    return tally, last


def mirror_outputs(conv: dict[str, Any], shape: str, last: bytes | None, out: Path, score: Any) -> None:
    """Write the compressed text of every tool message as ``tool_outputs/<key>.txt`` for score.py."""
    if last is None:
        return
    fmt = "anthropic" if shape == "anthropic" else "openai_chat"
    sent = {b.tool_id: b.text for b in conversation.parse(last, fmt).blocks if b.part <= 0}
    d = out / "tool_outputs"
    d.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(conv["messages"]):
        if m["role"] == "tool" and m.get("tool_call_id") in sent:
            (d / (score.tool_key(conv["id"], i) + ".txt")).write_text(sent[m["tool_call_id"]], encoding="utf-8")


def needle_recall(corpus: Path, mirror: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "r.json"
        subprocess.run(
            [sys.executable, str(corpus / "score.py"), "score", "--compressed", str(mirror), "--types",
             "trajectories", "--missing", "original", "--json", str(report), "--corpus", str(corpus)],
            check=True, capture_output=True,
        )
        r = json.loads(report.read_text())["trajectories"]
    return {k: r.get(k) for k in ("needles", "needle_recall_all", "needle_recall_novel", "needle_recall_turn1",
                                  "ratio_o200k")}


async def run_shape(
    corpus: Path, shape: str, score: Any, mirror: Path, budget_ms: int, idle_every: int, idle_s: float
) -> dict[str, Any]:
    clock = Clock(idle_every, idle_s)
    store = MemoryDecisionStore(clock=clock)
    pipeline = Pipeline(Settings(time_budget_ms=budget_ms), store, store, clock=clock)
    groups: dict[str, Any] = {}
    total = Tally()
    for path in sorted((corpus / "trajectories").glob("*.jsonl")):
        if path.name == "needles.jsonl":
            continue
        group = Tally()
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            conv = json.loads(line)
            tally, last = await replay_conversation(conv, shape, score, pipeline, clock)
            mirror_outputs(conv, shape, last, mirror, score)
            group.add(tally)
        groups[path.stem] = group.report()
        total.add(group)
    await pipeline.aclose()
    return {"total": total.report(), "groups": groups, "needles": needle_recall(corpus, mirror)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    ap.add_argument("--shape", choices=["anthropic", "openai_chat", "both"], default="both")
    ap.add_argument("--json", type=Path, help="also write the full report here")
    ap.add_argument("--mirror", type=Path, help="keep the compressed tool outputs here (tool_outputs/*.txt)")
    ap.add_argument("--idle-every", type=int, default=0,
                    help="pause before every Nth request of a conversation (0: never), to replay cold caches")
    ap.add_argument("--idle-s", type=float, default=3700.0,
                    help="length of each pause (default: longer than every provider's cache lifetime)")
    ap.add_argument("--time-budget-ms", type=int, default=600_000,
                    help="the pipeline's time budget (default: none in practice; 100 is the server default)")
    args = ap.parse_args()
    score = load_score(args.corpus)
    shapes = ["anthropic", "openai_chat"] if args.shape == "both" else [args.shape]
    out: dict[str, Any] = {}
    for shape in shapes:
        with tempfile.TemporaryDirectory() as tmp:
            mirror = (args.mirror / shape) if args.mirror else Path(tmp)
            out[shape] = asyncio.run(
                run_shape(args.corpus, shape, score, mirror, args.time_budget_ms, args.idle_every, args.idle_s)
            )
        t, nd = out[shape]["total"], out[shape]["needles"]
        print(f"== {shape}: {t['requests']} requests, {t['ms_per_request']} ms/request")
        print(f"   tokens sent     without {t['tokens_without']:>11,}  with {t['tokens_with']:>11,}  "
              f"saved {t['tokens_saved_pct']:.2f}%")
        print(f"   cache-sim USD   without {t['usd_without_cache_sim']:>11.2f}  with {t['usd_with_cache_sim']:>11.2f}  "
              f"saved {t['usd_saved_pct']:.2f}% (target >= {100 * HEADROOM_SAVED:.1f}%)")
        print(f"   prefix breaks   {t['prefix_breaks']} (requests after an idle pause: {t['requests_after_idle']})"
              f"   skips {t['skips']}")
        print(f"   ceiling         tool outputs are {t['usd_share_tool_outputs_pct']:.2f}% of the dollars; those the "
              f"policy lets change {t['usd_share_eligible_pct']:.2f}%")
        print(f"   needle recall   all {nd['needle_recall_all']}  novel {nd['needle_recall_novel']}  "
              f"({nd['needles']} needles; tool-output ratio {nd['ratio_o200k']})")
        print(f"   blocks          {t['blocks']}")
        for g, r in out[shape]["groups"].items():
            print(f"   {g:34s} tokens saved {r['tokens_saved_pct']:6.2f}%  USD saved {r['usd_saved_pct']:6.2f}%  "
                  f"breaks {r['prefix_breaks']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
