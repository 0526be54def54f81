from __future__ import annotations

import dataclasses
from pathlib import Path

from fastapi.testclient import TestClient

from ctxgate.pipeline import Pipeline
from ctxgate.pricing import PriceTable
from ctxgate.server import create_app
from ctxgate.server.recorder import LedgerRecorder
from ctxgate.server.state import AppState
from ctxgate.settings import Settings
from ctxgate.store.ledger import SqliteLedger


def test_fields_other_parts_rely_on() -> None:
    names = [f.name for f in dataclasses.fields(AppState)]
    assert names[:4] == ["settings", "pipeline", "recorder", "prices"]
    assert {"ledger", "started_at"} <= set(names)


def test_app_state_is_wired(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    with TestClient(app):
        ctx = app.state.ctx
        assert isinstance(ctx, AppState)
        assert isinstance(ctx.pipeline, Pipeline) and isinstance(ctx.prices, PriceTable)
        assert isinstance(ctx.recorder, LedgerRecorder) and isinstance(ctx.ledger, SqliteLedger)
        assert ctx.recorder.ledger is ctx.ledger
