"""The store contract, the same test functions against SQLite and against DynamoDB (moto, with the table as
template.yaml declares it): round trip, owner scoping, expiry, delete, the size limit, concurrent writers."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from clinvk_core.config import PROJECT_ROOT
from clinvk_core.emulator.template import load_template
from clinvk_core.store.base import ResponseStore, StoredResponse, StoreError, TooLarge
from clinvk_core.store.codec import MAX_BODY_BYTES, pack
from clinvk_core.store.dynamodb import BATCH_ROUNDS, DynamoDbStore
from clinvk_core.store.sqlite import SqliteStore

NOW = 1_800_000_000
DAY = 86_400
ALICE, BOB = "a" * 64, "b" * 64


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


def record(response_id: str, *, owner: str = ALICE, earlier: tuple[str, ...] = (), ttl: int = 30 * DAY,
           text: str = "pong") -> StoredResponse:  # fmt: skip
    response = {"id": response_id, "object": "response", "output": [{"type": "message", "text": text}]}
    items = [{"id": f"msg_{response_id}", "type": "message", "role": "user", "content": [{"type": "input_text"}]}]
    return StoredResponse(response_id, owner, NOW, NOW + ttl, earlier, response, items)


def table_properties() -> dict[str, Any]:
    """The DynamoDB table's properties exactly as template.yaml declares them."""
    properties: dict[str, Any] = load_template(PROJECT_ROOT / "template.yaml")["Resources"]["ResponsesTable"][
        "Properties"
    ]
    return properties


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    """moto's DynamoDB for the module's tests (each test gets a table of its own)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        patch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
        with mock_aws():
            yield boto3.client("dynamodb")


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> ResponseStore:
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "state" / "responses.sqlite3", clock)
    client = request.getfixturevalue("dynamodb")
    props = table_properties()
    table = f"responses-{uuid.uuid4().hex}"
    client.create_table(
        TableName=table,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
    )
    client.update_time_to_live(TableName=table, TimeToLiveSpecification=props["TimeToLiveSpecification"])
    return DynamoDbStore(table, clock)


def test_a_record_reads_back_as_written(store: ResponseStore) -> None:
    written = record("resp_2", earlier=("resp_1", "resp_0"), text='é 🚀 "quoted"\n\x00 \ud800')  # kept exactly
    store.put(written)
    assert store.get("resp_2", ALICE) == written


def test_records_read_together_leave_out_the_absent_expired_and_foreign(store: ResponseStore, clock: Clock) -> None:
    kept = [record(f"resp_{turn}", earlier=tuple(f"resp_{t}" for t in reversed(range(turn)))) for turn in range(120)]
    for written in kept:
        store.put(written)
    store.put(record("resp_brief", ttl=DAY))
    store.put(record("resp_bobs", owner=BOB))
    clock.now = NOW + DAY
    asked = ["resp_unknown", "resp_brief", "resp_bobs", *(r.id for r in kept), "resp_0"]  # over one batch's 100 keys
    assert store.get_many(asked, ALICE) == {r.id: r for r in kept}
    assert store.get_many([], ALICE) == {}


def test_unknown_ids_read_as_absent(store: ResponseStore) -> None:
    assert store.get("resp_unknown", ALICE) is None
    assert store.delete("resp_unknown", ALICE) is False


def test_another_owners_record_is_absent_and_cannot_be_deleted(store: ResponseStore) -> None:
    store.put(record("resp_1", owner=ALICE))
    assert store.get("resp_1", BOB) is None
    assert store.get("resp_1", "") is None  # a gateway without keys is another owner too
    assert store.delete("resp_1", BOB) is False
    assert store.get("resp_1", ALICE) is not None


def test_a_record_expires_at_its_time(store: ResponseStore, clock: Clock) -> None:
    store.put(record("resp_1", ttl=DAY))
    clock.now = NOW + DAY - 1
    assert store.get("resp_1", ALICE) is not None
    clock.now = NOW + DAY
    assert store.get("resp_1", ALICE) is None
    assert store.delete("resp_1", ALICE) is False


def test_delete_removes_the_record_once(store: ResponseStore) -> None:
    store.put(record("resp_1"))
    assert store.delete("resp_1", ALICE) is True
    assert store.get("resp_1", ALICE) is None
    assert store.delete("resp_1", ALICE) is False


def test_a_record_is_never_overwritten(store: ResponseStore) -> None:
    store.put(record("resp_1", text="first"))
    with pytest.raises(StoreError):
        store.put(record("resp_1", text="second"))
    stored = store.get("resp_1", ALICE)
    assert stored is not None
    assert stored.response["output"][0]["text"] == "first"


def test_a_record_over_the_size_limit_is_refused_whole(store: ResponseStore) -> None:
    noise = os.urandom(MAX_BODY_BYTES).hex()  # random: compression cannot bring it under the limit
    with pytest.raises(TooLarge):
        store.put(record("resp_big", text=noise))
    assert store.get("resp_big", ALICE) is None
    compressible = "pong " * (MAX_BODY_BYTES // 2)  # over the limit as text, far under it compressed
    store.put(record("resp_text", text=compressible))
    stored = store.get("resp_text", ALICE)
    assert stored is not None
    assert stored.response["output"][0]["text"] == compressible


def test_concurrent_continuations_of_one_response_are_all_kept(store: ResponseStore) -> None:
    store.put(record("resp_root"))
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for turn in range(5):
                store.put(record(f"resp_{worker}_{turn}", earlier=("resp_root",), text=f"{worker}/{turn}"))
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for worker in range(8):
        for turn in range(5):
            stored = store.get(f"resp_{worker}_{turn}", ALICE)
            assert stored is not None
            assert (stored.earlier, stored.response["output"][0]["text"]) == (("resp_root",), f"{worker}/{turn}")


def test_sqlite_keeps_its_file_private_under_the_state_root(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state" / "responses.sqlite3"
    store = SqliteStore(path, clock)
    store.put(record("resp_1"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    # Another process (another emulator worker, a cold start) reads what this one wrote.
    assert SqliteStore(path, clock).get("resp_1", ALICE) == record("resp_1")


def test_sqlite_removes_expired_rows_when_it_writes(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "responses.sqlite3"
    store = SqliteStore(path, clock)
    store.put(record("resp_old", ttl=DAY))
    clock.now = NOW + 2 * DAY
    store.put(record("resp_new"))
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert [row[0] for row in db.execute("SELECT id FROM responses")] == ["resp_new"]


def test_the_table_in_the_template_has_ttl_on_the_expiry_attribute() -> None:
    props = table_properties()
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


def test_dynamodb_asks_again_for_the_keys_it_left_unprocessed(dynamodb: Any) -> None:
    # moto never throttles: botocore's own Stubber plays DynamoDB's answers of a throttled batch read.
    store = DynamoDbStore("responses", Clock())
    store.client = boto3.client("dynamodb")
    items = {r.id: _item(r) for r in (record("resp_1"), record("resp_2"))}
    keys = [{"id": {"S": "resp_1"}}, {"id": {"S": "resp_2"}}]
    throttled: dict[str, Any] = {"responses": {"Keys": keys[1:]}}
    answers: list[dict[str, Any]] = [
        {"Responses": {"responses": [items["resp_1"]]}, "UnprocessedKeys": throttled},
        {"Responses": {"responses": [items["resp_2"]]}},
    ]
    with Stubber(store.client) as stub:
        for asked, answer in zip((keys, keys[1:]), answers, strict=True):
            request = {"RequestItems": {"responses": {"Keys": asked, "ConsistentRead": True}}}
            stub.add_response("batch_get_item", answer, request)
        assert set(store.get_many(["resp_1", "resp_2"], ALICE)) == {"resp_1", "resp_2"}
        stub.assert_no_pending_responses()
    with Stubber(store.client) as stub:
        for _ in range(BATCH_ROUNDS):
            stub.add_response("batch_get_item", {"Responses": {}, "UnprocessedKeys": {"responses": {"Keys": keys}}})
        with pytest.raises(StoreError, match="unprocessed"):
            store.get_many(["resp_1", "resp_2"], ALICE)


def _item(written: StoredResponse) -> dict[str, Any]:
    """The DynamoDB item the store writes for ``written``."""
    return {
        "id": {"S": written.id},
        "owner": {"S": written.owner},
        "created_at": {"N": str(written.created_at)},
        "expires_at": {"N": str(written.expires_at)},
        "body": {"B": pack(written)},
    }
