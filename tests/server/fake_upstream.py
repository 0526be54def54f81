"""A fake Anthropic/OpenAI upstream for proxy tests, and a helper that serves an ASGI app.

``FakeUpstream`` is a raw ASGI app (no framework, so every byte it sends is the
test's). It records exactly what it received, replays realistic SSE transcripts or
JSON bodies per route, or a scripted ``Reply`` queued by a test, and notices when the
peer (ctxgate) goes away in the middle of a stream.

``serve(app)`` runs any ASGI app under real uvicorn on a free loopback port in a
thread and yields its base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn


def sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


# --- Anthropic Messages ------------------------------------------------------------------

ANTHROPIC_USAGE_START = {
    "input_tokens": 2095,
    "cache_creation_input_tokens": 1500,
    "cache_read_input_tokens": 30000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1200, "ephemeral_1h_input_tokens": 300},
    "output_tokens": 4,
    "service_tier": "standard",
}


def anthropic_stream(*, late_error: bool = False, model: str = "claude-sonnet-4-5-20250929") -> list[bytes]:
    """A Messages stream with thinking (+signature), ping, text with a citation, and tool_use."""
    msg = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": model,
        "content": [], "stop_reason": None, "stop_sequence": None, "usage": ANTHROPIC_USAGE_START,
    }
    events = [
        sse("message_start", {"type": "message_start", "message": msg}),
        sse("content_block_start", {"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "thinking", "thinking": "", "signature": ""}}),
        sse("ping", {"type": "ping"}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "thinking_delta", "thinking": "The build log shows "}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "thinking_delta", "thinking": "one failing test — ünïcödé 🚀."}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
            "type": "signature_delta",
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds6rlTbvWx6CLR1Eh3Kg"}}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse("content_block_start", {"type": "content_block_start", "index": 1,
                                    "content_block": {"type": "text", "text": "", "citations": []}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                    "delta": {"type": "text_delta", "text": "The test `test_parse` fails"}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
            "type": "citations_delta", "citation": {
                "type": "char_location", "cited_text": "FAILED tests/test_parse.py::test_parse",
                "document_index": 0, "document_title": "build.log", "start_char_index": 120,
                "end_char_index": 158}}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                    "delta": {"type": "text_delta", "text": "; let me look at it.\n"}}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 1}),
        sse("content_block_start", {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "Bash", "input": {}}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                    "delta": {"type": "input_json_delta", "partial_json": ""}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                    "delta": {"type": "input_json_delta", "partial_json": '{"command": "pytest -x'}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 2,
                                    "delta": {"type": "input_json_delta", "partial_json": ' tests/test_parse.py"}'}}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 2}),
    ]
    if late_error:
        events.append(sse("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
        return events
    events += [
        sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                              "usage": {"output_tokens": 187}}),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return events


def anthropic_json(model: str = "claude-sonnet-4-5-20250929") -> bytes:
    body = {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF", "type": "message", "role": "assistant", "model": model,
        "content": [
            {"type": "text", "text": "I'll run the tests."},
            {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "Bash",
             "input": {"command": "pytest -x"}},
        ],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 812, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 41000,
                  "output_tokens": 56},
    }
    return json.dumps(body).encode()


# --- OpenAI Chat Completions -------------------------------------------------------------

OPENAI_CHAT_USAGE = {
    "prompt_tokens": 48211, "completion_tokens": 61, "total_tokens": 48272,
    "prompt_tokens_details": {"cached_tokens": 45056, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                  "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
}


def openai_chat_stream(*, include_usage: bool) -> list[bytes]:
    base = {"id": "chatcmpl-Bx3k9", "object": "chat.completion.chunk", "created": 1761000000,
            "model": "gpt-4.1-2025-04-14", "service_tier": "default", "system_fingerprint": "fp_b3f1157249"}
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": None, "tool_calls": [{"index": 0, "id": "call_Qm8d2", "type": "function",
                                                             "function": {"name": "run_shell", "arguments": ""}}],
         "refusal": None},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"cmd":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "ls -la"}'}}]},
        {"tool_calls": [{"index": 1, "id": "call_Zr71x", "type": "function",
                         "function": {"name": "read_file", "arguments": '{"path": "README.md"}'}}]},
    ]
    chunks = []
    for i, d in enumerate(deltas + [{}]):
        choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": "tool_calls" if i == len(deltas) else None}
        c = dict(base, choices=[choice])
        if include_usage:
            c["usage"] = None
        chunks.append(sse(None, c))
    if include_usage:
        chunks.append(sse(None, dict(base, choices=[], usage=OPENAI_CHAT_USAGE)))
    chunks.append(b"data: [DONE]\n\n")
    return chunks


def openai_chat_json() -> bytes:
    body = {
        "id": "chatcmpl-Bx3kA", "object": "chat.completion", "created": 1761000001, "model": "gpt-4.1-2025-04-14",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": None, "annotations": [],
                                             "tool_calls": [{"id": "call_Qm8d3", "type": "function", "function": {
                                                 "name": "run_shell", "arguments": "{\"cmd\": \"ls\"}"}}]},
                     "logprobs": None, "finish_reason": "tool_calls"}],
        "usage": OPENAI_CHAT_USAGE, "service_tier": "default", "system_fingerprint": "fp_b3f1157249",
    }
    return json.dumps(body, indent=2).encode()


# --- OpenAI Responses --------------------------------------------------------------------

RESPONSES_USAGE = {"input_tokens": 9120, "input_tokens_details": {"cached_tokens": 8064}, "output_tokens": 35,
                   "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 9155}


def _response_obj(status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": "resp_68af", "object": "response", "created_at": 1761000002, "status": status,
            "model": "gpt-5-codex", "output": output, "parallel_tool_calls": True, "tools": [],
            "usage": usage, "error": None, "incomplete_details": None}


def responses_stream() -> list[bytes]:
    item = {"id": "fc_01", "type": "function_call", "status": "completed", "call_id": "call_77",
            "name": "shell", "arguments": "{\"command\":[\"ls\"]}"}
    msg = {"id": "msg_01", "type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": "Listing files.", "annotations": []}]}
    return [
        sse("response.created", {"type": "response.created", "sequence_number": 0,
                                 "response": _response_obj("in_progress", [], None)}),
        sse("response.in_progress", {"type": "response.in_progress", "sequence_number": 1,
                                     "response": _response_obj("in_progress", [], None)}),
        sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 2,
                                           "output_index": 0, "item": dict(msg, status="in_progress", content=[])}),
        sse("response.output_text.delta", {"type": "response.output_text.delta", "sequence_number": 3,
                                           "item_id": "msg_01", "output_index": 0, "content_index": 0,
                                           "delta": "Listing files."}),
        sse("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 4,
                                          "output_index": 0, "item": msg}),
        sse("response.output_item.added", {"type": "response.output_item.added", "sequence_number": 5,
                                           "output_index": 1, "item": dict(item, status="in_progress", arguments="")}),
        sse("response.function_call_arguments.delta", {"type": "response.function_call_arguments.delta",
                                                       "sequence_number": 6, "item_id": "fc_01", "output_index": 1,
                                                       "delta": "{\"command\":[\"ls\"]}"}),
        sse("response.output_item.done", {"type": "response.output_item.done", "sequence_number": 7,
                                          "output_index": 1, "item": item}),
        sse("response.completed", {"type": "response.completed", "sequence_number": 8,
                                   "response": _response_obj("completed", [msg, item], RESPONSES_USAGE)}),
    ]


def responses_json() -> bytes:
    msg = {"id": "msg_02", "type": "message", "status": "completed", "role": "assistant",
           "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}
    return json.dumps(_response_obj("completed", [msg], RESPONSES_USAGE)).encode()


# --- the fake server ------------------------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        return next((v.decode("latin-1") for k, v in self.headers if k.lower() == key), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    #: seconds to wait before each chunk but the first
    delay_s: float = 0.0
    #: seconds to wait after the last chunk before ending the body (a stuck upstream)
    hold_s: float = 0.0
    #: seconds to wait before the status line and headers (a slow upstream)
    head_delay_s: float = 0.0


SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"request-id", b"req_011CTs8ZzG7"), (b"anthropic-organization-id", b"f0e1d2c3")]
JSON_HEADERS = [(b"content-type", b"application/json"), (b"request-id", b"req_011CTs8ZzG8"),
                (b"x-request-id", b"req_8a1b")]


def default_reply(method: str, path: str, body: bytes) -> Reply:
    try:
        req = json.loads(body) if body else {}
    except ValueError:
        req = {}
    stream = isinstance(req, dict) and req.get("stream") is True
    if path.endswith("/v1/messages/count_tokens"):
        return Reply(headers=JSON_HEADERS, chunks=[json.dumps({"input_tokens": len(body) // 4}).encode()])
    if path.endswith("/v1/messages"):
        if stream:
            return Reply(headers=SSE_HEADERS, chunks=anthropic_stream())
        return Reply(headers=JSON_HEADERS, chunks=[anthropic_json()])
    if path.endswith("/chat/completions"):
        if stream:
            usage = bool((req.get("stream_options") or {}).get("include_usage"))
            return Reply(headers=SSE_HEADERS[:2], chunks=openai_chat_stream(include_usage=usage))
        return Reply(headers=JSON_HEADERS, chunks=[openai_chat_json()])
    if path.endswith("/responses"):
        if stream:
            return Reply(headers=SSE_HEADERS[:2], chunks=responses_stream())
        return Reply(headers=JSON_HEADERS, chunks=[responses_json()])
    if path.endswith("/models") and method == "GET":
        return Reply(headers=JSON_HEADERS, chunks=[b'{"data":[{"id":"m-1","object":"model"}],"object":"list"}'])
    return Reply(status=404, headers=JSON_HEADERS, chunks=[b'{"error":{"message":"no such route","type":"not_found"}}'])


class FakeUpstream:
    """Raw ASGI app: records requests, replays replies, notices the peer going away."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.sent: list[bytes] = []  # body bytes of the last reply, as sent
        self.disconnected = threading.Event()
        self.finished = threading.Event()

    def queue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    @property
    def last(self) -> Received:
        return self.received[-1]

    def sent_body(self) -> bytes:
        return b"".join(self.sent)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                await send({"type": msg["type"] + ".complete"})
                if msg["type"] == "lifespan.shutdown":
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.received.append(Received(scope["method"], scope["path"], scope["query_string"],
                                      list(scope["headers"]), body))
        reply = self.replies.popleft() if self.replies else default_reply(scope["method"], scope["path"], body)
        self.sent = []
        self.disconnected.clear()
        self.finished.clear()
        gone = asyncio.Event()

        async def watch() -> None:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                gone.set()
                self.disconnected.set()

        watcher = asyncio.ensure_future(watch())
        try:
            if reply.head_delay_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), reply.head_delay_s)
                if gone.is_set():
                    return
            await send({"type": "http.response.start", "status": reply.status, "headers": reply.headers})
            for i, chunk in enumerate(reply.chunks):
                if i and reply.delay_s:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(gone.wait(), reply.delay_s)
                if gone.is_set():
                    return
                self.sent.append(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if reply.hold_s:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gone.wait(), reply.hold_s)
                if gone.is_set():
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.finished.set()
        finally:
            watcher.cancel()


# --- serving an ASGI app on loopback ------------------------------------------------------


@contextlib.contextmanager
def serve(app: Any, *, deadline_s: float = 10.0) -> Iterator[str]:
    """Run ``app`` under real uvicorn on a free loopback port; yield its ``http://`` base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", ws="none", http="h11",
                            timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    end = time.monotonic() + deadline_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > end:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(deadline_s)
        sock.close()


# --- ctxgate in front of the fake -------------------------------------------------------


class RowTap(list):  # type: ignore[type-arg]
    """The ledger rows an app records, copied as they are recorded (the real recorder still gets them)."""

    def __init__(self, app: Any) -> None:
        super().__init__()
        recorder = app.state.ctx.recorder
        original = recorder.record

        def record(row: Any) -> None:
            self.append(row)
            original(row)

        recorder.record = record

    def after(self, n: int, deadline_s: float = 5.0) -> Any:
        """The row recorded after the first ``n`` (rows are recorded when the relay ends)."""
        end = time.monotonic() + deadline_s
        while len(self) <= n and time.monotonic() < end:
            time.sleep(0.01)
        return self[n]


def proxy_app(fake_url: str, data_dir: Any, read_timeout_s: float) -> tuple[Any, Any, RowTap]:
    """ctxgate (memory stores) proxying to the fake at ``fake_url``: (app, settings, its ledger rows)."""
    from ctxgate.server import create_app
    from ctxgate.settings import Settings

    settings = Settings(data_dir=data_dir, ledger_store="memory", decision_store="memory",
                        anthropic_upstream=fake_url, openai_upstream=fake_url + "/v1",
                        read_timeout_s=read_timeout_s)
    app = create_app(settings)
    return app, settings, RowTap(app)
