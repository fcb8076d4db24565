"""The IMAP server: connection I/O and session state; parsing and storage live elsewhere."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import logging
import re
import secrets
import ssl

from reference.clock import Clock
from reference.credentials import Authenticator, parse_sasl_plain
from reference.imap import response as r
from reference.imap.parser import (
    Authenticate,
    Command,
    Fetch,
    FetchAtt,
    ListMailboxes,
    Login,
    ParseError,
    Search,
    Select,
    SequenceSet,
    Simple,
    literal_suffix,
    parse_command,
    tag_of,
)
from reference.imap.search import Candidate, matches
from reference.imap.stream import Closed, LineTooLong, Stream, log_event
from reference.mailbox import (
    DELIMITER,
    SPECIAL_USE,
    SYSTEM_FLAGS,
    InvalidFolder,
    Mailbox,
    MailStore,
    NoSuchFolder,
    NoSuchMessage,
    StoredMessage,
)

log = logging.getLogger("mailspec.imap")

PREAUTH_MAX_LITERAL = 8 * 1024  # before login only credentials travel: keep buffers small
WRITE_TIMEOUT = 60.0
MAX_ERRORS = 10  # consecutive BAD replies before the connection is dropped
MAX_AUTH_FAILURES = 3


class _State(enum.Enum):
    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY = frozenset(_State) - {_State.LOGOUT}
_AUTHED = frozenset({_State.AUTHENTICATED, _State.SELECTED})
_ALLOWED: dict[str, frozenset[_State]] = {  # RFC 3501 3 / RFC 9051 3: states and commands
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "STARTTLS": frozenset({_State.NOT_AUTHENTICATED}),
    "LOGIN": frozenset({_State.NOT_AUTHENTICATED}),
    "AUTHENTICATE": frozenset({_State.NOT_AUTHENTICATED}),
    "SELECT": _AUTHED,
    "EXAMINE": _AUTHED,
    "LIST": _AUTHED,
    "FETCH": frozenset({_State.SELECTED}),
    "SEARCH": frozenset({_State.SELECTED}),
    "CHECK": frozenset({_State.SELECTED}),
    "CLOSE": frozenset({_State.SELECTED}),
    "UNSELECT": frozenset({_State.SELECTED}),
}


class _Hangup(Exception):
    """End the session now; whatever had to be said has been sent."""


class ImapServer:
    """Serves IMAP4rev1 sessions from a :class:`MailStore`; one ``handle`` call per connection."""

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

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> None:
        """Run one session; ``tls`` is True on an implicit-TLS (993) connection."""
        await _Session(self, Stream(reader, writer, self.clock), tls=tls).run()


class _Session:
    def __init__(self, server: ImapServer, stream: Stream, *, tls: bool) -> None:
        self.server = server
        self.stream = stream
        self.tls = tls
        self.id = secrets.token_hex(4)
        self.state = _State.NOT_AUTHENTICATED
        self.user: str | None = None
        self.errors = 0
        self.auth_failures = 0
        self.mailbox: Mailbox | None = None
        self.readonly = False
        self.uids: list[int] = []  # the session's view: sequence number n is uids[n - 1]
        self.flags: dict[int, frozenset[str]] = {}

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        started = self.server.clock.monotonic()
        self.log("imap.connect", tls=self.tls)
        reason = "logout"
        try:
            await self.send(
                b"* OK [CAPABILITY %s] %s IMAP4rev1 ready"
                % (self.capabilities(), self.server.hostname.encode("ascii", "replace"))
            )
            while self.state is not _State.LOGOUT:
                await self.step()
        except TimeoutError:
            reason = "timeout"
            await self.last_words(b"* BYE Autologout; idle for too long")  # RFC 3501 5.4
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
        literal_limit = self.literal_limit()
        command = parse_command(data, max_literal=literal_limit)
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
        except Exception:
            log.exception("imap.error session=%s command=%s", self.id, name)
            await self.send(b"%s NO [SERVERBUG] Internal error" % command.tag.encode())

    async def read_command(self) -> bytes | None:
        """One command with its literals (RFC 3501 7.5 continuation for synchronizing ones);
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
                if self.state is _State.SELECTED:
                    await self.refresh()
                await self.ok(command, f"{command.name} completed")
            case Simple(name="LOGOUT"):
                await self.send(b"* BYE Logging out")  # RFC 3501 6.1.3
                await self.ok(command, "LOGOUT completed")
                self.state = _State.LOGOUT
            case Simple(name="STARTTLS"):
                await self.starttls(command)
            case Simple(name="CLOSE"):
                if self.mailbox is not None and not self.readonly:
                    await asyncio.to_thread(self.mailbox.expunge)  # RFC 3501 6.4.2: silently
                self.deselect()
                await self.ok(command, "CLOSE completed")
            case Simple(name="UNSELECT"):
                self.deselect()
                await self.ok(command, "UNSELECT completed")
            case Login():
                await self.login(command)
            case Authenticate():
                await self.authenticate(command)
            case Select():
                await self.select(command)
            case Fetch():
                await self.fetch(command)
            case Search():
                await self.search(command)
            case ListMailboxes():
                await self.list_mailboxes(command)
            case _:
                await self.bad(command.tag, "Command not implemented")

    # -- not authenticated ------------------------------------------------------------------

    def capabilities(self) -> bytes:
        caps = ["IMAP4rev1", "LITERAL+", "SASL-IR", "UNSELECT"]
        if self.state is _State.NOT_AUTHENTICATED:
            if not self.tls and self.server.tls_context is not None:
                caps.append("STARTTLS")
            # RFC 3501 6.2.3 / 7.2.1: no plaintext password mechanism without TLS.
            caps.append("AUTH=PLAIN" if self.plaintext_ok() else "LOGINDISABLED")
        return " ".join(caps).encode("ascii")

    def plaintext_ok(self) -> bool:
        return self.tls or self.server.allow_plaintext

    async def starttls(self, command: Simple) -> None:
        context = self.server.tls_context
        if self.tls or context is None:
            await self.bad(command.tag, "STARTTLS not available")
            return
        await self.ok(command, "Begin TLS negotiation now")
        # RFC 3501 6.2.1: discard whatever was pipelined behind STARTTLS (command injection).
        discarded = await self.stream.start_tls(context, self.server.login_timeout)
        self.tls = True
        self.log("imap.starttls", discarded=discarded)

    async def login(self, command: Login) -> None:
        if not self.plaintext_ok():
            await self.refuse_plaintext(command.tag, "LOGIN")
            return
        user = await self.server.auth.authenticate(command.username, command.password)
        await self.logged_in(command.tag, command.username, user, "LOGIN")

    async def authenticate(self, command: Authenticate) -> None:
        if command.mechanism != "PLAIN":
            await self.no(command.tag, "Unsupported authentication mechanism")  # RFC 3501 6.2.2
            return
        if not self.plaintext_ok():
            await self.refuse_plaintext(command.tag, "AUTHENTICATE")
            return
        answer = command.initial  # RFC 4959 SASL-IR
        if answer is None:
            await self.send(b"+ ")
            line = await self.stream.readline(self.server.max_line, self.timeout())
            answer = line.rstrip(b"\r\n").decode("ascii", "replace")
        if answer == "*":
            await self.bad(command.tag, "Authentication cancelled")  # RFC 3501 6.2.2
            return
        try:
            raw = b"" if answer == "=" else base64.b64decode(answer, validate=True)
            authzid, authcid, password = parse_sasl_plain(raw)
        except ValueError:
            await self.bad(command.tag, "Invalid PLAIN response")
            return
        user = await self.server.auth.authenticate(authcid, password)
        if user is not None and authzid and authzid.lower() not in (authcid.lower(), user):
            self.log("imap.login", method="PLAIN", user=authcid, result="authzid-refused")
            await self.no(command.tag, "[AUTHORIZATIONFAILED] Not authorized as that identity")
            return
        await self.logged_in(command.tag, authcid, user, "PLAIN")

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
        self.user = user
        self.state = _State.AUTHENTICATED
        self.log("imap.login", method=method, user=user, result="ok")
        await self.send(b"%s OK [CAPABILITY %s] Logged in" % (tag.encode(), self.capabilities()))

    # -- authenticated ----------------------------------------------------------------------

    async def select(self, command: Select) -> None:
        self.deselect()  # RFC 3501 6.3.1: a failed SELECT leaves no mailbox selected
        assert self.user is not None
        try:
            mailbox, messages, uidvalidity, uidnext = await asyncio.to_thread(
                _open, self.server.store, self.user, command.mailbox
            )
        except (NoSuchFolder, InvalidFolder):
            await self.no(command.tag, "[NONEXISTENT] No such mailbox")  # RFC 5530
            return
        self.mailbox, self.readonly = mailbox, command.readonly
        self.uids = [m.uid for m in messages]
        self.flags = {m.uid: m.flags for m in messages}
        self.state = _State.SELECTED
        permanent = b"()" if self.readonly else r.flag_list([*SYSTEM_FLAGS, "\\*"])
        lines = [
            b"* FLAGS " + r.flag_list(SYSTEM_FLAGS),
            b"* OK [PERMANENTFLAGS %s] Flags permitted" % permanent,
            b"* %d EXISTS" % len(messages),
            b"* 0 RECENT",
        ]
        unseen = next((n for n, m in enumerate(messages, 1) if "\\Seen" not in m.flags), None)
        if unseen is not None:
            lines.append(b"* OK [UNSEEN %d] First unseen" % unseen)
        lines.append(b"* OK [UIDVALIDITY %d] UIDs valid" % uidvalidity)
        lines.append(b"* OK [UIDNEXT %d] Predicted next UID" % uidnext)
        await self.send(b"\r\n".join(lines))
        mode = "READ-ONLY" if self.readonly else "READ-WRITE"
        self.log("imap.select", user=self.user, mailbox=mailbox.name, exists=len(messages))
        await self.ok(command, f"[{mode}] {'EXAMINE' if self.readonly else 'SELECT'} completed")

    async def list_mailboxes(self, command: ListMailboxes) -> None:
        if command.pattern == "":  # RFC 3501 6.3.8: the delimiter and the root
            await self.send(b'* LIST (\\Noselect) "%s" ""' % DELIMITER.encode())
            await self.ok(command, "LIST completed")
            return
        assert self.user is not None
        folders = await asyncio.to_thread(self.server.store.folders, self.user)
        # RFC 3501 6.3.8: levels that exist only as parents are listed as \Noselect.
        parents = {
            DELIMITER.join(f.split(DELIMITER)[:n])
            for f in folders
            for n in range(1, f.count(DELIMITER) + 1)
        } - set(folders)
        pattern = _list_pattern(command.reference + command.pattern)
        for name in [folders[0], *sorted({*folders[1:], *parents}, key=str.lower)]:
            if not (pattern.fullmatch(name) or (name == "INBOX" and _inbox_match(pattern))):
                continue
            children = any(f.startswith(name + DELIMITER) for f in folders)
            attributes = ["\\HasChildren" if children else "\\HasNoChildren"]  # RFC 3348
            if name in parents:
                attributes.insert(0, "\\Noselect")
            if name in SPECIAL_USE:
                attributes.append(SPECIAL_USE[name])  # RFC 6154 2
            await self.send(
                b'* LIST (%s) "%s" %s'
                % (" ".join(attributes).encode(), DELIMITER.encode(), r.astring(name))
            )
        await self.ok(command, "LIST completed")

    # -- selected ---------------------------------------------------------------------------

    async def fetch(self, command: Fetch) -> None:
        mailbox = self.mailbox
        assert mailbox is not None
        targets = self.resolve(command.sequence, command.uid)
        if targets is None:
            await self.bad(command.tag, "Invalid message sequence number")
            return
        items = list(command.items)
        if command.uid and all(a.name != "UID" for a in items):
            items.insert(0, FetchAtt("UID"))  # RFC 3501 6.4.8: UID FETCH always returns UID
        marked: set[int] = set()
        if not self.readonly and any(a.sets_seen for a in items):  # RFC 3501 6.4.5
            marked = {uid for _, uid in targets if "\\Seen" not in self.flags.get(uid, ())}
            if marked:
                await asyncio.to_thread(mailbox.change_flags, marked, add=["\\Seen"])
        stored = {m.uid: m for m in await asyncio.to_thread(mailbox.messages)}
        wants_body = any(a.section is not None or a.name in _BODY_ITEMS for a in items)
        has_flags = any(a.name == "FLAGS" for a in items)
        missing = 0
        for seq, uid in targets:
            message = stored.get(uid)
            data = b""
            try:
                if message is not None and wants_body:
                    data = await asyncio.to_thread(mailbox.read, uid)
            except NoSuchMessage:
                message = None
            if message is None:
                missing += 1
                continue
            self.flags[uid] = message.flags
            parts = [_fetch_item(a, message, data) for a in items]
            if uid in marked and not has_flags:  # RFC 3501 6.4.5: SHOULD report the change
                parts.append(b"FLAGS " + r.flag_list(message.flags))
            await self.send(b"* %d FETCH (%s)" % (seq, b" ".join(parts)))
        if missing:
            await self.no(command.tag, "[EXPUNGEISSUED] Some messages were expunged")  # RFC 5530
        else:
            await self.ok(command, "FETCH completed")

    async def search(self, command: Search) -> None:
        mailbox = self.mailbox
        assert mailbox is not None
        if command.charset not in (None, "US-ASCII", "UTF-8"):
            await self.no(command.tag, "[BADCHARSET (US-ASCII UTF-8)] Unsupported charset")
            return
        stored = {m.uid: m for m in await asyncio.to_thread(mailbox.messages)}
        exists, largest = len(self.uids), (self.uids[-1] if self.uids else 0)
        hits: list[int] = []
        for seq, uid in enumerate(self.uids, 1):
            message = stored.get(uid)
            if message is None:
                continue
            candidate = Candidate(seq, uid, message.flags, message.size, exists, largest)
            if all(matches(key, candidate) for key in command.keys):
                hits.append(uid if command.uid else seq)
        await self.send(b" ".join([b"* SEARCH", *(b"%d" % n for n in hits)]))
        await self.ok(command, "SEARCH completed")

    async def refresh(self) -> None:
        """Report what other sessions changed: EXPUNGE, flag FETCH, EXISTS (RFC 3501 7.4.1)."""
        assert self.mailbox is not None
        current = {m.uid: m.flags for m in await asyncio.to_thread(self.mailbox.messages)}
        gone = [seq for seq, uid in enumerate(self.uids, 1) if uid not in current]
        for seq in reversed(gone):  # highest first, so each number is valid when sent
            await self.send(b"* %d EXPUNGE" % seq)
        self.uids = [uid for uid in self.uids if uid in current]
        for seq, uid in enumerate(self.uids, 1):
            if current[uid] != self.flags.get(uid):
                self.flags[uid] = current[uid]
                await self.send(
                    b"* %d FETCH (UID %d FLAGS %s)" % (seq, uid, r.flag_list(current[uid]))
                )
        known = set(self.uids)
        arrived = sorted(uid for uid in current if uid not in known)
        if arrived or gone:
            self.uids.extend(arrived)
            self.flags.update((uid, current[uid]) for uid in arrived)
            await self.send(b"* %d EXISTS" % len(self.uids))

    def resolve(self, sequence: SequenceSet, uid: bool) -> list[tuple[int, int]] | None:
        """``(seq, uid)`` pairs named by the set; None for a sequence number past the end."""
        exists = len(self.uids)
        if uid:
            largest = self.uids[-1] if self.uids else 0
            return [(n, u) for n, u in enumerate(self.uids, 1) if sequence.contains(u, largest)]
        if sequence.highest() > exists:
            return None
        return [(n, u) for n, u in enumerate(self.uids, 1) if sequence.contains(n, exists)]

    def deselect(self) -> None:
        if self.mailbox is not None:
            self.mailbox.close()
        self.mailbox = None
        self.uids, self.flags = [], {}
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

    async def send(self, line: bytes) -> None:
        await self.stream.write(line + b"\r\n", WRITE_TIMEOUT)

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


_BODY_ITEMS = frozenset({"RFC822", "RFC822.HEADER", "RFC822.TEXT"})


def _name(command: Command) -> str:
    match command:
        case Simple():
            return command.name
        case Select():
            return "EXAMINE" if command.readonly else "SELECT"
        case ListMailboxes():
            return "LIST"
        case _:
            return type(command).__name__.upper()


def _open(
    store: MailStore, user: str, folder: str
) -> tuple[Mailbox, list[StoredMessage], int, int]:
    mailbox = store.open(user, folder)
    try:
        return mailbox, mailbox.messages(), mailbox.uidvalidity, mailbox.uidnext
    except BaseException:
        mailbox.close()
        raise


def _fetch_item(att: FetchAtt, message: StoredMessage, data: bytes) -> bytes:
    if att.name == "UID":
        return b"UID %d" % message.uid
    if att.name == "FLAGS":
        return b"FLAGS " + r.flag_list(message.flags)
    if att.name == "INTERNALDATE":
        return b"INTERNALDATE " + r.internaldate(message.internaldate)
    if att.name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % message.size
    return att.label().encode("ascii") + b" " + r.literal(r.body_part(att, data))


def _list_pattern(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """RFC 3501 6.3.8: ``*`` matches anything, ``%`` anything but the hierarchy delimiter."""
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(f"[^{re.escape(DELIMITER)}]*")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), flags | re.DOTALL)


def _inbox_match(pattern: re.Pattern[str]) -> bool:
    return re.compile(pattern.pattern, re.IGNORECASE | re.DOTALL).fullmatch("INBOX") is not None
