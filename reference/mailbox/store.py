"""The message store: a Maildir++ tree per account and a UID index per mailbox."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import secrets
import shutil
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from types import TracebackType

from reference.clock import Clock
from reference.mailbox.message import to_crlf
from reference.mailbox.paths import (
    DELIMITER,
    SPECIAL_USE,
    InvalidFolder,
    account_dir,
    folder_dir,
    folder_name,
    normalize_folder,
)

log = logging.getLogger("mailspec.mailbox")

INDEX_FILE = "mailspec-index.sqlite"
LOCK_FILE = "mailspec-index.lock"
ACCOUNT_LOCK = "mailspec-account.lock"
SUBSCRIPTIONS = "subscriptions"  # one folder name a line, as Dovecot's Maildir layout keeps it
TMP_MAX_AGE = 36 * 3600  # Maildir: files left in tmp/ this long are debris
SCHEMA_VERSION = 2

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_CANONICAL = {f.lower(): f for f in SYSTEM_FLAGS}
# Maildir info letters (written in ASCII order, as the spec asks).
_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "$Forwarded": "P", "\\Answered": "R"}
_LETTERS |= {"\\Seen": "S", "\\Deleted": "T"}
_FROM_LETTER = {v: k for k, v in _LETTERS.items()}
_KEYWORD_BAD = set(' (){%*"\\]') | {chr(c) for c in range(0x20)} | {"\x7f"}

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS messages (uid INTEGER PRIMARY KEY, base TEXT NOT NULL UNIQUE,"
    " sub TEXT NOT NULL, file TEXT NOT NULL, flags TEXT NOT NULL, size INTEGER NOT NULL,"
    " internaldate REAL NOT NULL, modseq INTEGER NOT NULL DEFAULT 1)",
    # RFC 7162 3.2.5 / QRESYNC: which UIDs went away at which mod-sequence.
    "CREATE TABLE IF NOT EXISTS expunged (uid INTEGER PRIMARY KEY, modseq INTEGER NOT NULL)",
)
_COLUMNS = "uid, sub, file, flags, size, internaldate, modseq"
_Row = tuple[int, str, str, str, int, float, int]


class NoSuchFolder(LookupError):
    """The folder does not exist and was not to be created."""


class FolderExists(ValueError):
    """CREATE or RENAME to a name that is taken."""


class NoSuchMessage(LookupError):
    """No message with that UID (never assigned, or expunged)."""


@dataclass(frozen=True)
class Quota:
    """Limits of one account; 0 means unlimited."""

    bytes: int = 0
    messages: int = 0

    @property
    def unlimited(self) -> bool:
        return not self.bytes and not self.messages


@dataclass(frozen=True)
class Usage:
    """What one account holds, over all its folders."""

    bytes: int
    messages: int


class QuotaExceeded(Exception):
    """Storing the message would take the account over its quota.

    Delivery should defer (4.2.2 mailbox full); IMAP APPEND answers ``NO [OVERQUOTA]``.
    """

    def __init__(self, address: str, resource: str, usage: int, limit: int) -> None:
        super().__init__(f"{address}: {resource.lower()} quota exceeded ({usage} of {limit})")
        self.address = address
        self.resource = resource  # "STORAGE" (bytes) or "MESSAGE"
        self.usage = usage
        self.limit = limit


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


Listener = Callable[[Path], None]


class MailStore:
    """All accounts' mailboxes under ``root`` (``data_dir / "mail"``). Sync file I/O.

    Layout: ``root/<domain>/<local>/`` is the INBOX Maildir (``tmp/ new/ cur/``); every other
    folder is a Maildir++ subfolder ``.Name`` (``.A.B`` for ``A/B``). Each Maildir holds
    ``mailspec-index.sqlite`` (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, uid -> file, flags, size,
    internal date, mod-sequence, and the UIDs expunged with their mod-sequence). Every change
    to a mailbox happens under an exclusive ``flock`` on ``mailspec-index.lock``, so several
    processes (or nodes sharing the storage) deliver into one mailbox safely; the flock queues
    writers in the kernel instead of SQLite's sleep-and-retry busy handler. The index is the
    truth for flags (keywords included); file names carry the standard Maildir info letters
    as a courtesy to other Maildir readers.

    Opening a mailbox reads the directory only when it changed behind the index's back: the
    index keeps the mtimes of ``new/`` and ``cur/`` as of its last full scan (and moves them
    along when it changes the directories itself), so a mailbox of 100,000 messages opens
    with two ``stat`` calls.

    ``watch(path, callback)`` tells a listener (IMAP IDLE) when a mailbox of this process
    changed; other processes' changes show in the index's HIGHESTMODSEQ, cheap to poll.
    """

    def __init__(
        self,
        root: Path,
        *,
        clock: Clock | None = None,
        quota: Quota | Callable[[str], Quota] = Quota(),
    ) -> None:
        self.root = Path(root)
        self._clock = clock
        self._quota = quota
        host = socket.gethostname() or "localhost"
        # Maildir: "/" and ":" in the host part are written as octal escapes.
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._seq = count(1)
        self._ready: set[Path] = set()
        self._lock = threading.Lock()
        self._listeners: dict[Path, set[Listener]] = {}

    # -- delivery and APPEND ---------------------------------------------------------------

    def deliver(
        self,
        address: str,
        data: bytes,
        folder: str = "INBOX",
        flags: Iterable[str] = (),
        when: float | None = None,
    ) -> int:
        """Store ``data`` durably in ``folder`` and return its UID.

        ``when`` is the internal date; without it the store's clock, else the file's mtime.
        Raises :class:`NoSuchFolder` for a folder that does not exist and
        :class:`QuotaExceeded` when the account is full.
        """
        data = to_crlf(data)
        self.check_quota(address, len(data))
        with self.open(address, folder, sync=False) as mailbox:
            return mailbox.append(data, flags, when=when)

    def append(
        self,
        address: str,
        folder: str,
        data: bytes,
        flags: Iterable[str] = (),
        when: float | None = None,
    ) -> tuple[int, int]:
        """IMAP APPEND: like :meth:`deliver`; returns ``(uidvalidity, uid)`` (RFC 4315)."""
        data = to_crlf(data)
        self.check_quota(address, len(data))
        with self.open(address, folder, sync=False) as mailbox:
            return mailbox.uidvalidity, mailbox.append(data, flags, when=when)

    # -- quotas ----------------------------------------------------------------------------

    def quota_for(self, address: str) -> Quota:
        return self._quota(address) if callable(self._quota) else self._quota

    def usage(self, address: str) -> Usage:
        """Bytes and messages over every folder of the account, from the indexes."""
        account = self._account(address)
        total = messages = 0
        for name in self.folders(address):
            index = folder_dir(account, name) / INDEX_FILE
            if not index.exists():
                continue
            db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=30.0)
            try:
                size, n = db.execute(
                    "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messages"
                ).fetchone()
            except sqlite3.OperationalError:
                continue  # an index being created right now: nothing in it yet
            finally:
                db.close()
            total, messages = total + int(size), messages + int(n)
        return Usage(total, messages)

    def check_quota(self, address: str, size: int, messages: int = 1) -> None:
        """Raise :class:`QuotaExceeded` unless ``messages`` more of ``size`` bytes fit."""
        quota = self.quota_for(address)
        if quota.unlimited:
            return
        used = self.usage(address)
        if quota.messages and used.messages + messages > quota.messages:
            raise QuotaExceeded(address, "MESSAGE", used.messages, quota.messages)
        if quota.bytes and used.bytes + size > quota.bytes:
            raise QuotaExceeded(address, "STORAGE", used.bytes, quota.bytes)

    # -- mailboxes -------------------------------------------------------------------------

    def open(
        self, address: str, folder: str = "INBOX", *, create: bool = False, sync: bool = True
    ) -> Mailbox:
        """Open a mailbox (creating the account, INBOX and special-use folders if needed).

        Other folders must exist unless ``create``. ``sync`` adopts files that arrived in the
        Maildir without the index (another MDA, a crash between rename and commit) and forgets
        files that disappeared, when the directory changed since the index last looked.
        Close the mailbox (or use ``with``) when done.
        """
        account = self._account(address)
        name = normalize_folder(folder)
        path = folder_dir(account, name)
        if not (path / "cur").is_dir():
            if not (create or name == "INBOX"):
                raise NoSuchFolder(name)
            _make_maildir(path, subfolder=name != "INBOX")
        mailbox = Mailbox(path, name, self._new_name, self._now, self._notify)
        if sync:
            try:
                mailbox.sync()
            except BaseException:
                mailbox.close()
                raise
        return mailbox

    def exists(self, address: str, folder: str) -> bool:
        try:
            name = normalize_folder(folder)
        except InvalidFolder:
            return False
        return (folder_dir(self._account(address), name) / "cur").is_dir()

    def create_folder(self, address: str, folder: str, *, exclusive: bool = False) -> None:
        """Create ``folder``; with ``exclusive``, :class:`FolderExists` if it is there."""
        if exclusive and self.exists(address, folder):
            raise FolderExists(normalize_folder(folder))
        self.open(address, folder, create=True, sync=False).close()

    def delete_folder(self, address: str, folder: str) -> None:
        """Remove a folder and its messages (its subfolders stay, RFC 3501 6.3.4)."""
        name = normalize_folder(folder)
        if name == "INBOX":
            raise InvalidFolder("INBOX cannot be deleted")
        account = self._account(address)
        path = folder_dir(account, name)
        if not (path / "cur").is_dir():
            raise NoSuchFolder(name)
        # Renamed out of the tree first, so no reader sees a half-deleted Maildir.
        doomed = account / f"mailspec-deleted-{secrets.token_hex(6)}"
        with _flock(path / LOCK_FILE):
            os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        self.unsubscribe(address, name)
        log.info("mailbox.delete account=%s folder=%s", account, name)

    def rename_folder(self, address: str, old: str, new: str) -> None:
        """Rename a folder with its subfolders; INBOX's messages move, INBOX stays (6.3.5)."""
        src, dst = normalize_folder(old), normalize_folder(new)
        account = self._account(address)
        if not self.exists(address, src):
            raise NoSuchFolder(src)
        if dst == "INBOX" or self.exists(address, dst):
            raise FolderExists(dst)
        if src == "INBOX":
            with self.open(address) as inbox, self.open(address, dst, create=True) as box:
                inbox.move_to(box, inbox.uids())
            return
        prefix = "." + src.replace(DELIMITER, ".")
        with os.scandir(account) as entries:
            moving = sorted(
                e.name for e in entries if e.name == prefix or e.name.startswith(prefix + ".")
            )
        renames = [(e, "." + dst.replace(DELIMITER, ".") + e[len(prefix) :]) for e in moving]
        for _, target in renames:
            if (account / target).exists():
                raise FolderExists(folder_name(target) or dst)
        for entry, target in renames:
            os.rename(account / entry, account / target)
        subscribed = self.subscriptions(address)
        for name in subscribed:
            if name == src or name.startswith(src + DELIMITER):
                self.unsubscribe(address, name)
                self.subscribe(address, dst + name[len(src) :])
        log.info("mailbox.rename account=%s old=%s new=%s", account, src, dst)

    def folders(self, address: str) -> list[str]:
        """The account's folder names, INBOX first, then sorted."""
        account = self._account(address)
        with os.scandir(account) as entries:
            names = [
                name
                for entry in entries
                if entry.is_dir()
                and (name := folder_name(entry.name)) is not None
                and os.path.isdir(os.path.join(entry.path, "cur"))
            ]
        return ["INBOX", *sorted(names, key=lambda n: (n.lower(), n))]

    def status(self, address: str, folder: str) -> Status:
        with self.open(address, folder) as mailbox:
            return mailbox.status()

    def try_lock(self, address: str, purpose: str = "pop3") -> Callable[[], None] | None:
        """An exclusive lock on the account for one session (RFC 1939 8: the POP3 maildrop
        lock), held across processes until the returned function is called; None when
        another session holds it."""
        path = self._account(address) / f"mailspec-{purpose}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        held = [True]

        def release() -> None:
            if held[0]:
                held[0] = False
                os.close(fd)  # closing releases the lock

        return release

    # -- subscriptions (RFC 9051 6.3.7) ----------------------------------------------------

    def subscriptions(self, address: str) -> list[str]:
        path = self._account(address) / SUBSCRIPTIONS
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line]

    def subscribe(self, address: str, folder: str) -> None:
        name = normalize_folder(folder)
        self._edit_subscriptions(address, lambda names: names | {name})

    def unsubscribe(self, address: str, folder: str) -> None:
        name = normalize_folder(folder)
        self._edit_subscriptions(address, lambda names: names - {name})

    def _edit_subscriptions(self, address: str, edit: Callable[[set[str]], set[str]]) -> None:
        account = self._account(address)
        with _flock(account / ACCOUNT_LOCK):
            before = set(self.subscriptions(address))
            after = edit(before)
            if after != before:
                _write_atomically(account / SUBSCRIPTIONS, "".join(f"{n}\n" for n in sorted(after)))

    # -- change notification ---------------------------------------------------------------

    def watch(self, path: Path, listener: Listener) -> Callable[[], None]:
        """Call ``listener(path)`` (in the writer's thread) after each change to the mailbox
        at ``path`` made in this process; returns the function that stops it."""
        with self._lock:
            self._listeners.setdefault(path, set()).add(listener)

        def unwatch() -> None:
            with self._lock:
                listeners = self._listeners.get(path)
                if listeners is not None:
                    listeners.discard(listener)
                    if not listeners:
                        del self._listeners[path]

        return unwatch

    def _notify(self, path: Path) -> None:
        with self._lock:
            listeners = list(self._listeners.get(path, ()))
        for listener in listeners:
            try:
                listener(path)
            except Exception:
                log.exception("mailbox.listener path=%s", path)

    # -- internals -------------------------------------------------------------------------

    def _account(self, address: str) -> Path:
        account = account_dir(self.root, address)
        with self._lock:
            if account in self._ready:
                return account
        fresh = not (account / "cur").is_dir()
        _make_maildir(account, subfolder=False)
        for name in SPECIAL_USE:  # RFC 6154: the special-use folders exist from the start
            _make_maildir(folder_dir(account, name), subfolder=True)
        if fresh and not (account / SUBSCRIPTIONS).exists():
            names = ["INBOX", *SPECIAL_USE]
            _write_atomically(account / SUBSCRIPTIONS, "".join(f"{n}\n" for n in sorted(names)))
        with self._lock:
            self._ready.add(account)
        return account

    def _now(self) -> float | None:
        return self._clock.now() if self._clock is not None else None

    def _new_name(self, when: float) -> str:
        seconds, micros = divmod(round(when * 1_000_000), 1_000_000)
        token = secrets.token_hex(4)
        return f"{seconds}.M{micros}P{os.getpid()}Q{next(self._seq)}R{token}.{self._host}"


class Mailbox:
    """One Maildir and its UID index. Methods are sync and thread-safe; close when done."""

    def __init__(
        self,
        path: Path,
        name: str,
        new_name: Callable[[float], str],
        now: Callable[[], float | None],
        notify: Listener | None = None,
    ) -> None:
        self.path = path
        self.name = name
        self._new_name = new_name
        self._now = now
        self._notify = notify
        self._mutex = threading.RLock()
        self._txn_modseq: int | None = None
        self._db = sqlite3.connect(
            path / INDEX_FILE, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.execute("PRAGMA journal_mode=TRUNCATE")
            if self._schema_version() < SCHEMA_VERSION:
                self._migrate()
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
            if self._meta(db, "uidvalidity") is None:
                # RFC 3501 2.3.1.1: a new index gets a new UIDVALIDITY; time makes it grow.
                created = self._now()
                validity = int(created if created is not None else os.stat(self.path).st_mtime)
                db.execute("INSERT INTO meta VALUES ('uidvalidity', ?)", (max(1, validity),))
                db.execute("INSERT INTO meta VALUES ('uidnext', 1)")
            for key, value in (("highestmodseq", 1), ("stamp_new", 0), ("stamp_cur", 0)):
                db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (key, value))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    # -- reading ---------------------------------------------------------------------------

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

    def messages(self) -> list[StoredMessage]:
        """Every message, in UID order."""
        with self._mutex:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM messages ORDER BY uid").fetchall()
        return [self._message(row) for row in rows]

    def uids(self) -> list[int]:
        """Every UID, ascending (cheaper than :meth:`messages` for a large mailbox)."""
        with self._mutex:
            return [u for (u,) in self._db.execute("SELECT uid FROM messages ORDER BY uid")]

    def get(self, uid: int) -> StoredMessage:
        with self._mutex:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE uid = ?", (uid,)
            ).fetchone()
        if row is None:
            raise NoSuchMessage(uid)
        return self._message(row)

    def get_many(self, uids: Iterable[int]) -> dict[int, StoredMessage]:
        """The messages among ``uids`` that exist, by UID; ranges are read as ranges."""
        members = set(uids)
        out: dict[int, StoredMessage] = {}
        with self._mutex:
            for lo, hi in _runs(sorted(members)):
                for row in self._db.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE uid BETWEEN ? AND ?", (lo, hi)
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

    def snapshot(self) -> tuple[list[int], Status, int | None]:
        """UIDs, status and the first unseen UID, read together (what SELECT needs): a
        message delivered meanwhile is in all three or in none."""
        with self._mutex:
            self._db.execute("BEGIN")
            try:
                uids = [u for (u,) in self._db.execute("SELECT uid FROM messages ORDER BY uid")]
                status = self._status()
                unseen = self.first_unseen()
            finally:
                self._db.execute("COMMIT")
        return uids, status, unseen

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
        return Status(
            messages=n,
            unseen=unseen,
            deleted=deleted,
            size=size,
            uidnext=meta["uidnext"],
            uidvalidity=meta["uidvalidity"],
            highestmodseq=meta["highestmodseq"],
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
                    f"SELECT {_COLUMNS} FROM messages WHERE modseq > ? ORDER BY uid", (since,)
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
        return self._file(self.get(uid)).read_bytes()

    def _file(self, message: StoredMessage) -> Path:
        if message.path.exists():
            return message.path
        # Another Maildir reader may have renamed it (new/ -> cur/, other info letters).
        found = self._find(_base(message.path.name))
        if found is None:
            raise NoSuchMessage(message.uid)
        return found

    # -- writing ---------------------------------------------------------------------------

    def append(self, data: bytes, flags: Iterable[str] = (), *, when: float | None = None) -> int:
        """Store a message and return its UID: tmp/, fsync, rename, fsync the directory."""
        wanted = normalize_flags(flags)
        data = to_crlf(data)  # stored as on the wire: RFC822.SIZE is the file size
        if when is None:
            when = self._now()
        tmp = self._tmp_name()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if when is not None:
                os.utime(tmp, (when, when))
            internaldate = when if when is not None else os.stat(tmp).st_mtime
            with self._write() as db:
                uid, sub = self._insert(db, tmp, wanted, len(data), internaldate)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path / sub)
        log.info("mailbox.append mailbox=%s uid=%d size=%d", self.path, uid, len(data))
        return uid

    def _tmp_name(self) -> Path:
        return self.path / "tmp" / f"{secrets.token_hex(8)}.P{os.getpid()}.tmp"

    def _insert(
        self,
        db: sqlite3.Connection,
        tmp: Path,
        flags: frozenset[str],
        size: int,
        internaldate: float,
    ) -> tuple[int, str]:
        """Give the file in tmp/ the next UID and move it into place (inside a write)."""
        uid = self._meta(db, "uidnext")
        assert uid is not None
        modseq = self._bump(db)
        base = self._new_name(internaldate)
        sub, file = _placement(base, flags)
        os.rename(tmp, self.path / sub / file)
        try:
            db.execute(
                "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, base, sub, file, _join(flags), size, internaldate, modseq),
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'uidnext'", (uid + 1,))
        except BaseException:
            (self.path / sub / file).unlink(missing_ok=True)
            raise
        return uid, sub

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
            for lo, hi in _runs(sorted(members)):
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM messages WHERE uid BETWEEN ? AND ? ORDER BY uid",
                    (lo, hi),
                ).fetchall()
                for uid, sub, file, old_text, size, internaldate, modseq in rows:
                    if uid not in members:
                        continue
                    if unchanged_since is not None and modseq > unchanged_since:
                        modified.append(uid)
                        continue
                    old = _split(old_text)
                    new = exact if exact is not None else (old | plus) - minus
                    if new != old:
                        sub, file = self._rename(sub, file, new)
                        modseq = self._bump(db)
                        db.execute(
                            "UPDATE messages SET sub = ?, file = ?, flags = ?, modseq = ?"
                            " WHERE uid = ?",
                            (sub, file, _join(new), modseq, uid),
                        )
                    row = (uid, sub, file, _join(new), size, internaldate, modseq)
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
            path = self._find(_base(file)) or path
        path.unlink(missing_ok=True)  # file first: a crash must not resurrect it
        self._forget(db, uid)

    def _forget(self, db: sqlite3.Connection, uid: int) -> None:
        db.execute("DELETE FROM messages WHERE uid = ?", (uid,))
        db.execute("INSERT OR REPLACE INTO expunged VALUES (?, ?)", (uid, self._bump(db)))

    def copy_to(self, dest: Mailbox, uids: Iterable[int]) -> list[tuple[int, int]]:
        """Copy messages (hard links where the file system allows) with their flags and
        internal dates; returns ``(source uid, new uid)`` pairs (RFC 4315 COPYUID)."""
        found = self.get_many(uids)
        staged: list[tuple[StoredMessage, Path]] = []
        pairs: list[tuple[int, int]] = []
        try:
            for uid in sorted(found):
                message = found[uid]
                tmp = dest._tmp_name()
                try:
                    _link_or_copy(self._file(message), tmp)
                except (NoSuchMessage, FileNotFoundError):
                    continue  # expunged meanwhile
                staged.append((message, tmp))
            with dest._write() as db:
                for message, tmp in staged:
                    uid, _ = dest._insert(
                        db, tmp, message.flags, message.size, message.internaldate
                    )
                    pairs.append((message.uid, uid))
        finally:
            for _, tmp in staged[len(pairs) :]:
                tmp.unlink(missing_ok=True)
        for sub in ("new", "cur"):
            _fsync_dir(dest.path / sub)
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
                stack.enter_context(_flock(mailbox.path / LOCK_FILE))
            members = set(uids)
            with dest._transaction() as ddb, self._transaction() as sdb:
                for lo, hi in _runs(sorted(members)):
                    rows = sdb.execute(
                        f"SELECT {_COLUMNS} FROM messages WHERE uid BETWEEN ? AND ? ORDER BY uid",
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
                        _move_file(source, tmp)
                        uid, _ = dest._insert(
                            ddb, tmp, message.flags, message.size, message.internaldate
                        )
                        self._forget(sdb, message.uid)
                        pairs.append((message.uid, uid))
        for sub in ("new", "cur"):
            _fsync_dir(dest.path / sub)
        if pairs:
            log.info("mailbox.move from=%s to=%s count=%d", self.path, dest.path, len(pairs))
        return pairs

    def sync(self, *, force: bool = False) -> bool:
        """Reconcile the index with the directory (see :meth:`MailStore.open`); without
        ``force`` only when ``new/`` or ``cur/`` changed since the index last saw them.
        Returns whether the directory was read."""
        if not force:
            with self._mutex:
                stored = (self._meta(self._db, "stamp_new"), self._meta(self._db, "stamp_cur"))
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
                            on_disk[_base(entry.name)] = (sub, entry.name)
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
                flags = _join(_info_flags(file))
                db.execute(
                    "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (uid, base, sub, file, flags, stat.st_size, stat.st_mtime, self._bump(db)),
                )
                uid += 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'uidnext'", (uid,))
            self._set_stamp(db, stamp)
        if adopted:
            log.info("mailbox.sync mailbox=%s adopted=%d", self.path, len(adopted))
        if now is not None:
            self._clean_tmp(now)
        return True

    def _clean_tmp(self, now: float) -> None:
        with os.scandir(self.path / "tmp") as entries:
            for entry in entries:
                with suppress(FileNotFoundError):
                    if entry.is_file() and entry.stat().st_mtime < now - TMP_MAX_AGE:
                        os.unlink(entry.path)

    # -- locking and bookkeeping -----------------------------------------------------------

    @contextmanager
    def _write(self, *, track: bool = True) -> Iterator[sqlite3.Connection]:
        """The mailbox's lock and one write transaction. With ``track``, when the directory
        was as the index last saw it before this change, its new mtimes are recorded, so the
        change made here does not cost the next reader a full scan."""
        with self._mutex, _flock(self.path / LOCK_FILE), self._transaction(track=track) as db:
            yield db

    @contextmanager
    def _transaction(self, *, track: bool = True) -> Iterator[sqlite3.Connection]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        self._txn_modseq = None
        try:
            fresh = track and self._stamp() == (
                self._meta(db, "stamp_new"),
                self._meta(db, "stamp_cur"),
            )
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
        return (
            os.stat(self.path / "new").st_mtime_ns,
            os.stat(self.path / "cur").st_mtime_ns,
        )

    @staticmethod
    def _set_stamp(db: sqlite3.Connection, stamp: tuple[int, int]) -> None:
        db.execute("UPDATE meta SET value = ? WHERE key = 'stamp_new'", (stamp[0],))
        db.execute("UPDATE meta SET value = ? WHERE key = 'stamp_cur'", (stamp[1],))

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> int | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _message(self, row: _Row) -> StoredMessage:
        uid, sub, file, flags, size, internaldate, modseq = row
        return StoredMessage(uid, _split(flags), size, internaldate, (self.path, sub, file), modseq)

    def _rename(self, sub: str, file: str, flags: frozenset[str]) -> tuple[str, str]:
        target = _placement(_base(file), flags)
        if target == (sub, file):
            return sub, file
        source = self.path / sub / file
        if not source.exists():
            source = self._find(_base(file)) or source
        try:
            os.rename(source, self.path / target[0] / target[1])
        except FileNotFoundError:
            return sub, file  # gone from disk; the next sync forgets it
        return target

    def _find(self, base: str) -> Path | None:
        for sub in ("cur", "new"):
            with os.scandir(self.path / sub) as entries:
                for entry in entries:
                    if _base(entry.name) == base:
                        return Path(entry.path)
        return None


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _make_maildir(path: Path, *, subfolder: bool) -> None:
    for sub in ("tmp", "new", "cur"):
        (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    if subfolder:
        (path / "maildirfolder").touch(mode=0o600)  # Maildir++ marks subfolders so


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise
        shutil.copyfile(source, target)  # no hard links here (another file system, say)


def _move_file(source: Path, target: Path) -> None:
    try:
        os.rename(source, target)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.copyfile(source, target)
        os.unlink(source)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _base(file: str) -> str:
    return file.split(":", 1)[0]


def _placement(base: str, flags: frozenset[str]) -> tuple[str, str]:
    """Maildir: unflagged mail waits in new/; once flagged it lives in cur/ with info."""
    if not flags:
        return "new", base
    return "cur", base + ":2," + "".join(sorted(_LETTERS[f] for f in flags if f in _LETTERS))


def _info_flags(file: str) -> frozenset[str]:
    _, sep, info = file.partition(":2,")
    return frozenset(_FROM_LETTER[c] for c in info if c in _FROM_LETTER) if sep else frozenset()


def _join(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


_FLAG_SETS: dict[str, frozenset[str]] = {}


def _split(text: str) -> frozenset[str]:
    # Few distinct flag combinations exist: share one frozenset per combination.
    found = _FLAG_SETS.get(text)
    if found is None:
        found = frozenset(text.split())
        if len(_FLAG_SETS) < 4096:
            _FLAG_SETS[text] = found
    return found


def _runs(sorted_uids: list[int], gap: int = 64) -> Iterator[tuple[int, int]]:
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
