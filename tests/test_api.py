from __future__ import annotations

import pytest

import ctxgate


def test_empty_messages() -> None:
    r = ctxgate.compress([])
    assert r.messages == [] and r.tokens_before == r.tokens_after == r.tokens_saved == 0
    assert r.compression_ratio == 1.0


def test_passes_content_through_and_counts() -> None:
    msgs = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    r = ctxgate.compress(msgs, model="gpt-4o")
    assert r.messages == msgs
    assert r.tokens_before > 0 and 0.0 <= r.compression_ratio <= 1.0


def test_rejects_non_list() -> None:
    with pytest.raises(TypeError):
        ctxgate.compress({"role": "user"})  # type: ignore[arg-type]
