"""Browser sessions of the control panel, kept in SQLite so every worker process sees them.

The cookie carries a random id; the file keeps only its hash, with who logged in, the
form token (CSRF) and, for a password login, the account's password stamp: a password
changed anywhere (panel, API, command line) or an account disabled ends the sessions made
before, and a revoked token ends the sessions it opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from reference.clock import Clock
from reference.sqlite import connect
from reference.web.auth import Principal

__all__ = ["IDLE", "LIFETIME", "Session", "SessionStore"]

IDLE = 2 * 3600.0  # an unused session ends after two hours
LIFETIME = 12 * 3600.0  # and any session after twelve

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,       -- sha256 of the cookie's value
    role TEXT NOT NULL,
    domain TEXT,
    user TEXT,
    token TEXT,                -- the public id of the token logged in with
    stamp TEXT,                -- the account's (or administrator's) password stamp at login
    csrf TEXT NOT NULL,
    created REAL NOT NULL,
    seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user);
"""
# The platform administrator's name after a password login; added to older files.
_ADMIN_COLUMN = "ALTER TABLE sessions ADD COLUMN admin TEXT"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    key: str  # the hashed id
    who: Principal
    stamp: str | None
    csrf: str


class SessionStore:
    def __init__(self, path: Path, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._db = connect(path)
        with self._lock:
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}
            if "admin" not in columns:
                # Another worker may have added it first.
                with contextlib.suppress(sqlite3.OperationalError):
                    self._db.execute(_ADMIN_COLUMN)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, who: Principal, stamp: str | None) -> tuple[str, Session]:
        """A new session: the cookie's value (shown once) and the session."""
        cookie = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = self.clock.now()
        key = _digest(cookie)
        with self._lock:
            self._db.execute(
                "DELETE FROM sessions WHERE seen < ? OR created < ?",
                (now - IDLE, now - LIFETIME),
            )
            self._db.execute(
                "INSERT INTO sessions(id, role, domain, user, token, admin, stamp, csrf, created,"
                " seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, who.role, who.domain, who.user, who.token, who.admin, stamp, csrf, now, now),
            )
        return cookie, Session(key, who, stamp, csrf)

    def get(self, cookie: str) -> Session | None:
        """The live session the cookie names (its idle time restarts), else None."""
        if not cookie:
            return None
        now = self.clock.now()
        key = _digest(cookie)
        with self._lock:
            row = self._db.execute(
                "SELECT role, domain, user, token, admin, stamp, csrf, created, seen"
                " FROM sessions WHERE id = ?",
                (key,),
            ).fetchone()
            if row is None:
                return None
            if row[7] < now - LIFETIME or row[8] < now - IDLE:
                self._db.execute("DELETE FROM sessions WHERE id = ?", (key,))
                return None
            self._db.execute("UPDATE sessions SET seen = ? WHERE id = ?", (now, key))
        return Session(key, Principal(*row[:5]), row[5], row[6])

    def restamp(self, session: Session, stamp: str | None) -> None:
        """Keep this session alive across its own password change."""
        with self._lock:
            self._db.execute("UPDATE sessions SET stamp = ? WHERE id = ?", (stamp, session.key))

    def end(self, session: Session) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE id = ?", (session.key,))

    def end_others(self, user: str, keep: Session | None = None) -> int:
        """End every session of ``user`` but ``keep``; how many ended."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM sessions WHERE user = ? AND id != ?",
                (user, keep.key if keep else ""),
            )
        return cur.rowcount
