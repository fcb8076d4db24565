"""One Maildir's UID index: UIDVALIDITY, UIDNEXT, mod-sequences, and locked transactions."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from reference.mailbox.maildir import flock
from reference.sqlite import connect

INDEX_FILE = "mailspec-index.sqlite"
LOCK_FILE = "mailspec-index.lock"
# 6: the deliveries table (exactly-once delivery), or the header columns of the text
# index; 7: both (the migration is idempotent: each part is made where it is missing).
SCHEMA_VERSION = 7
MMAP_BYTES = 1 << 30  # address space only; pages stay in the OS cache
WAL_BYTES = 4 << 20  # what the write-ahead log is cut back to once checkpointed

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS messages (uid INTEGER PRIMARY KEY, base TEXT NOT NULL UNIQUE,"
    " sub TEXT NOT NULL, file TEXT NOT NULL, flags TEXT NOT NULL, size INTEGER NOT NULL,"
    " internaldate REAL NOT NULL, modseq INTEGER NOT NULL DEFAULT 1)",
    # RFC 7162 3.2.5 / QRESYNC: which UIDs went away at which mod-sequence.
    "CREATE TABLE IF NOT EXISTS expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL)",
    # Exactly-once delivery: the key of each delivery made (queue id, recipient, account),
    # written in the transaction that adds the message, and kept after an expunge (like the
    # expunged UIDs) so that a delivery repeated after a crash is found, not made again.
    "CREATE TABLE IF NOT EXISTS deliveries (key TEXT PRIMARY KEY, uid INTEGER NOT NULL)",
)
# Text SEARCH (BODY, TEXT): each message's searchable text, case-folded, keyed by UID, in an
# FTS5 trigram index. With detail=full the index keeps where each trigram occurs, so a
# substring (IMAP SEARCH asks for substrings) is a phrase of consecutive trigrams, answered
# from the index alone: a string found in all 100,000 messages of the benchmark in about
# 0.1 s. detail=none (schema 3) had to read every candidate's text to check it (about 1 s
# there) for an index half the size. ``fields`` (not indexed) keeps the header fields SORT
# and THREAD compare, so that they read no message file either. The ``h_`` columns keep
# every value of the fields SEARCH SUBJECT, FROM, TO, CC and BCC look at (each value as
# those keys match it, one a line), so that these keys read no file: about 37 s for SEARCH
# SUBJECT over 100,000 messages when they did.
SEARCHED_FIELDS = ("subject", "from", "to", "cc", "bcc")
TEXT_COLUMNS = ("header", "body", "fields", *(f"h_{name}" for name in SEARCHED_FIELDS))
TEXT_LAYOUT = (
    "fts5(header, body, fields UNINDEXED, "
    + ", ".join(TEXT_COLUMNS[3:])
    + ", tokenize='trigram case_sensitive 1', detail='full')"
)
TEXT_TABLE = f"CREATE VIRTUAL TABLE IF NOT EXISTS texts USING {TEXT_LAYOUT}"
COLUMNS = "uid, sub, file, flags, size, internaldate, modseq"
Row = tuple[int, str, str, str, int, float, int]

Listener = Callable[[Path], None]
# Makes a new Maildir base name from the internal date and the delivery key (if any).
NewName = Callable[[float, str | None], str]
# Given the UIDVALIDITY a new index would take, the one it takes: the store makes it larger
# than any given before in the account (RFC 3501 2.3.1.1).
Validity = Callable[[int], int]


class UidIndex:
    """The index of the Maildir at ``path`` (``mailspec-index.sqlite``): the truth for UIDs,
    flags and mod-sequences. Writers hold the mailbox's mutex and an exclusive ``flock`` on
    ``mailspec-index.lock``; the directory mtimes last scanned are kept as stamps."""

    def __init__(
        self,
        path: Path,
        now: Callable[[], float | None],
        notify: Listener | None = None,
        validity: Validity | None = None,
    ) -> None:
        self.path = path
        # As strings, made once: every write takes the lock and reads both mtimes.
        self._lock_file = str(path / LOCK_FILE)
        self._new_dir, self._cur_dir = str(path / "new"), str(path / "cur")
        self._now = now
        self._notify = notify
        self._validity = validity
        self._mutex = threading.RLock()
        self._txn_modseq: int | None = None
        self._db = connect(path / INDEX_FILE)
        try:
            # WAL at synchronous=FULL: a commit is durable with one fdatasync of the log,
            # where the rollback journal took five syncs (the journal twice, the database,
            # the journal's truncation, the directory). The commit must stay durable: it
            # holds UIDNEXT, and an index that lost its last commits to a power cut would
            # give a UID a client has seen to another message (RFC 3501 2.3.1.1).
            self._db.execute("PRAGMA synchronous=FULL")
            # The log is emptied at each checkpoint (every 1,000 pages) but keeps its size;
            # one large write (indexing 20,000 dropped files) must not leave it at 50 MB.
            self._db.execute(f"PRAGMA journal_size_limit = {WAL_BYTES}")
            # Read through the page cache in place, not copied page by page: a text SEARCH
            # that every message matches checks each candidate's text (about halves it).
            self._db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
            if self._schema_version() < SCHEMA_VERSION:
                self._migrate()
            self.has_text_index = bool(
                self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'texts'"
                ).fetchone()
            )
        except BaseException:
            self._db.close()
            raise

    def _schema_version(self) -> int:
        try:
            return self._meta(self._db, "schema") or 0
        except sqlite3.OperationalError:
            return 0  # no meta table yet

    def _migrate(self) -> None:
        with self._write(track=False) as db:
            for statement in _SCHEMA:
                db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(messages)")}
            if "modseq" not in columns:  # an index from before CONDSTORE
                db.execute("ALTER TABLE messages ADD COLUMN modseq INTEGER NOT NULL DEFAULT 1")
            db.execute("CREATE INDEX IF NOT EXISTS messages_modseq ON messages(modseq)")
            with suppress(sqlite3.OperationalError):  # an SQLite without FTS5: no text index
                old = db.execute("SELECT sql FROM sqlite_master WHERE name = 'texts'").fetchone()
                if old is not None and TEXT_LAYOUT not in old[0]:
                    # An older layout: dropped, and filled again from the files as text
                    # SEARCH first needs it (text_uidnext back to 1).
                    db.execute("DROP TABLE texts")
                    db.execute("UPDATE meta SET value = 1 WHERE key = 'text_uidnext'")
                db.execute(TEXT_TABLE)
            if self._meta(db, "uidvalidity") is None:
                # RFC 3501 2.3.1.1: a new index gets a new UIDVALIDITY; time makes it grow.
                created = self._now()
                validity = int(created if created is not None else os.stat(self.path).st_mtime)
                if self._validity is not None:  # a name used before must not get it again
                    validity = self._validity(validity)
                db.execute("INSERT INTO meta VALUES ('uidvalidity', ?)", (max(1, validity),))
                db.execute("INSERT INTO meta VALUES ('uidnext', 1)")
            # text_uidnext: every message below it has its row in texts (or is gone).
            for key, value in (
                ("highestmodseq", 1),
                ("stamp_new", 0),
                ("stamp_cur", 0),
                ("text_uidnext", 1),
            ):
                db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    def schema_cookie(self) -> int:
        """SQLite's schema cookie: it changes with every change of the tables' layout made
        through any connection (whoever keeps an index open opens it again then, so that
        it is migrated and its text index known as it is)."""
        with self._mutex:
            return int(self._db.execute("PRAGMA schema_version").fetchone()[0])

    @property
    def uidvalidity(self) -> int:
        return self._get_meta("uidvalidity")

    @property
    def uidnext(self) -> int:
        return self._get_meta("uidnext")

    @property
    def highestmodseq(self) -> int:
        """RFC 7162 3.1.1: the highest mod-sequence of any change to the mailbox."""
        return self._get_meta("highestmodseq")

    def _get_meta(self, key: str) -> int:
        with self._mutex:
            value = self._meta(self._db, key)
        assert value is not None
        return value

    # -- locking and transactions -----------------------------------------------------------

    @contextmanager
    def _write(self, *, track: bool = True) -> Iterator[sqlite3.Connection]:
        """The mailbox's lock and one write transaction. With ``track``, when the directory
        was as the index last saw it before this change, its new mtimes are recorded, so the
        change made here does not cost the next reader a full scan."""
        with self._mutex, flock(self._lock_file), self._transaction(track=track) as db:
            yield db

    @contextmanager
    def _transaction(self, *, track: bool = True) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        self._txn_modseq = None
        try:
            fresh = track and self._stamp() == self._stored_stamp(db)
            yield db
            if fresh:
                self._set_stamp(db, self._stamp())
        except BaseException:
            db.execute("ROLLBACK")
            self._txn_modseq = None
            raise
        db.execute("COMMIT")
        changed, self._txn_modseq = self._txn_modseq is not None, None
        if changed and self._notify is not None:
            self._notify(self.path)

    def _bump(self, db: sqlite3.Connection) -> int:
        """The mod-sequence of this transaction's changes (one per transaction)."""
        if self._txn_modseq is None:
            highest = self._meta(db, "highestmodseq") or 1
            self._txn_modseq = highest + 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'highestmodseq'", (self._txn_modseq,))
        return self._txn_modseq

    def _stamp(self) -> tuple[int, int]:
        return os.stat(self._new_dir).st_mtime_ns, os.stat(self._cur_dir).st_mtime_ns

    @staticmethod
    def _stored_stamp(db: sqlite3.Connection) -> tuple[int | None, int | None]:
        """The mtimes of new/ and cur/ the index last saw."""
        found = dict(
            db.execute("SELECT key, value FROM meta WHERE key IN ('stamp_new', 'stamp_cur')")
        )
        return found.get("stamp_new"), found.get("stamp_cur")

    @staticmethod
    def _set_stamp(db: sqlite3.Connection, stamp: tuple[int, int]) -> None:
        db.execute(
            "UPDATE meta SET value = CASE key WHEN 'stamp_new' THEN ? ELSE ? END"
            " WHERE key IN ('stamp_new', 'stamp_cur')",
            stamp,
        )

    @staticmethod
    def _delivered(db: sqlite3.Connection, key: str) -> int | None:
        row = db.execute("SELECT uid FROM deliveries WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> int | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])


def join_flags(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


_FLAG_SETS: dict[str, frozenset[str]] = {}


def split_flags(text: str) -> frozenset[str]:
    # Few distinct flag combinations exist: share one frozenset per combination.
    found = _FLAG_SETS.get(text)
    if found is None:
        found = frozenset(text.split())
        if len(_FLAG_SETS) < 4096:
            _FLAG_SETS[text] = found
    return found


def uid_runs(sorted_uids: list[int], gap: int = 64) -> Iterator[tuple[int, int]]:
    """Runs ``(lo, hi)`` of sorted UIDs, bridging gaps of up to ``gap``: a range query per
    run, not per UID (callers drop the rows in the gaps)."""
    if not sorted_uids:
        return
    lo = hi = sorted_uids[0]
    for uid in sorted_uids[1:]:
        if uid <= hi + 1 + gap:
            hi = uid
            continue
        yield lo, hi
        lo = hi = uid
    yield lo, hi
