"""Typed settings, read from ``CTXGATE_*`` environment variables and an optional config file.

Every setting is declared once here, with its type, default and a one-line help
(the ``description``); ``docs/CONFIGURATION.md`` documents each one and
``tests/test_docs.py`` fails when one is missing there. Settings are passed
explicitly to whatever needs them: there is no global instance.

Precedence, highest first: keyword arguments, environment variables, the config
file named by ``CTXGATE_CONFIG`` (TOML or YAML), the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from ctxgate.errors import ConfigError

ENV_PREFIX = "CTXGATE_"

Level = Literal["off", "lossless", "balanced"]

#: Tools whose output an agent edits against by exact string: never compressed.
DEFAULT_PROTECTED_TOOLS: tuple[str, ...] = (
    # Claude Code
    "Read", "Write", "Edit", "MultiEdit", "NotebookEdit", "NotebookRead",
    # Codex and other CLIs
    "read_file", "write_file", "edit_file", "apply_patch", "str_replace_editor",
    "str_replace_based_edit_tool", "view_file", "create_file",
    # SWE-agent's file viewer (its edit tool replaces exact strings seen there)
    "open", "goto", "scroll_up", "scroll_down", "create", "insert",
    # common MCP file servers
    "mcp__filesystem__read_file", "mcp__filesystem__read_text_file",
    "mcp__filesystem__read_multiple_files", "mcp__filesystem__edit_file",
    "mcp__filesystem__write_file",
)


class Settings(BaseSettings):
    """All of ctxgate's configuration. See docs/CONFIGURATION.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
    )

    # --- server -----------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8787, ge=1, le=65535, description="TCP port of the HTTP server.")
    workers: int = Field(1, ge=1, le=64, description="Number of server worker processes.")
    data_dir: Path = Field(
        Path("data"), description="Directory for the embedded SQLite stores and multiprocess metrics."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    auth_token: SecretStr | None = Field(
        None,
        description="Bearer token required on every endpoint but /health and /readyz. "
        "Unset: no auth, which is allowed only when host is a loopback address.",
    )
    allow_unauthenticated: bool = Field(
        False, description="Serve without auth_token on a non-loopback host (explicit opt-out of the start-up check)."
    )

    # --- compression policy ---------------------------------------------------
    level: Level = Field("balanced", description="Default compression level: off, lossless or balanced.")
    tool_levels: dict[str, Level] = Field(
        default_factory=dict, description="Per-tool-name level overrides, e.g. {\"WebFetch\": \"lossless\"}."
    )
    protected_tools: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PROTECTED_TOOLS),
        description=(
            "Tool names whose output is never compressed (exact-string edit targets); it may only be "
            "replaced by a reference to a copy the conversation already holds byte for byte."
        ),
    )
    protected_dedupe: Literal["whole", "runs"] = Field(
        "whole",
        description=(
            "References allowed in a protected output or file read: 'whole' (an identical earlier output; "
            "an earlier output sent exactly that holds the whole output in one run, such as a Read of lines "
            "read before; an earlier call's argument that the output copies whole, such as a Read of a file "
            "the agent wrote; runs of its own call's arguments, such as a Write that prints what it wrote) or "
            "'runs' (also runs of 8+ lines of earlier outputs as sent and of earlier calls' arguments)."
        ),
    )
    min_tokens: int = Field(
        250, ge=0, description="Tool outputs smaller than this many tokens are never compressed."
    )
    max_verbatim_error_tokens: int = Field(
        4000, ge=0, description="Error tool results up to this size stay verbatim."
    )
    price_floor_per_mtok: float = Field(
        0.0, ge=0, description="Models whose input price (USD per 1M tokens) is below this are not compressed."
    )
    time_budget_ms: int = Field(
        100, ge=1, description="Per-request compression time budget; past it the original passes through."
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024, ge=1024, description="Bodies larger than this pass through untouched (too_large)."
    )

    # --- stores -------------------------------------------------------------
    decision_store: Literal["sqlite", "redis", "memory"] = Field(
        "sqlite", description="Backend of compress-once decisions and retrievable originals."
    )
    ledger_store: Literal["sqlite", "postgres", "memory"] = Field(
        "sqlite", description="Backend of the savings ledger."
    )
    redis_url: SecretStr | None = Field(None, description="Redis URL, required when decision_store=redis.")
    postgres_dsn: SecretStr | None = Field(
        None, description="PostgreSQL DSN, required when ledger_store=postgres or pricing_source=postgres."
    )
    decision_ttl_s: int = Field(
        7 * 24 * 3600, ge=60, description="How long a compress-once decision is kept after its last use."
    )
    decision_max_entries: int = Field(
        1_000_000, ge=1000, description="Most compress-once decisions (and originals, sessions) kept; oldest go first."
    )
    ledger_retention_days: int = Field(90, ge=1, description="Ledger rows older than this are deleted.")
    ledger_queue_size: int = Field(
        10000, ge=10, description="Ledger rows queued for the batched writer; past it rows are dropped and counted."
    )

    # --- pricing ------------------------------------------------------------
    pricing_file: Path | None = Field(None, description="JSON/YAML/TOML file overriding built-in prices.")
    pricing_source: Literal["builtin", "postgres"] = Field(
        "builtin", description="Also read the metering service's model_pricing table when 'postgres'."
    )
    pricing_refresh_s: int = Field(300, ge=5, description="Refresh period of the PostgreSQL price table.")
    fallback_cost_per_mtok: float = Field(
        3.0, ge=0, description="Input price (USD per 1M tokens) used for models not in the price table."
    )

    # --- proxy --------------------------------------------------------------
    anthropic_upstream: str = Field(
        "https://api.anthropic.com",
        validation_alias=AliasChoices("CTXGATE_ANTHROPIC_UPSTREAM", "ANTHROPIC_TARGET_API_URL"),
        description="Anthropic base URL without /v1 (also read from ANTHROPIC_TARGET_API_URL).",
    )
    openai_upstream: str = Field(
        "https://api.openai.com/v1",
        validation_alias=AliasChoices("CTXGATE_OPENAI_UPSTREAM", "OPENAI_TARGET_API_URL"),
        description="OpenAI base URL including /v1 (also read from OPENAI_TARGET_API_URL).",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Upstream connect timeout.")
    read_timeout_s: float = Field(
        600.0, gt=0, description="Upstream read timeout between two chunks (no total timeout on streams)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get(ENV_PREFIX + "CONFIG")
        if path:
            p = Path(path)
            if not p.is_file():
                raise ConfigError(f"{ENV_PREFIX}CONFIG: no such file: {path}")
            if p.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=p))
            elif p.suffix in (".yaml", ".yml"):
                sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=p))
            else:
                raise ConfigError(f"{ENV_PREFIX}CONFIG: expected a .toml, .yaml or .yml file, got {path}")
        return tuple(sources)

    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, secrets replaced by '***'."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***"
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


def load_settings(**overrides: Any) -> Settings:
    """Build and validate the settings; raise ConfigError naming the bad key."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "?"
            env = ENV_PREFIX + key.split(".")[0].upper()
            got = err.get("input")
            lines.append(f"{key} ({env}): {err['msg']} (got {got!r})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
