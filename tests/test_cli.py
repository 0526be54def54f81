from __future__ import annotations

import json

from click.testing import CliRunner

from ctxgate import __version__
from ctxgate.cli import main


def test_version() -> None:
    r = CliRunner().invoke(main, ["version"])
    assert r.exit_code == 0 and r.output.strip() == __version__


def test_config_masks_secrets(monkeypatch) -> None:
    monkeypatch.setenv("CTXGATE_AUTH_TOKEN", "topsecret")
    r = CliRunner().invoke(main, ["config"])
    assert r.exit_code == 0
    data = json.loads(r.output)
    assert data["auth_token"] == "***" and "topsecret" not in r.output


def test_config_error_names_key(monkeypatch) -> None:
    monkeypatch.setenv("CTXGATE_PORT", "notaport")
    r = CliRunner().invoke(main, ["config"])
    assert r.exit_code != 0 and "CTXGATE_PORT" in r.output


def test_compress_raw_text_from_stdin() -> None:
    r = CliRunner().invoke(main, ["compress", "-", "--level", "off"], input="plain text\n")
    assert r.exit_code == 0 and r.output == "plain text\n"


def test_compress_json_body_full_result() -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
    r = CliRunner().invoke(main, ["compress", "--json"], input=json.dumps(body))
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["messages"] == body["messages"]
    assert {"tokens_before", "tokens_after", "tokens_saved", "compression_ratio"} <= set(data)
