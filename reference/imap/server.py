"""The IMAP server: connection I/O and session state; parsing and storage live elsewhere.

IMAP4rev2 (RFC 9051) and IMAP4rev1 (RFC 3501) over the mailbox store, with IDLE (RFC 2177),
UIDPLUS (RFC 4315), MOVE (RFC 6851), SPECIAL-USE (RFC 6154), QUOTA (RFC 9208), NAMESPACE
(RFC 2342), ID, ENABLE, LIST-EXTENDED/LIST-STATUS, ESEARCH/SEARCHRES, BINARY, CONDSTORE and
QRESYNC (RFC 7162). A session sees its mailbox through a list of UIDs (sequence number n is
``uids[n - 1]``) and the mod-sequence it has reported up to; everything else is asked of the
store, so a mailbox of 100,000 messages costs an index query, not a directory scan.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import enum
import logging
import re
import secrets
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from reference.clock import Clock
from reference.credentials import Authenticator, TemporarilyUnavailable, parse_sasl_plain
from reference.imap import mime, mutf7
from reference.imap import response as r
from reference.imap.parser import (
    Append,
    Authenticate,
    Command,
    Copy,
    Enable,
    Expunge,
    Fetch,
    FetchAtt,
    Id,
    ListMailboxes,
    Login,
    MailboxCommand,
    ParseError,
    Rename,
    Search,
    SearchKey,
    Select,
    SequenceSet,
    SetQuota,
    Simple,
    Status,
    Store,
    literal_suffix,
    parse_command,
    tag_of,
)
from reference.imap.search import Candidate, matches, needs_content, seq_of, to_sql
from reference.imap.stream import Closed, LineTooLong, Stream, log_event
from reference.mailbox import (
    DELIMITER,
    SPECIAL_USE,
    SYSTEM_FLAGS,
    Changes,
    FolderExists,
    InvalidFolder,
    Mailbox,
    MailStore,
    NoSuchFolder,
    NoSuchMessage,
    QuotaExceeded,
    StoredMessage,
    normalize_folder,
)
from reference.mailbox import Status as MailboxStatus

log = logging.getLogger("mailspec.imap")

PREAUTH_MAX_LITERAL = 8 * 1024  # before login only credentials travel: keep buffers small
WRITE_TIMEOUT = 60.0
MAX_ERRORS = 10  # consecutive BAD replies before the connection is dropped
MAX_AUTH_FAILURES = 3
FLUSH_AT = 64 * 1024  # bytes of queued responses written at once
FETCH_BATCH = 256  # messages read and rendered per trip to a worker thread
JUNK, TRASH = "Junk", "Trash"

# Called with (account address, message bytes, is_spam) when a message is moved or copied
# into Junk (spam) or out of it to anywhere but Trash (ham): the spam classifier's trainer.
JunkHook = Callable[[str, bytes, bool], None]

_PREAUTH_CAPS = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE")
_CAPS = (
    *_PREAUTH_CAPS,
    "NAMESPACE",
    "UNSELECT",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "SPECIAL-USE",
    "ESEARCH",
    "SEARCHRES",
    "STATUS=SIZE",
    "BINARY",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "QUOTA=RES-MESSAGE",
    "CONDSTORE",
    "QRESYNC",
)


class _State(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset(_State) - {_State.LOGOUT}
_AUTHED = frozenset({_State.AUTHENTICATED, _State.SELECTED})
_SELECTED = frozenset({_State.SELECTED})
_NOT_AUTHED = frozenset({_State.NOT_AUTHENTICATED})
_AUTHED_COMMANDS = (
    *("SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST"),
    *("LSUB", "NAMESPACE", "STATUS", "APPEND", "IDLE", "GETQUOTA", "GETQUOTAROOT", "SETQUOTA"),
)
_ALLOWED: dict[str, frozenset[_State]] = {  # RFC 9051 3 / RFC 3501 3: states and commands
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "ID": _ANY,  # RFC 2971 3.1
    "STARTTLS": _NOT_AUTHED,
    "LOGIN": _NOT_AUTHED,
    "AUTHENTICATE": _NOT_AUTHED,
    "ENABLE": frozenset({_State.AUTHENTICATED}),  # RFC 5161 3.1
    **dict.fromkeys(_AUTHED_COMMANDS, _AUTHED),
    **dict.fromkeys(
        ["CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE"],
        _SELECTED,
    ),
}


class _Hangup(Exception):
    """End the session now; whatever had to be said has been sent."""


class _No(Exception):
    """Answer the command with a tagged NO (the text may start with a response code)."""


class ImapServer:
    """Serves IMAP sessions from a :class:`MailStore`; one ``handle`` call per connection."""

    def __init__(
        self,
        store: MailStore,
        auth: Authenticator,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        clock: Clock,
        idle_timeout: float = 30 * 60.0,  # RFC 3501 5.4: at least 30 minutes once logged in
        login_timeout: float = 60.0,  # before login a short timer, as Exchange and Stalwart do
        max_line: int = 8192,
        max_literal: int = 64 * 1024 * 1024,
        allow_plaintext: bool = False,  # LOGIN without TLS: only behind a TLS-terminating proxy
        idle_poll: float = 5.0,  # seconds between cheap looks for other processes' changes
        on_junk: JunkHook | None = None,
    ) -> None:
        self.store = store
        self.auth = auth
        self.hostname = hostname
        self.tls_context = tls_context
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.login_timeout = login_timeout
        self.max_line = max_line
        self.max_literal = max_literal
        self.allow_plaintext = allow_plaintext
        self.idle_poll = idle_poll
        self.on_junk = on_junk

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> None:
        """Run one session; ``tls`` is True on an implicit-TLS (993) connection."""
        await _Session(self, Stream(reader, writer, self.clock), tls=tls).run()


@dataclass
class _View:
    """The selected mailbox as this session knows it."""

    mailbox: Mailbox
    name: str
    readonly: bool
    uids: list[int]
    modseq: int  # changes up to here have been reported
    unwatch: Callable[[], None]
    changed: asyncio.Event
    reported: dict[int, int]  # uid -> mod-sequence already told by STORE/FETCH


class _Session:
    def __init__(self, server: ImapServer, stream: Stream, *, tls: bool) -> None:
        self.server = server
        self.store = server.store
        self.stream = stream
        self.tls = tls
        self.id = secrets.token_hex(4)
        self.state = _State.NOT_AUTHENTICATED
        self.user: str | None = None
        self.errors = 0
        self.auth_failures = 0
        self.view: _View | None = None
        self.rev2 = False  # ENABLE IMAP4rev2: UTF-8 names, ESEARCH, no \Recent
        self.utf8 = False  # ENABLE UTF8=ACCEPT (implied by IMAP4rev2)
        self.condstore = False
        self.qresync = False
        self.saved: frozenset[int] = frozenset()  # RFC 5182 $: UIDs
        self.out: list[bytes] = []
        self.out_size = 0

    @property
    def user_address(self) -> str:
        assert self.user is not None
        return self.user

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        started = self.server.clock.monotonic()
        self.log("imap.connect", tls=self.tls)
        reason = "logout"
        try:
            await self.send(
                b"* OK [CAPABILITY %s] %s IMAP4rev2 ready"
                % (self.capabilities(), self.server.hostname.encode("ascii", "replace"))
            )
            while self.state is not _State.LOGOUT:
                await self.step()
        except TimeoutError:
            reason = "timeout"
            await self.last_words(b"* BYE Autologout; idle for too long")  # RFC 9051 5.4
        except LineTooLong:
            reason = "line-too-long"
            await self.last_words(b"* BAD [TOOBIG] Line too long\r\n* BYE Line too long")
        except _Hangup:
            reason = "hangup"
        except Closed:
            reason = "closed"
        except Exception:
            reason = "error"
            log.exception("imap.error session=%s", self.id)
        finally:
            self.deselect()
            await self.stream.close()
            elapsed = round(self.server.clock.monotonic() - started, 3)
            self.log("imap.disconnect", reason=reason, user=self.user or "-", seconds=elapsed)

    async def step(self) -> None:
        data = await self.read_command()
        if data is None:
            return
        command = parse_command(data, max_literal=self.literal_limit())
        if isinstance(command, ParseError):
            await self.bad(command.tag, command.reason)
            return
        name = _name(command)
        log.debug("imap.command session=%s tag=%s command=%s", self.id, command.tag, name)
        if self.state not in _ALLOWED[name]:
            await self.bad(command.tag, f"{name} not allowed in {self.state.value} state")
            return
        self.errors = 0
        try:
            await self.dispatch(command)
        except (Closed, _Hangup, TimeoutError, LineTooLong):
            raise
        except _No as e:
            self.discard()
            await self.no(command.tag, str(e))
        except Exception:
            log.exception("imap.error session=%s command=%s", self.id, name)
            self.discard()
            await self.send(b"%s NO [SERVERBUG] Internal error" % command.tag.encode())

    async def read_command(self) -> bytes | None:
        """One command with its literals (RFC 9051 7.5 continuation for synchronizing ones);
        None when a literal was refused with BAD."""
        timeout = self.timeout()
        line = await self.stream.readline(self.server.max_line, timeout)
        parts = [line]
        total = len(line)
        while (found := literal_suffix(line)) is not None:
            size, nonsync = found
            if size > self.literal_limit() or total + size > self.literal_limit() + 65536:
                tag = (tag_of(b"".join(parts)) or "*").encode()
                if nonsync:  # RFC 7888 4: the octets are already coming; no way to resync
                    await self.send(b"%s BAD [TOOBIG] Literal too large" % tag)
                    await self.last_words(b"* BYE Literal too large")
                    raise _Hangup
                await self.send(b"%s BAD [TOOBIG] Literal too large" % tag)  # RFC 9051 7.1
                return None
            if not nonsync:
                await self.send(b"+ Ready for literal data")
            parts.append(await self.stream.readexactly(size, timeout))
            line = await self.stream.readline(self.server.max_line, timeout)
            parts.append(line)
            total += size + len(line)
        return b"".join(parts)

    async def dispatch(self, command: Command) -> None:
        match command:
            case Simple(name="CAPABILITY"):
                await self.send(b"* CAPABILITY " + self.capabilities())
                await self.ok(command, "CAPABILITY completed")
            case Simple(name="NOOP" | "CHECK"):
                if self.view is not None:
                    await self.refresh()
                await self.ok(command, f"{command.name} completed")
            case Simple(name="LOGOUT"):
                await self.send(b"* BYE Logging out")  # RFC 9051 6.1.3
                await self.ok(command, "LOGOUT completed")
                self.state = _State.LOGOUT
            case Simple(name="STARTTLS"):
                await self.starttls(command)
            case Simple(name="CLOSE"):
                view = self.view
                if view is not None and not view.readonly:
                    await asyncio.to_thread(view.mailbox.expunge)  # RFC 9051 6.4.1: silently
                self.deselect()
                await self.ok(command, "CLOSE completed")
            case Simple(name="UNSELECT"):
                self.deselect()
                await self.ok(command, "UNSELECT completed")
            case Simple(name="NAMESPACE"):
                # RFC 2342 5: one personal namespace, no other users', no shared ones.
                await self.send(b'* NAMESPACE (("" "%s")) NIL NIL' % DELIMITER.encode())
                await self.ok(command, "NAMESPACE completed")
            case Simple(name="IDLE"):
                await self.idle(command)
            case Login():
                await self.login(command)
            case Authenticate():
                await self.authenticate(command)
            case Enable():
                await self.enable(command)
            case Id():
                await self.send(b"* ID " + r.render(["name", "mailspec", "vendor", "mailspec"]))
                await self.ok(command, "ID completed")
            case Select():
                await self.select(command)
            case MailboxCommand():
                await self.mailbox_command(command)
            case Rename():
                await self.rename(command)
            case SetQuota():
                await self.no(command.tag, "[NOPERM] Quotas are set by the administrator")
            case ListMailboxes():
                await self.list_mailboxes(command)
            case Status():
                await self.status(command)
            case Append():
                await self.append(command)
            case Fetch():
                await self.fetch(command)
            case Store():
                await self.store_flags(command)
            case Copy():
                await self.copy(command)
            case Expunge():
                await self.expunge(command)
            case Search():
                await self.search(command)
            case _:  # pragma: no cover - every parsed command has a case
                await self.bad(command.tag, "Command not implemented")

    # -- not authenticated ------------------------------------------------------------------

    def capabilities(self) -> bytes:
        if self.state is _State.NOT_AUTHENTICATED:
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

    async def starttls(self, command: Simple) -> None:
        context = self.server.tls_context
        if self.tls or context is None:
            await self.bad(command.tag, "STARTTLS not available")
            return
        await self.flush()
        # RFC 9051 6.2.1: discard whatever was pipelined behind STARTTLS (command injection).
        reply = f"{command.tag} OK Begin TLS negotiation now\r\n".encode()
        discarded = await self.stream.start_tls(context, self.server.login_timeout, reply)
        self.tls = True
        self.log("imap.starttls", discarded=discarded)

    async def login(self, command: Login) -> None:
        if not self.plaintext_ok():
            await self.refuse_plaintext(command.tag, "LOGIN")
            return
        try:
            user = await self.server.auth.authenticate(command.username, command.password)
        except TemporarilyUnavailable as e:
            await self.unavailable(command.tag, command.username, "LOGIN", str(e))
            return
        await self.logged_in(command.tag, command.username, user, "LOGIN")

    async def authenticate(self, command: Authenticate) -> None:
        if command.mechanism not in ("PLAIN", "LOGIN"):
            await self.no(command.tag, "Unsupported authentication mechanism")  # RFC 9051 6.2.2
            return
        if not self.plaintext_ok():
            await self.refuse_plaintext(command.tag, "AUTHENTICATE")
            return
        try:
            if command.mechanism == "PLAIN":
                answer = command.initial  # RFC 4959 SASL-IR
                if answer is None:
                    answer = await self.challenge(b"")
                raw = b"" if answer == "=" else base64.b64decode(answer, validate=True)
                authzid, authcid, password = parse_sasl_plain(raw)
            else:  # LOGIN (draft-murchison-sasl-login): user name, then password
                first = command.initial or await self.challenge(b"Username:")
                authcid = base64.b64decode(first, validate=True).decode("utf-8")
                second = await self.challenge(b"Password:")
                authzid, password = "", base64.b64decode(second, validate=True).decode("utf-8")
                if not authcid or not password:
                    raise ValueError("empty LOGIN credentials")
        except _Cancelled:
            await self.bad(command.tag, "Authentication cancelled")  # RFC 9051 6.2.2
            return
        except (ValueError, binascii.Error):
            await self.bad(command.tag, f"Invalid {command.mechanism} response")
            return
        try:
            user = await self.server.auth.authenticate(authcid, password)
        except TemporarilyUnavailable as e:
            await self.unavailable(command.tag, authcid, command.mechanism, str(e))
            return
        if user is not None and authzid and authzid.lower() not in (authcid.lower(), user):
            self.log("imap.login", method="PLAIN", user=authcid, result="authzid-refused")
            await self.no(command.tag, "[AUTHORIZATIONFAILED] Not authorized as that identity")
            return
        await self.logged_in(command.tag, authcid, user, command.mechanism)

    async def challenge(self, prompt: bytes) -> str:
        await self.send(b"+ " + base64.b64encode(prompt))
        line = await self.stream.readline(self.server.max_line, self.timeout())
        answer = line.rstrip(b"\r\n").decode("ascii", "replace")
        if answer == "*":
            raise _Cancelled
        return answer

    async def unavailable(self, tag: str, username: str, method: str, why: str) -> None:
        self.auth_failures += 1
        self.log("imap.login", method=method, user=username, result="unavailable", why=why)
        # RFC 5530 UNAVAILABLE: temporary; the client should not ask for another password.
        await self.no(tag, "[UNAVAILABLE] Login temporarily unavailable, try again later")

    async def refuse_plaintext(self, tag: str, method: str) -> None:
        self.log("imap.login", method=method, result="refused-no-tls")
        # RFC 5530 PRIVACYREQUIRED: the client can try STARTTLS and then log in.
        await self.no(tag, "[PRIVACYREQUIRED] Plaintext authentication requires TLS (STARTTLS)")

    async def logged_in(self, tag: str, username: str, user: str | None, method: str) -> None:
        if user is None:
            self.auth_failures += 1
            self.log("imap.login", method=method, user=username, result="fail")
            await self.no(tag, "[AUTHENTICATIONFAILED] Authentication failed")  # RFC 5530
            if self.auth_failures >= MAX_AUTH_FAILURES:
                await self.last_words(b"* BYE Too many authentication failures")
                raise _Hangup
            return
        # The account, its INBOX and special-use folders exist from the first login on.
        await asyncio.to_thread(self.store.folders, user)
        self.user = user
        self.state = _State.AUTHENTICATED
        self.log("imap.login", method=method, user=user, result="ok")
        await self.send(b"%s OK [CAPABILITY %s] Logged in" % (tag.encode(), self.capabilities()))

    # -- authenticated ----------------------------------------------------------------------

    async def enable(self, command: Enable) -> None:
        enabled: list[str] = []
        for cap in command.capabilities:  # RFC 5161 3.1: unknown ones are ignored
            if cap == "IMAP4REV2" and not self.rev2:
                self.rev2 = self.utf8 = True
                enabled.append("IMAP4rev2")
            elif cap == "UTF8=ACCEPT" and not self.utf8:
                self.utf8 = True
                enabled.append("UTF8=ACCEPT")
            elif cap == "CONDSTORE" and not self.condstore:
                self.condstore = True
                enabled.append("CONDSTORE")
            elif cap == "QRESYNC" and not self.qresync:
                self.qresync = self.condstore = True  # RFC 7162 3.2.3: QRESYNC implies it
                enabled.append("QRESYNC")
        await self.send(" ".join(["* ENABLED", *enabled]).encode())
        await self.ok(command, "ENABLE completed")

    def folder(self, raw: str) -> str:
        """A mailbox name from the client: modified UTF-7 unless UTF-8 was enabled."""
        name = raw
        if not self.utf8 and raw.isascii():
            with contextlib.suppress(ValueError):
                name = mutf7.decode(raw)
        try:
            return normalize_folder(name)
        except InvalidFolder as e:
            raise _No("[CANNOT] Invalid mailbox name") from e

    def wire_name(self, name: str) -> bytes:
        return r.astring(name if self.utf8 else mutf7.encode(name))

    async def select(self, command: Select) -> None:
        had_mailbox = self.view is not None
        self.deselect()  # RFC 9051 6.3.2: a failed SELECT leaves no mailbox selected
        if had_mailbox and (self.rev2 or self.qresync):
            await self.queue(b"* OK [CLOSED] Previous mailbox closed")  # RFC 7162 3.2.11
        if command.qresync is not None and not self.qresync:
            await self.bad(command.tag, "QRESYNC is not enabled")  # RFC 7162 3.2.5
            return
        if command.condstore:
            self.condstore = True  # RFC 7162 3.1.8: a CONDSTORE-enabling command
        try:
            name = self.folder(command.mailbox)
            mailbox, uids, status, unseen = await asyncio.to_thread(
                _open, self.store, self.user_address, name
            )
        except (NoSuchFolder, _No):
            await self.flush()
            await self.no(command.tag, "[NONEXISTENT] No such mailbox")  # RFC 5530
            return
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake(_path: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be gone at shutdown
                loop.call_soon_threadsafe(changed.set)

        unwatch = self.store.watch(mailbox.path, wake)
        view = _View(
            mailbox, name, command.readonly, uids, status.highestmodseq, unwatch, changed, {}
        )
        self.view = view
        self.state = _State.SELECTED
        permanent = b"()" if view.readonly else r.flag_list([*SYSTEM_FLAGS, "\\*"])
        exists = len(uids)
        lines: list[bytes]
        if self.rev2:  # RFC 9051 6.3.2
            lines = [
                b"* %d EXISTS" % exists,
                b"* FLAGS " + r.flag_list(SYSTEM_FLAGS),
                b'* LIST () "%s" %s' % (DELIMITER.encode(), self.wire_name(name)),
                b"* OK [PERMANENTFLAGS %s] Flags permitted" % permanent,
            ]
        else:  # RFC 3501 6.3.1
            lines = [
                b"* FLAGS " + r.flag_list(SYSTEM_FLAGS),
                b"* OK [PERMANENTFLAGS %s] Flags permitted" % permanent,
                b"* %d EXISTS" % exists,
                b"* 0 RECENT",
            ]
            if unseen is not None:
                seq = bisect.bisect_left(uids, unseen) + 1
                lines.append(b"* OK [UNSEEN %d] First unseen" % seq)
        lines.append(b"* OK [UIDVALIDITY %d] UIDs valid" % status.uidvalidity)
        lines.append(b"* OK [UIDNEXT %d] Predicted next UID" % status.uidnext)
        # RFC 7162 3.1.2.1: HIGHESTMODSEQ on every successful SELECT/EXAMINE.
        lines.append(b"* OK [HIGHESTMODSEQ %d] Highest" % status.highestmodseq)
        for line in lines:
            await self.queue(line)
        q = command.qresync
        if q is not None and q.uidvalidity == status.uidvalidity:
            await self.resync(q.modseq, q.known_uids)
        mode = "READ-ONLY" if view.readonly else "READ-WRITE"
        self.log("imap.select", user=self.user, mailbox=name, exists=exists)
        await self.flush()
        await self.ok(command, f"[{mode}] {'EXAMINE' if view.readonly else 'SELECT'} completed")

    async def resync(self, since: int, known: SequenceSet | None) -> None:
        """RFC 7162 3.2.5: what changed since the client's mod-sequence, VANISHED first."""
        view = self.view
        assert view is not None
        changes = await asyncio.to_thread(view.mailbox.changes, since)
        largest = view.uids[-1] if view.uids else 0
        gone = [u for u in changes.expunged if known is None or known.contains(u, largest)]
        if gone:
            await self.queue(b"* VANISHED (EARLIER) " + r.sequence_set(gone).encode())
        for message in changes.changed:
            seq = self.seq_of(message.uid)
            if seq is not None:
                await self.queue(self.flags_fetch(seq, message))

    async def mailbox_command(self, command: MailboxCommand) -> None:
        user = self.user_address
        if command.name == "GETQUOTA":
            await self.getquota(command)
            return
        if command.name == "CREATE":
            # RFC 9051 6.3.4: a trailing delimiter says children will follow; drop it.
            name = self.folder(command.mailbox.rstrip(DELIMITER) or command.mailbox)
            if name == "INBOX":
                raise _No("[ALREADYEXISTS] INBOX always exists")
            try:
                await asyncio.to_thread(self.store.create_folder, user, name, exclusive=True)
            except FolderExists:
                raise _No("[ALREADYEXISTS] Mailbox already exists") from None
        elif command.name == "DELETE":
            name = self.folder(command.mailbox)
            if name == "INBOX":
                raise _No("[CANNOT] INBOX cannot be deleted")  # RFC 9051 6.3.5
            if self.view is not None and self.view.name == name:
                self.deselect()
            try:
                await asyncio.to_thread(self.store.delete_folder, user, name)
            except NoSuchFolder:
                raise _No("[NONEXISTENT] No such mailbox") from None
        elif command.name == "SUBSCRIBE":
            name = self.folder(command.mailbox)
            await asyncio.to_thread(self.store.subscribe, user, name)
        elif command.name == "UNSUBSCRIBE":
            name = self.folder(command.mailbox)
            await asyncio.to_thread(self.store.unsubscribe, user, name)
        elif command.name == "GETQUOTAROOT":
            name = self.folder(command.mailbox)
            if not await asyncio.to_thread(self.store.exists, user, name):
                raise _No("[NONEXISTENT] No such mailbox")
            quota = self.store.quota_for(user)
            roots = b"" if quota.unlimited else b' ""'  # one root, the account, named ""
            await self.send(b"* QUOTAROOT %s%s" % (self.wire_name(name), roots))
            if not quota.unlimited:
                await self.send(await self.quota_line())
        await self.ok(command, f"{command.name} completed")

    async def getquota(self, command: MailboxCommand) -> None:
        if command.mailbox != "" or self.store.quota_for(self.user_address).unlimited:
            raise _No("[NONEXISTENT] No such quota root")  # RFC 9208 4.2
        await self.send(await self.quota_line())
        await self.ok(command, "GETQUOTA completed")

    async def quota_line(self) -> bytes:
        """RFC 9208 5.1: ``* QUOTA "" (STORAGE used limit MESSAGE used limit)``; STORAGE in
        units of 1024 octets."""
        user = self.user_address
        quota = self.store.quota_for(user)
        usage = await asyncio.to_thread(self.store.usage, user)
        parts: list[str] = []
        if quota.bytes:
            parts.append(f"STORAGE {-(-usage.bytes // 1024)} {quota.bytes // 1024}")
        if quota.messages:
            parts.append(f"MESSAGE {usage.messages} {quota.messages}")
        return b'* QUOTA "" (' + " ".join(parts).encode() + b")"

    async def rename(self, command: Rename) -> None:
        old, new = self.folder(command.old), self.folder(command.new.rstrip(DELIMITER))
        try:
            await asyncio.to_thread(self.store.rename_folder, self.user_address, old, new)
        except NoSuchFolder:
            raise _No("[NONEXISTENT] No such mailbox") from None
        except FolderExists:
            raise _No("[ALREADYEXISTS] Target mailbox exists") from None
        await self.ok(command, "RENAME completed")

    async def list_mailboxes(self, command: ListMailboxes) -> None:
        kind = "LSUB" if command.lsub else "LIST"
        if command.patterns == ("",) and not command.extended:
            # RFC 9051 6.3.9: an empty pattern asks for the delimiter and the root.
            await self.send(b'* %s (\\Noselect) "%s" ""' % (kind.encode(), DELIMITER.encode()))
            await self.ok(command, f"{kind} completed")
            return
        user = self.user_address
        folders = await asyncio.to_thread(self.store.folders, user)
        subscribed = set(await asyncio.to_thread(self.store.subscriptions, user))
        existing = set(folders)
        select = set(command.selection)
        if "RECURSIVEMATCH" in select and not select - {"RECURSIVEMATCH"}:
            await self.bad(command.tag, "RECURSIVEMATCH needs another selection option")
            return  # RFC 5258 3.1
        only_subscribed = command.lsub or "SUBSCRIBED" in select
        show_subscribed = only_subscribed or "SUBSCRIBED" in command.returns
        # RFC 9051 6.3.9: levels that exist only as parents are listed as \Noselect.
        parents = {
            DELIMITER.join(f.split(DELIMITER)[:n])
            for f in folders
            for n in range(1, f.count(DELIMITER) + 1)
        } - existing
        names = subscribed if only_subscribed else existing | parents
        if "SPECIAL-USE" in select:  # RFC 6154 3
            names = {n for n in names if n in SPECIAL_USE and n in existing}
        patterns = [
            _list_pattern(self.pattern(command.reference) + self.pattern(p))
            for p in command.patterns
        ]
        ordered = sorted(names, key=lambda n: (n != "INBOX", n.lower(), n))
        for name in ordered:
            if not any(p.fullmatch(name) or (name == "INBOX" and _inbox(p)) for p in patterns):
                continue
            attributes: list[str] = []
            if name not in existing and name not in parents:
                # Subscribed, but gone: RFC 5258 3 for LIST, RFC 3501 6.3.9 for LSUB.
                attributes.append("\\Noselect" if command.lsub else "\\NonExistent")
            elif name in parents:
                attributes.append("\\Noselect")
            if name in existing or name in parents:
                children = any(f.startswith(name + DELIMITER) for f in folders)
                attributes.append("\\HasChildren" if children else "\\HasNoChildren")  # 3348
            if show_subscribed and name in subscribed and not command.lsub:
                attributes.append("\\Subscribed")
            if name in SPECIAL_USE and name in existing:
                attributes.append(SPECIAL_USE[name])  # RFC 6154 2
            await self.queue(
                b'* %s (%s) "%s" %s'
                % (kind.encode(), " ".join(attributes).encode(), DELIMITER.encode(),
                   self.wire_name(name))
            )  # fmt: skip
            if command.status and name in existing:  # RFC 5819
                with contextlib.suppress(NoSuchFolder):
                    await self.queue(await self.status_line(name, command.status))
        await self.flush()
        await self.ok(command, f"{kind} completed")

    def pattern(self, raw: str) -> str:
        if self.utf8 or not raw.isascii():
            return raw
        try:
            return mutf7.decode(raw)
        except ValueError:
            return raw

    async def status(self, command: Status) -> None:
        name = self.folder(command.mailbox)
        try:
            line = await self.status_line(name, command.items)
        except NoSuchFolder:
            raise _No("[NONEXISTENT] No such mailbox") from None
        await self.send(line)
        await self.ok(command, "STATUS completed")

    async def status_line(self, name: str, items: Iterable[str]) -> bytes:
        status = await asyncio.to_thread(self.store.status, self.user_address, name)
        values = {
            "MESSAGES": status.messages,
            "UIDNEXT": status.uidnext,
            "UIDVALIDITY": status.uidvalidity,
            "UNSEEN": status.unseen,
            "DELETED": status.deleted,
            "SIZE": status.size,
            "RECENT": 0,
            "HIGHESTMODSEQ": status.highestmodseq,
        }
        wanted = [i for i in dict.fromkeys(items) if not (i == "RECENT" and self.rev2)]
        body = " ".join(f"{item} {values[item]}" for item in wanted)
        return b"* STATUS %s (%s)" % (self.wire_name(name), body.encode())

    async def append(self, command: Append) -> None:
        name = self.folder(command.mailbox)
        try:
            validity, uid = await asyncio.to_thread(
                self.store.append,
                self.user_address,
                name,
                command.message,
                command.flags,
                command.date,
            )
        except NoSuchFolder:
            raise _No("[TRYCREATE] No such mailbox") from None  # RFC 9051 6.3.12
        except QuotaExceeded:
            raise _No("[OVERQUOTA] Quota exceeded") from None  # RFC 9208 4.3
        except ValueError:
            await self.bad(command.tag, "Invalid flag")
            return
        self.log("imap.append", user=self.user, mailbox=name, uid=uid, size=len(command.message))
        if self.view is not None and self.view.name == name:
            await self.refresh()  # RFC 9051 6.3.12: EXISTS for the selected mailbox
        await self.ok(command, f"[APPENDUID {validity} {uid}] APPEND completed")  # RFC 4315

    async def idle(self, command: Simple) -> None:
        """RFC 2177 / RFC 9051 6.3.13: report changes as they happen until DONE."""
        await self.send(b"+ idling")
        view = self.view
        reader = asyncio.ensure_future(
            self.stream.readline(self.server.max_line, self.server.idle_timeout)
        )
        try:
            while True:
                if view is not None:
                    view.changed.clear()
                    await self.refresh()
                    waiter = asyncio.ensure_future(view.changed.wait())
                    # Deliveries by other processes do not ring the bell: look now and then.
                    poll = asyncio.ensure_future(self.server.clock.sleep(self.server.idle_poll))
                    waits: set[asyncio.Future[Any]] = {reader, waiter, poll}
                else:
                    waits = {reader}
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waits - {reader}:
                        w.cancel()
                if reader.done():
                    break
            line = reader.result()
        finally:
            if not reader.done():
                reader.cancel()
        if line.rstrip(b"\r\n").upper() == b"DONE":
            await self.ok(command, "IDLE terminated")
        else:
            await self.bad(command.tag, "Expected DONE")

    # -- selected ---------------------------------------------------------------------------

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

    async def fetch(self, command: Fetch) -> None:
        view = self.view
        assert view is not None
        targets = self.resolve(command.sequence, command.uid)
        if targets is None:
            await self.bad(command.tag, "Invalid message sequence number")
            return
        items = list(command.items)
        if command.uid and all(a.name != "UID" for a in items):
            items.insert(0, FetchAtt("UID"))  # RFC 9051 6.4.9: UID FETCH always returns UID
        if command.changedsince is not None:
            self.condstore = True  # RFC 7162 3.1.4.1: and MODSEQ comes with each message
            if all(a.name != "MODSEQ" for a in items):
                items.append(FetchAtt("MODSEQ"))
        elif any(a.name == "MODSEQ" for a in items):
            self.condstore = True  # RFC 7162 3.1.8: FETCH MODSEQ enables CONDSTORE
        if command.vanished and command.changedsince is not None:
            await self.vanished_earlier(command.changedsince, command.sequence)
        uids = [u for _, u in targets]
        marked: set[int] = set()
        if not view.readonly and any(a.sets_seen for a in items):  # RFC 9051 6.4.5
            update = await asyncio.to_thread(view.mailbox.update_flags, uids, add=["\\Seen"])
            for message in update.messages:
                if view.reported.get(message.uid, 0) < message.modseq:
                    marked.add(message.uid)
                    view.reported[message.uid] = message.modseq
        has_flags = any(a.name == "FLAGS" for a in items)
        missing = 0
        # Reading files is slow per message, listing flags is not: bigger trips for the latter.
        reads = any(a.section is not None or a.name in _BODY_ITEMS for a in items)
        size = FETCH_BATCH if reads else 16 * FETCH_BATCH
        for start in range(0, len(targets), size):
            batch = targets[start : start + size]
            try:
                lines, lost = await asyncio.to_thread(
                    _render_fetch,
                    view.mailbox,
                    batch,
                    items,
                    marked if not has_flags else set(),
                    command.changedsince,
                    self.condstore,
                )
            except mime.UnknownEncoding:
                self.discard()
                await self.no(command.tag, "[UNKNOWN-CTE] Cannot decode that part")  # 3516
                return
            missing += lost
            for line in lines:
                await self.queue(line)
        await self.flush()
        if command.uid:
            await self.refresh()
        if missing and not command.uid:
            await self.no(command.tag, "[EXPUNGEISSUED] Some messages were expunged")  # 5530
        else:
            await self.ok(command, "FETCH completed")

    async def vanished_earlier(self, since: int, uids: SequenceSet) -> None:
        view = self.view
        assert view is not None
        changes = await asyncio.to_thread(view.mailbox.changes, since)
        largest = max(view.uids[-1] if view.uids else 0, uids.highest())
        gone = [u for u in changes.expunged if uids.contains(u, largest)]
        if gone:  # RFC 7162 3.2.6
            await self.queue(b"* VANISHED (EARLIER) " + r.sequence_set(gone).encode())

    async def store_flags(self, command: Store) -> None:
        view = self.view
        assert view is not None
        if view.readonly:
            raise _No("[READ-ONLY] Mailbox is read-only")
        targets = self.resolve(command.sequence, command.uid)
        if targets is None:
            await self.bad(command.tag, "Invalid message sequence number")
            return
        if command.unchangedsince is not None:
            self.condstore = True  # RFC 7162 3.1.8
        seq_of = {u: n for n, u in targets}
        try:
            update = await asyncio.to_thread(
                view.mailbox.update_flags,
                list(seq_of),
                add=command.flags if command.mode == "+" else (),
                remove=command.flags if command.mode == "-" else (),
                replace=command.flags if command.mode == "" else None,
                unchanged_since=command.unchangedsince,
            )
        except ValueError:
            await self.bad(command.tag, "Invalid flag")
            return
        for message in update.messages:
            view.reported[message.uid] = message.modseq
            # RFC 9051 6.4.6: FETCH responses with the new flags unless .SILENT; RFC 7162
            # 3.1.3: with UNCHANGEDSINCE the changed ones are told even when silent.
            if not command.silent or command.unchangedsince is not None:
                await self.queue(self.flags_fetch(seq_of[message.uid], message, uid=command.uid))
        await self.flush()
        if command.uid:
            await self.refresh()
        if update.modified:
            numbers = update.modified if command.uid else [seq_of[u] for u in update.modified]
            modified = r.sequence_set(numbers)
            await self.ok(command, f"[MODIFIED {modified}] Conditional STORE failed")
        else:
            await self.ok(command, "STORE completed")

    def flags_fetch(self, seq: int, message: StoredMessage, *, uid: bool = True) -> bytes:
        parts = [b"UID %d" % message.uid] if uid else []
        parts.append(b"FLAGS " + r.flag_list(message.flags))
        if self.condstore:
            parts.append(b"MODSEQ (%d)" % message.modseq)
        return b"* %d FETCH (%s)" % (seq, b" ".join(parts))

    async def copy(self, command: Copy) -> None:
        view = self.view
        assert view is not None
        verb = "MOVE" if command.move else "COPY"
        targets = self.resolve(command.sequence, command.uid)
        if targets is None:
            await self.bad(command.tag, "Invalid message sequence number")
            return
        if command.move and view.readonly:
            raise _No("[READ-ONLY] Mailbox is read-only")
        user = self.user_address
        dest = self.folder(command.mailbox)
        if not await asyncio.to_thread(self.store.exists, user, dest):
            raise _No("[TRYCREATE] No such mailbox")  # RFC 9051 6.4.7
        uids = [u for _, u in targets]
        try:
            validity, pairs, trained = await asyncio.to_thread(
                _transfer, self.store, view.mailbox, user, dest, uids, command.move
            )
        except QuotaExceeded:
            raise _No("[OVERQUOTA] Quota exceeded") from None
        self.train(view.name, dest, trained)
        self.log("imap.copy", user=user, verb=verb, to=dest, count=len(pairs))
        if not pairs:
            await self.ok(command, f"{verb} completed")  # nothing to do (RFC 4315 3)
            return
        sources = ",".join(str(a) for a, _ in pairs)
        copies = ",".join(str(b) for _, b in pairs)
        copyuid = f"[COPYUID {validity} {sources} {copies}]"
        if not command.move:
            await self.ok(command, f"{copyuid} COPY completed")
            return
        # RFC 6851 4.3: COPYUID in an untagged OK, then the expunges, then the tagged OK.
        await self.queue(f"* OK {copyuid} Moved".encode())
        await self.report_expunged([a for a, _ in pairs])
        if view.name == dest:
            await self.refresh()
        await self.flush()
        await self.ok(command, "MOVE completed")

    def train(self, source: str, dest: str, messages: list[bytes]) -> None:
        hook = self.server.on_junk
        if hook is None or not messages or source == dest:
            return
        is_spam = dest == JUNK
        user = self.user_address

        def run() -> None:
            for data in messages:
                try:
                    hook(user, data, is_spam)
                except Exception:
                    log.exception("imap.junk-hook session=%s", self.id)

        task = asyncio.get_running_loop().run_in_executor(None, run)
        task.add_done_callback(lambda _t: None)

    async def expunge(self, command: Expunge) -> None:
        view = self.view
        assert view is not None
        if view.readonly:
            raise _No("[READ-ONLY] Mailbox is read-only")
        only: list[int] | None = None
        if command.uids is not None:  # RFC 4315 2.1 UID EXPUNGE
            targets = self.resolve(command.uids, True) or []
            only = [u for _, u in targets]
        gone = await asyncio.to_thread(view.mailbox.expunge, only)
        await self.report_expunged(gone)
        await self.refresh()
        await self.ok(command, "EXPUNGE completed")

    async def report_expunged(self, uids: list[int]) -> None:
        view = self.view
        assert view is not None
        known = [u for u in uids if self.seq_of(u) is not None]
        if not known:
            return
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
        await self.flush()

    async def search(self, command: Search) -> None:
        view = self.view
        assert view is not None
        if command.charset not in (None, "US-ASCII", "UTF-8"):
            await self.no(command.tag, "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")
            return
        hits = await asyncio.to_thread(_search, view.mailbox, list(view.uids), command, self.saved)
        if any(_uses_modseq(k) for k in command.keys):
            self.condstore = True  # RFC 7162 3.1.8
        numbers = [u if command.uid else n for n, u, _ in hits]
        highest = max((m for _, _, m in hits), default=0)
        with_modseq = any(_uses_modseq(k) for k in command.keys)
        returns = command.returns
        if returns is None and not self.rev2:
            text = b" ".join([b"* SEARCH", *(b"%d" % n for n in numbers)])
            if with_modseq and numbers:
                text += b" (MODSEQ %d)" % highest  # RFC 7162 3.1.5
            await self.send(text)
        else:
            options = set(returns or ()) or {"ALL"}  # RFC 4731 3.1: RETURN () is ALL
            if "SAVE" in options:  # RFC 5182 2.4
                saved = [u for _, u, _ in hits]
                if options & {"MIN", "MAX"} and not options & {"ALL", "COUNT"}:
                    picks = ([saved[0]] if "MIN" in options else []) + (
                        [saved[-1]] if "MAX" in options else []
                    )
                    saved = picks if saved else []
                self.saved = frozenset(saved)
            if options != {"SAVE"}:
                parts = [b'* ESEARCH (TAG "%s")' % command.tag.encode()]
                if command.uid:
                    parts.append(b"UID")
                if numbers and "MIN" in options:
                    parts.append(b"MIN %d" % min(numbers))
                if numbers and "MAX" in options:
                    parts.append(b"MAX %d" % max(numbers))
                if "COUNT" in options:
                    parts.append(b"COUNT %d" % len(numbers))
                if numbers and "ALL" in options:
                    parts.append(b"ALL " + r.sequence_set(numbers).encode())
                if with_modseq and numbers:
                    parts.append(b"MODSEQ %d" % highest)
                await self.send(b" ".join(parts))
        if command.uid:
            await self.refresh()
        await self.ok(command, "SEARCH completed")

    async def refresh(self) -> None:
        """Report what changed since the session last looked: EXPUNGE (or VANISHED), flag
        FETCHes, EXISTS (RFC 9051 7.4 / 5.2). Cheap when nothing changed: a look at the
        directory stamps and at HIGHESTMODSEQ."""
        view = self.view
        assert view is not None
        changes = await asyncio.to_thread(_poll, view.mailbox, view.modseq)
        if changes is None:
            return
        gone = [u for u in changes.expunged if self.seq_of(u) is not None]
        await self.report_expunged(gone)
        last = view.uids[-1] if view.uids else 0
        arrived: list[int] = []
        for message in changes.changed:
            if message.uid > last:
                arrived.append(message.uid)
                continue
            seq = self.seq_of(message.uid)
            if seq is not None and message.modseq > view.reported.get(message.uid, 0):
                await self.queue(self.flags_fetch(seq, message))
        if arrived or gone:
            view.uids.extend(arrived)
            await self.queue(b"* %d EXISTS" % len(view.uids))
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
        if self.state is _State.SELECTED:
            self.state = _State.AUTHENTICATED

    # -- output -----------------------------------------------------------------------------

    def timeout(self) -> float:
        if self.state is _State.NOT_AUTHENTICATED:
            return self.server.login_timeout
        return self.server.idle_timeout

    def literal_limit(self) -> int:
        if self.state is _State.NOT_AUTHENTICATED:
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
        await self.send(f"{command.tag} OK {text}".encode())

    async def no(self, tag: str, text: str) -> None:
        await self.send(f"{tag} NO {text}".encode())

    async def bad(self, tag: str | None, text: str) -> None:
        await self.send(f"{tag or '*'} BAD {text}".encode())
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            await self.last_words(b"* BYE Too many invalid commands")
            raise _Hangup

    def log(self, event: str, **fields: object) -> None:
        log_event(log, event, session=self.id, peer=self.stream.peer, **fields)


class _Cancelled(Exception):
    """The client answered a SASL challenge with ``*``."""


_BODY_ITEMS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT", "ENVELOPE", "BODYSTRUCTURE"})


def _name(command: Command) -> str:
    match command:
        case Simple():
            return command.name
        case Select():
            return "EXAMINE" if command.readonly else "SELECT"
        case MailboxCommand():
            return command.name
        case ListMailboxes():
            return "LSUB" if command.lsub else "LIST"
        case Copy():
            return "MOVE" if command.move else "COPY"
        case _:
            return type(command).__name__.upper()


def _open(
    store: MailStore, user: str, folder: str
) -> tuple[Mailbox, list[int], MailboxStatus, int | None]:
    mailbox = store.open(user, folder)
    try:
        return mailbox, *mailbox.snapshot()
    except BaseException:
        mailbox.close()
        raise


def _poll(mailbox: Mailbox, since: int) -> Changes | None:
    mailbox.sync()  # two stats unless another MDA touched the Maildir
    if mailbox.highestmodseq == since:
        return None
    return mailbox.changes(since)


def _transfer(
    store: MailStore, source: Mailbox, user: str, dest: str, uids: list[int], move: bool
) -> tuple[int, list[tuple[int, int]], list[bytes]]:
    """COPY or MOVE ``uids`` to ``dest``; returns its UIDVALIDITY, the UID pairs and the
    messages the spam trainer should see (when Junk is at either end)."""
    with store.open(user, dest) as target:
        source_name = source.name
        train = (dest == JUNK) != (source_name == JUNK) and not (
            source_name == JUNK and dest == TRASH
        )
        trained: list[bytes] = []
        if train:
            for uid in uids:
                with contextlib.suppress(NoSuchMessage):
                    trained.append(source.read(uid))
        if move:
            pairs = source.move_to(target, uids)
        else:
            found = source.get_many(uids)
            store.check_quota(user, sum(m.size for m in found.values()), len(found))
            pairs = source.copy_to(target, uids)
        return target.uidvalidity, pairs, trained


def _render_fetch(
    mailbox: Mailbox,
    batch: list[tuple[int, int]],
    items: list[FetchAtt],
    marked: set[int],
    changedsince: int | None,
    condstore: bool,
) -> tuple[list[bytes], int]:
    """FETCH response lines for a batch of ``(seq, uid)``; and how many were gone."""
    stored = mailbox.get_many(uid for _, uid in batch)
    wants_body = any(a.section is not None or a.name in _BODY_ITEMS for a in items)
    lines: list[bytes] = []
    missing = 0
    for seq, uid in batch:
        message = stored.get(uid)
        if message is None:
            missing += 1
            continue
        if changedsince is not None and message.modseq <= changedsince:
            continue
        data = b""
        if wants_body:
            try:
                data = mailbox.read(uid)
            except NoSuchMessage:
                missing += 1
                continue
        parts = [_fetch_item(a, message, data) for a in items]
        if uid in marked:  # RFC 9051 6.4.5: the implicit \Seen is reported
            parts.append(b"FLAGS " + r.flag_list(message.flags))
            if condstore and all(a.name != "MODSEQ" for a in items):
                parts.append(b"MODSEQ (%d)" % message.modseq)
        lines.append(b"* %d FETCH (%s)" % (seq, b" ".join(parts)))
    return lines, missing


def _fetch_item(att: FetchAtt, message: StoredMessage, data: bytes) -> bytes:
    name = att.name
    if name == "UID":
        return b"UID %d" % message.uid
    if name == "FLAGS":
        return b"FLAGS " + r.flag_list(message.flags)
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + r.internaldate(message.internaldate)
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % message.size
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % message.modseq  # RFC 7162 3.1.4
    if name == "ENVELOPE":
        return b"ENVELOPE " + r.render(mime.envelope(mime.split(data)[0]))
    if name in ("BODYSTRUCTURE", "BODY") and att.section is None:
        structure = mime.bodystructure(mime.parse(data), extensible=name == "BODYSTRUCTURE")
        return name.encode() + b" " + r.render(structure)
    if name == "BINARY.SIZE":
        assert att.section is not None
        decoded = mime.binary(data, att.section.part)
        return b"%s %d" % (att.label().encode(), len(decoded or b""))
    if name == "BINARY":
        assert att.section is not None
        decoded = mime.binary(data, att.section.part)
        if decoded is None:
            return att.label().encode() + b" NIL"
        part = r.partial(att, decoded)
        body = r.literal8(part) if b"\0" in part else r.literal(part)
        return att.label().encode() + b" " + body
    return att.label().encode("ascii") + b" " + r.literal(r.body_part(att, data))


def _search(
    mailbox: Mailbox, uids: list[int], command: Search, saved: frozenset[int]
) -> list[tuple[int, int, int]]:
    """``(seq, uid, modseq)`` of the messages that match every key.

    The keys the index can answer become one SQL query; the others (text, headers, sent
    dates) are then checked message by message on what that query left.
    """
    clauses: list[str] = []
    params: list[object] = []
    rest: list[SearchKey] = []
    for key in command.keys:
        compiled = to_sql(key, uids, saved)
        if compiled is None:
            rest.append(key)
        else:
            clauses.append(f"({compiled[0]})")
            params += compiled[1]
    rows = mailbox.select(" AND ".join(clauses) or "1", params)
    exists, largest = len(uids), (uids[-1] if uids else 0)
    content = needs_content(rest)
    hits: list[tuple[int, int, int]] = []
    for uid, flags, size, internaldate, modseq in rows:
        seq = seq_of(uids, uid)
        if seq is None:
            continue  # arrived after the session last looked: not in its view yet
        if rest:
            candidate = Candidate(
                seq,
                uid,
                frozenset(flags.split()),
                size,
                exists,
                largest,
                internaldate=internaldate,
                modseq=modseq,
                saved=saved,
                load=_loader(mailbox, uid) if content else None,
            )
            if not all(matches(key, candidate) for key in rest):
                continue
        hits.append((seq, uid, modseq))
    return hits


def _loader(mailbox: Mailbox, uid: int) -> Callable[[], bytes]:
    def load() -> bytes:
        try:
            return mailbox.read(uid)
        except NoSuchMessage:
            return b""

    return load


def _uses_modseq(key: SearchKey) -> bool:
    return key.name == "MODSEQ" or any(_uses_modseq(k) for k in key.keys)


def _list_pattern(pattern: str) -> re.Pattern[str]:
    """RFC 9051 6.3.9: ``*`` matches anything, ``%`` anything but the hierarchy delimiter."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.DOTALL)


def _inbox(pattern: re.Pattern[str]) -> bool:
    return re.compile(pattern.pattern, re.IGNORECASE | re.DOTALL).fullmatch("INBOX") is not None
