"""Pure, deterministic compression of one piece of tool output.

Public surface: ``compress(text, ctx) -> Outcome``, ``Context``, ``Outcome``,
``Original``. No I/O, no clock, no randomness.
"""

from ctxgate.engine._api import Context, Original, Result
from ctxgate.engine.registry import Outcome, compress

__all__ = ["Context", "Original", "Outcome", "Result", "compress"]
