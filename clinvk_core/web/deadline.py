"""A request's deadline: the configured timeout, or less when Lambda has less time left.

Two ways to learn Lambda's deadline, one per way a function is reached:

* Mangum (buffered functions) puts Lambda's context object in ``scope["aws.context"]``.
* The Lambda Web Adapter (the streaming function) forwards the invocation context as JSON in the
  ``x-amzn-lambda-context`` header: the Rust runtime's ``Context`` serialized with serde, whose
  ``deadline`` field is the epoch millisecond at which Lambda kills the function. (The adapter's
  guide shows ``deadline_ms``; the struct it serializes has no such field, but it is read as well.)
  The adapter replaces any such header the client sent.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.types import Scope

# Stop the CLI this long before Lambda would kill the function, to answer with a clean 504.
LAMBDA_SAFETY_MARGIN_SECONDS = 3.0
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"  # set by the Lambda Web Adapter
_DEADLINE_FIELDS = ("deadline", "deadline_ms")


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
    deadline = _header_deadline_ms(headers.get(LAMBDA_CONTEXT_HEADER))
    return None if deadline is None else deadline - time.time() * 1000


def _header_deadline_ms(raw: str | None) -> float | None:
    """The epoch-ms deadline in the Web Adapter's header; None when absent or not a usable time.

    0 is the runtime's default for "no deadline" (the adapter outside Lambda), so only positive
    numbers count.
    """
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    for field in _DEADLINE_FIELDS:
        value = data.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None
