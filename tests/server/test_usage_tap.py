import gzip
import json
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxgate.billing import Usage
from ctxgate.server.usage_tap import SseDecoder, UsageTap
from tests.server.fake_upstream import (
    anthropic_json,
    anthropic_stream,
    openai_chat_json,
    openai_chat_stream,
    responses_json,
    responses_stream,
    sse,
)

ANTHROPIC = b"".join(anthropic_stream())
ANTHROPIC_USAGE = Usage(input_tokens=2095, cache_write_tokens=1200, cache_write_1h_tokens=300,
                        cache_read_tokens=30000, output_tokens=187)
CHAT = b"".join(openai_chat_stream(include_usage=True))
CHAT_USAGE = Usage(input_tokens=48211 - 45056, cache_write_tokens=0, cache_write_1h_tokens=0,
                   cache_read_tokens=45056, output_tokens=61)
RESPONSES = b"".join(responses_stream())
RESPONSES_USAGE = Usage(input_tokens=9120 - 8064, cache_write_tokens=0, cache_write_1h_tokens=0,
                        cache_read_tokens=8064, output_tokens=35)


def _decode(chunks: list[bytes]) -> tuple[list[tuple[str | None, bytes]], bytes]:
    dec = SseDecoder()
    events = [e for c in chunks for e in dec.feed(c)] + dec.flush()
    return [(e.event, e.data) for e in events], b"".join(e.raw for e in events)


def _tap(fmt, data: bytes, cuts: list[int], *, streaming: bool = True, encoding: str = "") -> UsageTap:
    tap = UsageTap(fmt, streaming=streaming, content_encoding=encoding)
    prev = 0
    for cut in [*cuts, len(data)]:
        tap.feed(data[prev:cut])
        prev = cut
    tap.flush()
    return tap


def _line_ends(data: bytes, eol: bytes) -> bytes:
    return data.replace(b"\n", eol)


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_decoder_split_at_every_offset_gives_same_events_and_bytes(eol: bytes) -> None:
    data = _line_ends(ANTHROPIC, eol)
    whole, raw = _decode([data])
    assert raw == data
    assert [e for e, _ in whole][:3] == ["message_start", "content_block_start", "ping"]
    assert len(whole) == len(anthropic_stream())
    for i in range(len(data) + 1):
        events, raw = _decode([data[:i], data[i:]])
        assert raw == data, i
        assert events == whole, i


def test_decoder_fields_comments_and_multiline_data() -> None:
    data = b": keep-alive\n\nevent:x\ndata:a\ndata: b\nid: 7\nretry: 10\nnoise\n\n\n\ndata: tail"
    events, raw = _decode([data])
    assert raw == data
    assert events == [(None, b""), ("x", b"a\nb"), (None, b"tail")]


def test_decoder_holds_only_the_incomplete_event() -> None:
    dec = SseDecoder()
    assert dec.feed(b"data: 1\n\ndata: 2") and len(dec._buf) == len(b"data: 2")
    assert [e.data for e in dec.feed(b"\n\n")] == [b"2"]
    assert len(dec._buf) == 0


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.sampled_from([ANTHROPIC, CHAT, RESPONSES]), min_size=1, max_size=3),
    eol=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=30000), max_size=40),
)
def test_decoder_any_chunking_hypothesis(parts: list[bytes], eol: bytes, cuts: list[int]) -> None:
    data = _line_ends(b"".join(parts), eol)
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    assert _decode(chunks) == _decode([data])


def test_anthropic_stream_usage_at_every_split() -> None:
    for i in range(0, len(ANTHROPIC) + 1, 7):
        tap = _tap("anthropic", ANTHROPIC, [i])
        assert tap.usage == ANTHROPIC_USAGE, i
        assert tap.finished and tap.error is None


def test_anthropic_interrupted_stream_has_unknown_output() -> None:
    cut = ANTHROPIC.index(b"event: message_delta")
    tap = _tap("anthropic", ANTHROPIC[:cut], [])
    assert tap.usage == Usage(2095, 1200, 300, 30000, None)
    assert not tap.usage.complete and not tap.finished


def test_anthropic_late_error_event_after_200() -> None:
    tap = _tap("anthropic", b"".join(anthropic_stream(late_error=True)), [100, 2000])
    assert tap.error == "overloaded_error"
    assert tap.usage is not None and tap.usage.output_tokens is None


def test_anthropic_message_delta_overrides_and_total_write_without_split() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 10, "cache_creation_input_tokens": 50,
                                                            "output_tokens": 1}}}
    delta = {"type": "message_delta", "delta": {}, "usage": {"input_tokens": 12, "cache_read_input_tokens": 7,
                                                             "output_tokens": 99}}
    tap = _tap("anthropic", sse("message_start", start) + sse("message_delta", delta), [])
    assert tap.usage == Usage(12, 50, 0, 7, 99)


def test_no_usage_is_unknown_not_zero() -> None:
    tap = _tap("anthropic", sse("ping", {"type": "ping"}), [])
    assert tap.usage is None
    tap = _tap("openai_chat", b"".join(openai_chat_stream(include_usage=False)), [50])
    assert tap.usage is None and tap.finished


def test_openai_chat_usage_chunk_is_found_and_flagged() -> None:
    tap = UsageTap("openai_chat", streaming=True)
    events = [e for c in openai_chat_stream(include_usage=True) for e in tap.feed(c)] + tap.flush()
    assert tap.usage == CHAT_USAGE and tap.finished
    flagged = [e for e in events if e.usage_only]
    assert len(flagged) == 1 and json.loads(flagged[0].data)["choices"] == []


def test_openai_stream_error_chunk() -> None:
    tap = _tap("openai_chat", b'data: {"error":{"message":"boom","type":"server_error"}}\n\n', [])
    assert tap.error == "server_error" and tap.usage is None


def test_responses_stream_usage_at_every_split() -> None:
    for i in range(0, len(RESPONSES) + 1, 11):
        tap = _tap("openai_responses", RESPONSES, [i])
        assert tap.usage == RESPONSES_USAGE, i
        assert tap.finished


def test_responses_failed_records_error() -> None:
    obj = {"type": "response.failed", "response": {"usage": None, "error": {"code": "server_error"}}}
    tap = _tap("openai_responses", sse("response.failed", obj), [])
    assert tap.error == "server_error" and tap.finished and tap.usage is None


@pytest.mark.parametrize(
    ("fmt", "body", "usage"),
    [
        ("anthropic", anthropic_json(), Usage(812, 0, 0, 41000, 56)),
        ("openai_chat", openai_chat_json(), CHAT_USAGE),
        ("openai_responses", responses_json(), RESPONSES_USAGE),
    ],
)
def test_json_bodies_plain_gzip_and_deflate(fmt, body: bytes, usage: Usage) -> None:
    for encoding, data in (("", body), ("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        tap = _tap(fmt, data, list(range(0, len(data), 13)), streaming=False, encoding=encoding)
        assert tap.usage == usage, encoding
        assert tap.finished


def test_gzip_stream_is_read_incrementally() -> None:
    data = gzip.compress(ANTHROPIC)
    assert _tap("anthropic", data, list(range(0, len(data), 5)), encoding="gzip").usage == ANTHROPIC_USAGE


def test_unreadable_encoding_gives_unknown_usage() -> None:
    tap = _tap("anthropic", b"\x8b\x00\x01garbage", [], streaming=False, encoding="br")
    assert not tap.readable and tap.usage is None
    tap = _tap("anthropic", b"not gzip at all", [], streaming=False, encoding="gzip")
    assert not tap.readable and tap.usage is None


def test_error_body_json() -> None:
    body = b'{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}'
    tap = _tap("anthropic", body, [], streaming=False)
    assert tap.error == "rate_limit_error" and tap.usage is None


def test_json_body_over_the_cap_is_unknown() -> None:
    tap = UsageTap("anthropic", streaming=False, max_body_bytes=100)
    tap.feed(anthropic_json())
    tap.flush()
    assert tap.usage is None


def test_decoder_does_not_rescan_a_long_line_arriving_in_pieces() -> None:
    dec = SseDecoder()
    line = b"data: " + b"x" * 50_000
    for i in range(0, len(line), 1000):
        assert dec.feed(line[i : i + 1000]) == []
        assert dec._hunt == len(dec._buf)  # the next search starts where this one ended
    (ev,) = dec.feed(b"\n\n")
    assert ev.raw == line + b"\n\n" and ev.data == b"x" * 50_000


def test_dropping_the_usage_chunk_at_every_split_keeps_every_other_byte() -> None:
    chunks = openai_chat_stream(include_usage=True)
    want = b"".join(chunks[:-2] + chunks[-1:])
    for i in range(len(CHAT) + 1):
        tap = UsageTap("openai_chat", streaming=True)
        events = tap.feed(CHAT[:i]) + tap.feed(CHAT[i:]) + tap.flush()
        assert b"".join(e.raw for e in events if not e.usage_only) == want, i
        assert tap.usage == CHAT_USAGE
