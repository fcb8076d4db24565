"""What every IMAP command family shares: session state, the selected mailbox as the
session knows it, reporting its changes, and the buffered output."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import logging
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reference.imap import mutf7
from reference.imap import response as r
from reference.imap.parser import Command, SequenceSet
from reference.mailbox import (
    SYSTEM_FLAGS,
    Changes,
    InvalidFolder,
    Mailbox,
    StoredMessage,
    normalize_folder,
)
from reference.stream import Closed, Stream, log_event

if TYPE_CHECKING:
    from reference.imap.notify import Watch
    from reference.imap.search import Update
    from reference.imap.server import ImapServer

log = logging.getLogger("mailspec.imap")

PREAUTH_MAX_LITERAL = 8 * 1024  # before login only credentials travel: keep buffers small
WRITE_TIMEOUT = 60.0
MAX_ERRORS = 10  # consecutive BAD replies before the connection is dropped
FLUSH_AT = 64 * 1024  # bytes of queued responses written at once

_PREAUTH_CAPS = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")
_CAPS = (
    *_PREAUTH_CAPS,
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MULTIAPPEND",  # RFC 3502
    "CATENATE",  # RFC 4469
    "MOVE",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",  # RFC 6154 3
    "COMPRESS=DEFLATE",  # RFC 4978
    "NOTIFY",  # RFC 5465
    "ESEARCH",
    "SEARCHRES",
    "SORT",  # RFC 5256
    "SORT=DISPLAY",  # RFC 5957
    "ESORT",  # RFC 5267 3
    "CONTEXT=SEARCH",  # RFC 5267 4
    "CONTEXT=SORT",
    "THREAD=ORDEREDSUBJECT",  # RFC 5256 3
    "THREAD=REFERENCES",
    "STATUS=SIZE",
    "BINARY",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "CONDSTORE",
    "QRESYNC",
)


class State(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Hangup(Exception):
    """End the session now; whatever had to be said has been sent."""


class No(Exception):
    """Answer the command with a tagged NO (the text may start with a response code)."""


@dataclass
class View:
    """The selected mailbox as this session knows it."""

    mailbox: Mailbox
    name: str
    readonly: bool
    uids: list[int]
    modseq: int  # changes up to here have been reported
    unwatch: Callable[[], None]
    changed: asyncio.Event
    reported: dict[int, int]  # uid -> mod-sequence already told by STORE/FETCH
    keywords: set[str] = field(default_factory=set)  # told in FLAGS (RFC 3501 7.2.6)
    recent: set[int] = field(default_factory=set)  # UIDs \Recent in this session only


class SessionCore:
    """One connection's state, and the helpers every command family uses; the families
    are mixins over it, combined in :class:`reference.imap.session.Session`."""

    def __init__(self, server: ImapServer, stream: Stream, *, tls: bool) -> None:
        self.server = server
        self.store = server.store
        self.stream = stream
        self.tls = tls
        self.id = secrets.token_hex(4)
        self.state = State.NOT_AUTHENTICATED
        self.user: str | None = None
        self._read_only: tuple[str, bool] | None = None  # (user, is an archive account)
        self.errors = 0
        self.auth_failures = 0
        self.view: View | None = None
        self.rev2 = False  # ENABLE IMAP4rev2: UTF-8 names, ESEARCH, no \Recent
        self.utf8 = False  # ENABLE UTF8=ACCEPT (implied by IMAP4rev2)
        self.condstore = False
        self.qresync = False
        self.saved: frozenset[int] = frozenset()  # RFC 5182 $: UIDs
        self.updates: dict[str, Update] = {}  # RFC 5267 4.3: RETURN (UPDATE) by tag
        self.watch: Watch | None = None  # RFC 5465 NOTIFY SET
        self.out: list[bytes] = []
        self.out_size = 0

    def read_only(self) -> bool:
        """Whether the logged-in user's account is an archive (asked once per login)."""
        if self.user is None:
            return False
        if self._read_only is None or self._read_only[0] != self.user:
            self._read_only = (self.user, self.server.read_only(self.user))
        return self._read_only[1]

    @property
    def user_address(self) -> str:
        assert self.user is not None
        return self.user

    # -- capabilities and names -------------------------------------------------------------

    def capabilities(self) -> bytes:
        if self.state is State.NOT_AUTHENTICATED:
            caps = list(_PREAUTH_CAPS)
            if not self.tls and self.server.tls_context is not None:
                caps.append("STARTTLS")
            # RFC 9051 6.2.3 / 7.2.2: no plaintext password mechanism without TLS.
            if self.plaintext_ok():
                caps += ["AUTH=PLAIN", "AUTH=LOGIN"]
            else:
                caps.append("LOGINDISABLED")
        else:
            caps = list(_CAPS)
        return " ".join(caps).encode("ascii")

    def plaintext_ok(self) -> bool:
        return self.tls or self.server.allow_plaintext

    def folder(self, raw: str) -> str:
        """A mailbox name from the client: modified UTF-7 unless UTF-8 was enabled."""
        name = raw
        if not self.utf8 and raw.isascii():
            with contextlib.suppress(ValueError):
                name = mutf7.decode(raw)
        try:
            return normalize_folder(name)
        except InvalidFolder as e:
            raise No("[CANNOT] Invalid mailbox name") from e

    def wire_name(self, name: str) -> bytes:
        return r.astring(name if self.utf8 else mutf7.encode(name))

    async def status_line(self, name: str, items: Iterable[str]) -> bytes:
        status = await asyncio.to_thread(self.store.status, self.user_address, name)
        values = {
            "MESSAGES": status.messages,
            "UIDNEXT": status.uidnext,
            "UIDVALIDITY": status.uidvalidity,
            "UNSEEN": status.unseen,
            "DELETED": status.deleted,
            "SIZE": status.size,
            "RECENT": status.recent,  # RFC 3501 6.3.10: not yet \Recent in any session
            "HIGHESTMODSEQ": status.highestmodseq,
        }
        wanted = [i for i in dict.fromkeys(items) if not (i == "RECENT" and self.rev2)]
        body = " ".join(f"{item} {values[item]}" for item in wanted)
        return b"* STATUS %s (%s)" % (self.wire_name(name), body.encode())

    # -- the selected mailbox ---------------------------------------------------------------

    def resolve(self, sequence: SequenceSet, uid: bool) -> list[tuple[int, int]] | None:
        """``(seq, uid)`` pairs named by the set; None for a sequence number past the end."""
        view = self.view
        assert view is not None
        uids = view.uids
        if sequence.saved:
            return [(n, u) for n, u in enumerate(uids, 1) if u in self.saved]
        indexes: set[int] = set()
        if uid:
            largest = uids[-1] if uids else 0
            for lo, hi in sequence.bounds(largest):
                indexes.update(range(bisect.bisect_left(uids, lo), bisect.bisect_right(uids, hi)))
        else:
            exists = len(uids)
            if sequence.highest() > exists or (not exists and sequence.ranges):
                return None
            for lo, hi in sequence.bounds(exists):
                indexes.update(range(lo - 1, hi))
        return [(i + 1, uids[i]) for i in sorted(indexes)]

    def seq_of(self, uid: int) -> int | None:
        assert self.view is not None
        uids = self.view.uids
        i = bisect.bisect_left(uids, uid)
        return i + 1 if i < len(uids) and uids[i] == uid else None

    def flags_of(self, message: StoredMessage) -> frozenset[str]:
        """The message's flags as this session shows them: with ``\\Recent`` when it is
        recent here (RFC 3501 2.3.2; IMAP4rev2 has no \\Recent)."""
        view = self.view
        if view is None or self.rev2 or message.uid not in view.recent:
            return message.flags
        return message.flags | {"\\Recent"}

    def flags_fetch(self, seq: int, message: StoredMessage, *, uid: bool = True) -> bytes:
        parts = [b"UID %d" % message.uid] if uid else []
        parts.append(b"FLAGS " + r.flag_list(self.flags_of(message)))
        if self.condstore:
            parts.append(b"MODSEQ (%d)" % message.modseq)
        return b"* %d FETCH (%s)" % (seq, b" ".join(parts))

    def flags_lines(self) -> list[bytes]:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` for the selected mailbox, keywords
        included (RFC 9051 7.3.5 / RFC 3501 7.2.6)."""
        view = self.view
        assert view is not None
        keywords = sorted(view.keywords)
        permanent = [] if view.readonly else [*SYSTEM_FLAGS, *keywords, "\\*"]
        return [
            b"* FLAGS " + r.flag_list([*SYSTEM_FLAGS, *keywords]),
            b"* OK [PERMANENTFLAGS %s] Flags permitted" % r.flag_list(permanent),
        ]

    async def announce_keywords(self, flag_sets: Iterable[frozenset[str]]) -> None:
        """Before a response uses a keyword the session was not told of, an untagged FLAGS
        (and PERMANENTFLAGS) naming it (RFC 3501 7.2.6, RFC 9051 7.3.5: FLAGS lists the
        flags applicable to the mailbox; a client may refuse an unknown one)."""
        view = self.view
        assert view is not None
        fresh: set[str] = set()
        for flags in flag_sets:
            fresh.update(f for f in flags if not f.startswith("\\") and f not in view.keywords)
        if fresh:
            view.keywords |= fresh
            for line in self.flags_lines():
                await self.queue(line)

    async def report_expunged(self, uids: list[int]) -> None:
        view = self.view
        assert view is not None
        known = [u for u in uids if self.seq_of(u) is not None]
        if not known:
            return
        if self.updates:
            await self.report_vanishing(known)
        if self.qresync:  # RFC 7162 3.2.10: VANISHED instead of EXPUNGE
            await self.queue(b"* VANISHED " + r.sequence_set(known).encode())
        else:
            seqs = sorted((self.seq_of(u) or 0 for u in known), reverse=True)
            for seq in seqs:  # highest first, so each number is valid when sent
                await self.queue(b"* %d EXPUNGE" % seq)
        gone = set(known)
        view.uids = [u for u in view.uids if u not in gone]
        for u in gone:
            view.reported.pop(u, None)
        view.recent -= gone
        await self.flush()

    async def refresh(self) -> None:
        """Report what changed since the session last looked: EXPUNGE (or VANISHED), flag
        FETCHes, EXISTS (RFC 9051 7.4 / 5.2). Cheap when nothing changed: a look at the
        directory stamps and at HIGHESTMODSEQ."""
        view = self.view
        assert view is not None
        loop = asyncio.get_running_loop()
        changes = await loop.run_in_executor(LOOKOUTS, _poll, view.mailbox, view.modseq)
        if changes is None:
            return
        gone = [u for u in changes.expunged if self.seq_of(u) is not None]
        await self.report_expunged(gone)
        last = view.uids[-1] if view.uids else 0
        arrived: list[int] = []
        await self.announce_keywords(m.flags for m in changes.changed)
        for message in changes.changed:
            if message.uid > last:
                arrived.append(message.uid)
                continue
            seq = self.seq_of(message.uid)
            if seq is not None and message.modseq > view.reported.get(message.uid, 0):
                await self.queue(self.flags_fetch(seq, message))
        if arrived and not (view.readonly or self.rev2):
            # RFC 3501 2.3.2: the first session to be told of a new message has it \Recent.
            first = await loop.run_in_executor(LOOKOUTS, view.mailbox.claim_recent, arrived[-1])
            view.recent.update(u for u in arrived if u >= first)
        if arrived or gone:
            view.uids.extend(arrived)
            await self.queue(b"* %d EXISTS" % len(view.uids))
            if not self.rev2:  # RFC 3501 7.3.2: RECENT goes with EXISTS
                await self.queue(b"* %d RECENT" % len(view.recent))
        view.modseq = changes.highestmodseq
        view.reported.clear()
        await self.flush()

    def deselect(self) -> None:
        view = self.view
        if view is not None:
            view.unwatch()
            view.mailbox.close()
        self.view = None
        self.saved = frozenset()
        self.updates.clear()  # RFC 5267 4.3: updates end with the selection
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    # -- output -----------------------------------------------------------------------------

    def timeout(self) -> float:
        if self.state is State.NOT_AUTHENTICATED:
            return self.server.login_timeout
        return self.server.idle_timeout

    def literal_limit(self) -> int:
        if self.state is State.NOT_AUTHENTICATED:
            return PREAUTH_MAX_LITERAL
        return self.server.max_literal

    async def queue(self, line: bytes) -> None:
        """Add a response line; written when enough has gathered or at :meth:`flush`."""
        self.out.append(line + b"\r\n")
        self.out_size += len(line) + 2
        if self.out_size >= FLUSH_AT:
            await self.flush()

    async def flush(self) -> None:
        if self.out:
            data, self.out, self.out_size = b"".join(self.out), [], 0
            await self.stream.write(data, WRITE_TIMEOUT)

    def discard(self) -> None:
        self.out, self.out_size = [], 0

    async def send(self, line: bytes) -> None:
        await self.queue(line)
        await self.flush()

    async def last_words(self, line: bytes) -> None:
        with contextlib.suppress(Closed, TimeoutError):
            await self.stream.write(line + b"\r\n", 5.0)

    async def ok(self, command: Command, text: str) -> None:
        await self.report_news()
        await self.send(f"{command.tag} OK {text}".encode())

    async def report_news(self) -> None:
        """What a client asked to hear of between commands: RETURN (UPDATE) results of the
        selected mailbox, NOTIFY's other mailboxes."""
        if self.updates and self.view is not None:
            await self.report_updates()
        if self.watch is not None:
            await self.report_notifications()

    async def report_notifications(self) -> None:
        """RFC 5465 STATUS and LIST news of other mailboxes (the notify family)."""

    async def report_updates(self) -> None:
        """RFC 5267 4.3 ADDTO/REMOVEFROM for RETURN (UPDATE) results (the search family)."""

    async def report_vanishing(self, uids: list[int]) -> None:
        """RFC 5267 4.3 REMOVEFROM for messages about to be expunged (the search family)."""

    async def no(self, tag: str, text: str) -> None:
        await self.send(f"{tag} NO {text}".encode())

    async def bad(self, tag: str | None, text: str) -> None:
        await self.send(f"{tag or '*'} BAD {text}".encode())
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            await self.last_words(b"* BYE Too many invalid commands")
            raise Hangup

    def log(self, event: str, **fields: object) -> None:
        log_event(log, event, session=self.id, peer=self.stream.peer, **fields)


# The looks that tell a session what changed (IDLE's, and those before each tagged reply,
# with the \Recent claim of what they found) have threads of their own: in the default pool
# they queued behind the node's spool writes and deliveries (fsync after fsync on a busy
# disk), so a session heard of new mail only once those were done. A look is two stats and
# an index query; a few threads serve many sessions.
LOOKOUTS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="imap-look")


def _poll(mailbox: Mailbox, since: int) -> Changes | None:
    mailbox.sync()  # two stats unless another MDA touched the Maildir
    if mailbox.highestmodseq == since:
        return None
    return mailbox.changes(since)
