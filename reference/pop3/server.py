"""The POP3 server: connection I/O and the AUTHORIZATION / TRANSACTION / UPDATE states."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import logging
import secrets
import ssl
from collections.abc import Awaitable, Callable

from reference.clock import Clock
from reference.credentials import Authenticator, TemporarilyUnavailable, parse_sasl_plain
from reference.mailbox import Mailbox, MailStore, NoSuchMessage, StoredMessage
from reference.mailbox.message import top
from reference.pop3.parser import Command, ParseError, dot_stuff, parse_command
from reference.stream import Closed, LineTooLong, Stream, log_event

log = logging.getLogger("mailspec.pop3")

LINE_GUARD = 1024  # longer lines are refused by the parser; past this the stream is dropped
WRITE_TIMEOUT = 60.0
MAX_ERRORS = 10
MAX_AUTH_FAILURES = 3


class _State(enum.Enum):
    AUTHORIZATION = "authorization"
    TRANSACTION = "transaction"
    DONE = "done"


_AUTHORIZATION = frozenset({"CAPA", "STLS", "USER", "PASS", "AUTH", "QUIT", "NOOP"})
_TRANSACTION = frozenset(
    {"CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP", "QUIT"}
)


class _Hangup(Exception):
    """End the session now, without UPDATE."""


class Pop3Server:
    """Serves POP3 sessions on the INBOX of the :class:`MailStore`; one ``handle`` per client."""

    def __init__(
        self,
        store: MailStore,
        auth: Authenticator,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        clock: Clock,
        idle_timeout: float = 10 * 60.0,  # RFC 1939 3: an autologout timer of at least 10 min
        allow_plaintext: bool = False,  # USER/PASS without TLS: only behind a TLS proxy
    ) -> None:
        self.store = store
        self.auth = auth
        self.hostname = hostname
        self.tls_context = tls_context
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.allow_plaintext = allow_plaintext

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tls: bool
    ) -> None:
        """Run one session; ``tls`` is True on an implicit-TLS (995) connection."""
        await _Session(self, Stream(reader, writer, self.clock), tls=tls).run()


class _Session:
    def __init__(self, server: Pop3Server, stream: Stream, *, tls: bool) -> None:
        self.server = server
        self.stream = stream
        self.tls = tls
        self.id = secrets.token_hex(4)
        self.state = _State.AUTHORIZATION
        self.pending_user: str | None = None
        self.user: str | None = None
        self.errors = 0
        self.auth_failures = 0
        self.mailbox: Mailbox | None = None
        self.uidvalidity = 0
        self.messages: list[StoredMessage] = []  # fixed for the session: number n is [n - 1]
        self.deleted: set[int] = set()
        self.retrieved: set[int] = set()
        self.unlock: Callable[[], None] | None = None

    async def run(self) -> None:
        started = self.server.clock.monotonic()
        self.log("pop3.connect", tls=self.tls)
        reason = "quit"
        try:
            await self.send(f"+OK {self.server.hostname} POP3 ready")
            while self.state is not _State.DONE:
                line = await self.stream.readline(LINE_GUARD, self.server.idle_timeout)
                command = parse_command(line)
                if isinstance(command, ParseError):
                    await self.err(command.reason)
                    continue
                await self.dispatch(command)
        except TimeoutError:
            # RFC 1939 3: a timed-out session does not enter UPDATE; nothing is deleted.
            reason = "timeout"
            await self.last_words("-ERR Autologout; idle for too long")
        except LineTooLong:
            reason = "line-too-long"
            await self.last_words("-ERR Line too long")
        except _Hangup:
            reason = "hangup"
        except Closed:
            reason = "closed"
        except Exception:
            reason = "error"
            log.exception("pop3.error session=%s", self.id)
        finally:
            if self.mailbox is not None:
                self.mailbox.close()
            if self.unlock is not None:
                self.unlock()
            await self.stream.close()
            elapsed = round(self.server.clock.monotonic() - started, 3)
            self.log("pop3.disconnect", reason=reason, user=self.user or "-", seconds=elapsed)

    async def dispatch(self, command: Command) -> None:
        allowed = _AUTHORIZATION if self.state is _State.AUTHORIZATION else _TRANSACTION
        if command.verb not in allowed:
            await self.err("Command not valid in this state")
            return
        self.errors = 0
        try:
            handler: Callable[[Command], Awaitable[None]] = getattr(
                self, f"do_{command.verb}".lower()
            )
            await handler(command)
        except (Closed, _Hangup, TimeoutError, LineTooLong):
            raise
        except Exception:
            log.exception("pop3.error session=%s command=%s", self.id, command.verb)
            await self.send("-ERR [SYS/TEMP] Internal error")  # RFC 3206

    # -- AUTHORIZATION ----------------------------------------------------------------------

    async def do_capa(self, command: Command) -> None:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]  # RFC 2449 6
        if self.state is _State.AUTHORIZATION:
            if not self.tls and self.server.tls_context is not None:
                caps.append("STLS")  # RFC 2595 4
            if self.plaintext_ok():
                caps.append("USER")  # RFC 2449 6.8: offered only where it may be used
                caps.append("SASL PLAIN")  # RFC 2449 6.3, RFC 5034
        await self.multiline("Capability list follows", "\r\n".join(caps).encode() + b"\r\n")

    async def do_stls(self, command: Command) -> None:
        context = self.server.tls_context
        if self.tls or context is None:
            await self.send("-ERR TLS not available")
            return
        # RFC 2595 4: pipelined plaintext behind STLS is discarded, and what the client said
        # before (a USER name) is forgotten.
        reply = b"+OK Begin TLS negotiation\r\n"
        discarded = await self.stream.start_tls(context, self.server.idle_timeout, reply)
        self.tls = True
        self.pending_user = None
        self.log("pop3.stls", discarded=discarded)

    async def do_user(self, command: Command) -> None:
        if not self.plaintext_ok():
            await self.refuse_plaintext()
            return
        self.pending_user = command.arg
        await self.send("+OK Send the password")

    async def do_pass(self, command: Command) -> None:
        if not self.plaintext_ok():
            await self.refuse_plaintext()
            return
        username, self.pending_user = self.pending_user, None
        if username is None or command.arg is None:
            await self.send("-ERR USER first")
            return
        await self.login(username, command.arg, "USER")

    async def do_auth(self, command: Command) -> None:
        """RFC 5034: SASL PLAIN, after TLS only; a bare AUTH lists the mechanisms."""
        if command.arg is None:
            mechanisms = b"PLAIN\r\n" if self.plaintext_ok() else b""
            await self.multiline("SASL mechanisms follow", mechanisms)
            return
        if not self.plaintext_ok():
            await self.refuse_plaintext()
            return
        if command.arg != "PLAIN":
            await self.send("-ERR Unsupported SASL mechanism")
            return
        answer = command.initial
        if answer is None:
            await self.send("+ ")
            line = await self.stream.readline(LINE_GUARD, self.server.idle_timeout)
            answer = line.rstrip(b"\r\n").decode("ascii", "replace")
        if answer == "*":
            await self.send("-ERR Authentication cancelled")  # RFC 5034 4
            return
        try:
            raw = b"" if answer == "=" else base64.b64decode(answer, validate=True)
            authzid, authcid, password = parse_sasl_plain(raw)
        except (ValueError, binascii.Error):
            await self.send("-ERR Invalid PLAIN response")
            return
        if authzid and authzid.lower() != authcid.lower():
            await self.send("-ERR [AUTH] Not authorized as that identity")
            return
        await self.login(authcid, password, "PLAIN")

    async def login(self, username: str, password: str, method: str) -> None:
        try:
            user = await self.server.auth.authenticate(
                username, password, client=self.stream.client
            )
        except TemporarilyUnavailable as e:
            self.auth_failures += 1
            self.log("pop3.login", user=username, method=method, result="unavailable", why=str(e))
            # RFC 3206 4: SYS/TEMP, a temporary failure, not a wrong password.
            await self.send("-ERR [SYS/TEMP] Login temporarily unavailable, try again later")
            if self.auth_failures >= MAX_AUTH_FAILURES:
                raise _Hangup from None
            return
        if user is None:
            self.auth_failures += 1
            self.log("pop3.login", user=username, method=method, result="fail")
            await self.send("-ERR [AUTH] Authentication failed")  # RFC 3206 5
            if self.auth_failures >= MAX_AUTH_FAILURES:
                raise _Hangup
            return
        # RFC 1939 8 / RFC 2449 8.1.1: one session at a time per maildrop.
        unlock = await asyncio.to_thread(self.server.store.try_lock, user)
        if unlock is None:
            self.log("pop3.login", user=user, method=method, result="in-use")
            await self.send("-ERR [IN-USE] Mailbox is in use by another session")
            return
        try:
            self.mailbox, self.messages, self.uidvalidity = await asyncio.to_thread(
                _open, self.server.store, user
            )
        except BaseException:
            unlock()
            raise
        self.unlock = unlock
        self.user = user
        self.state = _State.TRANSACTION
        self.log("pop3.login", user=user, method=method, result="ok", messages=len(self.messages))
        await self.send(f"+OK Logged in, {len(self.messages)} messages")

    async def refuse_plaintext(self) -> None:
        self.log("pop3.login", result="refused-no-tls")
        await self.send("-ERR [AUTH] Plaintext authentication requires TLS (STLS first)")

    def plaintext_ok(self) -> bool:
        return self.tls or self.server.allow_plaintext

    # -- TRANSACTION ------------------------------------------------------------------------

    async def do_stat(self, command: Command) -> None:
        live = self.live()
        await self.send(f"+OK {len(live)} {sum(m.size for _, m in live)}")  # RFC 1939 5

    async def do_list(self, command: Command) -> None:
        await self.listing(command, lambda m: str(m.size))

    async def do_uidl(self, command: Command) -> None:
        # RFC 1939 7: unique-id persists across sessions; UIDVALIDITY.UID does while the index
        # lives, and a new UIDVALIDITY changes every id, as it should.
        await self.listing(command, lambda m: f"{self.uidvalidity}.{m.uid}")

    async def listing(self, command: Command, show: Callable[[StoredMessage], str]) -> None:
        if command.msg is not None:
            message = await self.message(command.msg)
            if message is not None:
                await self.send(f"+OK {command.msg} {show(message)}")
            return
        body = "".join(f"{n} {show(m)}\r\n" for n, m in self.live())
        await self.multiline(f"{len(self.live())} messages", body.encode())

    async def do_retr(self, command: Command) -> None:
        assert command.msg is not None
        data = await self.read(command.msg)
        if data is not None:
            self.retrieved.add(command.msg)
            await self.multiline(f"{len(data)} octets", data)

    async def do_top(self, command: Command) -> None:
        assert command.msg is not None and command.lines is not None
        data = await self.read(command.msg)
        if data is not None:
            await self.multiline("Top of message follows", top(data, command.lines))

    async def do_dele(self, command: Command) -> None:
        assert command.msg is not None
        if await self.message(command.msg) is not None:
            self.deleted.add(command.msg)
            await self.send(f"+OK Message {command.msg} deleted")

    async def do_rset(self, command: Command) -> None:
        self.deleted.clear()
        await self.send(f"+OK {len(self.messages)} messages")

    async def do_noop(self, command: Command) -> None:
        await self.send("+OK")

    async def do_quit(self, command: Command) -> None:
        self.state = _State.DONE
        if self.mailbox is None:
            await self.send(f"+OK {self.server.hostname} POP3 bye")
            return
        # RFC 1939 6: UPDATE removes the messages marked deleted; read ones become \Seen.
        gone = [self.messages[n - 1].uid for n in self.deleted]
        seen = [self.messages[n - 1].uid for n in self.retrieved - self.deleted]
        try:
            await asyncio.to_thread(_update, self.mailbox, gone, seen)
        except Exception:
            log.exception("pop3.update session=%s", self.id)
            await self.send("-ERR [SYS/TEMP] Some deleted messages not removed")
            return
        finally:
            # Released before the reply: a client that reconnects at once finds it free.
            if self.unlock is not None:
                self.unlock()
        self.log("pop3.update", user=self.user, deleted=len(gone))
        await self.send(f"+OK {self.server.hostname} POP3 bye ({len(gone)} messages deleted)")

    # -- helpers ----------------------------------------------------------------------------

    def live(self) -> list[tuple[int, StoredMessage]]:
        return [(n, m) for n, m in enumerate(self.messages, 1) if n not in self.deleted]

    async def message(self, n: int) -> StoredMessage | None:
        """Message ``n``, or None after answering -ERR (RFC 1939 5: none, or deleted)."""
        if not 1 <= n <= len(self.messages) or n in self.deleted:
            await self.send("-ERR No such message")
            return None
        return self.messages[n - 1]

    async def read(self, n: int) -> bytes | None:
        message = await self.message(n)
        if message is None or self.mailbox is None:
            return None
        try:
            return await asyncio.to_thread(self.mailbox.read, message.uid)
        except NoSuchMessage:
            await self.send("-ERR Message was removed by another session")
            return None

    async def multiline(self, status: str, body: bytes) -> None:
        await self.stream.write(
            f"+OK {status}\r\n".encode() + dot_stuff(body) + b".\r\n", WRITE_TIMEOUT
        )

    async def send(self, line: str) -> None:
        await self.stream.write(line.encode() + b"\r\n", WRITE_TIMEOUT)

    async def last_words(self, line: str) -> None:
        with contextlib.suppress(Closed, TimeoutError):
            await self.stream.write(line.encode() + b"\r\n", 5.0)

    async def err(self, reason: str) -> None:
        await self.send(f"-ERR {reason}")
        self.errors += 1
        if self.errors >= MAX_ERRORS:
            raise _Hangup

    def log(self, event: str, **fields: object) -> None:
        log_event(log, event, session=self.id, peer=self.stream.peer, **fields)


def _open(store: MailStore, user: str) -> tuple[Mailbox, list[StoredMessage], int]:
    mailbox = store.open(user)
    try:
        return mailbox, mailbox.messages(), mailbox.uidvalidity
    except BaseException:
        mailbox.close()
        raise


def _update(mailbox: Mailbox, gone: list[int], seen: list[int]) -> None:
    if seen:
        mailbox.change_flags(seen, add=["\\Seen"])
    if gone:
        mailbox.change_flags(gone, add=["\\Deleted"])
        mailbox.expunge(gone)
