"""The library API: ``ctxgate.compress(messages, model=...)``.

It accepts an OpenAI Chat or Anthropic Messages list and returns a
``CompressResult``. The conversation layer does the work; this module only
shapes inputs and outputs for Python callers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ctxgate import tokens


@dataclass(slots=True)
class CompressResult:
    messages: list[dict[str, Any]]
    tokens_before: int
    tokens_after: int
    transforms_applied: list[str] = field(default_factory=list)
    ccr_hashes: list[str] = field(default_factory=list)
    estimator: str = "o200k_base"
    skip_reason: str | None = None

    @property
    def tokens_saved(self) -> int:
        return max(0, self.tokens_before - self.tokens_after)

    @property
    def compression_ratio(self) -> float:
        """after / before; 1.0 when nothing was saved (or nothing was sent)."""
        if self.tokens_before <= 0:
            return 1.0
        return min(1.0, max(0.0, self.tokens_after / self.tokens_before))


def compress(messages: list[dict[str, Any]], model: str = "default", **options: Any) -> CompressResult:
    """Compress the tool outputs of a message list. Content passes through unchanged for now."""
    if not isinstance(messages, list):
        raise TypeError("messages must be a list of message objects")
    n = tokens.count(json.dumps(messages, ensure_ascii=False), model) if messages else None
    before = n.tokens if n else 0
    return CompressResult(
        messages=messages,
        tokens_before=before,
        tokens_after=before,
        estimator=n.estimator if n else tokens.counter_for(model).name,
        skip_reason="not_implemented",
    )
