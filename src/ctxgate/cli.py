"""The ``ctxgate`` command: serve, compress, config, version."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, cast

import click

from ctxgate import __version__
from ctxgate.errors import ConfigError
from ctxgate.settings import Level, Settings, load_settings


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """ctxgate: context-compression gateway for LLM tool output."""


@main.command()
@click.option("--host", default=None, help="Bind address (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8787).")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Data directory.")
@click.option("--workers", type=int, default=None, help="Worker processes.")
def serve(host: str | None, port: int | None, data_dir: Path | None, workers: int | None) -> None:
    """Start the gateway."""
    settings = _settings(host=host, port=port, data_dir=data_dir, workers=workers)
    from ctxgate.server.run import run

    run(settings)


@main.command()
@click.argument("file", default="-", type=click.File("r", encoding="utf-8"))
@click.option("--tool", default=None, help="Tool name the output came from (e.g. Bash, WebFetch).")
@click.option("--level", type=click.Choice(["off", "lossless", "balanced"]), default=None)
@click.option("--model", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the full result as JSON.")
def compress(file: Any, tool: str | None, level: str | None, model: str, as_json: bool) -> None:
    """Compress a raw tool output, or a JSON request body with "messages"."""
    settings = _settings()
    text = file.read()
    body: Any = None
    try:
        body = json.loads(text)
    except ValueError:
        pass
    if isinstance(body, dict) and isinstance(body.get("messages"), list):
        import ctxgate

        options: dict[str, Any] = {"level": level} if level else {}
        result = ctxgate.compress(body["messages"], model=body.get("model", model), **options)
        out: dict[str, Any] = dataclasses.asdict(result)
        out.update(tokens_saved=result.tokens_saved, compression_ratio=result.compression_ratio)
        if as_json:
            click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        else:
            click.echo(json.dumps(result.messages, ensure_ascii=False))
        return
    from ctxgate import engine

    chosen: Level = settings.tool_levels.get(tool or "", settings.level)
    if level:
        chosen = cast(Level, level)
    ctx = engine.Context(tool_name=tool, level=chosen, model=model)
    outcome = engine.compress(text, ctx)
    if as_json:
        data = dataclasses.asdict(outcome)
        data["originals"] = [dataclasses.asdict(o) for o in outcome.originals]
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        sys.stdout.write(outcome.text)


@main.command()
def config() -> None:
    """Print the effective configuration (secrets masked)."""
    click.echo(json.dumps(_settings().masked(), indent=2, sort_keys=True))


@main.command()
def version() -> None:
    """Print the version."""
    click.echo(__version__)
