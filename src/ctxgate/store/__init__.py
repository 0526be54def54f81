"""Stores: the savings ledger, compress-once decisions, originals and session activity.

Interfaces in ``base.py``; the embedded default is SQLite, scale-out backends are
PostgreSQL (ledger, pricing) and Redis (decisions, originals, sessions).
"""

from ctxgate.store.base import (
    DecisionStore,
    Ledger,
    LedgerRow,
    OriginalsStore,
    Price,
    PriceBook,
    SessionActivity,
    SessionStore,
)

__all__ = [
    "DecisionStore",
    "Ledger",
    "LedgerRow",
    "OriginalsStore",
    "Price",
    "PriceBook",
    "SessionActivity",
    "SessionStore",
]
