"""A request's deadline: the configured timeout, or less when Lambda has less time left."""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import Scope

# Stop the CLI this long before Lambda would kill the function, to answer with a clean 504.
LAMBDA_SAFETY_MARGIN_SECONDS = 3.0
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"  # set by the Lambda Web Adapter


def request_deadline(scope: Scope, headers: dict[str, str], timeout: float) -> float:
    """The request's deadline in event-loop time: the timeout, or less when Lambda has less left."""
    budget = timeout
    remaining_ms = _lambda_remaining_ms(scope, headers)
    if remaining_ms is not None:
        budget = min(budget, remaining_ms / 1000 - LAMBDA_SAFETY_MARGIN_SECONDS)
    return asyncio.get_running_loop().time() + max(budget, 0.0)


def _lambda_remaining_ms(scope: Scope, headers: dict[str, str]) -> float | None:
    context = scope.get("aws.context")  # Mangum puts the Lambda context here
    if context is not None and hasattr(context, "get_remaining_time_in_millis"):
        return float(context.get_remaining_time_in_millis())
    raw = headers.get(LAMBDA_CONTEXT_HEADER)
    if raw:
        try:
            data = json.loads(raw)
            deadline = data.get("deadline_ms", data.get("deadline"))
            return float(deadline) - time.time() * 1000
        except (ValueError, TypeError, AttributeError):
            return None
    return None
