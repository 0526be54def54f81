"""Offline token counting: model name -> counter, no network access, ever.

OpenAI encodings (``o200k_base``, ``cl100k_base``) are exact: tiktoken's Rust BPE
runs on the vocabulary files that the ``bpe-openai`` wheel ships, checked against
the SHA-256 that tiktoken itself pins for them. tiktoken's own loader is never
called, so nothing is fetched or cached on disk.

Claude models have no public tokenizer. Their counts are an estimate: the exact
o200k count times a per-generation factor (see docs/TOKENS.md for the method and
its error). Every count carries the name of the estimator that produced it, e.g.
``o200k_base`` (exact) or ``claude-o200k-x1.19`` (estimate).

Counting is on the hot path, so results are cached by content hash, and counts come from
the counter of the ``bpe-openai`` wheel itself (Rust, about twice as fast as tiktoken, same
counts: it is used only after agreeing with tiktoken on a self-test, and tiktoken counts
whatever it refuses, such as lone surrogates). On the tiktoken path, long texts are counted
on the one thread that owns the encoding's fast path (see ``_CountingThread``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.machinery
import importlib.util
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Protocol

import tiktoken

__all__ = [
    "TokenCounter",
    "BpeCounter",
    "ClaudeEstimate",
    "Count",
    "counter_for",
    "count",
    "normalize_model",
    "load_encoding",
    "fast_counter",
]

# Pinned by tiktoken (tiktoken_ext/openai_public.py) for the official files.
_EXPECTED_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}

_PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}

_SPECIALS = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}


def _vocabulary_path(name: str) -> Path:
    """Where bpe-openai ships the file, found without importing bpe_openai (its import is slow)."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the bpe-openai package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"


@cache
def load_encoding(name: str) -> tiktoken.Encoding:
    """Build an exact tiktoken Encoding from the vocabulary shipped in bpe-openai."""
    if name not in _EXPECTED_SHA256:
        raise ValueError(f"unknown encoding {name!r}; known: {sorted(_EXPECTED_SHA256)}")
    raw = gzip.decompress(_vocabulary_path(name).read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _EXPECTED_SHA256[name]:
        raise ValueError(f"{name}: vocabulary hash mismatch ({digest}); refusing to count with it")
    ranks: dict[bytes, int] = {}
    for line in raw.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    enc = tiktoken.Encoding(
        name=name,
        pat_str=_PATTERNS[name],
        mergeable_ranks=ranks,
        special_tokens=_SPECIALS[name],
    )
    _COUNTING.claim(enc)
    return enc


#: texts at least this long are counted on the counting thread (when it is free)
_HANDOFF_CHARS = 8192


class _CountingThread:
    """One thread that uses every encoding first, and counts the long texts of other threads.

    tiktoken splits text with the Rust ``regex`` crate, whose match cache has a fast path for
    the first thread that uses a regex and a shared, locked one for every other thread: on a
    40K-character text the other threads take about 50% longer (2.3 ms against 3.4 ms). The
    pipeline counts in worker threads, so the thread that owns the fast path is this one: it
    makes the first call on each encoding as it is built, and counts the long texts that other
    threads hand it when it is idle (a busy one does not make them wait: they count themselves).
    The counts are the same either way; only the time differs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._ident = -1
        self._busy = False

    def _start(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="ctxgate-tokens")
                self._ident = self._pool.submit(threading.get_ident).result()
            return self._pool

    def claim(self, enc: tiktoken.Encoding) -> None:
        """Make this thread the first user of ``enc``."""
        pool = self._start()
        if threading.get_ident() == self._ident:
            enc.encode_ordinary("claim")
        else:
            pool.submit(enc.encode_ordinary, "claim").result()

    def count(self, enc: tiktoken.Encoding, text: str) -> int:
        pool = self._start()
        if len(text) >= _HANDOFF_CHARS and threading.get_ident() != self._ident:
            with self._lock:
                free, self._busy = not self._busy, True
            if free:
                try:
                    return pool.submit(_ordinary_count, enc, text).result()
                finally:
                    self._busy = False
        return _ordinary_count(enc, text)

    def forget(self) -> None:
        """In a forked child: the thread did not survive the fork, so start afresh."""
        self._lock = threading.Lock()
        self._pool, self._ident, self._busy = None, -1, False
        load_encoding.cache_clear()  # the inherited encodings' fast path belongs to a thread that is gone


def _ordinary_count(enc: tiktoken.Encoding, text: str) -> int:
    return len(enc.encode_ordinary(text))


_COUNTING = _CountingThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_COUNTING.forget)


class TokenCounter(Protocol):
    """Counts the tokens of a text. ``name`` says which estimator it is."""

    name: str
    exact: bool

    def count(self, text: str) -> int: ...


class BpeCounter:
    """Exact count with an OpenAI BPE encoding. Special-token text counts as ordinary text."""

    exact = True

    def __init__(self, encoding: str) -> None:
        self.name = encoding
        self._encoding_name = encoding

    def count(self, text: str) -> int:
        fast = fast_counter(self._encoding_name)
        if fast is not None:
            try:
                return fast(text)
            except ValueError:  # e.g. a lone surrogate (UnicodeEncodeError): tiktoken replaces it
                pass
        return _COUNTING.count(load_encoding(self._encoding_name), text)


#: texts on which the fast counter must agree with tiktoken before it is used: contractions,
#: digits, whitespace runs, scripts, marks, emoji, special-token text
_SELF_TEST = (
    "",
    "Hello, world! It's 2024-01-01 12:00:00; they'll say we've I'M DON'T x=1+2",
    "  leading\n\n\ttabs\r\n  trailing   \n",
    "1234567890 12 123 1234 3.14159 -42 0x1F",
    "naïve café ÉCOLE Ελληνικά русский 日本語のテキスト 中文 한국어 العربية עברית",
    "e\u0301 \u200d \u00a0 \u2028 \u3000 \ufeff 😀👍🏽 🇫🇷",
    "<|endoftext|> <|endofprompt|> <|fim_prefix|>",
    "def f(x):\n    return {'a': [1, 2]}  # comment\n\n\n",
    "https://example.com/path?q=1&r=2 /usr/local/bin C:\\Windows\\System32",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" * 20,
)


@cache
def fast_counter(name: str) -> Callable[[str], int] | None:
    """The ``bpe-openai`` wheel's own Rust counter for an encoding, or None when it cannot be used.

    Its extension module is loaded on its own (the package's ``__init__`` takes half a second to
    import); it embeds the same vocabularies. It is returned only when it agrees with tiktoken on
    ``_SELF_TEST``; tests/test_tokens.py checks it against tiktoken on the whole corpus too.
    """
    try:
        spec = importlib.util.find_spec("bpe_openai")
        if spec is None or not spec.submodule_search_locations:
            return None
        folder = Path(next(iter(spec.submodule_search_locations)))
        path = next(
            (folder / f"_bindings{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES
             if (folder / f"_bindings{suffix}").is_file()),
            None,
        )
        if path is None:
            return None
        module_spec = importlib.util.spec_from_file_location("bpe_openai._bindings", path)
        if module_spec is None or module_spec.loader is None:
            return None
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        counter: Callable[[str], int] = module.tokenizer_for_encoding(name).count
        reference = load_encoding(name)
        if any(counter(t) != len(reference.encode_ordinary(t)) for t in _SELF_TEST):
            return None
    except Exception:  # noqa: BLE001 - any problem with the fast counter: tiktoken counts
        return None
    return counter


class ClaudeEstimate:
    """Estimate of a Claude token count: ceil(o200k count x factor). See docs/TOKENS.md."""

    exact = False

    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.name = f"claude-o200k-x{factor:.2f}"
        self._base = BpeCounter("o200k_base")

    def count(self, text: str) -> int:
        return math.ceil(self._base.count(text) * self.factor)


#: Claude 3 up to Opus 4.6: public measurements put it 7-31% above o200k; the midpoint
#: bounds the relative error to about +-10% over that range.
CLAUDE_LEGACY_FACTOR = 1.19
#: Claude Opus 4.7 and later (new tokenizer): 34-62% above o200k; midpoint, about +-10%.
CLAUDE_47_FACTOR = 1.48

_O200K = BpeCounter("o200k_base")
_CL100K = BpeCounter("cl100k_base")
_CLAUDE_LEGACY = ClaudeEstimate(CLAUDE_LEGACY_FACTOR)
_CLAUDE_47 = ClaudeEstimate(CLAUDE_47_FACTOR)

_PREFIX = re.compile(
    r"^(?:(?:openai|anthropic|azure|azure_ai|bedrock|vertex_ai|vertex|openrouter|litellm|maas|gcp|aws)[/:])+"
)
_BEDROCK = re.compile(r"^(?:[a-z]{2}(?:-[a-z]+)?\.)?(?:anthropic|openai)\.")
_SUFFIX = re.compile(r"(?:[-@]\d{8}|-\d{4}-\d{2}-\d{2}|-v\d+(?::\d+)?|:\d+|-latest)+$")


def normalize_model(model: str) -> str:
    """``bedrock/us.anthropic.claude-3-5-sonnet-20241022-v2:0`` -> ``claude-3-5-sonnet``."""
    m = (model or "default").strip().lower()
    m = _PREFIX.sub("", m)
    m = m.rsplit("/", 1)[-1]
    m = _BEDROCK.sub("", m)
    m = _SUFFIX.sub("", m)
    return m or "default"


_CLAUDE_VERSION = re.compile(
    r"claude-(?:(?:opus|sonnet|haiku)-(\d+)(?:[-.](\d))?|(\d+)(?:[-.](\d))?-(?:opus|sonnet|haiku))"
)


def _claude_counter(norm: str) -> TokenCounter:
    m = _CLAUDE_VERSION.search(norm)
    if m:
        major = int(m.group(1) or m.group(3))
        minor = int(m.group(2) or m.group(4) or 0)
        if (major, minor) >= (4, 7):
            return _CLAUDE_47
    return _CLAUDE_LEGACY


@lru_cache(maxsize=4096)
def counter_for(model: str) -> TokenCounter:
    """The counter for a model name, tolerant of provider prefixes and dated suffixes."""
    norm = normalize_model(model)
    if "claude" in norm:
        return _claude_counter(norm)
    if norm.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt", "gpt-oss")):
        return _O200K
    if norm.startswith(("gpt-4", "gpt-3.5", "text-embedding", "davinci", "babbage")):
        return _CL100K
    return _O200K


@dataclass(frozen=True, slots=True)
class Count:
    tokens: int
    estimator: str
    exact: bool


class _CountCache:
    """A bounded LRU of (estimator, content hash) -> tokens, safe across threads."""

    def __init__(self, maxsize: int = 65536) -> None:
        self._data: OrderedDict[tuple[str, bytes], int] = OrderedDict()
        self._max = maxsize
        self._lock = threading.Lock()

    def get(self, key: tuple[str, bytes]) -> int | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, bytes], value: int) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self._max:
                self._data.popitem(last=False)


_CACHE = _CountCache()
_SMALL = 64  # below this many characters hashing costs about as much as counting


def count(text: str, model: str = "default") -> Count:
    """Token count of ``text`` for ``model``, cached by content hash."""
    counter = counter_for(model)
    if len(text) < _SMALL:
        return Count(counter.count(text), counter.name, counter.exact)
    key = (counter.name, hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest())
    cached = _CACHE.get(key)
    if cached is None:
        cached = counter.count(text)
        _CACHE.put(key, cached)
    return Count(cached, counter.name, counter.exact)
