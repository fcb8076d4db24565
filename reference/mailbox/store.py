"""The message store: a Maildir++ tree per account and a UID index per mailbox."""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from types import TracebackType

from reference.clock import Clock
from reference.mailbox.message import to_crlf
from reference.mailbox.paths import (
    SPECIAL_USE,
    account_dir,
    folder_dir,
    folder_name,
    normalize_folder,
)

log = logging.getLogger("mailspec.mailbox")

INDEX_FILE = "mailspec-index.sqlite"
LOCK_FILE = "mailspec-index.lock"
TMP_MAX_AGE = 36 * 3600  # Maildir: files left in tmp/ this long are debris

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
    " internaldate REAL NOT NULL)",
)


class NoSuchFolder(LookupError):
    """The folder does not exist and was not to be created."""


class NoSuchMessage(LookupError):
    """No message with that UID (never assigned, or expunged)."""


@dataclass(frozen=True)
class StoredMessage:
    """One message as the index knows it."""

    uid: int
    flags: frozenset[str]
    size: int
    internaldate: float
    path: Path


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


class MailStore:
    """All accounts' mailboxes under ``root`` (``data_dir / "mail"``). Sync file I/O.

    Layout: ``root/<domain>/<local>/`` is the INBOX Maildir (``tmp/ new/ cur/``); every other
    folder is a Maildir++ subfolder ``.Name`` (``.A.B`` for ``A/B``). Each Maildir holds
    ``mailspec-index.sqlite`` (UIDVALIDITY, UIDNEXT, uid -> file, flags, size, internal date).
    Every change to a mailbox happens under an exclusive ``flock`` on ``mailspec-index.lock``,
    so several processes (or nodes sharing the storage) deliver into one mailbox safely; the
    flock queues writers in the kernel instead of SQLite's sleep-and-retry busy handler.
    The index is the truth for flags (keywords included); file names carry the standard
    Maildir info letters as a courtesy to other Maildir readers.
    """

    def __init__(self, root: Path, *, clock: Clock | None = None) -> None:
        self.root = Path(root)
        self._clock = clock
        host = socket.gethostname() or "localhost"
        # Maildir: "/" and ":" in the host part are written as octal escapes.
        self._host = host.replace("/", "\\057").replace(":", "\\072")
        self._seq = count(1)
        self._ready: set[Path] = set()
        self._ready_lock = threading.Lock()

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
        Raises :class:`NoSuchFolder` for a folder that does not exist.
        """
        with self.open(address, folder, sync=False) as mailbox:
            return mailbox.append(data, flags, when=when)

    def open(
        self, address: str, folder: str = "INBOX", *, create: bool = False, sync: bool = True
    ) -> Mailbox:
        """Open a mailbox (creating the account, INBOX and special-use folders if needed).

        Other folders must exist unless ``create``. ``sync`` adopts files that arrived in the
        Maildir without the index (another MDA, a crash between rename and commit) and forgets
        files that disappeared. Close the mailbox (or use ``with``) when done.
        """
        account = self._account(address)
        name = normalize_folder(folder)
        path = folder_dir(account, name)
        if not (path / "cur").is_dir():
            if not (create or name == "INBOX" or name in SPECIAL_USE):
                raise NoSuchFolder(name)
            _make_maildir(path, subfolder=name != "INBOX")
        mailbox = Mailbox(path, name, self._new_name, self._now)
        if sync:
            try:
                mailbox.sync()
            except BaseException:
                mailbox.close()
                raise
        return mailbox

    def create_folder(self, address: str, folder: str) -> None:
        """Create ``folder`` (no error if it exists)."""
        self.open(address, folder, create=True, sync=False).close()

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

    def _account(self, address: str) -> Path:
        account = account_dir(self.root, address)
        with self._ready_lock:
            if account in self._ready:
                return account
        _make_maildir(account, subfolder=False)
        for name in SPECIAL_USE:  # RFC 6154: the special-use folders exist from the start
            _make_maildir(folder_dir(account, name), subfolder=True)
        with self._ready_lock:
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
    ) -> None:
        self.path = path
        self.name = name
        self._new_name = new_name
        self._now = now
        self._mutex = threading.RLock()
        self._db = sqlite3.connect(
            path / INDEX_FILE, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.execute("PRAGMA journal_mode=TRUNCATE")
            with self._write() as db:
                for statement in _SCHEMA:
                    db.execute(statement)
                if self._meta(db, "uidvalidity") is None:
                    # RFC 3501 2.3.1.1: a new index gets a new UIDVALIDITY; time makes it grow.
                    created = self._now()
                    validity = int(created if created is not None else os.stat(path).st_mtime)
                    db.execute("INSERT INTO meta VALUES ('uidvalidity', ?)", (max(1, validity),))
                    db.execute("INSERT INTO meta VALUES ('uidnext', 1)")
        except BaseException:
            self._db.close()
            raise

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    @property
    def uidvalidity(self) -> int:
        with self._mutex:
            value = self._meta(self._db, "uidvalidity")
        assert value is not None
        return value

    @property
    def uidnext(self) -> int:
        with self._mutex:
            value = self._meta(self._db, "uidnext")
        assert value is not None
        return value

    def messages(self) -> list[StoredMessage]:
        """Every message, in UID order."""
        with self._mutex:
            rows = self._db.execute(
                "SELECT uid, sub, file, flags, size, internaldate FROM messages ORDER BY uid"
            ).fetchall()
        return [self._message(row) for row in rows]

    def get(self, uid: int) -> StoredMessage:
        with self._mutex:
            row = self._db.execute(
                "SELECT uid, sub, file, flags, size, internaldate FROM messages WHERE uid = ?",
                (uid,),
            ).fetchone()
        if row is None:
            raise NoSuchMessage(uid)
        return self._message(row)

    def read(self, uid: int) -> bytes:
        """The message's bytes (CRLF line ends); raises :class:`NoSuchMessage`."""
        message = self.get(uid)
        try:
            return message.path.read_bytes()
        except FileNotFoundError:
            # Another Maildir reader may have renamed it (new/ -> cur/, other info letters).
            found = self._find(_base(message.path.name))
            if found is None:
                raise NoSuchMessage(uid) from None
            return found.read_bytes()

    def append(self, data: bytes, flags: Iterable[str] = (), *, when: float | None = None) -> int:
        """Store a message and return its UID: tmp/, fsync, rename, fsync the directory."""
        wanted = normalize_flags(flags)
        data = to_crlf(data)  # stored as on the wire: RFC822.SIZE is the file size
        if when is None:
            when = self._now()
        tmp = self.path / "tmp" / f"{secrets.token_hex(8)}.P{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if when is not None:
                os.utime(tmp, (when, when))
            internaldate = when if when is not None else os.stat(tmp).st_mtime
            base = self._new_name(internaldate)
            sub, file = _placement(base, wanted)
            with self._write() as db:
                uid = self._meta(db, "uidnext")
                assert uid is not None
                os.rename(tmp, self.path / sub / file)
                try:
                    db.execute(
                        "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (uid, base, sub, file, _join(wanted), len(data), internaldate),
                    )
                    db.execute("UPDATE meta SET value = ? WHERE key = 'uidnext'", (uid + 1,))
                except BaseException:
                    (self.path / sub / file).unlink(missing_ok=True)
                    raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(self.path / sub)
        log.info("mailbox.append mailbox=%s uid=%d size=%d", self.path, uid, len(data))
        return uid

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
        plus, minus = normalize_flags(add), normalize_flags(remove)
        exact = normalize_flags(replace) if replace is not None else None
        wanted = sorted(set(uids))
        out: list[StoredMessage] = []
        with self._write() as db:
            for chunk in _chunks(wanted):
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    "SELECT uid, sub, file, flags, size, internaldate FROM messages "
                    f"WHERE uid IN ({marks}) ORDER BY uid",
                    chunk,
                ).fetchall()
                for uid, sub, file, old_text, size, internaldate in rows:
                    old = _split(old_text)
                    new = exact if exact is not None else (old | plus) - minus
                    if new != old:
                        sub, file = self._rename(sub, file, new)
                        db.execute(
                            "UPDATE messages SET sub = ?, file = ?, flags = ? WHERE uid = ?",
                            (sub, file, _join(new), uid),
                        )
                    out.append(self._message((uid, sub, file, _join(new), size, internaldate)))
        return out

    def expunge(self, uids: Iterable[int] | None = None) -> list[int]:
        """Remove the messages flagged ``\\Deleted`` (only those in ``uids`` when given)."""
        only = set(uids) if uids is not None else None
        gone: list[int] = []
        with self._write() as db:
            rows = db.execute("SELECT uid, sub, file, flags FROM messages ORDER BY uid").fetchall()
            for uid, sub, file, flags in rows:
                if "\\Deleted" not in _split(flags) or (only is not None and uid not in only):
                    continue
                path = self.path / sub / file
                if not path.exists():
                    path = self._find(_base(file)) or path
                path.unlink(missing_ok=True)  # file first: a crash must not resurrect it
                db.execute("DELETE FROM messages WHERE uid = ?", (uid,))
                gone.append(uid)
        if gone:
            log.info("mailbox.expunge mailbox=%s count=%d", self.path, len(gone))
        return gone

    def sync(self) -> None:
        """Reconcile the index with the directory (see :meth:`MailStore.open`)."""
        now = self._now()
        with self._write() as db:
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
                    db.execute("DELETE FROM messages WHERE uid = ?", (uid,))
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
                    "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (uid, base, sub, file, flags, stat.st_size, stat.st_mtime),
                )
                uid += 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'uidnext'", (uid,))
        if adopted:
            log.info("mailbox.sync mailbox=%s adopted=%d", self.path, len(adopted))
        if now is not None:
            self._clean_tmp(now)

    def _clean_tmp(self, now: float) -> None:
        with os.scandir(self.path / "tmp") as entries:
            for entry in entries:
                with suppress(FileNotFoundError):
                    if entry.is_file() and entry.stat().st_mtime < now - TMP_MAX_AGE:
                        os.unlink(entry.path)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._mutex, _flock(self.path / LOCK_FILE):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @staticmethod
    def _meta(db: sqlite3.Connection, key: str) -> int | None:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _message(self, row: tuple[int, str, str, str, int, float]) -> StoredMessage:
        uid, sub, file, flags, size, internaldate = row
        return StoredMessage(uid, _split(flags), size, internaldate, self.path / sub / file)

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


def _split(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _chunks(items: list[int], size: int = 500) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
