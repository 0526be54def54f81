from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxgate.errors import ConfigError
from ctxgate.pricing import PriceTable, builtin_prices, load_price_file, price_from_mapping
from ctxgate.store.base import Price


def test_builtin_has_cache_prices_for_common_models() -> None:
    prices = builtin_prices()
    for name in ("claude-sonnet-4-5", "claude-opus-4-5", "claude-haiku-4-5", "gpt-4o", "gpt-4.1", "gpt-5", "o3"):
        p = prices[name]
        assert p.input > 0 and p.output >= p.input and p.cache_read <= p.input
    sonnet = prices["claude-sonnet-4-5"]
    assert (sonnet.input, sonnet.cache_read, sonnet.cache_write, sonnet.cache_write_1h) == (3.0, 0.3, 3.75, 6.0)


@pytest.mark.parametrize(
    ("model", "matched", "rule"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5", "exact"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5", "normalized"),
        ("anthropic/claude-opus-4-5-20251101", "claude-opus-4-5", "normalized"),
        ("bedrock/us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet", "normalized"),
        ("openai/gpt-4o-mini-2024-07-18", "gpt-4o-mini", "normalized"),
        ("claude-sonnet-4-5-thinking", "claude-sonnet-4-5", "family"),
        ("gpt-4o-audio-preview", "gpt-4o", "family"),
        ("gpt-4.1-mini-fast", "gpt-4.1-mini", "family"),
        ("llama-3-70b", "fallback", "fallback"),
        ("default", "fallback", "fallback"),
    ],
)
def test_lookup_rules(model: str, matched: str, rule: str) -> None:
    p = PriceTable(7.5).lookup(model)
    assert (p.model, p.rule) == (matched, rule)
    if rule == "fallback":
        assert p.input == p.output == p.cache_read == 7.5


def test_family_needs_a_boundary() -> None:
    # "o3" must not swallow "o3x" nor "gpt-4" swallow "gpt-40"
    table = PriceTable(1.0)
    assert table.lookup("o3x-preview").rule == "fallback"
    assert table.lookup("gpt-40").rule == "fallback"


def test_file_overrides_builtin_and_adds_models(tmp_path: Path) -> None:
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"models": {
        "claude-sonnet-4-5": {"input": 2.5},
        "my-model": {"input": 1.0, "output": 2.0, "cache_read": 0.1, "cache_write": 1.25},
        "bare": 4,
    }}))
    table = PriceTable(3.0, file=f)
    s = table.lookup("claude-sonnet-4-5")
    assert (s.input, s.output, s.cache_read) == (2.5, 15.0, 0.3)  # unspecified fields keep built-in values
    assert table.lookup("my-model-2024-01-01").input == 1.0
    bare = table.lookup("bare")
    assert bare.input == bare.cache_read == bare.cache_write == 4.0  # no discount assumed
    assert table.source_of("claude-sonnet-4-5") == "file" and table.source_of("gpt-4o") == "builtin"


@pytest.mark.parametrize(("suffix", "text"), [
    (".yaml", "models:\n  m1: {input: 1.5}\n"),
    (".toml", "[models.m1]\ninput = 1.5\n"),
    (".json", '{"m1": 1.5}'),
])
def test_file_formats(tmp_path: Path, suffix: str, text: str) -> None:
    f = tmp_path / f"p{suffix}"
    f.write_text(text)
    assert load_price_file(f, {})["m1"].input == 1.5


@pytest.mark.parametrize("text", ['{"m": {"input": -1}}', '{"m": {"input": "x"}}', '{"m": {"output": 1}}', "[1]", "{bad"])
def test_bad_files_name_the_problem(tmp_path: Path, text: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(ConfigError, match="pricing_file"):
        load_price_file(f, {})


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PriceTable(3.0, file=tmp_path / "nope.json")


def test_remote_layer_wins_and_clears_the_lookup_cache() -> None:
    table = PriceTable(3.0)
    assert table.lookup("claude-sonnet-4-5-20250929").input == 3.0
    remote = price_from_mapping("claude-sonnet-4-5", {"input": 2.0, "cache_read": None}, table.snapshot()["claude-sonnet-4-5"], "t")
    table.update_remote({"claude-sonnet-4-5": remote, "acme-1": Price("acme-1", 9, 9, 9, 9)}, at=1.0)
    assert table.lookup("claude-sonnet-4-5-20250929").input == 2.0
    assert table.lookup("claude-sonnet-4-5-20250929").cache_read == 0.3
    assert table.lookup("acme-1").input == 9 and table.source_of("acme-1") == "postgres"
    assert table.remote_refreshed_at == 1.0
