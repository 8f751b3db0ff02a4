"""One small interface for state that outlives a request: stored Responses API responses.

Each stored response is one immutable record, written once and never updated, so concurrent writers
(two requests continuing the same conversation) never lose each other's records. A conversation is
a chain of records, each continuing the one before; each record names all its ``earlier`` ones, so that a
conversation is read in two calls (``get``, then ``get_many``), not one per turn. Records are private
to their ``owner`` (the digest of the API key that created them, "" when the gateway has no keys) and
expire ``ttl`` after creation: an unknown, expired or foreign id reads as absent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredResponse:
    id: str
    owner: str
    created_at: int  # epoch seconds
    expires_at: int  # epoch seconds; absent from then on
    earlier: tuple[str, ...]  # the ids of the conversation's earlier records, newest (the previous one) first
    response: dict[str, Any]  # the response object, as the API returned it
    input_items: list[dict[str, Any]] = field(default_factory=list)  # this turn's input items (with ids)


class StoreError(Exception):
    """The store could not do what was asked (unreachable, throttled, corrupt): nothing was changed."""


class TooLarge(StoreError):
    """The record is over the store's size limit (:data:`clinvk_core.store.codec.MAX_BODY_BYTES`): it is not stored."""


class ResponseStore(ABC):
    """Where stored responses live: SQLite under the state root, or DynamoDB on AWS."""

    @abstractmethod
    def put(self, record: StoredResponse) -> None:
        """Store a new record (raises :class:`TooLarge` over the size limit, :class:`StoreError` on failure)."""

    @abstractmethod
    def get(self, response_id: str, owner: str) -> StoredResponse | None:
        """The record, or None when unknown, expired or someone else's."""

    @abstractmethod
    def get_many(self, response_ids: Sequence[str], owner: str) -> dict[str, StoredResponse]:
        """The records found, by id, in one round trip; those unknown, expired or someone else's are left out."""

    @abstractmethod
    def delete(self, response_id: str, owner: str) -> bool:
        """Remove the record; False when there was none to remove (unknown, expired or someone else's)."""
