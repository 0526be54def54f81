"""The pipeline end to end on request bytes: compress once, replay forever, fail open."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxgate import engine
from ctxgate import pipeline as pipeline_module
from ctxgate.conversation import anthropic
from ctxgate.errors import ConfigError, StoreError
from ctxgate.pipeline import Pipeline, RequestInfo, _validate, build_pipeline, decision_key, fingerprint
from ctxgate.settings import Settings
from ctxgate.store.decisions import MemoryDecisionStore, SqliteDecisionStore
from tests.factories import (
    anthropic_messages,
    anthropic_request,
    assert_only_spans_changed,
    big_json,
    big_log,
    openai_chat_messages,
    openai_chat_request,
    openai_responses_request,
)

MODEL = "claude-sonnet-4-5"
INFO = RequestInfo(fmt="anthropic", model=MODEL)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(clock: Clock | None = None, **settings: Any) -> tuple[Pipeline, MemoryDecisionStore]:
    clock = clock or Clock()
    store = MemoryDecisionStore(clock=clock)
    return Pipeline(Settings(time_budget_ms=60_000, **settings), store, store, clock=clock), store


def expected(text: str, tool: str = "Bash", args: dict[str, Any] | None = None, query: str = "go") -> str:
    ctx = engine.Context(tool_name=tool, tool_args=json.dumps(args or {"command": "x"}), query=query,
                         model=MODEL, min_tokens=250)
    return engine.compress(text, ctx).text


def tool_texts(body: bytes) -> list[str]:
    return [b.text for b in anthropic.parse(body).blocks]


T1 = [("user", "go"), ("call", "t1", "Bash", {"command": "x"}), ("result", "t1", big_log())]
T2 = T1 + [("call", "t2", "Bash", {"command": "x"}), ("result", "t2", big_json())]


async def test_first_request_of_a_session_decides_every_block() -> None:
    p, store = make()
    raw = anthropic_request(T2)
    r = await p.run(raw, INFO)
    assert r.skip_reason is None and r.error is None and r.changed
    assert tool_texts(r.body) == [expected(big_log()), expected(big_json())]
    assert r.counts["compressed"] == 2 and r.counts["first_with_history"] == 1
    conv = anthropic.parse(raw)
    assert_only_spans_changed(raw, r.body, [(b.start, b.end) for b in conv.blocks])
    assert r.tokens_after < r.tokens_before and r.estimator.startswith("claude")
    assert r.ccr_hashes and all([await store.get("default", k) for k in r.ccr_hashes])
    assert r.session_id == fingerprint("default", MODEL, conv.first_user)


async def test_known_session_replays_old_blocks_and_decides_only_new_ones() -> None:
    p, _ = make()
    r1 = await p.run(anthropic_request(T1), INFO)
    r2 = await p.run(anthropic_request(T2), INFO)
    assert r2.counts == {"replayed": 1, "compressed": 1}
    prefix = r1.body[: r1.body.rindex(b"]")]
    assert r2.body.startswith(prefix)
    r3 = await p.run(anthropic_request(T2), INFO)  # a retry is served from the decisions
    assert r3.body == r2.body and r3.counts == {"replayed": 2}


async def test_old_block_without_a_decision_stays_verbatim_in_a_known_session() -> None:
    p, store = make()
    r1 = await p.run(anthropic_request(T1), RequestInfo(fmt="anthropic", model=MODEL, level="off"))
    assert r1.skip_reason == "level_off" and r1.body == anthropic_request(T1)
    r2 = await p.run(anthropic_request(T2), INFO)
    assert r2.counts == {"old_kept": 1, "compressed": 1}
    assert tool_texts(r2.body) == [big_log(), expected(big_json())]
    assert len(store._decisions) == 1  # the old block was not recorded


async def test_cold_cache_compresses_old_blocks_once() -> None:
    clock = Clock()
    p, _ = make(clock)
    await p.run(anthropic_request(T1), RequestInfo(fmt="anthropic", model=MODEL, level="off"))
    clock.now += 301  # longer than Anthropic's 5-minute cache
    r = await p.run(anthropic_request(T2), INFO)
    assert r.counts == {"compressed": 2, "cold_cache": 1}
    clock.now += 10
    again = await p.run(anthropic_request(T2), INFO)
    assert again.body == r.body and again.counts == {"replayed": 2}


async def test_one_hour_ttl_keeps_the_cache_warm_for_an_hour() -> None:
    clock = Clock()
    p, _ = make(clock)
    hour = {"cache_control": {"type": "ephemeral", "ttl": "1h"}}
    await p.run(anthropic_request(T1, **hour), RequestInfo(fmt="anthropic", model=MODEL, level="off"))
    clock.now += 301
    r = await p.run(anthropic_request(T2, **hour), INFO)
    assert r.counts == {"old_kept": 1, "compressed": 1}


READ_EDIT = [
    ("user", "go"),
    ("call", "r1", "Read", {"file_path": "/a.py"}), ("result", "r1", "x = 1\n" * 300),
    ("call", "e1", "Edit", {"file_path": "/a.py", "old_string": "x = 1", "new_string": "x = 2"}),
    ("result", "e1", "The file /a.py has been updated."),
]


async def test_stale_reads_become_markers_only_when_the_cache_is_cold() -> None:
    clock = Clock()
    p, _ = make(clock)
    warm = await p.run(anthropic_request(READ_EDIT), INFO)
    assert tool_texts(warm.body)[0] == "x = 1\n" * 300 and warm.counts["protected"] == 2
    clock.now += 60
    turns = READ_EDIT + [("call", "b1", "Bash", {"command": "x"}), ("result", "b1", "ok")]
    assert tool_texts((await p.run(anthropic_request(turns), INFO)).body)[0] == "x = 1\n" * 300
    clock.now += 400
    cold = await p.run(anthropic_request(turns), INFO)
    marker = tool_texts(cold.body)[0]
    assert marker.startswith("[stale read of /a.py") and cold.counts["stale_read"] == 1
    (key,) = cold.ccr_hashes
    assert await p.original("default", key) == "x = 1\n" * 300
    assert await p.original("other-tenant", key) is None
    clock.now += 10
    assert tool_texts((await p.run(anthropic_request(turns), INFO)).body)[0] == marker


async def test_duplicate_output_becomes_a_reference_decided_on_arrival() -> None:
    p, _ = make()
    out = big_log(word="served")
    turns = [("user", "go"), ("call", "a", "Bash", {"command": "x"}), ("result", "a", out)]
    await p.run(anthropic_request(turns), INFO)
    turns += [("call", "b", "Bash", {"command": "x"}), ("result", "b", out)]
    r = await p.run(anthropic_request(turns), INFO)
    first, second = tool_texts(r.body)
    assert first == expected(out) and second.startswith("[same output as tool call a above; retrieve: ctx_")
    assert r.counts == {"replayed": 1, "duplicate": 1}
    turns += [("call", "c", "Bash", {"command": "y"}), ("result", "c", "done")]
    assert tool_texts((await p.run(anthropic_request(turns), INFO)).body)[:2] == [first, second]


async def test_protected_tools_file_reads_and_excluded_tools_stay_exact() -> None:
    p, _ = make()
    turns = [
        ("user", "go"),
        ("call", "r", "Read", {"file_path": "/a"}), ("result", "r", big_log(word="read")),
        ("call", "c", "Bash", {"command": "cd /x && cat a.log"}), ("result", "c", big_log(word="cat")),
        ("call", "m", "MyTool", {}), ("result", "m", big_log(word="mine")),
    ]
    raw = anthropic_request(turns)
    r = await p.run(raw, RequestInfo(fmt="anthropic", model=MODEL, exclude_tools=("MyTool",)))
    assert r.body == raw and r.skip_reason == "no_change"
    assert r.counts == {"protected": 2, "file_read": 1, "first_with_history": 2}


async def test_a_decision_of_one_session_never_rewrites_another_sessions_old_block() -> None:
    p, _ = make()
    a = RequestInfo(fmt="anthropic", model=MODEL, session_id="A")
    b_off = RequestInfo(fmt="anthropic", model=MODEL, session_id="B", level="off")
    b = RequestInfo(fmt="anthropic", model=MODEL, session_id="B")
    await p.run(anthropic_request(T1), b_off)  # B sent its log verbatim
    assert (await p.run(anthropic_request(T1), a)).changed  # A compresses the same log
    r = await p.run(anthropic_request(T2), b)
    assert tool_texts(r.body)[0] == big_log() and r.session_id == "B"


@pytest.mark.parametrize(
    ("fmt", "raw"),
    [
        ("openai_chat", openai_chat_request(T2)),
        ("openai_responses", openai_responses_request(T2)),
    ],
)
async def test_openai_formats(fmt: Any, raw: bytes) -> None:
    p, _ = make()
    r = await p.run(raw, RequestInfo(fmt=fmt, model="gpt-4o"))
    assert r.changed and r.counts["compressed"] == 2
    assert json.loads(r.body).keys() == json.loads(raw).keys()


class BrokenStore(MemoryDecisionStore):
    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail

    async def get_many(self, keys: list[str]) -> dict[str, str | None]:
        if self.fail == "get":
            raise StoreError("down")
        return await super().get_many(keys)

    async def put_many(self, decisions: dict[str, str | None]) -> None:
        if self.fail == "put":
            raise StoreError("down")
        await super().put_many(decisions)


@pytest.mark.parametrize("fail", ["get", "put"])
async def test_store_failure_sends_the_original(fail: str) -> None:
    store = BrokenStore(fail)
    p = Pipeline(Settings(time_budget_ms=60_000), store, store)
    raw = anthropic_request(T2)
    r = await p.run(raw, INFO)
    assert (r.body, r.skip_reason, r.error) == (raw, "store_unavailable", "down")
    assert r.tokens_before == r.tokens_after > 0


@pytest.mark.parametrize(
    ("raw", "info", "reason"),
    [
        (b"not json", INFO, "error"),
        (b'{"messages": 3}', INFO, "error"),
        (anthropic_request(T2), RequestInfo(fmt="nope", model=MODEL), "error"),  # type: ignore[arg-type]
        (anthropic_request([("user", "hi")]), INFO, "no_candidates"),
        (anthropic_request(T2), RequestInfo(fmt="anthropic", model=MODEL, level="off"), "level_off"),
    ],
)
async def test_pass_through_reasons(raw: bytes, info: RequestInfo, reason: str) -> None:
    p, _ = make()
    r = await p.run(raw, info)
    assert r.body == raw and r.skip_reason == reason and not r.changed
    assert (r.error is not None) == (reason == "error")


FIELDS = ("model", "stream", "stream_options")


async def test_model_and_fields_from_the_body() -> None:
    raw = anthropic_request(T2, stream=True)
    given, _ = make()
    r1 = await given.run(raw, INFO)
    from_body, _ = make()
    info = RequestInfo(fmt="anthropic", model="unknown", model_from_body=True, fields=FIELDS)
    r2 = await from_body.run(raw, info)
    # the same result as with the model given (the session fingerprint and the counts use it)
    assert (r2.body, r2.session_id, r2.tokens_before, r2.tokens_after) == (
        r1.body, r1.session_id, r1.tokens_before, r1.tokens_after)
    assert r2.model == MODEL and r2.fields == {"model": MODEL, "stream": True}
    assert r1.fields == {} and r1.model == MODEL
    # pass-through paths return the fields too, when the body was parsed
    off = await from_body.run(raw, RequestInfo(fmt="anthropic", level="off", model_from_body=True, fields=FIELDS))
    assert off.skip_reason == "level_off" and off.fields == {"model": MODEL, "stream": True}
    assert off.model == MODEL
    bad = await from_body.run(b"not json", info)
    assert bad.skip_reason == "error" and bad.fields is None and bad.model == "unknown"
    # the price floor applies to the body's model
    store = MemoryDecisionStore()
    cheap = Pipeline(Settings(price_floor_per_mtok=1.0, time_budget_ms=60_000), store, store,
                     price_of=lambda m: 0.25 if m == MODEL else None)
    assert (await cheap.run(raw, info)).skip_reason == "price_floor"


async def test_a_deferred_count_gives_the_same_numbers() -> None:
    raw1, raw2 = anthropic_request(T1), anthropic_request(T2)
    now, _ = make()
    later, _ = make()
    deferred = RequestInfo(fmt="anthropic", model=MODEL, defer_count=True)
    for raw in (raw1, raw2):  # the second request reuses the first one's counts
        r1 = await now.run(raw, INFO)
        r2 = await later.run(raw, deferred)
        assert r2.body == r1.body and r2.estimator == "pending" and r2.pending is not None
        await r2.count()
        assert (r2.tokens_before, r2.tokens_after, r2.estimator) == (r1.tokens_before, r1.tokens_after, r1.estimator)
        assert r2.pending is None and r1.pending is None
        await r2.count()  # once only
        assert r2.tokens_before == r1.tokens_before
    # pass-through paths defer too: parsed, and not parsed
    for raw, info in ((raw2, dataclasses.replace(deferred, level="off")), (b"not json", deferred)):
        r = await later.run(raw, info)
        assert r.body == raw and r.tokens_before == 0
        await r.count()
        assert r.tokens_before == r.tokens_after > 0 and r.estimator != "pending"


async def test_a_deferred_count_that_fails_falls_back_to_chars() -> None:
    p, _ = make()
    raw = anthropic_request(T2)
    r = await p.run(raw, RequestInfo(fmt="anthropic", model=MODEL, defer_count=True))

    def broken() -> Any:
        raise RuntimeError("counter gone")

    r.pending = broken
    await r.count()
    assert r.estimator == "chars/4" and r.tokens_before - r.tokens_after == r.removed > 0


@pytest.mark.parametrize("fail", ["get", "put"])
async def test_sqlite_reads_and_writes_of_a_request_fail_open_together(fail: str, tmp_path: Path) -> None:
    import sqlite3

    store = SqliteDecisionStore(tmp_path / "d.sqlite3")
    p = Pipeline(Settings(time_budget_ms=60_000), store, store)
    if fail == "get":
        store._db.execute("DROP TABLE decisions")
    else:
        def broken(*args: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        store._put_all = broken  # type: ignore[method-assign]
    raw = anthropic_request(T2)
    r = await p.run(raw, INFO)
    assert (r.body, r.skip_reason) == (raw, "store_unavailable") and r.error
    await p.aclose()


async def test_price_floor_and_body_size() -> None:
    store = MemoryDecisionStore()
    cheap = Pipeline(Settings(price_floor_per_mtok=1.0, time_budget_ms=60_000), store, store, price_of=lambda m: 0.25)
    assert (await cheap.run(anthropic_request(T2), INFO)).skip_reason == "price_floor"
    small = Pipeline(Settings(max_body_bytes=1024), store, store)
    assert (await small.run(anthropic_request(T2), INFO)).skip_reason == "too_large"


class Timer:
    """A timer that moves ``step`` seconds every time it is read."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


async def test_time_budget() -> None:
    store = MemoryDecisionStore()
    raw = anthropic_request(T2)
    late = Pipeline(Settings(time_budget_ms=10_000), store, store, timer=Timer(100.0))
    r = await late.run(raw, INFO)
    assert (r.body, r.skip_reason) == (raw, "time_budget")
    # 3 s per reading of a 10 s budget: the first new block is decided, the second is past the
    # soft deadline (70%) and stays verbatim and undecided
    store2 = MemoryDecisionStore()
    partial = Pipeline(Settings(time_budget_ms=10_000), store2, store2, timer=Timer(3.0))
    r = await partial.run(raw, INFO)
    assert r.counts.get("deferred") == 1 and len(store2._decisions) == 1


def spans_of(body: bytes) -> list[tuple[int, int]]:
    return [(m.start, m.end) for m in anthropic.parse(body).messages]


def check(out: bytes, conv: Any, sent: dict[int, str] | None = None, prev: Any = None,
          spans: list[tuple[int, int]] | None = None) -> tuple[str | None, Any]:
    return _validate(out.decode(), spans_of(out) if spans is None else spans, conv, "anthropic", sent or {}, prev)


async def test_validate_catches_changed_structure() -> None:
    raw = anthropic_request(T2)
    conv = anthropic.parse(raw)
    reason, checked = check(raw, conv)
    assert reason is None and checked is not None
    body = json.loads(raw)
    body["messages"].pop()
    assert "changed" in (check(json.dumps(body).encode(), conv)[0] or "")
    body = json.loads(raw)
    body["messages"][1]["content"][0]["id"] = "other"
    assert "changed" in (check(json.dumps(body).encode(), conv)[0] or "")
    assert "decided texts" in (check(raw, conv, {0: "other"})[0] or "")
    assert "not valid" in (check(b"{", conv, spans=spans_of(raw))[0] or "")
    assert "not valid" in (check(b"[]", conv, spans=spans_of(raw))[0] or "")
    # ranges that are not the messages, and a message list that is not the one the provider reads
    shifted = [(a + 1, b) for a, b in spans_of(raw)]
    assert "not valid" in (check(raw, conv, spans=shifted)[0] or "")
    twice = raw[:-1] + b', "messages": []}'
    assert "not the body's" in (check(twice, conv, spans=spans_of(raw))[0] or "")
    # a failure is never recorded for the next output to build on
    assert check(raw, conv, {0: "other"})[1] is None


async def test_validate_reads_back_only_what_the_previous_output_does_not_vouch_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw = anthropic_request(T2)
    conv = anthropic.parse(raw)
    _, checked = check(raw, conv)
    loads: list[str] = []

    def counting(text: str) -> Any:
        loads.append(text)
        return json.loads(text)

    monkeypatch.setattr(pipeline_module, "json", SimpleNamespace(loads=counting))
    longer = anthropic_request([*T2, ("call", "t3", "Bash", {"command": "y"}), ("result", "t3", "done")])
    assert check(longer, anthropic.parse(longer), prev=checked)[0] is None
    # the last message of the earlier output and the two new ones are read back; the rest was vouched for
    assert [json.loads(t)["role"] for t in loads] == ["user", "assistant", "user"]
    assert len(spans_of(longer)) == 7 and loads[0] == raw.decode()[slice(*spans_of(raw)[-1])]
    loads.clear()
    assert check(longer, anthropic.parse(longer))[0] is None and len(loads) == len(spans_of(longer)) + 1
    # the expectations differ where the outputs are the same bytes: read back, and caught
    assert "decided texts" in (check(raw, conv, {1: "other"}, prev=checked)[0] or "")
    # a previous output that differs early vouches for nothing after the difference
    other = anthropic_request([("user", "stop"), *T2[1:]])
    _, other_checked = check(other, anthropic.parse(other))
    assert check(raw, conv, prev=other_checked)[0] is None
    assert "decided texts" in (check(raw, conv, {0: "other"}, prev=other_checked)[0] or "")
    # the rest of the body is checked again when it changed
    twice = raw[:-1] + b', "messages": []}'
    assert "not the body's" in (check(twice, conv, prev=checked, spans=spans_of(raw))[0] or "")


async def test_active_sessions_and_keys() -> None:
    clock = Clock()
    p, _ = make(clock)
    await p.run(anthropic_request(T1), RequestInfo(fmt="anthropic", model=MODEL, tenant="t1", user="ann", session_id="s1"))
    clock.now += 100
    await p.run(anthropic_request(T1), RequestInfo(fmt="anthropic", model=MODEL, tenant="t2", session_id="s2"))
    rows = await p.active_sessions()
    assert [(r["tenant"], r["session_id"], r["requests"]) for r in rows] == [("t2", "s2", 1), ("t1", "s1", 1)]
    assert [r["user"] for r in await p.active_sessions("t1")] == ["ann"]
    assert await p.active_sessions(within_s=50) == rows[:1]
    assert decision_key("a", "s", "h", "Bash", "t1") != decision_key("b", "s", "h", "Bash", "t1")
    await p.ping()
    await p.aclose()


async def test_build_pipeline_opens_the_configured_store(tmp_path: Path) -> None:
    p = build_pipeline(Settings(data_dir=tmp_path))
    assert isinstance(p.decisions, SqliteDecisionStore) and (tmp_path / "decisions.sqlite3").exists()
    assert p.decisions is p.originals is p.sessions
    await p.aclose()
    assert isinstance(build_pipeline(Settings(decision_store="memory")).decisions, MemoryDecisionStore)
    with pytest.raises(ConfigError):
        build_pipeline(Settings(decision_store="redis"))
    with pytest.raises(ConfigError, match="workers"):
        build_pipeline(Settings(decision_store="memory", workers=2))


async def test_decisions_survive_a_restart_with_sqlite(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, time_budget_ms=60_000)
    p1 = build_pipeline(s)
    r1 = await p1.run(anthropic_request(T2), INFO)
    await p1.aclose()
    p2 = build_pipeline(s)
    r2 = await p2.run(anthropic_request(T2), INFO)
    assert r2.body == r1.body and r2.counts == {"replayed": 2}
    await p2.aclose()


async def test_a_change_that_does_not_shrink_the_block_is_not_made() -> None:
    p, _ = make()
    out = " ".join(f"w{i}" for i in range(45))  # about 90 tokens; the reference below is longer
    long_id = "toolu_" + "x" * 600
    turns = [("user", "go"), ("call", long_id, "Bash", {"command": "x"}), ("result", long_id, out),
             ("call", "b", "Bash", {"command": "x"}), ("result", "b", out)]
    r = await p.run(anthropic_request(turns), INFO)
    assert r.counts == {"small": 1, "no_gain": 1, "first_with_history": 1} and r.skip_reason == "no_change"


async def test_a_cache_control_moved_by_the_client_changes_nothing() -> None:
    p, _ = make()
    one = json.loads(anthropic_request(T1))
    one["messages"][-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    r1 = await p.run(json.dumps(one).encode(), INFO)
    two = json.loads(anthropic_request(T2))
    two["messages"][-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
    r2 = await p.run(json.dumps(two).encode(), INFO)
    assert r2.session_id == r1.session_id and r2.counts == {"replayed": 1, "compressed": 1}
    assert tool_texts(r2.body)[0] == tool_texts(r1.body)[0]
    assert json.loads(r2.body)["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


OUTPUTS = [big_log(), big_json(), big_log(word="served"), "short", "Traceback (most recent call last):\n  x\nValueError",
           big_json(80, seed="row")]
TOOLS = [("Bash", {"command": "make"}), ("Read", {"file_path": "/a.py"}), ("Bash", {"command": "cat /a.py"}),
         ("Edit", {"file_path": "/a.py", "old_string": "a", "new_string": "b"}), ("Grep", {"pattern": "x"})]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.integers(0, len(TOOLS) - 1), st.integers(0, len(OUTPUTS) - 1), st.sampled_from([1, 60, 400])),
        min_size=1, max_size=7,
    ),
    fmt=st.sampled_from(["anthropic", "openai_chat"]),
    start=st.integers(0, 3),
)
def test_property_prefix_stable_while_the_cache_is_warm(steps: list[tuple[int, int, int]], fmt: str, start: int) -> None:
    """Any conversation, replayed turn by turn: while the provider's cache is warm, every request starts
    with the previous request's messages byte for byte; pairing and other content never change."""
    from tests.replay import check, messages_prefix

    async def go() -> None:
        clock = Clock()
        p, _ = make(clock)
        turns: list[tuple[Any, ...]] = [("user", "go")]
        bodies: list[bytes] = []
        for k, (tool, out, _gap) in enumerate(steps):
            name, args = TOOLS[tool]
            turns += [("call", f"c{k}", name, args), ("result", f"c{k}", OUTPUTS[out])]
            msgs = anthropic_messages(turns) if fmt == "anthropic" else openai_chat_messages(turns)
            head = json.dumps({"model": MODEL, "messages": []})[:-2]
            bodies.append((head + ", ".join(json.dumps(m) for m in msgs) + "]}").encode())
        prev = None
        lifetime = 300 if fmt == "anthropic" else 3600
        for k, raw in enumerate(bodies[start:], start):
            gap = steps[k][2]
            clock.now += gap
            r = await p.run(raw, RequestInfo(fmt=fmt, model=MODEL))  # type: ignore[arg-type]
            assert r.skip_reason not in ("error", "validation_failed"), r.error
            check(raw, r.body, fmt)
            if prev is not None and gap <= lifetime:
                assert r.body.startswith(messages_prefix(prev))
            prev = r.body

    asyncio.run(go())


async def test_a_long_run_repeated_from_an_earlier_output_becomes_a_reference() -> None:
    p, store = make()
    first = "\n".join(f"{i}: {hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(120))
    later = "status: done\n" + first + "\nall 120 hashes checked"
    # the earlier output is a protected Read, so it goes upstream exactly
    turns = [("user", "go"), ("call", "a", "Read", {"file_path": "/h"}), ("result", "a", first),
             ("call", "b", "TaskOutput", {}), ("result", "b", later)]
    r = await p.run(anthropic_request(turns), INFO)
    assert r.counts == {"protected": 1, "repeat": 1, "first_with_history": 1}
    (key,) = r.ccr_hashes
    text = tool_texts(r.body)[1]
    assert text == f"status: done\n[120 lines same as lines 1-120 of the output of tool call a above; retrieve: {key}]" \
        "\nall 120 hashes checked"
    assert await store.get("default", key) == later


async def test_a_polled_output_repeating_a_shortened_one_says_so_and_compresses_the_rest() -> None:
    p, store = make()
    first = big_log(120, word="compiled")
    turns = [("user", "go"), ("call", "a", "TaskOutput", {"task_id": "t1"}), ("result", "a", first)]
    r1 = await p.run(anthropic_request(turns), INFO)
    assert tool_texts(r1.body)[0] != first  # the engine shortened it
    later = first + "\n" + big_log(60, word="served") + "\nERROR step 121 failed: timeout"
    turns += [("call", "b", "TaskOutput", {"task_id": "t1"}), ("result", "b", later)]
    r = await p.run(anthropic_request(turns), INFO)
    assert r.counts == {"replayed": 1, "repeat": 1}
    assert "repeat_lossy" in r.transforms
    text = tool_texts(r.body)[1]
    keys = [k for k in r.ccr_hashes if await store.get("default", k) == later]
    assert len(keys) == 1
    key = keys[0]
    assert text.startswith(f"[120 lines same as lines 1-120 of the full output of tool call a, shortened above; "
                           f"retrieve: {key}]\n")
    assert text.endswith("ERROR step 121 failed: timeout") and len(text) < len(big_log(60, word="served")) // 2


async def test_a_write_that_prints_what_it_wrote_points_at_its_own_input() -> None:
    """Write is protected, but its echo of the file it wrote is in the request already, byte for
    byte, in the call's input, which is never changed: the echo becomes a reference."""
    p, store = make()
    content = "\n".join(f"line {i}: {hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(60))
    numbered = "\n".join(f"{i + 1:>6}→{x}" for i, x in enumerate(content.split("\n")))
    out = f"The file /a.py has been updated. Here's the result of running `cat -n` on a snippet:\n{numbered}"
    turns = [("user", "go"), ("call", "w", "Write", {"file_path": "/a.py", "content": content}), ("result", "w", out)]
    raw = anthropic_request(turns)
    r = await p.run(raw, INFO)
    assert r.counts == {"echo": 1} and r.transforms == ["echo"]
    (key,) = r.ccr_hashes
    assert tool_texts(r.body) == [
        "The file /a.py has been updated. Here's the result of running `cat -n` on a snippet:\n"
        f'[60 lines numbered 1-60 in the form "     1→": lines 1-60 of the "content" argument of this Write call; '
        f"retrieve: {key}]"
    ]
    assert await store.get("default", key) == out
    assert_only_spans_changed(raw, r.body, [(b.start, b.end) for b in anthropic.parse(raw).blocks])


async def test_a_read_of_a_file_the_agent_wrote_points_at_the_write_only_when_whole() -> None:
    content = "\n".join(f"x{i} = {hashlib.sha256(str(i).encode()).hexdigest()}" for i in range(40))
    read_back = "\n".join(f"{i + 1:>6}→{x}" for i, x in enumerate(content.split("\n")))
    edited = read_back.replace("x20 =", "y20 =")
    turns = [("user", "go"), ("call", "w", "Write", {"file_path": "/a.py", "content": content}),
             ("result", "w", "File created successfully at: /a.py"),
             ("call", "r", "Read", {"file_path": "/a.py"}), ("result", "r", read_back),
             ("call", "s", "Read", {"file_path": "/a.py"}), ("result", "s", edited)]
    p, _ = make()
    r = await p.run(anthropic_request(turns), INFO)
    assert r.counts["echo"] == 1 and r.counts["protected"] == 2  # the Write's result and the edited read
    texts = tool_texts(r.body)
    assert texts[1].startswith('[40 lines numbered 1-40 in the form "     1→": lines 1-40 of the "content" argument '
                               "of the Write call w above; retrieve: ctx_") and texts[2] == edited


async def test_a_protected_read_repeating_an_earlier_read_stays_exact_unless_runs_are_allowed() -> None:
    lines = [f"{i + 1:>6}→def f{i}(): return {hashlib.sha256(str(i).encode()).hexdigest()[:12]}" for i in range(80)]
    second = "\n".join([*lines[:40], "    41→def inserted(): pass", *lines[41:]])
    turns = [("user", "go"), ("call", "a", "Read", {"file_path": "/h.py"}), ("result", "a", "\n".join(lines)),
             ("call", "b", "Read", {"file_path": "/h.py"}), ("result", "b", second)]
    raw = anthropic_request(turns)
    p, _ = make()
    r = await p.run(raw, INFO)
    assert r.body == raw and r.counts == {"protected": 2, "first_with_history": 1}
    p, _ = make(protected_dedupe="runs")
    r = await p.run(raw, INFO)
    assert r.counts == {"protected": 1, "repeat": 1, "first_with_history": 1}
    (key,) = r.ccr_hashes
    assert tool_texts(r.body)[1] == (
        f"[40 lines same as lines 1-40 of the output of tool call a above; retrieve: {key}]\n"
        f"    41→def inserted(): pass\n"
        f"[39 lines same as lines 42-80 of the output of tool call a above; retrieve: {key}]"
    )


async def test_a_protected_read_of_lines_read_before_points_at_that_read_only_when_whole() -> None:
    """A Read of lines the request already holds byte for byte in one earlier Read (same lines,
    same numbers, not edited since) becomes a pointer to them; one that also has other lines
    (an edit since, a wider range) stays exact by default."""
    lines = [f"{i + 1:>6}→def f{i}(): return {hashlib.sha256(str(i).encode()).hexdigest()[:12]}" for i in range(80)]
    part = "\n".join(lines[20:50])
    wider = "\n".join(lines[20:50] + ["    81→def new(): pass"])
    turns = [("user", "go"), ("call", "a", "Read", {"file_path": "/h.py"}), ("result", "a", "\n".join(lines)),
             ("call", "b", "Read", {"file_path": "/h.py", "offset": 21, "limit": 30}), ("result", "b", part),
             ("call", "c", "Read", {"file_path": "/h.py", "offset": 21}), ("result", "c", wider)]
    raw = anthropic_request(turns)
    p, store = make()
    r = await p.run(raw, INFO)
    assert r.counts == {"protected": 2, "repeat": 1, "first_with_history": 2}
    (key,) = r.ccr_hashes
    texts = tool_texts(r.body)
    assert texts[1] == f"[30 lines same as lines 21-50 of the output of tool call a above; retrieve: {key}]"
    assert texts[0] == "\n".join(lines) and texts[2] == wider
    assert await store.get("default", key) == part
    assert_only_spans_changed(raw, r.body, [(b.start, b.end) for b in anthropic.parse(raw).blocks])


def tokens_by_definition(raw: bytes, model: str) -> int:
    """``tokens_before`` as documented: outputs as decoded text, messages without them, the rest as JSON text."""
    from ctxgate import tokens

    conv = anthropic.parse(raw)
    text, total = conv.text, 0
    for mi, m in enumerate(conv.messages):
        skeleton, pos = [], m.start
        for b in (b for b in conv.blocks if b.message == mi):
            skeleton.append(text[pos : b.start])
            total += tokens.count(b.text, model).tokens
            pos = b.end
        skeleton.append(text[pos : m.end])
        total += tokens.count("".join(skeleton), model).tokens
    rest = text[: conv.messages[0].start] + text[conv.messages[-1].end :]
    return total + tokens.count(rest, model).tokens


async def test_a_session_gives_the_same_results_with_and_without_its_previous_request() -> None:
    """The memo of the session's previous request (parse, hashes, counts, validated output) is an
    optimization only: a pipeline that forgets it before every request answers the same bytes."""
    turns = [*T2, ("call", "t3", "Bash", {"command": "y"}), ("result", "t3", big_log(300, "served")),
             ("call", "t4", "Bash", {"command": "z"}), ("result", "t4", big_json())]
    bodies = [anthropic_request(turns[:k]) for k in (3, 5, 7, 9)]
    # the same session id for another conversation, and a body that shares only a prefix
    bodies += [anthropic_request([("user", "elsewhere"), *T2[1:]]), bodies[-1], bodies[1][:-3] + b"]}", bodies[-1]]
    info = RequestInfo(fmt="anthropic", model=MODEL, session_id="s")
    memo, _ = make()
    fresh, _ = make()
    for raw in bodies:
        fresh._memos.clear()
        a, b = await memo.run(raw, info), await fresh.run(raw, info)
        assert (a.body, a.tokens_before, a.tokens_after, a.counts, a.skip_reason) == (
            b.body, b.tokens_before, b.tokens_after, b.counts, b.skip_reason)
        if a.skip_reason != "error":
            assert a.tokens_before == tokens_by_definition(raw, MODEL)
    assert memo._memos and len(fresh._memos) == 1


async def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline_module, "_MEMO_SESSIONS", 3)
    p, _ = make()
    for i in range(6):
        await p.run(anthropic_request(T1), RequestInfo(fmt="anthropic", model=MODEL, session_id=f"s{i}"))
    assert [k[2] for k in p._memos] == ["s3", "s4", "s5"]
    assert p._memo_chars == sum(2 * len(m.conv.text) for m in p._memos.values())
    monkeypatch.setattr(pipeline_module, "_MEMO_CHARS", 4 * len(anthropic_request(T1)))
    await p.run(anthropic_request(T2), RequestInfo(fmt="anthropic", model=MODEL, session_id="big"))
    assert "big" not in [k[2] for k in p._memos] and p._memo_chars <= 4 * len(anthropic_request(T1))
