"""Every error an app answers, in its wire format's shape: gateway errors, validation errors, unknown
routes, wrong methods, and crashes (without a traceback: it may carry secrets)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from clinvk_core.errors import GatewayError, InvalidRequest, MethodNotAllowed, NotFound
from clinvk_core.web.run_response import ErrorResponse

log = logging.getLogger("clinvk")
_SOURCES = frozenset({"body", "query", "path"})  # where FastAPI found the value: not part of its name


def from_validation_errors(errors: Sequence[Any]) -> InvalidRequest:
    """The first validation error, said the way a person would: what is wrong, and where."""
    first = errors[0] if errors else {}
    loc = [part for part in first.get("loc", ()) if part not in _SOURCES]
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidRequest(
            f"The request body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})."
        )
    if not loc:
        return InvalidRequest("The request body must be a JSON object with the API's fields (such as 'model').")
    param = param_path(loc)
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param)
    return InvalidRequest(f"Invalid value for '{param}': {first.get('msg', 'invalid')}.", param=param)


def invalid_at(error: ValidationError, *loc: str | int) -> InvalidRequest:
    """A validation error of a piece of the body that sits at ``loc`` (``"input", 3``), said as for the body."""
    return from_validation_errors([{**e, "loc": (*loc, *e["loc"])} for e in error.errors(include_url=False)])


def param_path(loc: Sequence[Any]) -> str:
    """("messages", 0, "content", "str") -> "messages[0].content" (pydantic's union-branch tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_union_tag(part):
            out += f".{part}" if out else str(part)
    return out


def _is_union_tag(part: str) -> bool:
    return part in {"str", "int", "float", "bool"} or "[" in part or "-" in part or part[:1].isupper()


def install_error_handlers(app: FastAPI, error_response: ErrorResponse) -> None:
    """Render gateway errors, validation errors, unknown routes and crashes in the app's wire format."""

    async def gateway_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc)

    async def validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(from_validation_errors(exc.errors()))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}."))
        if exc.status_code == 404:
            return error_response(NotFound(f"No route for {request.method} {request.url.path}."))
        # FastAPI's own 400 for a body it cannot decode (e.g. not UTF-8).
        return error_response(InvalidRequest(f"The request body could not be read: {exc.detail}"))

    async def unexpected(_: Request, exc: Exception) -> Response:
        log.error("unhandled error: %s", type(exc).__name__)  # no traceback: it may carry secrets
        return error_response(GatewayError("Internal error in the gateway."))

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
