"""Proxy routes against an injected upstream transport (fast), then the official SDKs
against ctxgate and a fake upstream, both under real uvicorn on loopback (slow)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from ctxgate.pipeline import RequestInfo, build_pipeline
from ctxgate.server import create_app
from ctxgate.server.proxy import pick_provider, request_identity, splice_include_usage
from ctxgate.settings import Settings
from ctxgate.store.base import LedgerRow
from tests.server.fake_upstream import (
    FakeUpstream,
    Reply,
    RowTap,
    anthropic_json,
    anthropic_stream,
    default_reply,
    openai_chat_stream,
    proxy_app,
    responses_stream,
    serve,
)

MODEL = "claude-sonnet-4-6"


def build_log(n: int = 300) -> str:
    lines = []
    for i in range(n):
        if i % 97 == 42:
            lines.append(f"2025-10-01T12:{i % 60:02d}:07Z ERROR worker-{i % 7} job {i} failed: timeout after 30s")
        else:
            lines.append(f"2025-10-01T12:{i % 60:02d}:07Z INFO  worker-{i % 7} processed batch {i} in {i % 13}ms ok")
    return "\n".join(lines)


def anthropic_body(*, stream: bool = False, log: str | None = None) -> bytes:
    body = {
        "model": MODEL,
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "You are a coding agent.", "cache_control": {"type": "ephemeral"}}],
        "tools": [{"name": "Bash", "description": "Run a command",
                   "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": [
            {"role": "user", "content": "Why does the job fail?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                                               "input": {"command": "cat worker.log"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": log if log is not None else build_log()}]},
        ],
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def chat_body(*, stream: bool = True, extra: str = "") -> bytes:
    return (
        b'{"model":"gpt-4.1","messages":[{"role":"user","content":"list files"},'
        b'{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function",'
        b'"function":{"name":"run_shell","arguments":"{\\"cmd\\": \\"ls\\"}"}}]},'
        b'{"role":"tool","tool_call_id":"call_1","content":' + json.dumps(build_log(200)).encode() + b"}],"
        + (b'"stream":true' if stream else b'"stream":false') + extra.encode() + b"}"
    )


# --- unit level: injected MockTransport -----------------------------------------------------


class Recorded:
    """An httpx MockTransport handler answering like a provider and keeping what it got."""

    def __init__(self, reply: Reply | None = None, exc: Exception | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.reply, self.exc = reply, exc

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.requests.append(request)
        self.bodies.append(body)
        if self.exc is not None:
            raise self.exc
        reply = self.reply or default_reply(request.method, request.url.path, body)
        return httpx.Response(reply.status, headers=reply.headers, stream=Chunks(reply.chunks))


class Chunks(httpx.AsyncByteStream):
    """A response body that arrives in the given chunks."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def make_app(tmp_path: Path, handler: Recorded, **overrides: Any):
    settings = Settings(
        data_dir=tmp_path, ledger_store="memory", decision_store="memory",
        anthropic_upstream=overrides.pop("anthropic_upstream", "http://anthropic.test"),
        openai_upstream=overrides.pop("openai_upstream", "http://openai.test/v1"), **overrides,
    )
    return create_app(settings, upstream_transport=httpx.MockTransport(handler)), settings


def rows(client: TestClient) -> list[LedgerRow]:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    client.portal.call(ctx.recorder.flush)  # type: ignore[union-attr]
    return list(reversed(client.portal.call(ctx.ledger.recent, 50)))  # type: ignore[union-attr]


def expected_body(settings: Settings, raw: bytes, fmt: str, **info: Any) -> bytes:
    """What a fresh pipeline makes of ``raw``: compression is a pure function of the content."""
    pipeline = build_pipeline(settings.model_copy(update={"decision_store": "memory"}))

    async def go() -> bytes:
        try:
            return (await pipeline.run(raw, RequestInfo(fmt=fmt, **info))).body  # type: ignore[arg-type]
        finally:
            await pipeline.aclose()

    return asyncio.run(go())


CLIENT_HEADERS = {
    "x-api-key": "sk-ant-secret",
    "anthropic-version": "2023-06-01",
    "anthropic-beta": "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31",
    "user-agent": "claude-cli/2.0.14 (external, cli)",
    "x-stainless-lang": "js",
    "x-stainless-retry-count": "0",
    "x-app": "cli",
    "x-claude-code-session-id": "sess-123",
    "x-ctxgate-user": "alice",
    "x-ctxgate-level": "balanced",
    "connection": "keep-alive, x-drop-me",
    "x-drop-me": "hop",
    "keep-alive": "timeout=5",
}


def test_messages_forwards_pipeline_output_headers_and_records_billing(tmp_path: Path) -> None:
    handler = Recorded()
    app, settings = make_app(tmp_path, handler)
    raw = anthropic_body()
    with TestClient(app) as client:
        r = client.post("/v1/messages?beta=true", content=raw, headers=CLIENT_HEADERS)
        assert r.status_code == 200
        assert r.content == anthropic_json()
        got = rows(client)
    req = handler.requests[0]
    assert str(req.url) == "http://anthropic.test/v1/messages?beta=true"
    want = expected_body(settings, raw, "anthropic", model=MODEL, user="alice", session_id="sess-123",
                         level="balanced")
    assert handler.bodies[0] == want
    sent = {k.decode().lower(): v.decode() for k, v in req.headers.raw}
    for name in ("x-api-key", "anthropic-version", "anthropic-beta", "user-agent", "x-stainless-lang",
                 "x-stainless-retry-count", "x-app", "x-claude-code-session-id"):
        assert sent[name] == CLIENT_HEADERS[name], name
    for name in ("x-ctxgate-user", "x-ctxgate-level", "connection", "x-drop-me", "keep-alive"):
        assert name not in sent, name
    assert sent["host"] == "anthropic.test" and sent["content-length"] == str(len(want))
    assert [k.lower() for k, _ in req.headers.raw].count(b"content-length") == 1 and "transfer-encoding" not in sent
    # response: the upstream's headers plus ctxgate's own
    assert r.headers["request-id"] == "req_011CTs8ZzG8"
    before, after = int(r.headers["x-ctxgate-tokens-before"]), int(r.headers["x-ctxgate-tokens-after"])
    assert int(r.headers["x-ctxgate-tokens-saved"]) == before - after >= 0
    assert after > 0  # counted while the body went upstream, and done before the headers
    assert r.headers["x-headroom-tokens-saved"] == r.headers["x-ctxgate-tokens-saved"]
    assert float(r.headers["x-ctxgate-overhead-ms"]) >= 0
    (row,) = got
    assert (row.mode, row.provider, row.model, row.user, row.session) == ("proxy", "anthropic", MODEL, "alice",
                                                                         "sess-123")
    assert (row.tokens_before, row.tokens_after) == (before, after)
    assert (row.usage_input_tokens, row.usage_cache_read_tokens, row.usage_output_tokens) == (812, 41000, 56)
    assert (row.usage_cache_write_tokens, row.usage_cache_write_1h_tokens) == (0, 0)
    billed = (812 * 3.0 + 41000 * 0.30 + 56 * 15.0) / 1e6
    assert row.billed_usd == pytest.approx(billed)
    assert row.counterfactual_usd is not None and row.counterfactual_usd >= row.billed_usd
    assert row.error is None


def test_maas_base_url_with_a_path_prefix_keeps_it(tmp_path: Path) -> None:
    handler = Recorded()
    app, _ = make_app(tmp_path, handler, anthropic_upstream="https://maas.example.com/llm/ext-opus/",
                      openai_upstream="https://maas.example.com/llm/gpt/v1")
    with TestClient(app) as client:
        client.post("/v1/messages", content=anthropic_body(), headers={"anthropic-version": "2023-06-01"})
        client.post("/chat/completions", content=chat_body(stream=False))
        client.get("/v1/models", headers={"anthropic-version": "2023-06-01"})
        client.get("/v1/models?limit=5", headers={"authorization": "Bearer sk-openai"})
    assert [str(r.url) for r in handler.requests] == [
        "https://maas.example.com/llm/ext-opus/v1/messages",
        "https://maas.example.com/llm/gpt/v1/chat/completions",
        "https://maas.example.com/llm/ext-opus/v1/models",
        "https://maas.example.com/llm/gpt/v1/models?limit=5",
    ]


def test_openai_stream_asks_for_usage_and_hides_the_extra_chunk(tmp_path: Path) -> None:
    handler = Recorded()
    app, settings = make_app(tmp_path, handler)
    raw = chat_body()
    with TestClient(app) as client:
        r = client.post("/v1/chat/completions", content=raw, headers={"authorization": "Bearer sk-o"})
        got = rows(client)
    base = expected_body(settings, raw, "openai_chat", model="gpt-4.1")
    assert handler.bodies[0] == b'{"stream_options":{"include_usage":true},' + base[1:]
    with_usage = openai_chat_stream(include_usage=True)
    assert r.content == b"".join(with_usage[:-2] + with_usage[-1:])  # all but the usage-only chunk
    assert "content-length" not in r.headers
    (row,) = got
    assert (row.usage_input_tokens, row.usage_cache_read_tokens, row.usage_output_tokens) == (3155, 45056, 61)
    assert row.billed_usd == pytest.approx((3155 * 2.0 + 45056 * 0.5 + 61 * 8.0) / 1e6)


def test_openai_stream_that_asked_for_usage_is_untouched(tmp_path: Path) -> None:
    handler = Recorded()
    app, settings = make_app(tmp_path, handler)
    raw = chat_body(extra=',"stream_options":{"include_usage":true}')
    with TestClient(app) as client:
        r = client.post("/chat/completions", content=raw)
    assert handler.bodies[0] == expected_body(settings, raw, "openai_chat", model="gpt-4.1")
    assert r.content == b"".join(openai_chat_stream(include_usage=True))


def test_responses_route_and_count_tokens(tmp_path: Path) -> None:
    handler = Recorded()
    app, settings = make_app(tmp_path, handler)
    raw = json.dumps({"model": "gpt-5-codex", "input": [{"type": "function_call_output", "call_id": "c1",
                                                        "output": build_log()}], "stream": True}).encode()
    with TestClient(app) as client:
        r = client.post("/v1/responses", content=raw)
        assert r.content == b"".join(responses_stream())
        c = client.post("/v1/messages/count_tokens", content=anthropic_body(),
                        headers={"anthropic-version": "2023-06-01"})
        got = rows(client)
    assert str(handler.requests[1].url) == "http://anthropic.test/v1/messages/count_tokens"
    counted = expected_body(settings, anthropic_body(), "anthropic", model=MODEL)
    assert handler.bodies[1] == counted
    assert c.json() == {"input_tokens": len(counted) // 4}
    assert [row.usage_output_tokens for row in got] == [35]  # count_tokens is free: no ledger row


def test_passthrough_forwards_body_and_length_unchanged(tmp_path: Path) -> None:
    handler = Recorded(Reply(200, [(b"content-type", b"application/json")], [b'{"data":[]}']))
    app, _ = make_app(tmp_path, handler)
    body = b'{"model": "text-embedding-3-small", "input": "hello"}'
    with TestClient(app) as client:
        r = client.post("/v1/embeddings", content=body, headers={"authorization": "Bearer sk-o"})
    assert r.content == b'{"data":[]}'
    assert handler.bodies[0] == body and handler.requests[0].headers["content-length"] == str(len(body))
    assert str(handler.requests[0].url) == "http://openai.test/v1/embeddings"


def test_gzip_response_is_relayed_encoded_and_still_billed(tmp_path: Path) -> None:
    import gzip

    packed = gzip.compress(anthropic_json())
    handler = Recorded(Reply(200, [(b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                                   (b"content-length", str(len(packed)).encode())], [packed[:10], packed[10:]]))
    app, _ = make_app(tmp_path, handler)
    with TestClient(app) as client:
        with client.stream("POST", "/v1/messages", content=anthropic_body(),
                           headers={"x-api-key": "k", "accept-encoding": "gzip"}) as r:
            raw = b"".join(r.iter_raw())
        (row,) = rows(client)
    assert raw == packed and r.headers["content-length"] == str(len(packed))
    assert handler.requests[0].headers["accept-encoding"] == "gzip"
    assert row.usage_cache_read_tokens == 41000 and row.billed_usd is not None


@pytest.mark.parametrize("status", [400, 429, 500, 529])
def test_upstream_errors_reach_the_client_as_sent(tmp_path: Path, status: int) -> None:
    body = json.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}).encode()
    handler = Recorded(Reply(status, [(b"content-type", b"application/json"), (b"retry-after", b"17"),
                                      (b"x-should-retry", b"true")], [body]))
    app, _ = make_app(tmp_path, handler)
    with TestClient(app) as client:
        r = client.post("/v1/messages", content=anthropic_body(), headers={"x-api-key": "k"})
        (row,) = rows(client)
    assert (r.status_code, r.content, r.headers["retry-after"]) == (status, body, "17")
    assert row.error is not None and f"upstream status {status}" in row.error
    assert row.usage_input_tokens is None and row.billed_usd is None  # unknown, not zero


@pytest.mark.parametrize(
    ("exc", "code"),
    [(httpx.ConnectError("refused"), "upstream_unreachable"), (httpx.ReadTimeout("slow"), "upstream_timeout")],
)
def test_unreachable_upstream_gives_502_in_the_provider_shape(tmp_path: Path, exc: Exception, code: str) -> None:
    app, _ = make_app(tmp_path, Recorded(exc=exc))
    with TestClient(app) as client:
        a = client.post("/v1/messages", content=anthropic_body(), headers={"x-api-key": "k"})
        o = client.post("/v1/chat/completions", content=chat_body(), headers={"authorization": "Bearer k"})
        got = rows(client)
    assert a.status_code == o.status_code == 502
    assert a.json()["type"] == "error" and a.json()["error"]["type"] == "api_error"
    assert o.json()["error"]["code"] == code and o.json()["error"]["type"] == "upstream_error"
    assert all(row.error and "upstream unreachable" in row.error for row in got) and len(got) == 2
    assert all(row.tokens_before > 0 and row.estimator != "pending" for row in got)


def test_ctxgate_token_is_never_forwarded(tmp_path: Path) -> None:
    handler = Recorded()
    app, _ = make_app(tmp_path, handler, auth_token="gate-secret")
    with TestClient(app) as client:
        assert client.post("/v1/messages", content=anthropic_body()).status_code == 401
        ok = client.post("/v1/messages", content=anthropic_body(),
                         headers={"x-api-key": "k", "x-ctxgate-token": "gate-secret"})
        ok2 = client.post("/v1/messages", content=anthropic_body(),
                          headers={"x-api-key": "k", "authorization": "Bearer gate-secret"})
        ok3 = client.post("/v1/chat/completions", content=chat_body(stream=False),
                          headers={"authorization": "Bearer sk-openai", "x-ctxgate-token": "gate-secret"})
    assert ok.status_code == ok2.status_code == ok3.status_code == 200
    for req in handler.requests[:2]:
        assert "x-ctxgate-token" not in req.headers and "authorization" not in req.headers
    assert handler.requests[2].headers["authorization"] == "Bearer sk-openai"


def test_too_large_body_passes_through_untouched(tmp_path: Path) -> None:
    handler = Recorded()
    app, _ = make_app(tmp_path, handler, max_body_bytes=4096)
    raw = anthropic_body()
    assert len(raw) > 4096
    with TestClient(app) as client:
        r = client.post("/v1/messages", content=raw, headers={"x-api-key": "k"})
        (row,) = rows(client)
    assert handler.bodies[0] == raw and r.headers["x-ctxgate-tokens-saved"] == "0"
    assert row.skip_reason == "too_large"


def test_identity_and_provider_headers() -> None:
    assert request_identity({"x-maas-username": "bob", "x-ctxgate-user": "x"}) == ("bob", None)
    assert request_identity({"x-headroom-user-id": "h", "x-ctxgate-session-id": "s"}) == ("h", "s")
    assert request_identity({}) == ("anonymous", None)
    assert pick_provider({"anthropic-version": "2023-06-01"}) == "anthropic"
    assert pick_provider({"x-api-key": "k"}) == "anthropic"
    assert pick_provider({"authorization": "Bearer k"}) == "openai"


@pytest.mark.parametrize(
    ("body", "want"),
    [
        (b' {"model":"m","stream":true}', b' {"stream_options":{"include_usage":true},"model":"m","stream":true}'),
        (b'{"stream":true,"stream_options":null}', b'{"stream":true,"stream_options":{"include_usage":true}}'),
        (b'{"stream":true,"stream_options":{ }}', b'{"stream":true,"stream_options":{"include_usage":true }}'),
        (b'{"stream":true,"stream_options": {"include_obfuscation":false}}',
         b'{"stream":true,"stream_options": {"include_usage":true,"include_obfuscation":false}}'),
        (b'{"stream":true,"stream_options":{"include_usage": false}}',
         b'{"stream":true,"stream_options":{"include_usage":true}}'),
        (b'{"stream":true,"stream_options":{"include_usage":true}}', None),  # the client asked itself
        # "stream_options" also as a key in a nested object: ambiguous, left alone
        (b'{"metadata":{"x":{"stream_options":{}}},"stream":true,"stream_options":{}}', None),
    ],
)
def test_splice_include_usage(body: bytes, want: bytes | None) -> None:
    assert splice_include_usage(body, json.loads(body)) == want


# --- end to end: official SDKs, real uvicorn, fake upstream ------------------------------------


class RecordingApp:
    """Wraps ctxgate and keeps the raw request bodies and headers it received (forwards untouched)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.bodies: list[bytes] = []
        self.headers: list[list[tuple[bytes, bytes]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        self.bodies.append(b"")
        self.headers.append(list(scope["headers"]))
        index = len(self.bodies) - 1

        async def recv() -> Any:
            msg = await receive()
            if msg["type"] == "http.request":
                parts.append(msg.get("body", b""))
                self.bodies[index] = b"".join(parts)
            return msg

        await self.app(scope, recv, send)


class Live:
    def __init__(self, url: str, fake: FakeUpstream, rec: RecordingApp, settings: Settings,
                 rows: RowTap) -> None:
        self.url, self.fake, self.rec, self.settings, self.rows = url, fake, rec, settings, rows

    def anthropic(self, **kw: Any) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key="sk-ant-test", max_retries=0, **kw)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="sk-openai-test", max_retries=0)

    def row_after(self, n: int) -> LedgerRow:
        return self.rows.after(n)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    fake = FakeUpstream()
    with serve(fake) as fake_url:
        app, settings, recorded = proxy_app(fake_url, tmp_path_factory.mktemp("live"), read_timeout_s=2.0)
        rec = RecordingApp(app)
        with serve(rec) as url:
            yield Live(url, fake, rec, settings, recorded)


TOOLS = [{"name": "Bash", "description": "Run a shell command",
          "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}]
MESSAGES: list[Any] = [
    {"role": "user", "content": "Why does the job fail?"},
    {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                                       "input": {"command": "cat worker.log"}}]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": build_log()}]},
]


def _headers_forwarded(live: Live) -> None:
    got = {k.lower(): v for k, v in live.fake.last.headers}
    for k, v in live.rec.headers[-1]:
        k = k.lower()
        if k in (b"host", b"content-length", b"connection") or k.startswith(b"x-ctxgate-"):
            assert k not in got or k in (b"host", b"content-length"), k
        else:
            assert got[k] == v, k


@pytest.mark.slow
def test_sdk_anthropic_non_streaming_with_tools(live: Live) -> None:
    n = len(live.rows)
    with live.anthropic(default_headers={"x-ctxgate-user": "carol"}) as client:
        msg = client.messages.create(model=MODEL, max_tokens=512, tools=TOOLS, messages=MESSAGES)
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert msg.usage.cache_read_input_tokens == 41000
    raw = live.rec.bodies[-1]
    assert live.fake.last.body == expected_body(live.settings, raw, "anthropic", model=MODEL, user="carol")
    _headers_forwarded(live)
    assert live.fake.last.header("authorization") == "Bearer sk-ant-test"  # credentials forwarded
    assert live.fake.last.header("x-stainless-lang") == "python"
    row = live.row_after(n)
    assert row.user == "carol" and row.usage_cache_read_tokens == 41000
    with live.anthropic() as client:
        counted = client.messages.count_tokens(model=MODEL, tools=TOOLS, messages=MESSAGES)
    assert live.fake.last.path == "/v1/messages/count_tokens"
    assert counted.input_tokens == len(live.fake.last.body) // 4
    assert live.fake.last.body == expected_body(live.settings, live.rec.bodies[-1], "anthropic", model=MODEL)


@pytest.mark.slow
def test_sdk_anthropic_stream_bytes_are_the_upstreams(live: Live) -> None:
    n = len(live.rows)
    with live.anthropic() as client:
        with client.messages.with_streaming_response.create(
            model=MODEL, max_tokens=512, tools=TOOLS, messages=MESSAGES, stream=True
        ) as resp:
            got = b"".join(resp.iter_bytes())
            assert resp.headers["request-id"] == "req_011CTs8ZzG7"
        assert got == live.fake.sent_body() == b"".join(anthropic_stream())
        with client.messages.stream(model=MODEL, max_tokens=512, tools=TOOLS, messages=MESSAGES) as stream:
            final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].signature.startswith("EqQB")  # type: ignore[union-attr]
    assert final.content[1].citations  # type: ignore[union-attr]
    assert final.content[2].input == {"command": "pytest -x tests/test_parse.py"}  # type: ignore[union-attr]
    assert final.usage.output_tokens == 187
    row = live.row_after(n + 1)
    assert (row.usage_input_tokens, row.usage_cache_write_tokens, row.usage_cache_write_1h_tokens,
            row.usage_cache_read_tokens, row.usage_output_tokens) == (2095, 1200, 300, 30000, 187)


@pytest.mark.slow
def test_sdk_anthropic_late_error_event_passes_through(live: Live) -> None:
    n = len(live.rows)
    events = anthropic_stream(late_error=True)
    live.fake.queue(Reply(200, [(b"content-type", b"text/event-stream")], events))
    with live.anthropic() as client, pytest.raises(anthropic.APIStatusError, match="Overloaded"):  # noqa: SIM117
        with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
            stream.get_final_message()
    assert live.fake.sent_body() == b"".join(events)
    row = live.row_after(n)
    assert row.error and "overloaded_error" in row.error and row.billed_usd is None


@pytest.mark.slow
def test_sdk_openai_chat_streaming_and_not(live: Live) -> None:
    n = len(live.rows)
    tools: Any = [{"type": "function", "function": {"name": "run_shell", "parameters": {"type": "object"}}}]
    messages: Any = json.loads(chat_body())["messages"]
    with live.openai() as client:
        stream = client.chat.completions.create(model="gpt-4.1", messages=messages, tools=tools, stream=True)
        chunks = list(stream)
        assert all(c.choices for c in chunks)  # the usage-only chunk ctxgate asked for is not shown
        args = "".join(c.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[index,union-attr]
                       for c in chunks if c.choices[0].delta.tool_calls)
        assert '"cmd": "ls -la"' in args
        sent = live.fake.last.json()
        assert sent["stream_options"] == {"include_usage": True}
        row = live.row_after(n)
        assert row.usage_output_tokens == 61
        # a client that asks for usage gets every byte as sent
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4.1", messages=messages, tools=tools, stream=True, stream_options={"include_usage": True}
        ) as resp:
            assert b"".join(resp.iter_bytes()) == live.fake.sent_body()
        raw = live.rec.bodies[-1]
        assert live.fake.last.body == expected_body(live.settings, raw, "openai_chat", model="gpt-4.1")
        _headers_forwarded(live)
        done = client.chat.completions.create(model="gpt-4.1", messages=messages, tools=tools)
        assert done.choices[0].message.tool_calls and done.usage and done.usage.prompt_tokens == 48211


@pytest.mark.slow
def test_sdk_openai_responses_stream(live: Live) -> None:
    n = len(live.rows)
    with live.openai() as client:
        with client.responses.with_streaming_response.create(model="gpt-5-codex", input="ls", stream=True) as resp:
            assert b"".join(resp.iter_bytes()) == live.fake.sent_body() == b"".join(responses_stream())
        events = list(client.responses.create(model="gpt-5-codex", input="ls", stream=True))
    assert events[-1].type == "response.completed"
    assert live.row_after(n + 1).usage_cache_read_tokens == 8064


@pytest.mark.slow
def test_sdk_errors_pass_through(live: Live) -> None:
    err = b'{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded"}}'
    live.fake.queue(Reply(429, [(b"content-type", b"application/json"), (b"retry-after", b"30")], [err]),
                    Reply(529, [(b"content-type", b"application/json")],
                          [b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}']))
    with live.anthropic() as client:
        with pytest.raises(anthropic.RateLimitError) as e:
            client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        assert e.value.response.headers["retry-after"] == "30" and e.value.response.content == err
        with pytest.raises(anthropic.APIStatusError) as e2:
            client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        assert e2.value.status_code == 529


@pytest.mark.slow
def test_sdk_unreachable_upstream_is_a_502_the_sdk_parses(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()
    settings = Settings(data_dir=tmp_path, ledger_store="memory", decision_store="memory",
                        anthropic_upstream=dead, openai_upstream=dead + "/v1")
    with serve(create_app(settings)) as url:
        with anthropic.Anthropic(base_url=url, api_key="k", max_retries=0) as client, \
                pytest.raises(anthropic.APIStatusError) as e:
            client.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
        assert e.value.status_code == 502 and e.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        with openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0) as oc, \
                pytest.raises(openai.APIStatusError) as e3:
            oc.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}])
        assert e3.value.status_code == 502 and e3.value.code == "upstream_unreachable"


@pytest.mark.slow
@pytest.mark.corpus
def test_multi_turn_trajectory_replay_is_prefix_stable(live: Live, corpus: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, str(corpus / "score.py"), "export-anthropic", "--out", str(tmp_path)],
                   check=True, capture_output=True)
    line = (tmp_path / "swe-agent.anthropic.jsonl").read_text().splitlines()[0]
    conv = json.loads(line)["messages"]
    turns = [i for i in range(1, len(conv) + 1) if conv[i - 1]["role"] == "user"]
    sent: list[bytes] = []
    before = after = 0
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for n in turns:
            body = (b'{"model":"' + MODEL.encode() + b'","max_tokens":256,"messages":['
                    + b",".join(json.dumps(m).encode() for m in conv[:n]) + b"]}")
            r = client.post("/v1/messages", content=body, headers={"x-api-key": "k", "anthropic-version": "2023-06-01",
                                                                    "x-claude-code-session-id": "replay-1"})
            assert r.status_code == 200
            before += int(r.headers["x-ctxgate-tokens-before"])
            after += int(r.headers["x-ctxgate-tokens-after"])
            sent.append(live.fake.last.body)
    for prev, cur in zip(sent, sent[1:], strict=False):
        assert cur.startswith(prev[: -len(b"]}")]), "an earlier turn's bytes changed upstream"
    assert after <= before
    print(f"replay: {len(turns)} turns, tokens {before} -> {after}")


@pytest.mark.slow
def test_readme_base_urls_reach_the_proxy_routes(live: Live) -> None:
    """The base URLs the README tells users to set work with the official SDKs."""
    import re

    from tests.conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    anthropic_base = re.search(r"ANTHROPIC_BASE_URL=(\S+)", readme).group(1)  # type: ignore[union-attr]
    openai_base = re.search(r"OPENAI_BASE_URL=(\S+)", readme).group(1)  # type: ignore[union-attr]
    codex_base = re.search(r'base_url = "(\S+)"', readme).group(1)  # type: ignore[union-attr]
    here = "http://127.0.0.1:8787"
    assert anthropic_base == here and openai_base == codex_base == here + "/v1"
    with anthropic.Anthropic(base_url=anthropic_base.replace(here, live.url), api_key="k", max_retries=0) as a:
        assert a.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES).usage.output_tokens == 56
    with openai.OpenAI(base_url=openai_base.replace(here, live.url), api_key="k", max_retries=0) as o:
        assert o.responses.create(model="gpt-5-codex", input="ls").usage.output_tokens == 35  # type: ignore[union-attr]
        assert o.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}]).usage
