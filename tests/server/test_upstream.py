"""Header rules, URL joining, error mapping, the pooled client, and the relay's disconnect handling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ctxgate.errors import UpstreamConnectError, UpstreamTimeout
from ctxgate.server import create_app
from ctxgate.server.upstream import Upstream, forward_headers, join_url, map_errors, relay_headers
from ctxgate.settings import Settings
from ctxgate.store.base import LedgerRow
from tests.server.fake_upstream import (
    SSE_HEADERS,
    FakeUpstream,
    Reply,
    RowTap,
    anthropic_stream,
    proxy_app,
    serve,
)
from tests.server.test_proxy import anthropic_body


def test_forward_headers_drop_hop_by_hop_connection_listed_and_own() -> None:
    headers = [
        (b"Host", b"ctxgate:8787"), (b"Content-Length", b"10"), (b"Connection", b"keep-alive, X-Foo"),
        (b"X-Foo", b"1"), (b"Transfer-Encoding", b"chunked"), (b"TE", b"trailers"), (b"Upgrade", b"h2c"),
        (b"Proxy-Authorization", b"Basic x"), (b"X-Ctxgate-Level", b"off"), (b"x-ctxgate-token", b"t"),
        (b"Authorization", b"Bearer sk"), (b"x-api-key", b"k"), (b"anthropic-beta", b"a,b"),
        (b"User-Agent", b"claude-cli/2"), (b"X-Stainless-OS", b"Linux"), (b"accept-encoding", b"gzip"),
    ]
    assert forward_headers(headers) == [
        (b"Authorization", b"Bearer sk"), (b"x-api-key", b"k"), (b"anthropic-beta", b"a,b"),
        (b"User-Agent", b"claude-cli/2"), (b"X-Stainless-OS", b"Linux"), (b"accept-encoding", b"gzip"),
    ]
    assert (b"Content-Length", b"10") in forward_headers(headers, keep_length=True)


def test_relay_headers_keep_everything_end_to_end() -> None:
    headers = [(b"content-type", b"text/event-stream"), (b"transfer-encoding", b"chunked"),
               (b"connection", b"keep-alive"), (b"keep-alive", b"timeout=5"), (b"retry-after", b"3"),
               (b"content-length", b"99"), (b"set-cookie", b"a=b"), (b"request-id", b"req_1")]
    assert relay_headers(headers) == [(b"content-type", b"text/event-stream"), (b"retry-after", b"3"),
                                      (b"content-length", b"99"), (b"set-cookie", b"a=b"), (b"request-id", b"req_1")]
    assert (b"content-length", b"99") not in relay_headers(headers, body_changed=True)


@pytest.mark.parametrize(
    ("base", "path", "query", "want"),
    [
        ("https://api.anthropic.com", "/v1/messages", b"", "https://api.anthropic.com/v1/messages"),
        ("https://api.openai.com/v1/", "/chat/completions", b"", "https://api.openai.com/v1/chat/completions"),
        ("https://maas.example.com/llm/ext-opus", "/v1/messages", b"beta=true",
         "https://maas.example.com/llm/ext-opus/v1/messages?beta=true"),
    ],
)
def test_join_url(base: str, path: str, query: bytes, want: str) -> None:
    assert join_url(base, path, query) == want


def test_map_errors() -> None:
    with pytest.raises(UpstreamTimeout) as t, map_errors():
        raise httpx.ReadTimeout("slow")
    assert isinstance(t.value.__cause__, httpx.ReadTimeout)
    with pytest.raises(UpstreamConnectError), map_errors():
        raise httpx.ConnectError("refused")
    with pytest.raises(UpstreamConnectError), map_errors():
        raise httpx.RemoteProtocolError("peer closed connection")


async def test_upstream_sends_exactly_the_given_headers(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"{}")

    up = Upstream(Settings(data_dir=tmp_path, connect_timeout_s=3, read_timeout_s=7),
                  httpx.MockTransport(handler))
    assert up.client.timeout.read == 7 and up.client.timeout.connect == 3
    resp = await up.send("POST", "http://u.test/v1/x", [(b"x-api-key", b"k")], b"body")
    assert resp is not None
    await resp.aclose()
    await up.aclose()
    assert [(k.lower(), v) for k, v in seen[0].headers.raw] == [
        (b"host", b"u.test"), (b"x-api-key", b"k"), (b"content-length", b"4")]  # no httpx defaults


# --- relay under real uvicorn --------------------------------------------------------------


class Gate:
    def __init__(self, url: str, fake: FakeUpstream, rows: RowTap) -> None:
        self.url, self.fake, self.rows = url, fake, rows

    def row_after(self, n: int) -> LedgerRow:
        return self.rows.after(n)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gate]:
    fake = FakeUpstream()
    with serve(fake) as fake_url:
        app, _, rows = proxy_app(fake_url, tmp_path_factory.mktemp("gate"), read_timeout_s=1.0)
        with serve(app) as url:
            yield Gate(url, fake, rows)


HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def _first_chunk_then_leave(gate: Gate) -> bytes:
    with httpx.Client(timeout=5) as client, client.stream(
        "POST", gate.url + "/v1/messages", content=anthropic_body(stream=True), headers=HEADERS
    ) as r:
        return next(r.iter_raw())


@pytest.mark.slow
def test_disconnect_mid_stream_closes_the_upstream_at_once(gate: Gate) -> None:
    n = len(gate.rows)
    events = anthropic_stream()
    gate.fake.queue(Reply(200, SSE_HEADERS, events, delay_s=0.5))
    first = _first_chunk_then_leave(gate)
    assert first == events[0]
    left = time.monotonic()
    assert gate.fake.disconnected.wait(3)
    assert time.monotonic() - left < 1.0  # well before the upstream's next chunk
    assert not gate.fake.finished.is_set()
    row = gate.row_after(n)
    assert row.error is not None and "client_disconnected" in row.error
    assert row.usage_input_tokens == 2095 and row.usage_output_tokens is None and row.billed_usd is None


@pytest.mark.slow
def test_disconnect_while_the_upstream_is_silent(gate: Gate) -> None:
    """No chunk flows, so only the watcher can notice the client leaving."""
    n = len(gate.rows)
    events = anthropic_stream()
    gate.fake.queue(Reply(200, SSE_HEADERS, events[:1], hold_s=30))
    _first_chunk_then_leave(gate)
    assert gate.fake.disconnected.wait(3)
    assert "client_disconnected" in (gate.row_after(n).error or "")


@pytest.mark.slow
def test_disconnect_before_the_upstream_answers(gate: Gate) -> None:
    n = len(gate.rows)
    gate.fake.queue(Reply(200, SSE_HEADERS, anthropic_stream(), head_delay_s=30))
    with pytest.raises(httpx.ReadTimeout), httpx.Client(timeout=0.3) as client:
        client.post(gate.url + "/v1/messages", content=anthropic_body(stream=True), headers=HEADERS)
    assert gate.fake.disconnected.wait(3)
    assert "client_disconnected" in (gate.row_after(n).error or "")


@pytest.mark.slow
def test_read_timeout_between_chunks_truncates_visibly(gate: Gate) -> None:
    """After the first byte no status can change: the client sees a broken stream, not a complete one."""
    n = len(gate.rows)
    events = anthropic_stream()
    gate.fake.queue(Reply(200, SSE_HEADERS, events[:3], hold_s=3))  # read_timeout_s=1
    with pytest.raises(httpx.RemoteProtocolError), httpx.Client(timeout=10) as client, client.stream(
        "POST", gate.url + "/v1/messages", content=anthropic_body(stream=True), headers=HEADERS
    ) as r:
        b"".join(r.iter_raw())
    row = gate.row_after(n)
    assert row.error is not None and "upstream_error" in row.error and "timed out" in row.error


@pytest.mark.slow
def test_upstream_slow_to_answer_is_a_502_timeout(gate: Gate) -> None:
    gate.fake.queue(Reply(200, SSE_HEADERS, anthropic_stream(), head_delay_s=3))
    with httpx.Client(timeout=10) as client:
        r = client.post(gate.url + "/v1/chat/completions", content=b'{"model":"gpt-4.1","messages":[]}')
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_timeout"


async def test_relay_closes_upstream_when_the_stream_breaks(tmp_path: Path) -> None:
    """A transport error mid-body: the upstream response is closed and the failure re-raised."""
    closed: list[bool] = []

    class Broken(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"event: ping\ndata: {}\n\n"
            raise httpx.ReadError("connection reset")

        async def aclose(self) -> None:
            closed.append(True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Broken())

    settings = Settings(data_dir=tmp_path, ledger_store="memory", decision_store="memory",
                        anthropic_upstream="http://a.test")
    app = create_app(settings, upstream_transport=httpx.MockTransport(handler))
    sent: list[dict[str, Any]] = []

    messages = [{"type": "http.request", "body": anthropic_body(stream=True), "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # the client stays
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/messages", "raw_path": b"/v1/messages",
             "query_string": b"", "root_path": "", "headers": [(b"x-api-key", b"k")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8787), "state": {}}
    from ctxgate.server.proxy import _lifespan

    async with _lifespan(app):
        with pytest.raises(Exception) as e:
            await app(scope, receive, send)
    assert "upstream unreachable" in str(e.value) or "ReadError" in repr(e.value)
    assert closed == [True]
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert bodies and all(m.get("more_body") for m in bodies)  # never a clean end
