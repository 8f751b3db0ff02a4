"""Stored responses: continuing a conversation (``previous_response_id``), GET, input_items and DELETE.

A response with ``store`` true (the default) is kept as one record: this turn's input items and the
response object. ``previous_response_id`` rebuilds the conversation from that record and the earlier
ones it names (read together), each adding its input items and then its output items. Records belong to
the API key that made them: another key's id reads as unknown (400 as ``previous_response_id``, 404 on
the routes).

The store's calls block (SQLite, DynamoDB over HTTPS): the endpoint runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

from clinvk_core.errors import InvalidRequest, NotFound, StoreUnavailable
from clinvk_core.openai.responses.items import Located, parse
from clinvk_core.store import ResponseStore, StoredResponse, StoreError, TooLarge

log = logging.getLogger("clinvk")
MAX_CHAIN = 100  # stored responses one conversation may go back through
RESPONSE_ID = re.compile(r"resp_[A-Za-z0-9_-]{1,200}")


@dataclass(frozen=True)
class History:
    """The conversation that a response ends: its items, oldest first, and the ids of its records."""

    items: list[Located]
    ids: tuple[str, ...]  # newest (the previous response) first: the next record's ``earlier``


def history(store: ResponseStore, previous_id: str, owner: str) -> History:
    """The conversation that ``previous_id`` ends, read in two store calls (blocking: run it in a thread)."""
    latest = _get(store, previous_id, owner)
    if latest is None:
        raise _previous_not_found(previous_id, previous_id)
    ids = (previous_id, *latest.earlier)
    if len(ids) > MAX_CHAIN:
        raise InvalidRequest(
            f"The conversation goes back through more than {MAX_CHAIN} stored responses: send its history as "
            "input instead.",
            param="previous_response_id",
        )
    try:
        found = store.get_many(latest.earlier, owner) | {previous_id: latest}
    except StoreError as error:
        raise _unavailable(error) from None
    if missing := [response_id for response_id in ids if response_id not in found]:
        raise _previous_not_found(previous_id, missing[0])
    items: list[Located] = []
    for record in (found[response_id] for response_id in reversed(ids)):
        stored = [*record.input_items, *record.response.get("output", [])]
        items += [("previous_response_id", item) for _, item in parse(stored, param="previous_response_id")]
    return History(items, ids)


@dataclass(frozen=True)
class Keeper:
    """Keeps a finished response (``store`` true), with this turn's input items, for ``ttl_seconds``."""

    store: ResponseStore
    owner: str
    earlier: tuple[str, ...]  # the ids of the conversation's earlier records, the previous response first
    input_items: list[dict[str, Any]]
    ttl_seconds: float

    async def keep(self, response: dict[str, Any]) -> dict[str, Any]:
        """The response as answered: ``store`` false when it could not be kept (too large, store failing)."""
        created = int(response["created_at"])
        record = StoredResponse(
            id=response["id"],
            owner=self.owner,
            created_at=created,
            expires_at=created + int(self.ttl_seconds),
            earlier=self.earlier,
            response=response,
            input_items=self.input_items,
        )
        try:
            await asyncio.to_thread(self.store.put, record)
        except TooLarge as error:
            log.warning("response %s not stored: %s", response["id"], error)
            return response | {"store": False}
        except StoreError as error:
            log.error("response %s not stored: %s", response["id"], error)
            return response | {"store": False}
        return response


def retrieve(store: ResponseStore, response_id: str, owner: str, *, stream: bool = False) -> dict[str, Any]:
    """GET /responses/{id}: the response as it was answered (not replayed as a stream: it has ended)."""
    if stream:
        raise InvalidRequest("A stored response is not streamed again: GET it without 'stream'.", param="stream")
    return _found(store, response_id, owner).response


def input_items(
    store: ResponseStore,
    response_id: str,
    owner: str,
    *,
    limit: int,
    order: Literal["asc", "desc"],
    after: str | None,
) -> dict[str, Any]:
    """GET /responses/{id}/input_items: a page of the turn's input items (newest first by default)."""
    items = _found(store, response_id, owner).input_items
    if order == "desc":
        items = items[::-1]
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"'after' names no input item of {response_id!r}.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(items) > limit,
    }


def delete(store: ResponseStore, response_id: str, owner: str) -> dict[str, Any]:
    """DELETE /responses/{id}."""
    try:
        deleted = RESPONSE_ID.fullmatch(response_id) is not None and store.delete(response_id, owner)
    except StoreError as error:
        raise _unavailable(error) from None
    if not deleted:
        raise _not_found(response_id)
    return {"id": response_id, "object": "response", "deleted": True}


def _found(store: ResponseStore, response_id: str, owner: str) -> StoredResponse:
    record = _get(store, response_id, owner)
    if record is None:
        raise _not_found(response_id)
    return record


def _get(store: ResponseStore, response_id: str, owner: str) -> StoredResponse | None:
    """The owner's record, or None; what is not a response id is never looked up."""
    if not RESPONSE_ID.fullmatch(response_id):
        return None
    try:
        return store.get(response_id, owner)
    except StoreError as error:
        raise _unavailable(error) from None


def _previous_not_found(previous_id: str, missing_id: str) -> InvalidRequest:
    earlier = "" if missing_id == previous_id else f" (an earlier response of its conversation, {missing_id!r})"
    return InvalidRequest(
        f"Previous response with id {previous_id[:80]!r} not found{earlier}: it is unknown, expired, deleted "
        "or stored with another API key.",
        param="previous_response_id",
        code="previous_response_not_found",
    )


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id {response_id[:80]!r} not found.")


def _unavailable(error: StoreError) -> StoreUnavailable:
    log.error("response store: %s", error)
    return StoreUnavailable("The store of responses is unavailable; retry shortly.")
