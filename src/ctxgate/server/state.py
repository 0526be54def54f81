"""What every route can reach: ``request.app.state.ctx`` is an ``AppState``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ctxgate.pipeline import Pipeline
from ctxgate.settings import Settings
from ctxgate.store.base import LedgerRow, PriceBook

if TYPE_CHECKING:
    from ctxgate.store.ledger import SqlLedger


class Recorder(Protocol):
    """Writes ledger rows off the response path and updates metrics."""

    def record(self, row: LedgerRow) -> None:
        """Queue one row (never blocks; a full queue drops the row and counts the drop)."""
        ...

    async def flush(self) -> None:
        """Write every queued row (called before reads so they see the latest calls)."""
        ...


@dataclass(slots=True)
class AppState:
    settings: Settings
    pipeline: Pipeline
    recorder: Recorder
    prices: PriceBook
    #: the ledger the read endpoints query (None only in apps built without stores)
    ledger: SqlLedger | None = None
    started_at: float = field(default_factory=time.time)
