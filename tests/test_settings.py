from __future__ import annotations

from pathlib import Path

import pytest

from ctxgate.errors import ConfigError
from ctxgate.settings import Settings, load_settings


def test_defaults_are_embedded_and_loopback() -> None:
    s = load_settings()
    assert s.host == "127.0.0.1" and s.port == 8787
    assert s.decision_store == "sqlite" and s.ledger_store == "sqlite"
    assert s.level == "balanced"
    assert "Read" in s.protected_tools


def test_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXGATE_PORT", "9999")
    monkeypatch.setenv("CTXGATE_LEVEL", "lossless")
    s = load_settings()
    assert s.port == 9999 and s.level == "lossless"


def test_bad_value_names_key_and_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXGATE_LEVEL", "max")
    with pytest.raises(ConfigError) as err:
        load_settings()
    msg = str(err.value)
    assert "CTXGATE_LEVEL" in msg and "'off', 'lossless' or 'balanced'" in msg and "'max'" in msg


def test_legacy_upstream_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TARGET_API_URL", "https://maas.example.com/llm/ext-opus")
    monkeypatch.setenv("OPENAI_TARGET_API_URL", "https://maas.example.com/llm/v1")
    s = load_settings()
    assert s.anthropic_upstream == "https://maas.example.com/llm/ext-opus"
    assert s.openai_upstream == "https://maas.example.com/llm/v1"


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    path = tmp_path / f"ctxgate{suffix}"
    path.write_text('port = 8800\nlevel = "off"\n' if suffix == ".toml" else "port: 8800\nlevel: 'off'\n")
    monkeypatch.setenv("CTXGATE_CONFIG", str(path))
    s = load_settings()
    assert s.port == 8800 and s.level == "off"
    monkeypatch.setenv("CTXGATE_PORT", "8801")  # env beats the file
    assert load_settings().port == 8801


def test_config_file_unknown_key_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("prot = 1\n")
    monkeypatch.setenv("CTXGATE_CONFIG", str(path))
    with pytest.raises(ConfigError, match="prot"):
        load_settings()


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXGATE_CONFIG", "/nonexistent/c.toml")
    with pytest.raises(ConfigError, match="no such file"):
        load_settings()


def test_masked_hides_secrets() -> None:
    s = Settings(auth_token="s3cret", postgres_dsn="postgresql://u:pw@h/db")
    data = s.masked()
    assert data["auth_token"] == "***" and data["postgres_dsn"] == "***"
    assert "s3cret" not in repr(data)
