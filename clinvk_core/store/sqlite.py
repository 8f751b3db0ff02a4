"""The store in one SQLite file under the state root: the emulator's default, with nothing to set up.

One short connection per call, so that any thread (FastAPI's pool, the event loop's executor) may
use it; WAL lets readers and the one writer proceed together, and concurrent writers wait their turn.
Records are only inserted and deleted, never updated. Expired rows are ignored when read and removed
at the next write.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from clinvk_core.store.base import ResponseStore, StoredResponse, StoreError
from clinvk_core.store.codec import pack, unpack

BUSY_TIMEOUT_SECONDS = 10.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_expiry ON responses (expires_at);
"""


class SqliteStore(ResponseStore):
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._ready = False
        self._lock = threading.Lock()

    def put(self, record: StoredResponse) -> None:
        body = pack(record)
        with self._connection() as db:
            db.execute("DELETE FROM responses WHERE expires_at <= ?", (int(self._clock()),))
            db.execute(
                "INSERT INTO responses (id, owner, created_at, expires_at, body) VALUES (?,?,?,?,?)",
                (record.id, record.owner, record.created_at, record.expires_at, body),
            )

    def get(self, response_id: str, owner: str) -> StoredResponse | None:
        return self.get_many([response_id], owner).get(response_id)

    def get_many(self, response_ids: Sequence[str], owner: str) -> dict[str, StoredResponse]:
        ids = list(dict.fromkeys(response_ids))
        if not ids:
            return {}
        with self._connection() as db:
            rows = db.execute(
                "SELECT id, owner, created_at, expires_at, body FROM responses"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ).fetchall()
        now = self._clock()
        return {
            row[0]: unpack(row[4], row[0], row[1], row[2], row[3])
            for row in rows
            if hmac.compare_digest(row[1], owner) and row[3] > now
        }

    def delete(self, response_id: str, owner: str) -> bool:
        with self._connection() as db:
            deleted = db.execute(
                "DELETE FROM responses WHERE id = ? AND owner = ? AND expires_at > ?",
                (response_id, owner, int(self._clock())),
            )
            return deleted.rowcount > 0

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection for one call, in one transaction; sqlite3's errors become :class:`StoreError`."""
        try:
            self._prepare()
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
            try:
                with db:
                    yield db
            finally:
                db.close()
        except sqlite3.IntegrityError:
            raise StoreError("A response with this id is already stored.") from None
        except (sqlite3.Error, OSError) as error:
            raise StoreError(f"The SQLite store failed: {type(error).__name__}: {error}") from None

    def _prepare(self) -> None:
        """Once per process: the directory and file, private to the user, and the schema."""
        with self._lock:
            if self._ready:
                return
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            finally:
                db.close()
            self._ready = True
