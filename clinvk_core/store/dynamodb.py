"""The store in a DynamoDB table, on AWS: one item per response, keyed by its id.

The table (template.yaml) has the string partition key ``id`` and DynamoDB's TTL on ``expires_at``.
TTL deletes expired items lazily (within days), so expiry is also checked on every read. Items are
written only if absent and never updated: concurrent writers of one conversation each add their own.
boto3 is imported when the store is first used, not at a cold start.
"""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from clinvk_core.store.base import ResponseStore, StoredResponse, StoreError
from clinvk_core.store.codec import pack, unpack

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

BATCH_KEYS = 100  # DynamoDB's limit for one BatchGetItem
BATCH_ROUNDS = 5  # calls one get_many makes at most, keys left unprocessed (throttling) included
_NAMES = {"#id": "id", "#owner": "owner", "#expires": "expires_at"}  # "owner" is a reserved word


class DynamoDbStore(ResponseStore):
    def __init__(self, table: str, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self._clock = clock

    @cached_property
    def client(self) -> DynamoDBClient:
        import boto3
        from botocore.config import Config

        config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 3, "mode": "standard"})
        return boto3.client("dynamodb", config=config)

    def put(self, record: StoredResponse) -> None:
        item: dict[str, AttributeValueTypeDef] = {
            "id": {"S": record.id},
            "owner": {"S": record.owner},
            "created_at": {"N": str(record.created_at)},
            "expires_at": {"N": str(record.expires_at)},
            "body": {"B": pack(record)},
        }
        try:
            with _store_errors():
                self.client.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#id)",
                    ExpressionAttributeNames={"#id": "id"},
                )
        except _ConditionFailed:
            raise StoreError("A response with this id is already stored.") from None

    def get(self, response_id: str, owner: str) -> StoredResponse | None:
        with _store_errors():
            found = self.client.get_item(TableName=self.table, Key={"id": {"S": response_id}}, ConsistentRead=True)
        item = found.get("Item")
        return None if item is None else self._owned(item, owner)

    def get_many(self, response_ids: Sequence[str], owner: str) -> dict[str, StoredResponse]:
        wanted: list[dict[str, AttributeValueTypeDef]] = [{"id": {"S": i}} for i in dict.fromkeys(response_ids)]
        items: list[dict[str, Any]] = []
        for _ in range(BATCH_ROUNDS):
            if not wanted:
                break
            batch, wanted = wanted[:BATCH_KEYS], wanted[BATCH_KEYS:]
            with _store_errors():
                found = self.client.batch_get_item(RequestItems={self.table: {"Keys": batch, "ConsistentRead": True}})
            items += found.get("Responses", {}).get(self.table, [])
            if unprocessed := found.get("UnprocessedKeys", {}).get(self.table):  # throttled: asked again
                wanted += unprocessed["Keys"]
        if wanted:
            raise StoreError("The DynamoDB store failed: reads left unprocessed")
        records = (self._owned(item, owner) for item in items)
        return {record.id: record for record in records if record is not None}

    def _owned(self, item: Mapping[str, Any], owner: str) -> StoredResponse | None:
        """The item's record if it is the owner's and has not expired (TTL may not have removed it yet)."""
        expires_at = int(item["expires_at"]["N"])
        if not hmac.compare_digest(item["owner"]["S"], owner) or expires_at <= self._clock():
            return None
        return unpack(item["body"]["B"], item["id"]["S"], owner, int(item["created_at"]["N"]), expires_at)

    def delete(self, response_id: str, owner: str) -> bool:
        try:
            with _store_errors():
                self.client.delete_item(
                    TableName=self.table,
                    Key={"id": {"S": response_id}},
                    ConditionExpression="attribute_exists(#id) AND #owner = :owner AND #expires > :now",
                    ExpressionAttributeNames=_NAMES,
                    ExpressionAttributeValues={":owner": {"S": owner}, ":now": {"N": str(int(self._clock()))}},
                )
        except _ConditionFailed:
            return False  # unknown, someone else's, or expired
        return True


class _ConditionFailed(StoreError):
    """A write's condition did not hold (the item exists already, or is not the caller's to delete)."""


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """botocore's errors (imported with boto3, when first used) as :class:`StoreError`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "ClientError")
        if code == "ConditionalCheckFailedException":
            raise _ConditionFailed(code) from None
        raise StoreError(f"The DynamoDB store failed: {code}") from None
    except BotoCoreError as error:
        raise StoreError(f"The DynamoDB store failed: {type(error).__name__}") from None
