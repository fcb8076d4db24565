"""One folder: a Maildir and its UID index, read and changed by delivery, IMAP and POP3."""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

from reference import faults
from reference.mailbox.index import (
    COLUMNS,
    LOCK_FILE,
    TEXT_COLUMNS,
    Listener,
    NewName,
    Row,
    UidIndex,
    Validity,
    join_flags,
    split_flags,
    uid_runs,
)
from reference.mailbox.maildir import (
    TMP_MAX_AGE,
    base_of,
    delivery_key_of,
    flock,
    fsync_dir,
    info_flags,
    link_or_copy,
    move_file,
    placement,
)
from reference.mailbox.message import to_crlf

log = logging.getLogger("mailspec.mailbox")

T = TypeVar("T")
_TEXT_BATCH = 500  # messages indexed per write transaction when catching up


class TextOf(Protocol):
    """What SEARCH looks at in a message, one string for each of the text index's
    ``TEXT_COLUMNS``: header text, body text, ``fields`` (the header fields SORT and THREAD
    compare, JSON), then the values of each of ``SEARCHED_FIELDS``, as the searcher sees
    them. The IMAP front end defines it (its MIME decoding); the store indexes it."""

    def __call__(self, data: bytes, /) -> tuple[str, ...]: ...


Texts = tuple[str, ...]  # a message's row in the text index: its TEXT_COLUMNS
_TEXT_NAMES = ", ".join(TEXT_COLUMNS)
_TEXT_MARKS = ", ".join("?" * len(TEXT_COLUMNS))


_LOCKLESS_TRIES = 3  # reads of a file being renamed before taking the mailbox's lock

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_CANONICAL = {f.lower(): f for f in SYSTEM_FLAGS}
_KEYWORD_BAD = set(' (){%*"\\]') | {chr(c) for c in range(0x20)} | {"\x7f"}


class NoSuchMessage(LookupError):
    """No message with that UID (never assigned, or expunged)."""


@dataclass(frozen=True)
class StoredMessage:
    """One message as the index knows it."""

    uid: int
    flags: frozenset[str]
    size: int
    internaldate: float
    where: tuple[Path, str, str] = field(repr=False)  # Maildir, "new" or "cur", file name
    modseq: int = 1

    @property
    def path(self) -> Path:
        """The file (built on demand: a listing of 100,000 messages needs no paths)."""
        maildir, sub, file = self.where
        return maildir / sub / file


@dataclass(frozen=True)
class Status:
    """What STATUS reports about a mailbox (RFC 9051 6.3.11, RFC 7162 3.1.2.1)."""

    messages: int
    unseen: int
    deleted: int
    size: int
    uidnext: int
    uidvalidity: int
    highestmodseq: int
    recent: int = 0  # messages no session has had as \Recent yet (RFC 3501 6.3.10)


@dataclass(frozen=True)
class Changes:
    """What changed after a mod-sequence: new or re-flagged messages, expunged UIDs."""

    highestmodseq: int
    changed: list[StoredMessage]
    expunged: list[int]


@dataclass(frozen=True)
class FlagUpdate:
    """The result of a STORE: messages as they now are, and those a condition kept as they
    were (RFC 7162 3.1.3 UNCHANGEDSINCE)."""

    messages: list[StoredMessage]
    modified: list[int] = field(default_factory=list)


def normalize_flags(flags: Iterable[str]) -> frozenset[str]:
    """System flags in canonical case, keywords as given; raises ValueError for bad ones."""
    out: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            canonical = _CANONICAL.get(flag.lower())
            if canonical is None:  # \Recent is the server's, other \names are not flags
                raise ValueError(f"not a settable flag: {flag!r}")
            out.add(canonical)
        elif not flag or len(flag) > 100 or _KEYWORD_BAD & set(flag) or not flag.isascii():
            raise ValueError(f"not a keyword: {flag!r}")
        else:
            out.add(flag)
    return frozenset(out)


class Mailbox(UidIndex):
    """One Maildir and its UID index. Methods are sync and thread-safe; close when done."""

    def __init__(
        self,
        path: Path,
        name: str,
        new_name: NewName,
        now: Callable[[], float | None],
        notify: Listener | None = None,
        validity: Validity | None = None,
        text_of: TextOf | None = None,
    ) -> None:
        self.name = name
        self._new_name = new_name
        self._text_of = text_of
        self._dir = str(path)
        self._sub_dir = {sub: f"{self._dir}/{sub}" for sub in ("new", "cur")}
        super().__init__(path, now, notify, validity)

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- reading ---------------------------------------------------------------------------

    def messages(self) -> list[StoredMessage]:
        """Every message, in UID order."""
        with self._mutex:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM messages ORDER BY uid").fetchall()
        return [self._message(row) for row in rows]

    def uids(self) -> list[int]:
        """Every UID, ascending (cheaper than :meth:`messages` for a large mailbox)."""
        with self._mutex:
            return [u for (u,) in self._db.execute("SELECT uid FROM messages ORDER BY uid")]

    def get(self, uid: int) -> StoredMessage:
        with self._mutex:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM messages WHERE uid = ?", (uid,)
            ).fetchone()
        if row is None:
            raise NoSuchMessage(uid)
        return self._message(row)

    def get_many(self, uids: Iterable[int]) -> dict[int, StoredMessage]:
        """The messages among ``uids`` that exist, by UID; ranges are read as ranges."""
        members = set(uids)
        out: dict[int, StoredMessage] = {}
        with self._mutex:
            for lo, hi in uid_runs(sorted(members)):
                for row in self._db.execute(
                    f"SELECT {COLUMNS} FROM messages WHERE uid BETWEEN ? AND ?", (lo, hi)
                ):
                    if row[0] in members:
                        out[row[0]] = self._message(row)
        return out

    def select(
        self, where: str, params: Iterable[object] = ()
    ) -> list[tuple[int, str, int, float, int]]:
        """``(uid, flags, size, internaldate, modseq)`` rows matching ``where``, in UID order.

        ``where`` is SQL over those five columns, built from a fixed vocabulary by
        :func:`reference.imap.search.to_sql` (never from client text: values are parameters).
        """
        with self._mutex:
            return self._db.execute(
                "SELECT uid, flags, size, internaldate, modseq FROM messages"
                f" WHERE {where} ORDER BY uid",
                tuple(params),
            ).fetchall()

    def select_uids(self, where: str, params: Iterable[object] = ()) -> list[tuple[int, int]]:
        """``(uid, modseq)`` of the rows matching ``where`` (as :meth:`select`), in UID order:
        what a SEARCH needs when the index answers every key, two columns and no flags."""
        with self._mutex:
            return self._db.execute(
                f"SELECT uid, modseq FROM messages WHERE {where} ORDER BY uid", tuple(params)
            ).fetchall()

    def snapshot(self, *, claim_recent: bool = False) -> tuple[list[int], Status, int | None]:
        """UIDs, status and the first unseen UID, read together (what SELECT needs): a
        message delivered meanwhile is in all three or in none. With ``claim_recent`` the
        caller takes the messages no session has had as ``\\Recent`` (``status.recent``
        of them, the highest UIDs): RFC 3501 2.3.2, one session gets each message so."""
        if claim_recent:
            with self._write(track=False) as db:
                uids = [u for (u,) in db.execute("SELECT uid FROM messages ORDER BY uid")]
                status = self._status()
                unseen = self.first_unseen()
                if not faults.active("mailbox.recent-for-all"):
                    db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('recent_uid', ?)", (status.uidnext,)
                    )
            return uids, status, unseen
        with self._mutex:
            self._db.execute("BEGIN")
            try:
                uids = [u for (u,) in self._db.execute("SELECT uid FROM messages ORDER BY uid")]
                status = self._status()
                unseen = self.first_unseen()
            finally:
                self._db.execute("COMMIT")
        return uids, status, unseen

    def claim_recent(self, up_to: int) -> int:
        """Take the messages up to UID ``up_to`` that no session has had as ``\\Recent``;
        returns the first UID taken (those from it to ``up_to`` are the caller's)."""
        with self._write(track=False) as db:
            first = self._meta(db, "recent_uid") or 1
            if up_to >= first:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('recent_uid', ?)", (up_to + 1,))
        return first

    def keywords(self) -> frozenset[str]:
        """The keywords (not system flags) some message of the mailbox has."""
        with self._mutex:
            rows = self._db.execute("SELECT DISTINCT flags FROM messages").fetchall()
        found: set[str] = set()
        for (text,) in rows:
            found.update(f for f in split_flags(text) if not f.startswith("\\"))
        return frozenset(found)

    def status(self) -> Status:
        with self._mutex:
            self._db.execute("BEGIN")
            try:
                return self._status()
            finally:
                self._db.execute("COMMIT")

    def _status(self) -> Status:
        n, unseen, deleted, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(instr(flags, '\\Seen') = 0), 0),"
            " COALESCE(SUM(instr(flags, '\\Deleted') > 0), 0), COALESCE(SUM(size), 0)"
            " FROM messages"
        ).fetchone()
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        (recent,) = self._db.execute(
            "SELECT COUNT(*) FROM messages WHERE uid >= ?", (meta.get("recent_uid", 1),)
        ).fetchone()
        return Status(
            messages=n,
            unseen=unseen,
            deleted=deleted,
            size=size,
            uidnext=meta["uidnext"],
            uidvalidity=meta["uidvalidity"],
            highestmodseq=meta["highestmodseq"],
            recent=recent,
        )

    def first_unseen(self) -> int | None:
        """The lowest UID without ``\\Seen``."""
        with self._mutex:
            row = self._db.execute(
                "SELECT MIN(uid) FROM messages WHERE instr(flags, '\\Seen') = 0"
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def changes(self, since: int) -> Changes:
        """Messages added or re-flagged, and UIDs expunged, after mod-sequence ``since``."""
        with self._mutex:
            self._db.execute("BEGIN")  # one snapshot for the three reads
            try:
                highest = self._meta(self._db, "highestmodseq")
                rows = self._db.execute(
                    f"SELECT {COLUMNS} FROM messages WHERE modseq > ? ORDER BY uid", (since,)
                ).fetchall()
                gone = [
                    u
                    for (u,) in self._db.execute(
                        "SELECT uid FROM expunged WHERE modseq > ? ORDER BY uid", (since,)
                    )
                ]
            finally:
                self._db.execute("COMMIT")
        assert highest is not None
        return Changes(highest, [self._message(row) for row in rows], gone)

    def read(self, uid: int) -> bytes:
        """The message's bytes (CRLF line ends); raises :class:`NoSuchMessage`."""
        return self._with_file(uid, Path.read_bytes)

    def _with_file(self, uid: int, use: Callable[[Path], T]) -> T:
        """``use(file)`` on the message's file, which other sessions may rename (new/ to
        cur/, other info letters) or unlink (EXPUNGE) at any moment: a vanished file is
        looked up again by its base name, and the last try holds the mailbox's lock, so it
        ends in the file or in :class:`NoSuchMessage`, never in FileNotFoundError."""
        for _ in range(_LOCKLESS_TRIES):
            try:
                return use(self._file(self.get(uid)))
            except FileNotFoundError:
                continue
        with self._mutex, flock(self.path / LOCK_FILE):  # writers rename only under it
            try:
                return use(self._file(self.get(uid)))
            except FileNotFoundError:
                raise NoSuchMessage(uid) from None  # gone from disk; the next sync forgets it

    def _file(self, message: StoredMessage) -> Path:
        if message.path.exists():
            return message.path
        # Another Maildir reader may have renamed it (new/ -> cur/, other info letters).
        found = self._find(base_of(message.path.name))
        if found is None:
            raise NoSuchMessage(message.uid)
        return found

    # -- writing ---------------------------------------------------------------------------

    def append(
        self,
        data: bytes,
        flags: Iterable[str] = (),
        *,
        when: float | None = None,
        key: str | None = None,
    ) -> int:
        """Store a message and return its UID: tmp/, fsync, rename, fsync the directory,
        commit the index.

        With a delivery ``key``, a message stored with that key before is not stored again:
        its UID is returned (see :meth:`delivered`)."""
        wanted = normalize_flags(flags)
        data = to_crlf(data)  # stored as on the wire: RFC822.SIZE is the file size
        if when is None:
            when = self._now()
        texts = self._texts(data) if self._text_of is not None else None
        tmp = self._tmp_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if when is not None:
                    os.utime(fd, (when, when))  # the internal date, made durable with it
                internaldate = when if when is not None else os.fstat(fd).st_mtime
                # The message's bytes durable before its name is (a power cut must not
                # leave a name in new/ on an empty file).
                os.fsync(fd)
            with self._write() as db:
                # Looked up under the mailbox's lock: two attempts at one delivery (two
                # workers, two nodes) store it once.
                done = None if key is None else self._delivered(db, key)
                if done is None:
                    uid, sub = self._insert(db, tmp, wanted, len(data), internaldate, texts, key)
                    # Its name in new/ durable before the index commits its key: a power
                    # cut after the commit must not leave a recorded delivery whose file
                    # is gone (a retry would find the key and store nothing). A cut before
                    # the commit leaves the file, adopted with its key by the next sync.
                    fsync_dir(self._sub_dir[sub])
        except BaseException:
            _unlink(tmp)
            raise
        if done is not None:
            _unlink(tmp)
            log.info("mailbox.delivered-before mailbox=%s uid=%d key=%s", self.path, done, key)
            return done
        log.info("mailbox.append mailbox=%s uid=%d size=%d", self.path, uid, len(data))
        return uid

    def delivered(self, key: str) -> int | None:
        """The UID the delivery ``key`` got, if it was made (the message may be expunged
        since). A file a killed delivery left in the Maildir without its index row is
        adopted first, with its key."""
        with self._mutex:
            done = self._delivered(self._db, key)
        if done is None and self.sync():
            with self._mutex:
                done = self._delivered(self._db, key)
        return done

    def _tmp_name(self) -> str:
        return f"{self._dir}/tmp/{secrets.token_hex(8)}.P{os.getpid()}.tmp"

    def _insert(
        self,
        db: sqlite3.Connection,
        tmp: str,
        flags: frozenset[str],
        size: int,
        internaldate: float,
        texts: Texts | None = None,
        key: str | None = None,
    ) -> tuple[int, str]:
        """Give the file in tmp/ the next UID and move it into place (inside a write), with
        its row in the text index when its ``texts`` are known, and its delivery ``key``."""
        uid = self._meta(db, "uidnext")
        assert uid is not None
        modseq = self._bump(db)
        base = self._new_name(internaldate, key)
        sub, file = placement(base, flags)
        target = f"{self._sub_dir[sub]}/{file}"
        os.rename(tmp, target)
        try:
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, base, sub, file, join_flags(flags), size, internaldate, modseq),
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'uidnext'", (uid + 1,))
            if key is not None:
                db.execute("INSERT INTO deliveries VALUES (?, ?)", (key, uid))
            if texts is not None and self.has_text_index:
                db.execute(
                    f"INSERT INTO texts(rowid, {_TEXT_NAMES}) VALUES (?, {_TEXT_MARKS})",
                    (uid, *texts),
                )
        except BaseException:
            _unlink(target)
            raise
        return uid, sub

    # -- the text index --------------------------------------------------------------------

    def _texts(self, data: bytes) -> Texts:
        """A message's row in the text index: its searchable text, case-folded (IMAP SEARCH
        compares case-insensitively; folding once here lets the index compare exactly)."""
        assert self._text_of is not None
        return _folded(self._text_of(data))

    def index_texts(self, text_of: TextOf) -> int:
        """Give every message without a row in the text index its row (mail another writer
        stored without indexing: files adopted from new/, copies, an MDA of another program);
        returns how many were read. Cheap when none is missing: one look at the newest UIDs."""
        if not self.has_text_index:
            return 0
        with self._mutex:
            start = self._meta(self._db, "text_uidnext") or 1
            end = self._meta(self._db, "uidnext") or 1
            missing = [
                uid
                for (uid,) in self._db.execute(
                    "SELECT uid FROM messages WHERE uid >= ? AND uid NOT IN"
                    " (SELECT rowid FROM texts WHERE rowid >= ?) ORDER BY uid",
                    (start, start),
                )
            ]
        for i in range(0, len(missing), _TEXT_BATCH):
            rows: list[tuple[object, ...]] = []
            for uid in missing[i : i + _TEXT_BATCH]:
                with suppress(NoSuchMessage):
                    rows.append((uid, *_folded(text_of(self.read(uid)))))
            with self._write(track=False) as db:
                for row in rows:  # only messages still there, and not indexed meanwhile
                    db.execute(
                        f"INSERT INTO texts(rowid, {_TEXT_NAMES}) SELECT ?, {_TEXT_MARKS}"
                        " WHERE EXISTS"
                        " (SELECT 1 FROM messages WHERE uid = ?) AND NOT EXISTS"
                        " (SELECT 1 FROM texts WHERE rowid = ?)",
                        (*row, row[0], row[0]),
                    )
        if end > start:  # a write (and the lock) only when there is something to note
            with self._write(track=False) as db:
                db.execute(
                    "UPDATE meta SET value = ? WHERE key = 'text_uidnext' AND value < ?",
                    (end, end),
                )
        return len(missing)

    def _stored_texts(self, uids: Iterable[int]) -> dict[int, Texts]:
        """The text index rows of ``uids`` (for copies: no need to read the files again)."""
        return self._text_rows(uids, _TEXT_NAMES)

    def header_fields(self, uids: Iterable[int]) -> dict[int, str]:
        """The ``fields`` the text index keeps for ``uids`` (what SORT and THREAD compare),
        for those that have their row."""
        return {uid: row[0] for uid, row in self._text_rows(uids, "fields").items()}

    def _text_rows(self, uids: Iterable[int], columns: str) -> dict[int, Any]:
        if not self.has_text_index:
            return {}
        out: dict[int, Any] = {}
        members = set(uids)
        with self._mutex:
            for lo, hi in uid_runs(sorted(members)):
                for uid, *row in self._db.execute(
                    f"SELECT rowid, {columns} FROM texts WHERE rowid BETWEEN ? AND ?", (lo, hi)
                ):
                    if uid in members:  # runs bridge gaps: leave the UIDs not asked for
                        out[uid] = tuple(row)
        return out

    def set_flags(self, uid: int, flags: Iterable[str]) -> StoredMessage:
        """Replace the message's flags."""
        changed = self.change_flags([uid], replace=flags)
        if not changed:
            raise NoSuchMessage(uid)
        return changed[0]

    def change_flags(
        self,
        uids: Iterable[int],
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        replace: Iterable[str] | None = None,
    ) -> list[StoredMessage]:
        """Add, remove or replace flags atomically; returns the messages that exist."""
        return self.update_flags(uids, add=add, remove=remove, replace=replace).messages

    def update_flags(
        self,
        uids: Iterable[int],
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        replace: Iterable[str] | None = None,
        unchanged_since: int | None = None,
    ) -> FlagUpdate:
        """:meth:`change_flags` with RFC 7162 UNCHANGEDSINCE: a message whose mod-sequence is
        above it is left alone and listed in ``modified``. Changed messages get one new
        mod-sequence; a STORE that changes nothing changes no mod-sequence."""
        plus, minus = normalize_flags(add), normalize_flags(remove)
        exact = normalize_flags(replace) if replace is not None else None
        members = set(uids)
        out: list[StoredMessage] = []
        modified: list[int] = []
        with self._write() as db:
            for lo, hi in uid_runs(sorted(members)):
                rows = db.execute(
                    f"SELECT {COLUMNS} FROM messages WHERE uid BETWEEN ? AND ? ORDER BY uid",
                    (lo, hi),
                ).fetchall()
                for uid, sub, file, old_text, size, internaldate, modseq in rows:
                    if uid not in members:
                        continue
                    if unchanged_since is not None and modseq > unchanged_since:
                        modified.append(uid)
                        continue
                    old = split_flags(old_text)
                    new = exact if exact is not None else (old | plus) - minus
                    if new != old:
                        sub, file = self._rename(sub, file, new)
                        modseq = self._bump(db)
                        db.execute(
                            "UPDATE messages SET sub = ?, file = ?, flags = ?, modseq = ?"
                            " WHERE uid = ?",
                            (sub, file, join_flags(new), modseq, uid),
                        )
                    row = (uid, sub, file, join_flags(new), size, internaldate, modseq)
                    out.append(self._message(row))
        return FlagUpdate(out, modified)

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        """Remove the messages flagged ``\\Deleted`` (only those in ``uids`` when given)."""
        only = set(uids) if uids is not None else None
        gone: list[int] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT uid, sub, file FROM messages WHERE instr(flags, '\\Deleted') > 0"
                " ORDER BY uid"
            ).fetchall()
            for uid, sub, file in rows:
                if only is not None and uid not in only:
                    continue
                self._remove(db, uid, sub, file)
                gone.append(uid)
        if gone:
            log.info("mailbox.expunge mailbox=%s count=%d", self.path, len(gone))
        return gone

    def _remove(self, db: sqlite3.Connection, uid: int, sub: str, file: str) -> None:
        path = self.path / sub / file
        if not path.exists():
            path = self._find(base_of(file)) or path
        path.unlink(missing_ok=True)  # file first: a crash must not resurrect it
        self._forget(db, uid)

    def _forget(self, db: sqlite3.Connection, uid: int) -> None:
        db.execute("DELETE FROM messages WHERE uid = ?", (uid,))
        if self.has_text_index:
            db.execute("DELETE FROM texts WHERE rowid = ?", (uid,))
        db.execute("INSERT OR REPLACE INTO expunged VALUES (?, ?)", (uid, self._bump(db)))

    def copy_to(self, dest: Mailbox, uids: Iterable[int]) -> list[tuple[int, int]]:
        """Copy messages (hard links where the file system allows) with their flags and
        internal dates; returns ``(source uid, new uid)`` pairs (RFC 4315 COPYUID)."""
        found = self.get_many(uids)
        texts = self._stored_texts(found)
        staged: list[tuple[StoredMessage, str]] = []
        pairs: list[tuple[int, int]] = []
        try:
            for uid in sorted(found):
                message = found[uid]
                tmp = dest._tmp_name()
                try:
                    self._with_file(uid, partial(_link_or_copy_to, tmp))
                except NoSuchMessage:
                    continue  # expunged meanwhile
                staged.append((message, tmp))
            with dest._write() as db:
                for message, tmp in staged:
                    uid, _ = dest._insert(
                        db,
                        tmp,
                        message.flags,
                        message.size,
                        message.internaldate,
                        texts.get(message.uid),
                    )
                    pairs.append((message.uid, uid))
        finally:
            for _, tmp in staged[len(pairs) :]:
                _unlink(tmp)
        for sub in ("new", "cur"):
            fsync_dir(dest.path / sub)
        return pairs

    def move_to(self, dest: Mailbox, uids: Iterable[int]) -> list[tuple[int, int]]:
        """Move messages (a rename of each file, RFC 6851); returns ``(old, new)`` UIDs."""
        if dest.path == self.path:
            pairs = self.copy_to(dest, uids)
            with self._write() as db:
                for old, _ in pairs:
                    row = db.execute(
                        "SELECT sub, file FROM messages WHERE uid = ?", (old,)
                    ).fetchone()
                    if row is not None:
                        self._remove(db, old, *row)
            return pairs
        pairs = []
        # Both locks, always in the same order, so two opposite MOVEs cannot deadlock.
        with ExitStack() as stack:
            for mailbox in sorted((self, dest), key=lambda m: str(m.path)):
                stack.enter_context(mailbox._mutex)
                stack.enter_context(flock(mailbox.path / LOCK_FILE))
            members = set(uids)
            with dest._transaction() as ddb, self._transaction() as sdb:
                for lo, hi in uid_runs(sorted(members)):
                    rows = sdb.execute(
                        f"SELECT {COLUMNS} FROM messages WHERE uid BETWEEN ? AND ? ORDER BY uid",
                        (lo, hi),
                    ).fetchall()
                    for row in rows:
                        if row[0] not in members:
                            continue
                        message = self._message(row)
                        try:
                            source = self._file(message)
                        except NoSuchMessage:
                            continue
                        tmp = dest._tmp_name()
                        move_file(source, tmp)
                        text = self._stored_texts([message.uid]).get(message.uid)
                        uid, _ = dest._insert(
                            ddb, tmp, message.flags, message.size, message.internaldate, text
                        )
                        self._forget(sdb, message.uid)
                        pairs.append((message.uid, uid))
        for sub in ("new", "cur"):
            fsync_dir(dest.path / sub)
        if pairs:
            log.info("mailbox.move from=%s to=%s count=%d", self.path, dest.path, len(pairs))
        return pairs

    def sync(self, *, force: bool = False) -> bool:
        """Reconcile the index with the directory (see :meth:`MailStore.open`); without
        ``force`` only when ``new/`` or ``cur/`` changed since the index last saw them.
        Returns whether the directory was read."""
        if not force:
            with self._mutex:
                stored = self._stored_stamp(self._db)
            if stored == self._stamp():
                return False
        now = self._now()
        with self._write(track=False) as db:
            stamp = self._stamp()  # before reading: a change during the scan shows next time
            on_disk: dict[str, tuple[str, str]] = {}
            for sub in ("new", "cur"):
                with os.scandir(self.path / sub) as entries:
                    for entry in entries:
                        if not entry.name.startswith(".") and entry.is_file():
                            on_disk[base_of(entry.name)] = (sub, entry.name)
            for uid, base, sub, file in db.execute(
                "SELECT uid, base, sub, file FROM messages"
            ).fetchall():
                where = on_disk.pop(base, None)
                if where is None:
                    self._forget(db, uid)
                elif where != (sub, file):
                    db.execute("UPDATE messages SET sub = ?, file = ? WHERE uid = ?", (*where, uid))
            adopted = [
                (os.stat(self.path / sub / file), base, sub, file)
                for base, (sub, file) in on_disk.items()
            ]
            adopted.sort(key=lambda a: (a[0].st_mtime, a[1]))  # arrival order, as near as known
            uid = self._meta(db, "uidnext")
            assert uid is not None
            for stat, base, sub, file in adopted:
                flags = join_flags(info_flags(file))
                db.execute(
                    "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (uid, base, sub, file, flags, stat.st_size, stat.st_mtime, self._bump(db)),
                )
                if (key := delivery_key_of(base)) is not None:
                    # A delivery killed between its rename and its commit: it was made.
                    db.execute("INSERT OR IGNORE INTO deliveries VALUES (?, ?)", (key, uid))
                uid += 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'uidnext'", (uid,))
            self._set_stamp(db, stamp)
        if adopted:
            log.info("mailbox.sync mailbox=%s adopted=%d", self.path, len(adopted))
        if now is not None:
            self._clean_tmp(now)
        return True

    def _clean_tmp(self, now: float) -> None:
        # Maildir: debris is a tmp/ file untouched for 36 h. Not by mtime alone: APPEND
        # and COPY stamp (or hard-link) a file in tmp/ with the message's internal date,
        # perhaps years old, while it is in flight; its ctime (set by the kernel on
        # create, link and utime) is the time it got there.
        with os.scandir(self.path / "tmp") as entries:
            for entry in entries:
                with suppress(FileNotFoundError):
                    if not entry.is_file():
                        continue
                    stat = entry.stat()
                    if max(stat.st_mtime, stat.st_ctime) < now - TMP_MAX_AGE:
                        os.unlink(entry.path)

    # -- files -----------------------------------------------------------------------------

    def _message(self, row: Row) -> StoredMessage:
        uid, sub, file, flags, size, internaldate, modseq = row
        return StoredMessage(
            uid, split_flags(flags), size, internaldate, (self.path, sub, file), modseq
        )

    def _rename(self, sub: str, file: str, flags: frozenset[str]) -> tuple[str, str]:
        target = placement(base_of(file), flags)
        if target == (sub, file):
            return sub, file
        source = self.path / sub / file
        if not source.exists():
            source = self._find(base_of(file)) or source
        try:
            os.rename(source, self.path / target[0] / target[1])
        except FileNotFoundError:
            return sub, file  # gone from disk; the next sync forgets it
        return target

    def _find(self, base: str) -> Path | None:
        for sub in ("cur", "new"):
            with os.scandir(self.path / sub) as entries:
                for entry in entries:
                    if base_of(entry.name) == base:
                        return Path(entry.path)
        return None


def _folded(texts: Texts) -> Texts:
    """Every column case-folded but ``fields`` (SORT and THREAD compare it as written)."""
    return tuple(
        t if name == "fields" else t.casefold() for name, t in zip(TEXT_COLUMNS, texts, strict=True)
    )


def _link_or_copy_to(target: str, source: Path) -> None:
    link_or_copy(source, target)


def _unlink(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)
