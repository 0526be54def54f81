"""Reads the provider's ``usage`` from a copy of a response while it streams past.

Incremental and pure (no I/O, no clock): ``feed(chunk) -> events`` and then
``flush()``. The proxy forwards every chunk to the client as it arrives and hands a
copy to the tap; the tap holds at most one incomplete SSE event, never the stream.

- ``SseDecoder`` splits a byte stream into events (any of CRLF, LF, CR line ends,
  split anywhere, even inside a multi-byte character). Each event keeps its exact
  raw bytes, so joining ``raw`` of everything ``feed`` and ``flush`` return gives
  back the input byte for byte (the proxy relies on this to drop one event).
- ``UsageTap`` reads Anthropic ``message_start``/``message_delta`` usage (cache
  writes with the 5m/1h split, cache reads), the OpenAI chat usage chunk
  (``prompt_tokens_details.cached_tokens``) and the Responses
  ``response.completed``/``incomplete``/``failed`` usage (``input_tokens_details``),
  streamed or as one JSON body, gzip or deflate encoded or not.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from ctxgate.billing import Usage
from ctxgate.pipeline import WireFormat

__all__ = ["SseEvent", "SseDecoder", "UsageTap"]

_EOL = re.compile(rb"\r\n|\r|\n")
_RESPONSES_TERMINAL = ("response.completed", "response.incomplete", "response.failed")


@dataclass(slots=True)
class SseEvent:
    raw: bytes  #: exact bytes of the event, its terminating blank line included
    event: str | None  #: the ``event:`` field, if any
    data: bytes  #: the ``data:`` lines joined with ``\n``
    #: set by ``UsageTap``: an OpenAI chat chunk that carries only usage (``choices: []``)
    usage_only: bool = False


class SseDecoder:
    """Incremental Server-Sent Events decoder that keeps every event's raw bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  # lines before this offset of _buf are parsed
        self._event: str | None = None
        self._data: list[bytes] = []
        self._lines = False  # a non-blank line since the last event
        self._hunt = 0  # no line end in _buf before this offset (a long line arriving in pieces)

    def feed(self, chunk: bytes) -> list[SseEvent]:
        self._buf += chunk
        return self._drain(final=False)

    def flush(self) -> list[SseEvent]:
        """End of stream: an unterminated last event is still returned (its raw bytes too)."""
        out = self._drain(final=True)
        if self._scan < len(self._buf):
            self._field(bytes(self._buf[self._scan :]))  # a last line without its line end
        if self._buf:
            out.append(SseEvent(bytes(self._buf), self._event, b"\n".join(self._data)))
        self._buf.clear()
        self._scan, self._hunt, self._event, self._data, self._lines = 0, 0, None, [], False
        return out

    def _drain(self, final: bool) -> list[SseEvent]:
        events: list[SseEvent] = []
        buf, pos, start, hunt = self._buf, self._scan, 0, self._hunt
        while True:
            m = _EOL.search(buf, max(pos, hunt))
            if m is None:
                hunt = len(buf)
                break
            if m.group() == b"\r" and m.end() == len(buf) and not final:
                hunt = m.start()
                break  # maybe the first half of CRLF: wait for the next byte
            line = bytes(buf[pos : m.start()])
            pos = m.end()
            if not line:
                if self._lines:  # blank lines before any field stay with the next event's bytes
                    events.append(SseEvent(bytes(buf[start:pos]), self._event, b"\n".join(self._data)))
                    self._event, self._data, self._lines = None, [], False
                    start = pos
                continue
            self._lines = True
            self._field(line)
        if start:
            del buf[:start]
        self._scan = pos - start
        self._hunt = max(0, hunt - start)
        return events

    def _field(self, line: bytes) -> None:
        if line.startswith(b":"):
            return  # comment
        name, sep, value = line.partition(b":")
        if sep and value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")


class _Inflater:
    """Decodes a gzip or deflate body incrementally; anything else it cannot read."""

    def __init__(self, encoding: str) -> None:
        enc = encoding.strip().lower()
        self.readable = enc in ("", "identity", "gzip", "x-gzip", "deflate")
        self._z = None
        if enc in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif enc == "deflate":
            self._z = zlib.decompressobj(zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> bytes:
        if self._z is None:
            return chunk
        try:
            return self._z.decompress(chunk)
        except zlib.error:
            self.readable, self._z = False, None
            return b""


def _int(obj: dict[str, Any], key: str) -> int | None:
    v = obj.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class UsageTap:
    """Collects the usage of one response of the given wire format.

    ``usage`` is ``None`` until the provider reports any; classes it has not reported
    stay ``None`` (unknown). ``finished`` says the terminal event arrived (or the JSON
    body parsed); ``error`` holds the type of an error event/body.
    """

    def __init__(
        self, fmt: WireFormat, *, streaming: bool, content_encoding: str = "", max_body_bytes: int = 64 << 20
    ) -> None:
        self.fmt = fmt
        self.streaming = streaming
        self.finished = False
        self.error: str | None = None
        self._inflate = _Inflater(content_encoding)
        self._sse = SseDecoder() if streaming else None
        self._body = bytearray()
        self._max_body = max_body_bytes
        self._fields: dict[str, int | None] = {}
        self._got_output = False

    @property
    def readable(self) -> bool:
        return self._inflate.readable

    def feed(self, chunk: bytes) -> list[SseEvent]:
        if not self._inflate.readable:
            return []
        data = self._inflate.feed(chunk)
        if self._sse is None:
            if len(self._body) + len(data) <= self._max_body:
                self._body += data
            else:
                self._inflate.readable = False
            return []
        events = self._sse.feed(data)
        for ev in events:
            self._event(ev)
        return events

    def flush(self) -> list[SseEvent]:
        if not self._inflate.readable:
            return []
        if self._sse is None:
            try:
                obj = json.loads(bytes(self._body))
            except ValueError:
                return []
            if isinstance(obj, dict):
                self._json_body(obj)
            return []
        events = self._sse.flush()
        for ev in events:
            self._event(ev)
        return events

    # --- results --------------------------------------------------------------

    @property
    def usage(self) -> Usage | None:
        if not self._fields:
            return None
        f = self._fields
        if self.fmt == "anthropic":
            return Usage(
                input_tokens=f.get("input"),
                cache_write_tokens=f.get("cw5"),
                cache_write_1h_tokens=f.get("cw1h"),
                cache_read_tokens=f.get("cr"),
                output_tokens=f.get("output") if self._got_output else None,
            )
        prompt, cached = f.get("prompt"), f.get("cached")
        return Usage(
            input_tokens=None if prompt is None else prompt - (cached or 0),
            cache_write_tokens=0 if prompt is not None else None,
            cache_write_1h_tokens=0 if prompt is not None else None,
            cache_read_tokens=None if prompt is None else (cached or 0),
            output_tokens=f.get("output"),
        )

    # --- parsing ----------------------------------------------------------------

    def _event(self, ev: SseEvent) -> None:
        data = ev.data
        if not data:
            return
        if data == b"[DONE]":
            self.finished = True
            return
        interesting = (
            (b'"usage"' in data and b'"usage":null' not in data)
            or b'"error"' in data
            or b"message_stop" in data
            or ev.event == "error"
            or ev.event in _RESPONSES_TERMINAL
        )
        if not interesting:
            return
        try:
            obj = json.loads(data)
        except ValueError:
            return
        if not isinstance(obj, dict):
            return
        kind = obj.get("type") or ev.event
        if kind == "error" or (self.fmt == "openai_chat" and isinstance(obj.get("error"), dict)):
            err = obj.get("error")
            self.error = str(err.get("type") or err.get("code") or "error") if isinstance(err, dict) else "error"
            return
        if self.fmt == "anthropic":
            if kind == "message_start" and isinstance(obj.get("message"), dict):
                self._anthropic(obj["message"].get("usage"), final=False)
            elif kind == "message_delta":
                self._anthropic(obj.get("usage"), final=True)
            elif kind == "message_stop":
                self.finished = True
        elif self.fmt == "openai_chat":
            usage = obj.get("usage")
            if isinstance(usage, dict):
                self._openai(usage, "prompt_tokens", "completion_tokens", "prompt_tokens_details")
                if obj.get("choices") == []:
                    ev.usage_only = True
        elif kind in _RESPONSES_TERMINAL:
            resp = obj.get("response")
            if isinstance(resp, dict):
                if isinstance(resp.get("usage"), dict):
                    self._openai(resp["usage"], "input_tokens", "output_tokens", "input_tokens_details")
                if kind == "response.failed":
                    err = resp.get("error")
                    self.error = str(err.get("code") or "failed") if isinstance(err, dict) else "failed"
            self.finished = True

    def _json_body(self, obj: dict[str, Any]) -> None:
        self.finished = True
        if isinstance(obj.get("error"), dict):
            err = obj["error"]
            self.error = str(err.get("type") or err.get("code") or "error")
        usage = obj.get("usage")
        if not isinstance(usage, dict):
            return
        if self.fmt == "anthropic":
            self._anthropic(usage, final=True)
        elif self.fmt == "openai_chat":
            self._openai(usage, "prompt_tokens", "completion_tokens", "prompt_tokens_details")
        else:
            self._openai(usage, "input_tokens", "output_tokens", "input_tokens_details")

    def _anthropic(self, usage: Any, *, final: bool) -> None:
        if not isinstance(usage, dict):
            return
        f = self._fields
        # a usage object that omits a class was billed nothing for it; later events override
        for key, name in (("input_tokens", "input"), ("cache_read_input_tokens", "cr")):
            v = _int(usage, key)
            if v is not None:
                f[name] = v
            else:
                f.setdefault(name, 0)
        total_write = _int(usage, "cache_creation_input_tokens")
        split = usage.get("cache_creation")
        five = _int(split, "ephemeral_5m_input_tokens") if isinstance(split, dict) else None
        hour = _int(split, "ephemeral_1h_input_tokens") if isinstance(split, dict) else None
        if five is not None or hour is not None:
            f["cw5"], f["cw1h"] = five or 0, hour or 0
        elif total_write is not None and (f.get("cw5") or 0) + (f.get("cw1h") or 0) != total_write:
            f["cw5"], f["cw1h"] = total_write, 0
        else:
            f.setdefault("cw5", 0)
            f.setdefault("cw1h", 0)
        if (v := _int(usage, "output_tokens")) is not None:
            f["output"] = v
            if final:
                self._got_output = True

    def _openai(self, usage: dict[str, Any], prompt: str, output: str, details: str) -> None:
        f = self._fields
        f["prompt"] = _int(usage, prompt)
        f["output"] = _int(usage, output)
        d = usage.get(details)
        f["cached"] = _int(d, "cached_tokens") if isinstance(d, dict) else None
