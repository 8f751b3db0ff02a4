"""Errors in Anthropic's shape: ``{"type": "error", "error": {"type": ..., "message": ...}}``.

The gateway's errors keep their status; their type becomes the one Anthropic gives that status, which
is what the ``anthropic`` SDKs and Claude Code branch on (``overloaded_error``, ``rate_limit_error``...).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from clinvk_core.errors import GatewayError

# Anthropic's error type for each status the gateway answers (other 5xx: api_error).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


class CountingUnavailable(GatewayError):
    """``count_tokens`` cannot be answered truthfully: the CLIs count tokens only by running the model.

    501, which Claude Code treats as a gateway without token counting (it then counts on its own); the
    SDKs are told not to retry.
    """

    status = 501
    type = "api_error"
    code = "not_implemented"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-should-retry": "false"}


def error_type(error: GatewayError) -> str:
    return ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")


def error_body(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(error), "message": error.message}}


def error_response(error: GatewayError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers)
