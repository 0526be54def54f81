import pytest

from ctxgate.billing import Usage, billed_usd, counterfactual_usd
from ctxgate.store.base import Price

SONNET = Price("claude-sonnet-4-5", input=3.0, output=15.0, cache_read=0.30, cache_write=3.75, cache_write_1h=6.0)
GPT = Price("gpt-4.1", input=2.0, output=8.0, cache_read=0.50, cache_write=2.0)


def test_billed_by_class_with_cache_prices() -> None:
    u = Usage(input_tokens=1_000_000, cache_write_tokens=1_000_000, cache_write_1h_tokens=1_000_000,
              cache_read_tokens=1_000_000, output_tokens=1_000_000)
    assert billed_usd(u, SONNET) == pytest.approx(3.0 + 3.75 + 6.0 + 0.30 + 15.0)
    small = Usage(2095, 1200, 300, 30000, 187)
    want = (2095 * 3.0 + 1200 * 3.75 + 300 * 6.0 + 30000 * 0.30 + 187 * 15.0) / 1e6
    assert billed_usd(small, SONNET) == pytest.approx(want)


def test_one_hour_write_defaults_to_twice_input() -> None:
    u = Usage(0, 0, 1_000_000, 0, 0)
    assert billed_usd(u, GPT) == pytest.approx(4.0)


def test_unknown_class_gives_unknown_dollars() -> None:
    u = Usage(2095, 1200, 300, 30000, None)
    assert not u.complete and u.prompt_tokens == 2095 + 1200 + 300 + 30000
    assert billed_usd(u, SONNET) is None
    assert counterfactual_usd(u, SONNET, 1000, 500) is None
    assert Usage().prompt_tokens is None and billed_usd(Usage(), SONNET) is None


def test_counterfactual_equals_billed_without_savings() -> None:
    u = Usage(100, 0, 0, 0, 10)
    assert counterfactual_usd(u, SONNET, 500, 500) == billed_usd(u, SONNET)
    assert counterfactual_usd(u, SONNET, 400, 500) == billed_usd(u, SONNET)  # never negative savings


def test_counterfactual_scales_to_provider_units_and_uses_the_class_mix() -> None:
    # provider counted 10_000 input tokens for a body ctxgate counted as 8_000: scale 1.25
    u = Usage(input_tokens=1_000, cache_write_tokens=0, cache_write_1h_tokens=0, cache_read_tokens=9_000,
              output_tokens=100)
    billed = billed_usd(u, SONNET)
    assert billed is not None
    cf = counterfactual_usd(u, SONNET, tokens_before=12_000, tokens_after=8_000)
    per_token = (1_000 * 3.0 + 9_000 * 0.30) / 10_000 / 1e6
    assert cf == pytest.approx(billed + 4_000 * 1.25 * per_token)
    # all uncached: saved tokens at the full input price
    u2 = Usage(10_000, 0, 0, 0, 0)
    assert counterfactual_usd(u2, GPT, 20_000, 10_000) == pytest.approx(20_000 * 2.0 / 1e6)


def test_counterfactual_without_input_counts_falls_back_to_list_price() -> None:
    u = Usage(0, 0, 0, 0, 0)
    assert counterfactual_usd(u, GPT, 1_000, 0) == pytest.approx(1_000 * 2.0 / 1e6)
