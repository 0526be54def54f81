"""ctxgate: a context-compression gateway for LLM tool output.

Public surface: ``compress``, ``CompressResult``, ``__version__``.
"""

from importlib.metadata import PackageNotFoundError, version

from ctxgate.api import CompressResult, compress

try:
    __version__ = version("ctxgate")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["CompressResult", "__version__", "compress"]
