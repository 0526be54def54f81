from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxgate import tokens

_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(tiktoken.load, "read_file", refuse)


@pytest.fixture
def official(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None):
    """tiktoken's own get_encoding, fed through its own cache with the shipped files.

    tiktoken verifies the file against its pinned hash and builds the encoding with
    its own pattern and special tokens, so this is the reference implementation.
    """
    import base64
    import gzip

    for name, url in _URLS.items():
        data = gzip.decompress(tokens._vocabulary_path(name).read_bytes())
        (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
        assert base64.b64decode(data.split()[0])  # a real vocabulary line
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    import tiktoken.registry

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    return tiktoken.get_encoding


def _corpus_texts(corpus: Path) -> list[str]:
    texts = []
    for path in sorted((corpus / "outputs").rglob("*")):
        if path.is_file() and not path.name.endswith(".jsonl"):
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
    for path in sorted((corpus / "trajectories").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            for msg in json.loads(line).get("messages", []):
                if isinstance(msg.get("content"), str):
                    texts.append(msg["content"])
    return texts


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_exact_against_tiktoken_on_whole_corpus(corpus: Path, official, name: str) -> None:
    ref = official(name)
    ours = tokens.load_encoding(name)
    texts = _corpus_texts(corpus)
    assert len(texts) > 1000
    mismatches = [i for i, t in enumerate(texts) if ref.encode_ordinary(t) != ours.encode_ordinary(t)]
    assert mismatches == []
    # the counter the counts come from (bpe-openai's own Rust counter) agrees on every text too
    fast = tokens.fast_counter(name)
    assert fast is not None
    assert [i for i, t in enumerate(texts) if fast(t) != len(ref.encode_ordinary(t))] == []


def test_special_tokens_count_as_text(no_network: None) -> None:
    # Tool output may contain "<|endoftext|>"; it must be counted, never raise.
    assert tokens.count("a <|endoftext|> b", "gpt-4o").tokens > 3


def test_vocabulary_hash_is_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tokens._EXPECTED_SHA256, "o200k_base", "0" * 64)
    tokens.load_encoding.cache_clear()
    try:
        with pytest.raises(ValueError, match="hash mismatch"):
            tokens.load_encoding("o200k_base")
    finally:
        monkeypatch.undo()
        tokens.load_encoding.cache_clear()


@pytest.mark.parametrize(
    ("model", "norm", "estimator"),
    [
        ("openai/gpt-4o-2024-08-06", "gpt-4o", "o200k_base"),
        ("gpt-4.1-mini", "gpt-4.1-mini", "o200k_base"),
        ("gpt-5", "gpt-5", "o200k_base"),
        ("gpt-4-0613", "gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo", "gpt-3.5-turbo", "cl100k_base"),
        ("bedrock/us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet", "claude-o200k-x1.19"),
        ("anthropic/claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "claude-o200k-x1.19"),
        ("claude-opus-4-6", "claude-opus-4-6", "claude-o200k-x1.19"),
        ("claude-opus-4-7", "claude-opus-4-7", "claude-o200k-x1.48"),
        ("claude-opus-4-8", "claude-opus-4-8", "claude-o200k-x1.48"),
        ("vertex_ai/claude-opus-4-8@20261001", "claude-opus-4-8", "claude-o200k-x1.48"),
        ("default", "default", "o200k_base"),
        ("", "default", "o200k_base"),
        ("some-local-model", "some-local-model", "o200k_base"),
    ],
)
def test_model_registry(model: str, norm: str, estimator: str) -> None:
    assert tokens.normalize_model(model) == norm
    assert tokens.counter_for(model).name == estimator


def test_claude_estimate_is_scaled_o200k_and_says_so() -> None:
    text = "def f(x):\n    return x * 2\n" * 40
    base = tokens.count(text, "gpt-4o").tokens
    c = tokens.count(text, "claude-sonnet-4-5")
    assert not c.exact and c.estimator.startswith("claude-")
    assert base * 1.19 <= c.tokens <= base * 1.19 + 1


def test_cache_returns_same_counts() -> None:
    text = "x" * 1000 + "hello"
    assert tokens.count(text).tokens == tokens.count(text).tokens == len(tokens.load_encoding("o200k_base").encode_ordinary(text))


def test_lone_surrogates_do_not_raise() -> None:
    assert tokens.count("abc\ud800def" * 30).tokens > 0
    # the fast counter refuses them; tiktoken counts them (as U+FFFD)
    assert tokens.BpeCounter("o200k_base").count("a\ud800b") == len(tokens.load_encoding("o200k_base").encode_ordinary("a\ud800b"))


@settings(max_examples=400, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",))) | st.lists(st.sampled_from(
    ["'s", "'LL", " ", "   ", "\n\n", "\r\n", "\t", "7", "1234", "abc", "ABC", "aBc", "Éa", "日本", "😀", "\u0301",
     "\u00a0", "...", "://", "__x__", "<|endoftext|>"]), max_size=30).map("".join), st.sampled_from(["o200k_base", "cl100k_base"]))
def test_fast_counter_agrees_with_tiktoken(text: str, name: str) -> None:
    fast = tokens.fast_counter(name)
    assert fast is not None and fast(text) == len(tokens.load_encoding(name).encode_ordinary(text))


def test_fast_counter_is_not_used_when_it_disagrees_with_tiktoken(monkeypatch: pytest.MonkeyPatch) -> None:
    class Shifted:
        """tiktoken's answer plus one token: a reference the fast counter cannot agree with."""

        def encode_ordinary(self, text: str) -> list[int]:
            return [0, *tokens.load_encoding("o200k_base").encode_ordinary(text)]

    real = tokens.load_encoding
    tokens.fast_counter.cache_clear()
    monkeypatch.setattr(tokens, "load_encoding", lambda name: Shifted() if name == "o200k_base" else real(name))
    try:
        assert tokens.fast_counter("o200k_base") is None
        assert tokens.fast_counter("cl100k_base") is not None
    finally:
        tokens.fast_counter.cache_clear()


def test_long_texts_count_the_same_from_every_thread() -> None:
    """Long texts go to the thread that owns the encoding's fast path when it is free; the counts
    do not depend on which thread counts."""
    from concurrent.futures import ThreadPoolExecutor

    enc = tokens.load_encoding("o200k_base")
    texts = [f"{i} " + "lorem ipsum dolor sit amet, 12345 éè\n" * (20 + 97 * i) for i in range(12)]
    counter = tokens.BpeCounter("o200k_base")
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(counter.count, texts))
    assert got == [len(enc.encode_ordinary(t)) for t in texts] == [counter.count(t) for t in texts]
    assert max(map(len, texts)) >= tokens._HANDOFF_CHARS > min(map(len, texts))
    assert not tokens._COUNTING._busy
