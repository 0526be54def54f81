"""Dollars of one proxied call: what the provider billed, and what it would have billed uncompressed.

Pure arithmetic, no I/O. ``Usage`` holds the provider's own token counts by
billing class, normalized across providers:

- ``input_tokens``: input billed at the full input price (Anthropic ``input_tokens``;
  OpenAI ``prompt_tokens`` minus ``cached_tokens``),
- ``cache_write_tokens`` / ``cache_write_1h_tokens``: Anthropic cache writes with a 5-minute and a
  1-hour lifetime (always 0 for OpenAI, which does not bill writes),
- ``cache_read_tokens``: input served from the prompt cache,
- ``output_tokens``: everything generated, reasoning included.

``None`` means the provider never said (an interrupted stream, an error body): it is
unknown, never zero, and any dollar figure that needs it is ``None`` too.

The counterfactual (the same call without compression) is an estimate: the tokens
ctxgate removed, counted by ctxgate's estimator, are converted into the provider's
units with the ratio between the provider's input count and ctxgate's count of the
body it sent, and priced at this call's own mix of input classes (a long session
whose prefix is read from cache saves mostly at the cache-read price). Output is
assumed unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctxgate.store.base import Price

__all__ = ["Usage", "billed_usd", "counterfactual_usd"]

_PER_TOKEN = 1e-6  # prices are USD per 1M tokens


@dataclass(frozen=True, slots=True)
class Usage:
    """Provider-reported tokens of one call by billing class; ``None`` is unknown."""

    input_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    cache_read_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def complete(self) -> bool:
        return None not in (
            self.input_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.cache_read_tokens,
            self.output_tokens,
        )

    @property
    def prompt_tokens(self) -> int | None:
        """All input tokens, whatever their class (None when a class is unknown)."""
        parts = (self.input_tokens, self.cache_write_tokens, self.cache_write_1h_tokens, self.cache_read_tokens)
        if any(p is None for p in parts):
            return None
        return sum(p for p in parts if p is not None)


def _write_1h_price(price: Price) -> float:
    # Anthropic bills 1-hour cache writes at twice the input price; a price book that
    # does not say otherwise gets that published multiplier.
    return price.cache_write_1h if price.cache_write_1h is not None else 2.0 * price.input


def _input_usd(usage: Usage, price: Price) -> float | None:
    if usage.prompt_tokens is None:
        return None
    assert usage.input_tokens is not None and usage.cache_write_tokens is not None
    assert usage.cache_write_1h_tokens is not None and usage.cache_read_tokens is not None
    return (
        usage.input_tokens * price.input
        + usage.cache_write_tokens * price.cache_write
        + usage.cache_write_1h_tokens * _write_1h_price(price)
        + usage.cache_read_tokens * price.cache_read
    ) * _PER_TOKEN


def billed_usd(usage: Usage, price: Price) -> float | None:
    """What the provider billed for this call, or None when any class is unknown."""
    inp = _input_usd(usage, price)
    if inp is None or usage.output_tokens is None:
        return None
    return round(inp + usage.output_tokens * price.output * _PER_TOKEN, 10)


def counterfactual_usd(usage: Usage, price: Price, tokens_before: int, tokens_after: int) -> float | None:
    """Estimated cost of the same call sent uncompressed (None when the billed cost is unknown).

    ``tokens_before``/``tokens_after`` are ctxgate's counts of the original and the sent body.
    """
    billed = billed_usd(usage, price)
    if billed is None:
        return None
    saved = max(0, tokens_before - tokens_after)
    prompt = usage.prompt_tokens or 0
    if saved == 0:
        return billed
    # ctxgate's count -> the provider's units, calibrated on the body that was actually sent
    scale = prompt / tokens_after if tokens_after > 0 and prompt > 0 else 1.0
    saved_provider = saved * scale
    inp = _input_usd(usage, price) or 0.0
    # price per input token of this call's own class mix; a call with no input falls back to list price
    per_token = inp / prompt if prompt > 0 else price.input * _PER_TOKEN
    return round(billed + saved_provider * per_token, 10)
