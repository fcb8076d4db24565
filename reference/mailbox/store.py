"""The message store: a Maildir++ tree per account and a UID index per mailbox."""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reference import faults
from reference.clock import Clock
from reference.mailbox.folder import Mailbox, Status, TextOf
from reference.mailbox.index import INDEX_FILE, LOCK_FILE, Listener, Validity
from reference.mailbox.maildir import (
    FileNames,
    flock,
    make_maildir,
    valid_key,
    write_atomically,
)
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

ACCOUNT_LOCK = "mailspec-account.lock"
VALIDITY_FILE = "mailspec-uidvalidity"  # the last UIDVALIDITY given in the account
SUBSCRIPTIONS = "subscriptions"  # one folder name a line, as Dovecot's Maildir layout keeps it
SPECIAL_USES = "mailspec-special-use"  # "folder<TAB>\\Attribute" lines set by CREATE (USE ...)
# RFC 6154 2: the uses a real folder can have (\All and \Flagged are virtual mailboxes).
CREATABLE_USES = frozenset({"\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash"})


# Mailboxes delivery keeps open (an open index is a file descriptor and a page cache).
_KEPT_MAILBOXES = 64


# What a kept mailbox is checked against: the folder's identity and its index's schema
# cookie (another process may have changed the index's layout: it is migrated at open).
_Kept = tuple[tuple[int, int, int] | None, int]


def _identity(path: Path) -> tuple[int, int, int] | None:
    """What tells a folder apart from another made at its path since: the device and inode
    of its directory and of its index (None: not there)."""
    try:
        folder, index = os.stat(path), os.stat(path / INDEX_FILE)
    except FileNotFoundError:
        return None
    return folder.st_dev, folder.st_ino, index.st_ino


class NoSuchFolder(LookupError):
    """The folder does not exist and was not to be created."""


class FolderExists(ValueError):
    """CREATE or RENAME to a name that is taken."""


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
        text_of: TextOf | None = None,
    ) -> None:
        self.root = Path(root)
        self._clock = clock
        self._quota = quota
        # Given, delivery and APPEND add each message to its mailbox's text index; without
        # it the searcher indexes what is missing at its first text SEARCH.
        self._text_of = text_of
        self._new_name = FileNames()
        self._ready: set[Path] = set()
        self._lock = threading.Lock()
        self._listeners: dict[Path, set[Listener]] = {}
        # Called after each change made in this process, to tell the node's other worker
        # processes (their IMAP IDLE sessions) at once.
        self.on_change: Listener | None = None
        # And to tell the other nodes, through Redis (see feed.py).
        self.publish: Listener | None = None
        # Mailboxes delivery keeps open between messages (see _delivery_box), by path.
        self._kept: dict[Path, tuple[_Kept, Mailbox]] = {}
        # (address, folder) -> its Maildir, for delivery: the path is the same while the
        # account exists (a kept mailbox is checked against the folder on disk anyway).
        self._folder_paths: dict[tuple[str, str], Path] = {}

    # -- delivery and APPEND ---------------------------------------------------------------

    def deliver(
        self,
        address: str,
        data: bytes,
        folder: str = "INBOX",
        flags: Iterable[str] = (),
        when: float | None = None,
        key: str | None = None,
    ) -> int:
        """Store ``data`` durably in ``folder`` and return its UID.

        ``when`` is the internal date; without it the store's clock, else the file's mtime.
        ``key`` names the delivery (see ``delivery_key`` in reference/delivery/local.py): a
        delivery made before with the same key, even by a process killed before it could
        say so, is found and its UID returned, and nothing is stored again. Raises
        :class:`NoSuchFolder` for a folder that does not exist and :class:`QuotaExceeded`
        when the account is full.
        """
        return self.deliver_once(address, data, folder, flags, when, key)[0]

    def deliver_once(
        self,
        address: str,
        data: bytes,
        folder: str = "INBOX",
        flags: Iterable[str] = (),
        when: float | None = None,
        key: str | None = None,
    ) -> tuple[int, bool]:
        """:meth:`deliver`, and whether it stored the message now (False: ``key`` names a
        delivery made before, whose UID is returned)."""
        if key is not None and not valid_key(key):
            raise ValueError(f"not a delivery key: {key!r}")
        data = to_crlf(data)
        # One open for both steps, kept for the next delivery: opening an index
        # (connection, pragmas, its schema read) costs more CPU than the append itself.
        with self._delivery_box(address, folder) as mailbox:
            # Before the quota: a message stored already must not be deferred as too big.
            done = None if key is None else mailbox.delivered(key)
            if done is not None:
                return done, False
            self.check_quota(address, len(data))
            return mailbox.append(data, flags, when=when, key=key), True

    @contextmanager
    def _delivery_box(self, address: str, folder: str) -> Iterator[Mailbox]:
        """The mailbox for one delivery, taken from those kept open when it is still the
        same folder on disk (a folder deleted, renamed or made again has another inode)
        with the same index layout (another process may have changed it: opening migrates
        it), and kept again afterwards. One thread uses a kept mailbox at a time."""
        path = self._folder_paths.get((address, folder))
        if path is None:
            path = folder_dir(self._account(address), normalize_folder(folder))
            if len(self._folder_paths) > 10_000:
                self._folder_paths.clear()
            self._folder_paths[(address, folder)] = path
        with self._lock:
            kept = self._kept.pop(path, None)
        if kept is not None and kept[0] != (_identity(path), kept[1].schema_cookie()):
            kept[1].close()
            kept = None
        found: _Kept | None
        if kept is None:
            mailbox = self.open(address, folder, sync=False)
            where = _identity(path)
            found = None if where is None else (where, mailbox.schema_cookie())
        else:
            found, mailbox = kept
        try:
            yield mailbox
        except BaseException:
            mailbox.close()  # nothing half-done is kept
            raise
        spare = []
        if found is None:
            spare.append(mailbox)
        else:
            with self._lock:
                other = self._kept.pop(path, None)  # another delivery kept one meanwhile
                if other is not None:
                    spare.append(other[1])
                self._kept[path] = (found, mailbox)
                if len(self._kept) > _KEPT_MAILBOXES:  # the least recently used goes
                    spare.append(self._kept.pop(next(iter(self._kept)))[1])
        for extra in spare:
            extra.close()

    def close(self) -> None:
        """Close the mailboxes delivery kept open."""
        with self._lock:
            kept, self._kept = list(self._kept.values()), {}
        for _, mailbox in kept:
            mailbox.close()

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
            make_maildir(path, subfolder=name != "INBOX")
        mailbox = Mailbox(
            path,
            name,
            self._new_name,
            self._now,
            self._notify,
            self._validity(account),
            self._text_of,
        )
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

    def create_folder(
        self, address: str, folder: str, *, exclusive: bool = False, uses: Iterable[str] = ()
    ) -> None:
        """Create ``folder``; with ``exclusive``, :class:`FolderExists` if it is there;
        ``uses`` are its special uses (RFC 6154 3, one of :data:`CREATABLE_USES` each)."""
        uses = sorted(set(uses))
        if any(u not in CREATABLE_USES for u in uses):
            raise ValueError(f"unsupported special use in {uses}")
        if exclusive and self.exists(address, folder):
            raise FolderExists(normalize_folder(folder))
        self.open(address, folder, create=True, sync=False).close()
        if uses:
            name = normalize_folder(folder)
            self._edit_uses(address, lambda held: {**held, name: uses})

    def special_uses(self, address: str) -> dict[str, list[str]]:
        """Folder name -> its special-use attributes (RFC 6154 2): the folders made with the
        account, and those created with USE."""
        account = self._account(address)
        held: dict[str, list[str]] = {name: [use] for name, use in SPECIAL_USE.items()}
        try:
            text = (account / SPECIAL_USES).read_text("utf-8")
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            name, _, use = line.partition("\t")
            if use:
                held.setdefault(name, []).append(use)
        return held

    def _edit_uses(
        self, address: str, edit: Callable[[dict[str, list[str]]], dict[str, list[str]]]
    ) -> None:
        account = self._account(address)
        with flock(account / ACCOUNT_LOCK):
            own = {n: u for n, u in self.special_uses(address).items() if n not in SPECIAL_USE}
            after = edit(own)
            lines = [f"{n}\t{u}\n" for n, us in sorted(after.items()) for u in us]
            write_atomically(account / SPECIAL_USES, "".join(lines))

    def delete_folder(self, address: str, folder: str) -> None:
        """Remove a folder and its messages (its subfolders and its subscription stay, RFC 3501
        6.3.4 and 6.3.6)."""
        name = normalize_folder(folder)
        if name == "INBOX":
            raise InvalidFolder("INBOX cannot be deleted")
        account = self._account(address)
        path = folder_dir(account, name)
        if not (path / "cur").is_dir():
            raise NoSuchFolder(name)
        # Renamed out of the tree first, so no reader sees a half-deleted Maildir.
        doomed = account / f"mailspec-deleted-{secrets.token_hex(6)}"
        with flock(path / LOCK_FILE):
            os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        if name in self.special_uses(address) and name not in SPECIAL_USE:
            self._edit_uses(address, lambda held: {n: u for n, u in held.items() if n != name})
        # RFC 3501 6.3.6: the subscription stays; LIST (SUBSCRIBED) shows it \NonExistent.
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

        def moved(name: str) -> bool:
            return name == src or name.startswith(src + DELIMITER)

        if any(moved(n) for n in self.special_uses(address) if n not in SPECIAL_USE):
            self._edit_uses(
                address,
                lambda held: {(dst + n[len(src) :] if moved(n) else n): u for n, u in held.items()},
            )
        subscribed = self.subscriptions(address)
        for name in subscribed:
            if name == src or name.startswith(src + DELIMITER):
                self.unsubscribe(address, name)
                self.subscribe(address, dst + name[len(src) :])
        log.info("mailbox.rename account=%s old=%s new=%s", account, src, dst)

    def has_account(self, address: str) -> bool:
        """Whether the account has a mailbox on disk (mail was delivered, or it logged in)."""
        return (account_dir(self.root, address) / "cur").is_dir()

    def remove_account(self, address: str) -> bool:
        """Remove the account's mailbox with every folder; False if it had none."""
        account = account_dir(self.root, address)
        if not account.is_dir():
            return False
        # Renamed out of the tree first, so no reader sees a half-deleted account.
        doomed = account.with_name(f"mailspec-deleted-{secrets.token_hex(6)}")
        os.rename(account, doomed)
        with self._lock:
            self._ready.discard(account)
        shutil.rmtree(doomed, ignore_errors=True)
        log.info("mailbox.remove-account account=%s", account)
        return True

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
        with flock(account / ACCOUNT_LOCK):
            before = set(self.subscriptions(address))
            after = edit(before)
            if after != before:
                write_atomically(account / SUBSCRIPTIONS, "".join(f"{n}\n" for n in sorted(after)))

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
        self.ring(path)
        if self.on_change is not None:  # the node's other processes (server.workers)
            self.on_change(path)
        publish = self.publish
        if publish is not None:  # the other nodes
            try:
                publish(path)
            except Exception:
                log.exception("mailbox.publish path=%s", path)

    def ring(self, path: Path) -> None:
        """Tell this process's listeners that the mailbox at ``path`` changed (a change
        another process made and told us about)."""
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
        make_maildir(account, subfolder=False)
        for name in SPECIAL_USE:  # RFC 6154: the special-use folders exist from the start
            make_maildir(folder_dir(account, name), subfolder=True)
        if fresh and not (account / SUBSCRIPTIONS).exists():
            names = ["INBOX", *SPECIAL_USE]
            write_atomically(account / SUBSCRIPTIONS, "".join(f"{n}\n" for n in sorted(names)))
        with self._lock:
            self._ready.add(account)
        return account

    def _now(self) -> float | None:
        return self._clock.now() if self._clock is not None else None

    @staticmethod
    def _validity(account: Path) -> Validity:
        """RFC 3501 2.3.1.1: a mailbox deleted and created again (or renamed onto a name that
        was used) must get a new UIDVALIDITY; time alone repeats within a second. Every new
        index in the account takes one above the last given, kept in ``mailspec-uidvalidity``
        (Dovecot keeps the same in its mailbox list)."""

        def claim(proposed: int) -> int:
            path = account / VALIDITY_FILE
            with flock(account / (VALIDITY_FILE + ".lock")):
                try:
                    last = int(path.read_text().strip() or 0)
                except (FileNotFoundError, ValueError):
                    last = 0
                chosen = min(max(proposed, last + 1), 2**32 - 1)  # nz-number, 32 bits
                if faults.active("mailbox.uidvalidity-from-clock"):
                    chosen = proposed
                write_atomically(path, f"{chosen}\n")
            return chosen

        return claim
