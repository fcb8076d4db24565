"""The default state store: SQLite under data_dir, shared by every process of a node."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from reference.sqlite import connect as connect_sqlite
from reference.state import WindowResult
from reference.state.memory import retry_at

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS events (key TEXT NOT NULL, at REAL NOT NULL, amount INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_key ON events(key, at);
"""


class SqliteStore:
    """Each method is one IMMEDIATE transaction, so concurrent processes count exactly."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect_sqlite(path)
        # WAL with NORMAL: each write is atomic and seen at once by every process (counts stay
        # exact), and survives a crash of the process; only an OS crash or power loss may
        # take the last writes back, as Redis's default (fsync once a second) may. FULL
        # synced the WAL at every write: a greylist refresh at each RCPT cost 350 us of CPU
        # and 1.8 ms of waiting, 136 us and 0.15 ms with NORMAL.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _get(self, key: str, now: float) -> str | None:
        row = self._db.execute(
            "SELECT value FROM kv WHERE key = ? AND expires > ?", (key, now)
        ).fetchone()
        return str(row[0]) if row else None

    async def get(self, key: str, now: float) -> str | None:
        def run() -> str | None:
            with self._lock:
                return self._get(key, now)

        return await asyncio.to_thread(run)

    async def put(self, key: str, value: str, expires_at: float) -> None:
        def run() -> None:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO kv(key, value, expires) VALUES (?, ?, ?)",
                    (key, value, expires_at),
                )

        await asyncio.to_thread(run)

    async def put_if_absent(self, key: str, value: str, expires_at: float, now: float) -> str:
        def run() -> str:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    current = self._get(key, now)
                    if current is None:
                        self._db.execute(
                            "INSERT OR REPLACE INTO kv(key, value, expires) VALUES (?, ?, ?)",
                            (key, value, expires_at),
                        )
                        current = value
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                return current

        return await asyncio.to_thread(run)

    async def touch(self, key: str, now: float, expires_at: float) -> str | None:
        def run() -> str | None:
            with self._lock:
                # One statement is one transaction (autocommit): atomic across processes.
                # fetchall: a RETURNING statement commits when it has run to its end.
                rows = self._db.execute(
                    "UPDATE kv SET expires = ? WHERE key = ? AND expires > ? RETURNING value",
                    (expires_at, key, now),
                ).fetchall()
                return str(rows[0][0]) if rows else None

        return await asyncio.to_thread(run)

    async def delete(self, key: str) -> None:
        def run() -> None:
            with self._lock:
                self._db.execute("DELETE FROM kv WHERE key = ?", (key,))
                self._db.execute("DELETE FROM events WHERE key = ?", (key,))

        await asyncio.to_thread(run)

    async def window_add(
        self, key: str, now: float, window: float, amount: int, limit: int
    ) -> WindowResult:
        def run() -> WindowResult:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute(
                        "DELETE FROM events WHERE key = ? AND at <= ?", (key, now - window)
                    )
                    events = [
                        (float(at), int(a))
                        for at, a in self._db.execute(
                            "SELECT at, amount FROM events WHERE key = ?", (key,)
                        )
                    ]
                    used = sum(a for _, a in events)
                    if used + amount <= limit:
                        self._db.execute(
                            "INSERT INTO events(key, at, amount) VALUES (?, ?, ?)",
                            (key, now, amount),
                        )
                        result = WindowResult(True, used + amount, now)
                    else:
                        retry = retry_at(events, used, amount, limit, window, now)
                        result = WindowResult(False, used, retry)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                return result

        return await asyncio.to_thread(run)

    async def close(self) -> None:
        with self._lock:
            self._db.close()
