"""Model prices (USD per 1M tokens) and the lookup rules that map a model name to one.

Three layers, later ones win: the built-in list prices below, an optional file
(``settings.pricing_file``), and optionally the metering service's PostgreSQL
``model_pricing`` table, refreshed in the background (never in the request path).

Lookup of a model name, first match wins, and the returned ``Price.rule`` says which:

1. ``exact``: the name as sent is in the table;
2. ``normalized``: provider prefix and date/version suffix removed
   (``ctxgate.tokens.normalize_model``) it is in the table;
3. ``family``: the longest table key that the normalized name starts with, at a
   ``-``/``.`` boundary (``claude-sonnet-4-5-foo`` -> ``claude-sonnet-4-5``);
4. ``fallback``: ``settings.fallback_cost_per_mtok`` for every kind of token.
"""

from __future__ import annotations

import json
import logging
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ctxgate.errors import ConfigError
from ctxgate.store.base import Price
from ctxgate.tokens import normalize_model

log = logging.getLogger(__name__)

# (input, output, cache_read, cache_write_5m, cache_write_1h) per 1M tokens, list prices.
# Anthropic: cache read = 0.1x input, 5-minute write = 1.25x, 1-hour write = 2x.
# OpenAI: cached input is discounted automatically; there is no write surcharge (write = input).
_BUILTIN: dict[str, tuple[float, float, float, float, float | None]] = {
    # Anthropic
    "claude-opus-4-7": (5.0, 25.0, 0.50, 6.25, 10.0),
    "claude-opus-4-6": (5.0, 25.0, 0.50, 6.25, 10.0),
    "claude-opus-4-5": (5.0, 25.0, 0.50, 6.25, 10.0),
    "claude-opus-4-1": (15.0, 75.0, 1.50, 18.75, 30.0),
    "claude-opus-4": (15.0, 75.0, 1.50, 18.75, 30.0),
    "claude-sonnet-4-6": (3.0, 15.0, 0.30, 3.75, 6.0),
    "claude-sonnet-4-5": (3.0, 15.0, 0.30, 3.75, 6.0),
    "claude-sonnet-4": (3.0, 15.0, 0.30, 3.75, 6.0),
    "claude-3-7-sonnet": (3.0, 15.0, 0.30, 3.75, 6.0),
    "claude-3-5-sonnet": (3.0, 15.0, 0.30, 3.75, 6.0),
    "claude-haiku-4-5": (1.0, 5.0, 0.10, 1.25, 2.0),
    "claude-3-5-haiku": (0.80, 4.0, 0.08, 1.0, 1.6),
    "claude-3-haiku": (0.25, 1.25, 0.03, 0.30, 0.50),
    "claude-3-opus": (15.0, 75.0, 1.50, 18.75, 30.0),
    # OpenAI
    "gpt-5.1": (1.25, 10.0, 0.125, 1.25, None),
    "gpt-5": (1.25, 10.0, 0.125, 1.25, None),
    "gpt-5-mini": (0.25, 2.0, 0.025, 0.25, None),
    "gpt-5-nano": (0.05, 0.40, 0.005, 0.05, None),
    "gpt-5-codex": (1.25, 10.0, 0.125, 1.25, None),
    "gpt-4.1": (2.0, 8.0, 0.50, 2.0, None),
    "gpt-4.1-mini": (0.40, 1.60, 0.10, 0.40, None),
    "gpt-4.1-nano": (0.10, 0.40, 0.025, 0.10, None),
    "gpt-4o": (2.50, 10.0, 1.25, 2.50, None),
    "gpt-4o-mini": (0.15, 0.60, 0.075, 0.15, None),
    "gpt-4-turbo": (10.0, 30.0, 10.0, 10.0, None),
    "gpt-4": (30.0, 60.0, 30.0, 30.0, None),
    "gpt-3.5-turbo": (0.50, 1.50, 0.50, 0.50, None),
    "o1": (15.0, 60.0, 7.50, 15.0, None),
    "o1-mini": (1.10, 4.40, 0.55, 1.10, None),
    "o3": (2.0, 8.0, 0.50, 2.0, None),
    "o3-mini": (1.10, 4.40, 0.55, 1.10, None),
    "o4-mini": (1.10, 4.40, 0.275, 1.10, None),
}


def builtin_prices() -> dict[str, Price]:
    return {
        name: Price(name, inp, out, cr, cw, cw1h, rule="exact")
        for name, (inp, out, cr, cw, cw1h) in _BUILTIN.items()
    }


def _num(value: Any, where: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from exc
    if out < 0:
        raise ConfigError(f"{where}: a price cannot be negative, got {value!r}")
    return out


def price_from_mapping(model: str, spec: Any, base: Price | None, where: str) -> Price:
    """One price entry from a file or a table row. A bare number is the input price.

    Missing fields keep the built-in value when the model is known, else default to the
    input price (no cache discount assumed: savings are never overstated).
    """
    if not isinstance(spec, Mapping):
        spec = {"input": spec}
    if "input" not in spec and base is None:
        raise ConfigError(f"{where}: model {model!r} needs an 'input' price")
    inp = _num(spec["input"], f"{where}.{model}.input") if "input" in spec else base.input  # type: ignore[union-attr]

    def field(key: str, default: float | None) -> float | None:
        value = spec.get(key)
        if value is None:
            return default
        return _num(value, f"{where}.{model}.{key}")

    out = field("output", base.output if base else inp)
    cr = field("cache_read", base.cache_read if base else inp)
    cw = field("cache_write", base.cache_write if base else inp)
    cw1h = field("cache_write_1h", base.cache_write_1h if base else None)
    return Price(model, inp, out if out is not None else inp, cr if cr is not None else inp,
                 cw if cw is not None else inp, cw1h, rule="exact")


def load_price_file(path: Path, base: Mapping[str, Price]) -> dict[str, Price]:
    """Read ``{"models": {name: {input, output, cache_read, cache_write}}}`` (JSON, YAML or TOML).

    The top-level ``models`` key is optional; a bare number per model is its input price.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"pricing_file: cannot read {path}: {exc.strerror}") from exc
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"pricing_file: {path} is not valid {path.suffix or 'JSON'}: {exc}") from exc
    if isinstance(data, Mapping) and isinstance(data.get("models"), Mapping):
        data = data["models"]
    if not isinstance(data, Mapping):
        raise ConfigError(f"pricing_file: {path}: expected a mapping of model name to price")
    return {
        str(name): price_from_mapping(str(name), spec, base.get(str(name)), "pricing_file")
        for name, spec in data.items()
    }


def _at_boundary(name: str, key: str) -> bool:
    return name.startswith(key) and (len(name) == len(key) or name[len(key)] in "-.:@_/")


class PriceTable:
    """The ``PriceBook`` of the app: layered prices and the four lookup rules.

    Thread-safe; ``update_remote`` swaps the PostgreSQL layer in atomically.
    """

    def __init__(self, fallback_per_mtok: float, *, file: Path | None = None) -> None:
        self.fallback_per_mtok = fallback_per_mtok
        self._builtin = builtin_prices()
        self._file: dict[str, Price] = load_price_file(file, self._builtin) if file else {}
        self._remote: dict[str, Price] = {}
        self._lock = threading.Lock()
        self._sources: dict[str, str] = {}
        self._table: dict[str, Price] = {}
        self.remote_refreshed_at: float | None = None
        self.remote_error: str | None = None
        self._rebuild()

    def _rebuild(self) -> None:
        table: dict[str, Price] = {}
        sources: dict[str, str] = {}
        for source, layer in (("builtin", self._builtin), ("file", self._file), ("postgres", self._remote)):
            for name, price in layer.items():
                table[name] = price
                sources[name] = source
        # longest keys first, so the first family match is the longest one
        self._families = sorted(table, key=len, reverse=True)
        self._table = table
        self._sources = sources
        self._cache: dict[str, Price] = {}

    def update_remote(self, prices: Mapping[str, Price], at: float) -> None:
        with self._lock:
            self._remote = dict(prices)
            self.remote_refreshed_at = at
            self.remote_error = None
            self._rebuild()

    def source_of(self, model: str) -> str:
        return self._sources.get(model, "fallback")

    def lookup(self, model: str) -> Price:
        cached = self._cache.get(model)
        if cached is not None:
            return cached
        price = self._resolve(model)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[model] = price
        return price

    def _resolve(self, model: str) -> Price:
        table = self._table
        if model in table:
            return _with_rule(table[model], "exact")
        norm = normalize_model(model)
        if norm in table:
            return _with_rule(table[norm], "normalized")
        for key in self._families:
            if _at_boundary(norm, normalize_model(key)):
                return _with_rule(table[key], "family")
        f = self.fallback_per_mtok
        return Price("fallback", f, f, f, f, None, rule="fallback")

    def snapshot(self) -> dict[str, Price]:
        return dict(self._table)


def _with_rule(price: Price, rule: str) -> Price:
    return Price(price.model, price.input, price.output, price.cache_read, price.cache_write,
                 price.cache_write_1h, rule=rule)


def price_dict(price: Price) -> dict[str, Any]:
    return {
        "input": price.input,
        "output": price.output,
        "cache_read": price.cache_read,
        "cache_write": price.cache_write,
        "cache_write_1h": price.cache_write_1h,
    }
