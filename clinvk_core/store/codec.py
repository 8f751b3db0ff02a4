"""A record's body as both stores keep it: compressed JSON, under one size limit.

The limit is DynamoDB's: an item holds at most 400 KiB, attribute names and the record's other
attributes included. The body (the response and its input items, zlib-compressed) may take
:data:`MAX_BODY_BYTES` of it; the same limit holds in SQLite, so that a conversation that works
locally works on AWS.
"""

from __future__ import annotations

import json
import zlib

from clinvk_core.store.base import StoredResponse, StoreError, TooLarge

MAX_BODY_BYTES = 390 * 1024  # of DynamoDB's 400 KiB per item; the rest is ample for id, owner, times


def pack(record: StoredResponse) -> bytes:
    """The compressed body of the record (its response, input items and earlier ids); :class:`TooLarge` over
    the limit."""
    data = {"response": record.response, "input_items": record.input_items, "earlier": record.earlier}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    body = zlib.compress(text.encode("utf-8", "surrogatepass"), 6)  # kept exactly, whatever the CLI answered
    if len(body) > MAX_BODY_BYTES:
        raise TooLarge(f"The record takes {len(body)} bytes compressed (the limit is {MAX_BODY_BYTES}).")
    return body


def unpack(body: bytes, response_id: str, owner: str, created_at: int, expires_at: int) -> StoredResponse:
    """The record whose body :func:`pack` wrote, with the fields the store keeps beside it."""
    try:
        data = json.loads(zlib.decompress(body).decode("utf-8", "surrogatepass"))
    except (zlib.error, ValueError) as error:
        raise StoreError(f"A stored record is unreadable: {type(error).__name__}") from None
    earlier = tuple(data["earlier"])
    return StoredResponse(response_id, owner, created_at, expires_at, earlier, data["response"], data["input_items"])
