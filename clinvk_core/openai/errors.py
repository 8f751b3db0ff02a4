"""An error in the OpenAI shape: ``{"error": {message, type, param, code}}``."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from clinvk_core.errors import GatewayError
from clinvk_core.openai.schema import ErrorDetail, ErrorResponse


def error_body(error: GatewayError) -> dict[str, Any]:
    detail = ErrorDetail(message=error.message, type=error.type, param=error.param, code=error.code)
    return ErrorResponse(error=detail).model_dump()


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers)
