"""Gateway errors: each one knows its HTTP status and OpenAI error type/code.

Raised anywhere below the HTTP layer; rendered once, in the app's wire format (``clinvk_core.web.errors``
with ``clinvk_core.openai.errors`` or ``clinvk_core.anthropic.errors``).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: an error the client should see, with a message safe to show."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    @property
    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class RequestTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class AuthenticationFailed(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


class MethodNotAllowed(GatewayError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamFailed(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class BackendUnavailable(GatewayError):
    """The backend is disabled or its CLI missing: a retry cannot help, and the SDKs are told so."""

    status = 503
    type = "server_error"
    code = "backend_unavailable"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-should-retry": "false"}  # honoured by the openai and anthropic SDKs


class StoreUnavailable(GatewayError):
    """The store of responses (SQLite, DynamoDB) failed: a stored response cannot be read or removed now."""

    status = 503
    type = "server_error"
    code = "store_unavailable"


class Timeout(GatewayError):
    status = 504
    type = "timeout"
    code = "timeout"
