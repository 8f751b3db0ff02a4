"""A record's body as both stores keep it: compressed JSON, under one size limit.

The limit is DynamoDB's: an item holds at most 400 KiB, attribute names and the record's other
attributes included. The body (the response and its input items, zlib-compressed) may take
:data:`MAX_BODY_BYTES` of it; the same limit holds in SQLite, so that a conversation that works
locally works on AWS.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from clinvk_core.store.base import StoreError, TooLarge

MAX_BODY_BYTES = 390 * 1024  # of DynamoDB's 400 KiB per item; the rest is ample for id, owner, times


def pack(response: dict[str, Any], input_items: list[dict[str, Any]]) -> bytes:
    """The compressed body; :class:`TooLarge` over the limit."""
    text = json.dumps({"response": response, "input_items": input_items}, ensure_ascii=False, separators=(",", ":"))
    body = zlib.compress(text.encode("utf-8", "surrogatepass"), 6)  # kept exactly, whatever the CLI answered
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"The record takes {len(body)} bytes compressed (the limit is {MAX_BODY_BYTES}).")
    return body


def unpack(body: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(response, input items) of a body written by :func:`pack`."""
    try:
        data = json.loads(zlib.decompress(body).decode("utf-8", "surrogatepass"))
    except (zlib.error, ValueError) as error:
        raise StoreError(f"A stored record is unreadable: {type(error).__name__}") from None
    return data["response"], data["input_items"]
