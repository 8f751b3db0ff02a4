"""State that outlives a request: the stored responses of the Responses API, behind one small interface.

:func:`get_store` picks the implementation once per process (``CLINVK_RESPONSE_STORE``): SQLite under
the state root by default (nothing to set up), DynamoDB on AWS (boto3 is imported only then).
"""

from __future__ import annotations

from functools import cache

from clinvk_core.config import get_settings
from clinvk_core.store.base import ResponseStore, StoredResponse, StoreError, TooLarge

__all__ = ["ResponseStore", "StoreError", "StoredResponse", "TooLarge", "get_store"]

SQLITE_FILE = "responses.sqlite3"


@cache
def get_store() -> ResponseStore:
    """The process-wide store, as the settings choose it."""
    settings = get_settings()
    if settings.response_store == "dynamodb":
        if not settings.response_table:
            raise ValueError("CLINVK_RESPONSE_STORE=dynamodb needs CLINVK_RESPONSE_TABLE, the table's name")
        from clinvk_core.store.dynamodb import DynamoDbStore

        return DynamoDbStore(settings.response_table)
    from clinvk_core.store.sqlite import SqliteStore

    return SqliteStore(settings.state_dir / SQLITE_FILE)
