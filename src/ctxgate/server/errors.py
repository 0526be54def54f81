"""Errors become HTTP once, here, in one JSON shape for the service routes.

Every error answer of ``/v1/compress``, the read endpoints and auth is::

    {"error": {"type": "invalid_request", "message": "...", "status": 400}}

(``type`` is one of the keys of ``ERROR_TYPES``). Proxy routes answer in the provider's
own error shape and handle their errors before they reach these handlers. Internal
errors never leak details: the message is generic and the exception is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ctxgate.errors import RequestRejected

log = logging.getLogger(__name__)

ERROR_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    422: "invalid_request",
    500: "internal_error",
    503: "unavailable",
}


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": ERROR_TYPES.get(status, "error"), "message": message, "status": status, **extra}}


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(status, message, **extra), status_code=status, headers=headers)


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request body"


async def _rejected(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestRejected)
    headers = {"allow": "POST"} if exc.status == 405 else None
    return error_response(exc.status, str(exc), headers=headers)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, _describe(list(exc.errors())))


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return error_response(exc.status_code, message, headers=exc.headers)


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal error")


def install(app: FastAPI) -> None:
    """Register the handlers (called once by ``create_app``)."""
    app.add_exception_handler(RequestRejected, _rejected)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _internal)
