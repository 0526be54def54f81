"""POST /v1/compress: the contract field by field, identity, and every fail-open path."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ctxgate.pipeline import Pipeline, PipelineResult, RequestInfo, build_pipeline
from ctxgate.server import create_app
from ctxgate.server.service import detect_format
from ctxgate.settings import Settings

BIG = json.dumps([{"id": i, "name": f"item-{i}", "status": "ok", "score": i * 1.5} for i in range(200)], indent=2)


def anthropic_messages(output: str = BIG) -> list[dict[str, Any]]:
    return [
        {"role": "user", "content": "list the items"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                                           "input": {"command": "cat items.json"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": output}]},
    ]


def openai_messages(output: str = BIG) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "list the items"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "bash", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": output},
    ]


class RecordingPipeline(Pipeline):
    """The real pipeline, remembering what it was asked (to check options reach it)."""

    def __init__(self, settings: Settings) -> None:
        real = build_pipeline(settings)
        super().__init__(settings, real.decisions, real.originals)
        self.seen: list[tuple[bytes, RequestInfo]] = []

    async def run(self, raw: bytes, info: RequestInfo) -> PipelineResult:
        self.seen.append((raw, info))
        return await super().run(raw, info)


class ShorteningPipeline(Pipeline):
    """Replaces the BIG tool output by a short marker in the raw bytes, as a compressing pipeline does."""

    async def run(self, raw: bytes, info: RequestInfo) -> PipelineResult:
        needle = json.dumps(BIG)[1:-1].encode()
        body = raw.replace(needle, b"[200 items, see ccr:abc123]")
        return PipelineResult(body, 5000, 300, "o200k_base", "s-1", transforms=["json:table"],
                              ccr_hashes=["abc123"])


class FailingPipeline(Pipeline):
    async def run(self, raw: bytes, info: RequestInfo) -> PipelineResult:
        raise RuntimeError("engine exploded")


class ErrorReportingPipeline(Pipeline):
    async def run(self, raw: bytes, info: RequestInfo) -> PipelineResult:
        return PipelineResult(raw, 100, 100, "o200k_base", "s", skip_reason="store_unavailable",
                              error="StoreError: decisions down")


class SlowPipeline(Pipeline):
    async def run(self, raw: bytes, info: RequestInfo) -> PipelineResult:
        await asyncio.sleep(5)
        raise AssertionError("not reached")


class GarblingPipeline(Pipeline):
    async def run(self, raw: bytes, info: RequestInfo) -> PipelineResult:
        return PipelineResult(b'{"messages": []}', 100, 10, "o200k_base", "s")


def client(tmp_path: Path, pipeline_cls: type[Pipeline] | None = None, **kw: Any) -> TestClient:
    settings = Settings(data_dir=tmp_path, **kw)
    pipeline = None
    if pipeline_cls is RecordingPipeline:
        pipeline = RecordingPipeline(settings)
    elif pipeline_cls is not None:
        real = build_pipeline(settings)
        pipeline = pipeline_cls(settings, real.decisions, real.originals)
    return TestClient(create_app(settings, pipeline=pipeline))


def last_row(c: TestClient) -> dict[str, Any]:
    return c.get("/stats").json()["recent_requests"][-1]


@pytest.mark.parametrize(("messages", "fmt"), [
    (anthropic_messages(), "anthropic"),
    (openai_messages(), "openai_chat"),
    ([{"type": "function_call_output", "call_id": "c", "output": "x"}], "openai_responses"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}], "openai_chat"),
    ([{"role": "user", "content": "hi"}], "openai_chat"),
])
def test_detect_format(messages: list[dict[str, Any]], fmt: str) -> None:
    assert detect_format(messages) == fmt


def test_plain_text_with_system_is_anthropic() -> None:
    assert detect_format([{"role": "user", "content": "hi"}], has_system=True) == "anthropic"


def test_response_fields_and_types(tmp_path: Path) -> None:
    with client(tmp_path) as c:
        r = c.post("/v1/compress", json={"messages": anthropic_messages(), "model": "claude-sonnet-4-5"})
    assert r.status_code == 200
    j = r.json()
    for key, kind in [("messages", list), ("tokens_before", int), ("tokens_after", int), ("tokens_saved", int),
                      ("compression_ratio", float), ("transforms_applied", list), ("ccr_hashes", list),
                      ("compression_skipped", bool), ("request_id", str)]:
        assert isinstance(j[key], kind), key
    assert j["tokens_saved"] == j["tokens_before"] - j["tokens_after"] >= 0
    assert 0.0 <= j["compression_ratio"] <= 1.0
    if j["compression_skipped"]:
        assert j["skip_reason"] and j["messages"] == anthropic_messages() and j["compression_ratio"] == 1.0


def test_compressed_messages_are_parsed_back(tmp_path: Path) -> None:
    system = [{"type": "text", "text": "You are helpful.", "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": "Bash", "input_schema": {"type": "object"}}]
    with client(tmp_path, ShorteningPipeline) as c:
        j = c.post("/v1/compress", json={"messages": anthropic_messages(), "model": "claude-sonnet-4-5",
                                         "system": system, "tools": tools}).json()
        row = last_row(c)
    assert j["messages"][:2] == anthropic_messages()[:2]
    assert j["messages"][2]["content"][0]["content"] == "[200 items, see ccr:abc123]"
    assert (j["tokens_before"], j["tokens_after"], j["tokens_saved"]) == (5000, 300, 4700)
    assert j["compression_ratio"] == 0.06 and j["compression_skipped"] is False and j["skip_reason"] is None
    assert j["transforms_applied"] == ["json:table"] and j["ccr_hashes"] == ["abc123"]
    assert j["system"] == system and j["tools"] == tools
    assert j["cost_saved_usd"] == pytest.approx(4700 * 3.0 / 1e6)
    assert row["request_id"] == j["request_id"] and row["tokens_saved"] == 4700 and row["provider"] == "anthropic"


def test_real_pipeline_compresses_a_large_tool_output(tmp_path: Path) -> None:
    with client(tmp_path, time_budget_ms=5000) as c:
        j = c.post("/v1/compress", json={"messages": openai_messages(), "model": "gpt-4o"}).json()
    assert not j["compression_skipped"], j["skip_reason"]
    assert j["tokens_after"] < j["tokens_before"] and j["messages"][:3] == openai_messages()[:3]
    assert j["transforms_applied"]


def test_empty_messages(tmp_path: Path) -> None:
    with client(tmp_path) as c:
        j = c.post("/v1/compress", json={"messages": []}).json()
        row = last_row(c)
    assert j["messages"] == []
    assert j["tokens_before"] == j["tokens_after"] == j["tokens_saved"] == 0
    assert j["compression_ratio"] == 1.0
    assert row["model"] == "default" and row["tags"] == {"user-id": "anonymous"}


@pytest.mark.parametrize(("headers", "user"), [
    ({"x-maas-username": "alice", "x-headroom-user-id": "bob", "x-ctxgate-user": "carol"}, "alice"),
    ({"x-headroom-user-id": "bob", "x-ctxgate-user": "carol"}, "bob"),
    ({"x-ctxgate-user": "carol"}, "carol"),
    ({"x-ctxgate-user": "  "}, "anonymous"),
    ({}, "anonymous"),
])
def test_user_attribution(tmp_path: Path, headers: dict[str, str], user: str) -> None:
    with client(tmp_path) as c:
        c.post("/v1/compress", json={"messages": [{"role": "user", "content": "hi"}]}, headers=headers)
        assert last_row(c)["tags"] == {"user-id": user}
        by_user = c.get("/stats/insights").json()["by_user"]
    assert [u["user"] for u in by_user] == [user]


def test_options_reach_the_pipeline(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    pipeline = RecordingPipeline(settings)
    with TestClient(create_app(settings, pipeline=pipeline)) as c:
        r = c.post("/v1/compress", headers={"x-claude-code-session-id": "sess-9", "x-maas-username": "al"}, json={
            "messages": anthropic_messages(), "model": "claude-haiku-4-5", "min_tokens_to_compress": 50,
            "config": {"level": "lossless", "exclude_tools": ["Bash"], "compress_user_messages": False,
                       "unknown_knob": 1},
            "tokenBudget": 10, "fallback": "passthrough", "protect_recent": 2, "something_new": True})
    assert r.status_code == 200 and r.json()["within_token_budget"] is False
    raw, info = pipeline.seen[0]
    assert (info.fmt, info.model, info.level, info.exclude_tools, info.min_tokens) == (
        "anthropic", "claude-haiku-4-5", "lossless", ("Bash",), 50)
    assert (info.user, info.session_id) == ("al", "sess-9")
    assert json.loads(raw)["messages"] == anthropic_messages()


def test_compress_user_messages_true_is_rejected_clearly(tmp_path: Path) -> None:
    with client(tmp_path) as c:
        r = c.post("/v1/compress", json={"messages": [], "config": {"compress_user_messages": True}})
    assert r.status_code == 400 and "compress_user_messages" in r.json()["error"]["message"]


@pytest.mark.parametrize(("body", "status", "needle"), [
    (b"{not json", 400, "not valid JSON"),
    (b'{"model": "x"}', 422, "messages"),
    (b'{"messages": "hi"}', 422, "messages"),
    (b'{"messages": [1, 2]}', 422, "messages.0"),
    (b"[]", 422, "JSON object"),
    (b'{"messages": [], "config": {"level": "max"}}', 422, "config.level"),
    (b'{"messages": [], "protect_recent": -1}', 422, "protect_recent"),
])
def test_bad_requests(tmp_path: Path, body: bytes, status: int, needle: str) -> None:
    with client(tmp_path) as c:
        r = c.post("/v1/compress", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    assert needle in r.json()["error"]["message"]


@pytest.mark.parametrize("pipeline_cls", [FailingPipeline, GarblingPipeline])
def test_failures_inside_compression_fail_open(tmp_path: Path, pipeline_cls: type[Pipeline]) -> None:
    with client(tmp_path, pipeline_cls) as c:
        r = c.post("/v1/compress", json={"messages": anthropic_messages(), "model": "gpt-4o"})
        metrics = c.get("/metrics").text
        row = last_row(c)
    j = r.json()
    assert r.status_code == 200
    assert j["messages"] == anthropic_messages() and j["compression_skipped"] is True
    assert j["skip_reason"] == "error" and j["error"]
    assert j["tokens_before"] == j["tokens_after"] > 0 and j["compression_ratio"] == 1.0
    assert row["skip_reason"] == "error"
    assert "headroom_errors_total" in metrics


def test_pipeline_reported_error_fails_open(tmp_path: Path) -> None:
    with client(tmp_path, ErrorReportingPipeline) as c:
        j = c.post("/v1/compress", json={"messages": openai_messages()}).json()
    assert j["messages"] == openai_messages()
    assert (j["skip_reason"], j["error"]) == ("store_unavailable", "StoreError: decisions down")


def test_time_budget_is_enforced(tmp_path: Path) -> None:
    with client(tmp_path, SlowPipeline, time_budget_ms=20) as c:
        j = c.post("/v1/compress", json={"messages": openai_messages()}).json()
        row = last_row(c)
    assert j["skip_reason"] == "time_budget" and j["messages"] == openai_messages()
    assert row["total_latency_ms"] < 2000


def test_too_large_passes_back_untouched(tmp_path: Path) -> None:
    messages = openai_messages("x" * 3000)
    with client(tmp_path, FailingPipeline, max_body_bytes=2048) as c:
        j = c.post("/v1/compress", json={"messages": messages}).json()
    assert j["skip_reason"] == "too_large" and j["messages"] == messages and j["compression_skipped"]
    assert "error" not in j


@pytest.mark.parametrize("header", [("x-ctxgate-bypass", "1"), ("x-headroom-bypass", "true")])
def test_bypass_headers_skip(tmp_path: Path, header: tuple[str, str]) -> None:
    with client(tmp_path, FailingPipeline) as c:
        j = c.post("/v1/compress", json={"messages": anthropic_messages()}, headers=dict([header])).json()
        assert last_row(c)["skip_reason"] == "bypass"
    assert j["skip_reason"] == "bypass" and j["messages"] == anthropic_messages()
    assert j["tokens_before"] == j["tokens_after"] > 0


def test_every_call_is_recorded_and_ids_are_unique(tmp_path: Path) -> None:
    with client(tmp_path) as c:
        ids = [c.post("/v1/compress", json={"messages": [{"role": "user", "content": f"q{i}"}]}).json()["request_id"]
               for i in range(5)]
        stats = c.get("/stats").json()
    assert len(set(ids)) == 5
    assert stats["summary"]["api_requests"] == 5
    assert [r["request_id"] for r in stats["recent_requests"]] == ids  # oldest first, newest last


def test_lone_surrogates_and_odd_header_bytes_do_not_break_anything(tmp_path: Path) -> None:
    """Valid JSON that is not valid UTF-8 once decoded ("\\ud800") round-trips, and the ledger keeps working."""
    bodies = [b'{"messages":[{"role":"user","content":"\\ud800 x"}]}',
              b'{"messages":[{"role":"tool","tool_call_id":"a","content":"\\udc00' + b"y" * 5000 + b'"}]}',
              b'{"messages":[{"role":"user","content":"hi"}],"model":"\\ud800"}']
    with client(tmp_path) as c:
        for body in bodies:
            r = c.post("/v1/compress", content=body, headers=[(b"content-type", b"application/json"),
                                                              (b"x-maas-username", b"\xff\xfe")])
            assert r.status_code == 200
            assert json.loads(r.content)["messages"] == json.loads(body)["messages"]
        stats = c.get("/stats").json()
    assert stats["summary"]["api_requests"] == 3 and stats["ledger"]["dropped_rows_this_process"] == 0
    assert stats["recent_requests"][-1]["model"] == "?"


LOG = "\n".join(f"2025-01-01 12:00:{i % 60:02d} INFO worker-{i % 3} processed batch {i} ok" for i in range(300))


def test_protect_recent_never_changes_a_decided_block(tmp_path: Path) -> None:
    """Turn 1 compresses a tool output; on turn 2, with protect_recent covering it, the same bytes come back."""
    turn1 = openai_messages(LOG)
    headers = {"x-ctxgate-session-id": "sess-pr"}
    with client(tmp_path, time_budget_ms=5000) as c:
        first = c.post("/v1/compress", json={"messages": turn1, "model": "gpt-4o"}, headers=headers).json()
        assert not first["compression_skipped"], first["skip_reason"]
        turn2 = [*turn1, {"role": "assistant", "content": "the build passed"}, {"role": "user", "content": "thanks"}]
        second = c.post("/v1/compress", json={"messages": turn2, "model": "gpt-4o", "protect_recent": 10},
                        headers=headers).json()
    assert second["messages"][:4] == first["messages"]  # the compressed block is replayed byte for byte
    assert second["messages"][4:] == turn2[4:]


@pytest.mark.parametrize("headers", [{}, {"x-ctxgate-bypass": "1"}])
def test_big_bodies_take_the_off_loop_path(tmp_path: Path, headers: dict[str, str]) -> None:
    from ctxgate.server.service import OFF_LOOP_BYTES

    messages = openai_messages(LOG * (OFF_LOOP_BYTES // len(LOG) + 2))
    with client(tmp_path, time_budget_ms=5000) as c:
        r = c.post("/v1/compress", json={"messages": messages, "model": "gpt-4o"}, headers=headers)
    j = r.json()
    assert r.status_code == 200 and j["tokens_before"] > 50_000
    assert j["messages"][:3] == messages[:3]
    if j["compression_skipped"]:
        assert j["messages"] == messages
