"""Real sessions replayed turn by turn: prefix stability, pairing, thinking, untouched bytes.

Every conversation of every shared trajectory, in Anthropic, OpenAI Chat and OpenAI
Responses shape, in one process (first turns one by one, then a jump to the last two); a
restart on SQLite; and two processes sharing one Redis server. bench/bench_replay.py replays every turn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from ctxgate.conversation import parse
from ctxgate.pipeline import Pipeline, RequestInfo, build_pipeline
from ctxgate.settings import Settings
from ctxgate.store.decisions import MemoryDecisionStore
from tests.replay import GROUPS, MODELS, check, conversations, messages_prefix, requests_for, subset
from tests.store.redisdb import redis_url

pytestmark = pytest.mark.corpus
SHAPES = ("anthropic", "openai_chat")
ROOT = Path(__file__).resolve().parent.parent


async def replay(pipeline: Pipeline, bodies: list[bytes], shape: str, prev: bytes | None = None) -> bytes | None:
    for raw in bodies:
        r = await pipeline.run(raw, RequestInfo(fmt=shape, model=MODELS[shape]))  # type: ignore[arg-type]
        assert r.skip_reason not in ("error", "validation_failed", "time_budget"), r.error
        check(raw, r.body, shape)
        if prev is not None:
            assert r.body.startswith(messages_prefix(prev)), "prefix break"
        prev = r.body
    return prev


@pytest.mark.parametrize("shape", [*SHAPES, "openai_responses"])
@pytest.mark.parametrize("group", GROUPS)
async def test_every_conversation_is_prefix_stable(corpus: Path, group: str, shape: str) -> None:
    store = MemoryDecisionStore()
    pipeline = Pipeline(Settings(time_budget_ms=600_000), store, store)
    changed = kept = 0
    for conv in conversations(corpus, group):
        bodies = requests_for(conv, shape, corpus)
        chosen = subset(bodies)
        last = await replay(pipeline, chosen, shape)
        changed += last is not None and last != bodies[-1]
        if len(chosen) < len(bodies):
            # the requests between the first turns and the last two went upstream without ctxgate:
            # their tool outputs, old in a known session, must stay exactly as the provider saw them
            seen = len(parse(chosen[-3], shape).messages)
            raw = chosen[-2]
            r = await pipeline.run(raw, RequestInfo(fmt=shape, model=MODELS[shape]))  # type: ignore[arg-type]
            before, after = parse(raw, shape), parse(r.body, shape)
            for b in before.blocks:
                if seen <= b.message <= before.last_assistant:
                    assert after.blocks[b.index].text == b.text
                    kept += 1
    assert changed  # the replay did compress something
    assert kept  # and the jump exercised old blocks without decisions


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_first_call_with_a_long_history_then_turn_by_turn(corpus: Path, shape: str) -> None:
    store = MemoryDecisionStore()
    pipeline = Pipeline(Settings(time_budget_ms=600_000), store, store)
    for group in GROUPS:
        bodies = requests_for(conversations(corpus, group)[0], shape, corpus)
        mid = len(bodies) // 2  # a gateway plugin, or a resumed session, sends the history at once
        first = await pipeline.run(bodies[mid], RequestInfo(fmt=shape, model=MODELS[shape]))  # type: ignore[arg-type]
        assert first.counts.get("first_with_history", 0) > 0 and "old_kept" not in first.counts
        check(bodies[mid], first.body, shape)
        await replay(pipeline, bodies[mid + 1 : mid + 4], shape, first.body)


@pytest.mark.parametrize("shape", SHAPES)
async def test_prefix_stable_across_a_restart_with_sqlite(corpus: Path, tmp_path: Path, shape: str) -> None:
    settings = Settings(data_dir=tmp_path, time_budget_ms=600_000)
    for group in GROUPS:
        bodies = subset(requests_for(conversations(corpus, group)[0], shape, corpus))
        first = build_pipeline(settings)
        prev = await replay(first, bodies[:5], shape)
        await first.aclose()
        second = build_pipeline(settings)
        again = await second.run(bodies[4], RequestInfo(fmt=shape, model=MODELS[shape]))  # type: ignore[arg-type]
        assert again.body == prev
        await replay(second, bodies[5:], shape, prev)
        await second.aclose()


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("shape", SHAPES)
def test_prefix_stable_across_two_processes_sharing_redis(corpus: Path, tmp_path: Path, shape: str) -> None:
    url, tenant = redis_url(), "replay-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([sys.executable, "-m", "tests.replay_worker", url, tenant], cwd=ROOT, env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for group in GROUPS:
            prev = None
            bodies = subset(requests_for(conversations(corpus, group)[0], shape, corpus), first=6)
            for k, raw in enumerate(bodies):
                worker = workers[k % 2]  # requests alternate between the two replicas
                src, dst = tmp_path / f"{group}-{k}.in", tmp_path / f"{group}-{k}.out"
                src.write_bytes(raw)
                assert worker.stdin and worker.stdout
                worker.stdin.write(json.dumps({"raw": str(src), "out": str(dst), "fmt": shape,
                                               "model": MODELS[shape]}) + "\n")
                worker.stdin.flush()
                reply = json.loads(worker.stdout.readline())
                assert reply["skip_reason"] not in ("error", "validation_failed", "store_unavailable"), reply
                out = dst.read_bytes()
                check(raw, out, shape)
                if prev is not None:
                    assert out.startswith(messages_prefix(prev)), f"prefix break at request {k}"
                prev = out
    finally:
        for w in workers:
            assert w.stdin
            w.stdin.close()
            w.wait(timeout=30)
