"""The HTTP app: service routes, proxy routes, stats, metrics, dashboard.

Public surface: ``create_app(settings, *, upstream_transport=None)``.
"""

from ctxgate.server.app import create_app

__all__ = ["create_app"]
