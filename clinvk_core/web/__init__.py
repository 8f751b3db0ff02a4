"""HTTP plumbing shared by every handler: app factory, auth, access log, limits, deadlines, disconnects."""

from clinvk_core.web.app import create_app
from clinvk_core.web.deadline import LAMBDA_CONTEXT_HEADER, LAMBDA_SAFETY_MARGIN_SECONDS, request_deadline
from clinvk_core.web.disconnect import cancel_on_disconnect
from clinvk_core.web.limits import BodyLimit

__all__ = [
    "LAMBDA_CONTEXT_HEADER",
    "LAMBDA_SAFETY_MARGIN_SECONDS",
    "BodyLimit",
    "cancel_on_disconnect",
    "create_app",
    "request_deadline",
]
