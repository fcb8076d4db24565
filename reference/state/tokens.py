"""Bayes token counts per scope (the platform, or one account): SQLite per node, Redis across.

A scope is ``GLOBAL`` ("") for the platform-wide store, or an account's address for that
user's own. Every scope holds three things: the (spam, ham) count of each token, the
messages learnt (so a message is learnt once, and moves when learnt as the other class),
and the totals. Tokens are 64-bit hashes, never words: the stores hold no mail text.

This is the ``state/`` layer's token store rather than a use of :class:`StateStore`:
training adds one to thousands of counters at once and scoring reads hundreds, which
wants one transaction with batched statements (SQLite) or one script and one pipeline
(Redis), not thousands of single-key round trips. The interface is synchronous because
its callers run on worker threads (the IMAP Junk hook, the spam check's CPU work).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from reference.sqlite import connect as connect_sqlite

__all__ = [
    "GLOBAL",
    "MemoryTokenDB",
    "MemoryTokens",
    "RedisTokenDB",
    "SqliteTokenDB",
    "TokenDB",
    "TokenStore",
    "open_tokens",
]

GLOBAL = ""  # the platform-wide scope; every other scope is an account's address


class TokenStore(Protocol):
    """One scope's token counts, learnt messages and totals; every method atomic."""

    def counts(self, hashes: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(spam, ham) counts of the hashes that have any."""
        ...

    def totals(self) -> tuple[int, int]:
        """(spam, ham) messages learnt."""
        ...

    def learn(self, key: int, hashes: Sequence[int], spam: bool) -> bool:
        """Learn a message (``key`` identifies it) once; True if anything changed."""
        ...


class TokenDB(Protocol):
    """Every scope's store, over one connection (one file, or one Redis)."""

    def scope(self, name: str = GLOBAL) -> TokenStore:
        """The store of ``name`` (created on first learning; empty until then)."""
        ...

    def close(self) -> None: ...


# -- in memory ---------------------------------------------------------------------------------


class MemoryTokens:
    """One scope in a process's memory: for tests and one-off runs."""

    def __init__(self) -> None:
        self._tokens: dict[int, list[int]] = {}
        self._seen: dict[int, bool] = {}
        self._totals = [0, 0]
        self._lock = threading.Lock()

    def counts(self, hashes: Sequence[int]) -> dict[int, tuple[int, int]]:
        with self._lock:
            return {h: (c[0], c[1]) for h in hashes if (c := self._tokens.get(h))}

    def totals(self) -> tuple[int, int]:
        with self._lock:
            return self._totals[0], self._totals[1]

    def learn(self, key: int, hashes: Sequence[int], spam: bool) -> bool:
        with self._lock:
            before = self._seen.get(key)
            if before is spam:
                return False
            if before is not None:
                self._add(hashes, before, -1)
            self._add(hashes, spam, +1)
            self._seen[key] = spam
            return True

    def _add(self, hashes: Sequence[int], spam: bool, delta: int) -> None:
        i = 0 if spam else 1
        self._totals[i] = max(0, self._totals[i] + delta)
        for h in hashes:
            c = self._tokens.setdefault(h, [0, 0])
            c[i] = max(0, c[i] + delta)
            if c == [0, 0]:
                del self._tokens[h]


class MemoryTokenDB:
    def __init__(self) -> None:
        self._scopes: dict[str, MemoryTokens] = {}
        self._lock = threading.Lock()

    def scope(self, name: str = GLOBAL) -> TokenStore:
        with self._lock:
            return self._scopes.setdefault(name, MemoryTokens())

    def close(self) -> None:
        pass


# -- SQLite ------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bayes_tokens (
    scope TEXT NOT NULL, h INTEGER NOT NULL, spam INTEGER NOT NULL, ham INTEGER NOT NULL,
    PRIMARY KEY (scope, h)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bayes_seen (
    scope TEXT NOT NULL, key INTEGER NOT NULL, spam INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bayes_totals (
    scope TEXT PRIMARY KEY, spam INTEGER NOT NULL, ham INTEGER NOT NULL
);
"""

# The first release kept one unscoped store (tables tokens, seen, totals): it becomes the
# global scope, once.
_MIGRATE = """
INSERT OR IGNORE INTO bayes_tokens SELECT '', h, spam, ham FROM tokens;
INSERT OR IGNORE INTO bayes_seen SELECT '', key, spam FROM seen;
INSERT OR REPLACE INTO bayes_totals SELECT '',
    coalesce((SELECT n FROM totals WHERE kind = 'spam'), 0),
    coalesce((SELECT n FROM totals WHERE kind = 'ham'), 0);
DROP TABLE tokens; DROP TABLE seen; DROP TABLE totals;
"""

_CHUNK = 500  # hashes per IN (...) query, under SQLite's variable limit


class SqliteTokenDB:
    """``bayes.sqlite3`` under data_dir: shared by a node's processes (WAL, IMMEDIATE)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = connect_sqlite(path)
        self._db.execute("PRAGMA synchronous=NORMAL")  # counts, not mail: a lost tail is fine
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        # Looked at inside the transaction: another process may have migrated first.
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            old = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tokens'"
            ).fetchone()
            if old is not None:
                for statement in _MIGRATE.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def scope(self, name: str = GLOBAL) -> TokenStore:
        return _Scope(self, name)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- for the scopes

    def _counts(self, scope: str, hashes: Sequence[int]) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        with self._lock:
            for i in range(0, len(hashes), _CHUNK):
                chunk = list(hashes[i : i + _CHUNK])
                marks = ",".join("?" * len(chunk))
                for h, s, n in self._db.execute(
                    f"SELECT h, spam, ham FROM bayes_tokens WHERE scope = ? AND h IN ({marks})",
                    [scope, *chunk],
                ):
                    out[int(h)] = (int(s), int(n))
        return out

    def _totals(self, scope: str) -> tuple[int, int]:
        with self._lock:
            row = self._db.execute(
                "SELECT spam, ham FROM bayes_totals WHERE scope = ?", (scope,)
            ).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    def _learn_one(self, scope: str, key: int, hashes: Sequence[int], spam: bool) -> bool:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute(
                    "SELECT spam FROM bayes_seen WHERE scope = ? AND key = ?", (scope, key)
                ).fetchone()
                before = None if row is None else bool(row[0])
                if before is spam:
                    db.execute("COMMIT")
                    return False
                db.execute("INSERT OR IGNORE INTO bayes_totals VALUES (?, 0, 0)", (scope,))
                if before is not None:
                    self._add(scope, hashes, before, -1)
                self._add(scope, hashes, spam, +1)
                db.execute(
                    "INSERT OR REPLACE INTO bayes_seen(scope, key, spam) VALUES (?, ?, ?)",
                    (scope, key, int(spam)),
                )
                db.execute("COMMIT")
                return True
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _add(self, scope: str, hashes: Sequence[int], spam: bool, delta: int) -> None:
        col = "spam" if spam else "ham"
        self._db.execute(
            f"UPDATE bayes_totals SET {col} = max(0, {col} + ?) WHERE scope = ?", (delta, scope)
        )
        rows = [(scope, h) for h in hashes]
        if delta > 0:
            self._db.executemany(
                f"INSERT INTO bayes_tokens(scope, h, spam, ham) "
                f"VALUES (?, ?, {int(spam)}, {int(not spam)}) "
                f"ON CONFLICT(scope, h) DO UPDATE SET {col} = {col} + 1",
                rows,
            )
        else:
            self._db.executemany(
                f"UPDATE bayes_tokens SET {col} = max(0, {col} - 1) WHERE scope = ? AND h = ?",
                rows,
            )
            self._db.executemany(
                "DELETE FROM bayes_tokens WHERE scope = ? AND h = ? AND spam = 0 AND ham = 0",
                rows,
            )


# -- Redis -------------------------------------------------------------------------------------

# KEYS: spam counts, ham counts (hashes of token -> count), seen (message key -> 1|0),
# totals (spam, ham). ARGV: the message key, 1|0 (spam), then the token hashes.
_LEARN_LUA = """
local before = redis.call('HGET', KEYS[3], ARGV[1])
local spam = ARGV[2]
if before == spam then return 0 end
local function add(counts, total, delta)
  local t = redis.call('HINCRBY', KEYS[4], total, delta)
  if t < 0 then redis.call('HSET', KEYS[4], total, 0) end
  for i = 3, #ARGV do
    local n = redis.call('HINCRBY', counts, ARGV[i], delta)
    if n <= 0 then redis.call('HDEL', counts, ARGV[i]) end
  end
end
if before then
  if before == '1' then add(KEYS[1], 'spam', -1) else add(KEYS[2], 'ham', -1) end
end
if spam == '1' then add(KEYS[1], 'spam', 1) else add(KEYS[2], 'ham', 1) end
redis.call('HSET', KEYS[3], ARGV[1], spam)
return 1
"""


class RedisTokenDB:
    """One Redis (``redis://host:port/db``) shared by every node; keys under ``prefix``.

    A scope's four keys share a hash tag (``{scope}``), so they live on one Redis Cluster
    slot and the learning script may touch them all.
    """

    def __init__(self, url: str, prefix: str = "mailspec:") -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url, decode_responses=True)
        self._prefix = prefix
        self._learn = self._redis.register_script(_LEARN_LUA)

    def scope(self, name: str = GLOBAL) -> TokenStore:
        return _Scope(self, name)

    def close(self) -> None:
        self._redis.close()

    def _keys(self, scope: str) -> list[str]:
        base = f"{self._prefix}bayes:{{{scope or '*'}}}:"
        return [base + k for k in ("spam", "ham", "seen", "totals")]

    def _counts(self, scope: str, hashes: Sequence[int]) -> dict[int, tuple[int, int]]:
        spam_key, ham_key, _, _ = self._keys(scope)
        out: dict[int, tuple[int, int]] = {}
        for i in range(0, len(hashes), _CHUNK * 2):
            chunk = [str(h) for h in hashes[i : i + _CHUNK * 2]]
            pipe = self._redis.pipeline(transaction=False)
            pipe.hmget(spam_key, chunk)
            pipe.hmget(ham_key, chunk)
            spam, ham = pipe.execute()
            for h, s, n in zip(chunk, spam, ham, strict=True):
                if s is not None or n is not None:
                    out[int(h)] = (int(s or 0), int(n or 0))
        return out

    def _totals(self, scope: str) -> tuple[int, int]:
        s, n = self._redis.hmget(self._keys(scope)[3], ["spam", "ham"])
        return max(0, int(s or 0)), max(0, int(n or 0))

    def _learn_one(self, scope: str, key: int, hashes: Sequence[int], spam: bool) -> bool:
        done = self._learn(keys=self._keys(scope), args=[key, int(spam), *hashes])
        return bool(int(done))


def open_tokens(url: str, path: Path) -> TokenDB:
    """Redis at ``url`` (``state.url``) when set, else SQLite at ``path``."""
    if url:
        return RedisTokenDB(url)
    return SqliteTokenDB(path)


class _ScopedDB(Protocol):
    def _counts(self, scope: str, hashes: Sequence[int]) -> dict[int, tuple[int, int]]: ...

    def _totals(self, scope: str) -> tuple[int, int]: ...

    def _learn_one(self, scope: str, key: int, hashes: Sequence[int], spam: bool) -> bool: ...


class _Scope:
    """One scope (global, or an account) of a token database, SQLite or Redis."""

    def __init__(self, db: _ScopedDB, scope: str) -> None:
        self._db = db
        self._scope = scope

    def counts(self, hashes: Sequence[int]) -> dict[int, tuple[int, int]]:
        return self._db._counts(self._scope, hashes)

    def totals(self) -> tuple[int, int]:
        return self._db._totals(self._scope)

    def learn(self, key: int, hashes: Sequence[int], spam: bool) -> bool:
        return self._db._learn_one(self._scope, key, hashes, spam)
